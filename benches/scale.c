/*
 * Scale of the store from C: what a call costs as the store fills.
 *
 * The same series as benches/scale.rs, through libvman: scale/create
 * (vman_vm_create of a VM with one NIC, so an address is allocated),
 * scale/get (vman_vm_get) and scale/list (vman_vm_list, no filter) with 0,
 * 1,000 and 10,000 VMs in the store, filled through the API and measured at
 * each size on the way up. At n = 0 get reads the only VM.
 *
 * Writes JSON lines (impl "vman-c") to the file named by VMAN_BENCH_OUT,
 * appending, and prints a table. Build against the release library:
 *   cargo build --release -p vman-ffi
 *   cc -O2 -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude benches/scale.c \
 *      -Ltarget/release -lvman -Wl,-rpath,$PWD/target/release -o target/release/scale-c
 *   target/release/scale-c [--quick]
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vman.h"

static void check(enum VmanStatus status, const char *what) {
    if (status != VMAN_STATUS_OK) {
        const char *message = vman_last_error_message();
        fprintf(stderr, "%s: %s: %s\n", what, vman_status_name((uint32_t)status), message ? message : "");
        exit(1);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prints a row of the table and appends the series to VMAN_BENCH_OUT. */
static void emit(const char *bench, size_t n, const double *samples, size_t count) {
    double *sorted = malloc(count * sizeof *sorted);
    if (sorted == NULL) {
        exit(1);
    }
    memcpy(sorted, samples, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, by_value);
    double median = count % 2 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
    printf("%-14s {\"n\": %-6zu}    median %10.1f us  p10 %10.1f  p90 %10.1f  (%zu samples)\n", bench, n, median * 1e6,
           sorted[(size_t)((double)(count - 1) * 0.1 + 0.5)] * 1e6, sorted[(size_t)((double)(count - 1) * 0.9 + 0.5)] * 1e6, count);
    free(sorted);
    const char *path = getenv("VMAN_BENCH_OUT");
    if (path == NULL || path[0] == '\0') {
        return;
    }
    FILE *out = fopen(path, "a");
    if (out == NULL) {
        perror(path);
        exit(1);
    }
    fprintf(out, "{\"bench\": \"%s\", \"impl\": \"vman-c\", \"params\": {\"n\": %zu}, \"unit\": \"s\", \"samples\": [", bench, n);
    for (size_t i = 0; i < count; i++) {
        fprintf(out, "%s%.9g", i ? ", " : "", samples[i]);
    }
    fprintf(out, "]}\n");
    fclose(out);
}

static void fill_name(char *buf, size_t size, size_t i) { snprintf(buf, size, "vm%05zu", i); }

static void create(const VmanManager *m, const char *name) {
    VmanVmSpec *spec = NULL;
    check(vman_vm_spec_new(name, "t", &spec), "vm spec");
    check(vman_vm_spec_add_nic(spec, "n", NULL, NULL), "nic");
    VmanVm *vm = NULL;
    check(vman_vm_create(m, spec, &vm), "create");
    vman_vm_free(vm);
    vman_vm_spec_free(spec);
}

static void measure(const VmanManager *m, size_t n, bool quick) {
    char name[32];
    size_t creates = quick ? 30 : 200;
    double *samples = malloc(5000 * sizeof *samples);
    if (samples == NULL) {
        exit(1);
    }
    for (size_t i = 0; i < creates; i++) {
        snprintf(name, sizeof name, "probe%zu", i);
        double start = now();
        create(m, name);
        samples[i] = now() - start;
    }
    for (size_t i = 0; i < creates; i++) {
        snprintf(name, sizeof name, "probe%zu", i);
        check(vman_vm_delete(m, name, false), "delete");
    }
    emit("scale/create", n, samples, creates);

    if (n == 0) {
        fill_name(name, sizeof name, 0);
        create(m, name);
    }
    size_t gets = quick ? 300 : 5000;
    for (size_t i = 0; i < gets; i++) {
        fill_name(name, sizeof name, (i * 7919) % (n ? n : 1));
        VmanVm *vm = NULL;
        double start = now();
        check(vman_vm_get(m, name, &vm), "get");
        vman_vm_free(vm);
        samples[i] = now() - start;
    }
    emit("scale/get", n, samples, gets);
    if (n == 0) {
        fill_name(name, sizeof name, 0);
        check(vman_vm_delete(m, name, false), "delete");
    }

    size_t lists = n == 0 ? (quick ? 50 : 200) : n == 1000 ? (quick ? 10 : 50) : (quick ? 3 : 15);
    for (size_t i = 0; i < lists; i++) {
        VmanVmList *list = NULL;
        double start = now();
        check(vman_vm_list(m, NULL, NULL, &list), "list");
        samples[i] = now() - start;
        if (vman_vm_list_len(list) != n) {
            fprintf(stderr, "listed %zu VMs, expected %zu\n", vman_vm_list_len(list), n);
            exit(1);
        }
        vman_vm_list_free(list);
    }
    emit("scale/list", n, samples, lists);
    free(samples);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    char dir[] = "/tmp/vman-scale-c-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    VmanManager *m = NULL;
    check(vman_manager_open(dir, NULL, &m), "open");
    check(vman_template_create(m, "t", 1, 512, 1, NULL, NULL), "template");
    VmanNetworkSpec *net = NULL;
    check(vman_network_spec_new("n", 16, "10.16.0.0/16", &net), "network spec");
    check(vman_network_create(m, net, NULL), "network");
    vman_network_spec_free(net);
    const size_t sizes[] = {0, 1000, 10000};
    size_t filled = 0;
    char name[32];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (; filled < sizes[s]; filled++) {
            fill_name(name, sizeof name, filled);
            create(m, name);
        }
        measure(m, sizes[s], quick);
    }
    vman_manager_free(m);
    char rm[64];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    return system(rm) == 0 ? 0 : 1;
}
