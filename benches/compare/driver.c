/*
 * Driver process of the comparative harness: vman from C, through
 * target/release/libvman.so and include/vman.h.
 *
 * JSON lines on stdin, one answer per line on stdout (see README.md). The
 * requests are flat objects of strings and numbers written by run.py, so a
 * small extractor reads them. Each operation is timed here with
 * CLOCK_MONOTONIC around the one vman call.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -Iinclude benches/compare/driver.c \
 *          -Ltarget/release -lvman -Wl,-rpath,$PWD/target/release -o driver-c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vman.h"

#define FIELD_MAX 4096

/* Copies the JSON string value of "key" into out (simple escapes only). */
static bool get_str(const char *line, const char *key, char *out, size_t cap) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return false;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != '"') return false;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return *p == '"';
}

static double get_num(const char *line, const char *key, double dflt) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return dflt;
    return strtod(p + strlen(pat), NULL);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what) {
    const char *msg = vman_last_error_message();
    /* The message is plain text; quote marks and backslashes are dropped. */
    printf("{\"ok\": false, \"error\": \"%s: ", what);
    for (const char *c = msg ? msg : "?"; *c; c++)
        if (*c != '"' && *c != '\\' && *c != '\n') putchar(*c);
    printf("\"}\n");
}

static VmanManager *manager;
static char kernel[FIELD_MAX], initrd[FIELD_MAX], cmdline[FIELD_MAX];

static bool setup(const char *line) {
    char state[FIELD_MAX], dir[FIELD_MAX + 16], base[FIELD_MAX];
    if (!get_str(line, "state", state, sizeof state) || !get_str(line, "kernel", kernel, sizeof kernel) ||
        !get_str(line, "initrd", initrd, sizeof initrd) || !get_str(line, "cmdline", cmdline, sizeof cmdline)) {
        printf("{\"ok\": false, \"error\": \"setup needs state, kernel, initrd, cmdline\"}\n");
        return false;
    }
    snprintf(dir, sizeof dir, "%s/vman", state);
    VmanOpenOptions *opts = NULL;
    if (vman_open_options_new(&opts) != VMAN_STATUS_OK || vman_open_options_set_accel(opts, "tcg") != VMAN_STATUS_OK ||
        vman_manager_open(dir, opts, &manager) != VMAN_STATUS_OK) {
        vman_open_options_free(opts);
        fail("open");
        return false;
    }
    vman_open_options_free(opts);
    VmanTemplate *t = NULL;
    if (vman_template_create(manager, "t", 1, (uint64_t)get_num(line, "memory_mib", 256), 1, NULL, &t) != VMAN_STATUS_OK) {
        fail("template");
        return false;
    }
    vman_template_free(t);
    if (get_str(line, "base", base, sizeof base)) {
        VmanImageSpec *spec = NULL;
        VmanImage *image = NULL;
        if (vman_image_spec_new("base", base, &spec) != VMAN_STATUS_OK || vman_image_register(manager, spec, &image) != VMAN_STATUS_OK) {
            vman_image_spec_free(spec);
            fail("register image");
            return false;
        }
        vman_image_spec_free(spec);
        vman_image_free(image);
    }
    printf("{\"ok\": true, \"version\": \"%s\"}\n", vman_version());
    return true;
}

/* One timed operation; answers on stdout. */
static void op(const char *line, const char *what) {
    char name[256], disk[32];
    if (!get_str(line, "name", name, sizeof name)) {
        printf("{\"ok\": false, \"error\": \"no name\"}\n");
        return;
    }
    uint64_t timeout_ms = (uint64_t)(get_num(line, "timeout", 60.0) * 1000.0);
    VmanVm *vm = NULL;
    VmanStatus st;
    double t;
    if (strcmp(what, "create") == 0) {
        VmanVmSpec *spec = NULL;
        bool linked = get_str(line, "disk", disk, sizeof disk) && strcmp(disk, "linked") == 0;
        if (vman_vm_spec_new(name, "t", &spec) != VMAN_STATUS_OK || vman_vm_spec_set_boot(spec, kernel, initrd, cmdline) != VMAN_STATUS_OK ||
            (linked && vman_vm_spec_set_image(spec, "base") != VMAN_STATUS_OK)) {
            vman_vm_spec_free(spec);
            fail("spec");
            return;
        }
        t = now();
        st = vman_vm_create(manager, spec, &vm);
        t = now() - t;
        vman_vm_spec_free(spec);
    } else if (strcmp(what, "start") == 0) {
        t = now();
        st = vman_vm_start(manager, name, &vm);
        t = now() - t;
    } else if (strcmp(what, "force_stop") == 0) {
        t = now();
        st = vman_vm_force_stop(manager, name, &vm);
        t = now() - t;
    } else if (strcmp(what, "graceful_stop") == 0) {
        t = now();
        st = vman_vm_stop(manager, name, timeout_ms, &vm);
        t = now() - t;
    } else if (strcmp(what, "ready") == 0) {
        t = now();
        st = vman_vm_wait_for_console(manager, name, "VMAN-GUEST-READY", timeout_ms, NULL);
        t = now() - t;
    } else if (strcmp(what, "delete") == 0) {
        t = now();
        st = vman_vm_delete(manager, name, true);
        t = now() - t;
    } else {
        printf("{\"ok\": false, \"error\": \"unknown op\"}\n");
        return;
    }
    vman_vm_free(vm);
    if (st != VMAN_STATUS_OK) {
        fail(what);
        return;
    }
    printf("{\"ok\": true, \"s\": %.9f}\n", t);
}

int main(void) {
    static char line[4 * FIELD_MAX];
    char what[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!get_str(line, "op", what, sizeof what)) {
            printf("{\"ok\": false, \"error\": \"no op\"}\n");
        } else if (strcmp(what, "quit") == 0) {
            break;
        } else if (strcmp(what, "setup") == 0) {
            setup(line);
        } else if (!manager) {
            printf("{\"ok\": false, \"error\": \"setup first\"}\n");
        } else {
            op(line, what);
        }
        fflush(stdout);
    }
    if (manager) {
        VmanNames *gone = NULL;
        vman_vm_delete_by_prefix(manager, "", true, &gone);
        vman_names_free(gone);
        vman_manager_free(manager);
    }
    return 0;
}
