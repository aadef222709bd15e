/*
 * Batches through the C ABI: N VMs from one VM spec and a naming pattern,
 * refused with nothing changed (bad pattern, taken names, a network with
 * too few addresses), made, listed, deleted by prefix and by batch, and a
 * started batch whose third QEMU really fails, rolled back whole.
 * Usage: batch <empty-state-dir> <kernel> <initrd> <base.qcow2> <qemu>
 * where <qemu> runs QEMU but hands it a missing kernel for VM worker03.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>

#include "check.h"

static VmanManager *mgr;
static const char *state_dir;

/* Entries in a directory of the state directory ("." and ".." aside). */
static size_t entries(const char *sub) {
  char path[4096];
  DIR *d;
  struct dirent *e;
  size_t n = 0;
  snprintf(path, sizeof path, "%s/%s", state_dir, sub);
  d = opendir(path);
  CHECK(d != NULL);
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      n++;
    }
  }
  closedir(d);
  return n;
}

/* Live processes whose command line names this state directory's run/. */
static size_t processes_of_state_dir(void) {
  char needle[4096], path[300], cmdline[8192];
  DIR *proc = opendir("/proc");
  struct dirent *e;
  size_t n = 0;
  CHECK(proc != NULL);
  snprintf(needle, sizeof needle, "%s/run/", state_dir);
  while ((e = readdir(proc)) != NULL) {
    FILE *f;
    size_t len, i;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') {
      continue;
    }
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    f = fopen(path, "r");
    if (f == NULL) {
      continue;
    }
    len = fread(cmdline, 1, sizeof cmdline - 1, f);
    fclose(f);
    cmdline[len] = 0;
    if (strstr(cmdline, ") Z ") != NULL) {
      continue; /* a zombie about to be reaped */
    }
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    f = fopen(path, "r");
    if (f == NULL) {
      continue;
    }
    len = fread(cmdline, 1, sizeof cmdline - 1, f);
    fclose(f);
    for (i = 0; i < len; i++) {
      if (cmdline[i] == 0) {
        cmdline[i] = ' ';
      }
    }
    cmdline[len] = 0;
    if (strstr(cmdline, needle) != NULL) {
      n++;
    }
  }
  closedir(proc);
  return n;
}

static size_t vm_count(void) {
  VmanVmList *list = NULL;
  size_t n;
  OK(vman_vm_list(mgr, NULL, NULL, &list));
  n = vman_vm_list_len(list);
  vman_vm_list_free(list);
  return n;
}

static size_t batch_count(void) {
  VmanBatchList *list = NULL;
  size_t n;
  OK(vman_batch_list(mgr, &list));
  n = vman_batch_list_len(list);
  vman_batch_list_free(list);
  return n;
}

static size_t allocation_count(const char *network) {
  VmanAllocationList *list = NULL;
  size_t n;
  OK(vman_network_allocations(mgr, network, &list));
  n = vman_allocation_list_len(list);
  vman_allocation_list_free(list);
  return n;
}

static size_t disk_count(void) {
  VmanDiskList *list = NULL;
  size_t n;
  OK(vman_disk_list(mgr, NULL, NULL, &list));
  n = vman_disk_list_len(list);
  vman_disk_list_free(list);
  return n;
}

/* No VM, batch, address, disk, disk file, seed or QEMU left. */
static void nothing_left(void) {
  CHECK(vm_count() == 0);
  CHECK(batch_count() == 0);
  CHECK(allocation_count("lan") == 0);
  CHECK(disk_count() == 0);
  CHECK(entries("disks") == 0);
  CHECK(entries("seeds") == 0);
  CHECK(processes_of_state_dir() == 0);
}

static VmanVmSpec *worker(const char *kernel, const char *initrd, const char *network) {
  VmanVmSpec *vm = NULL;
  OK(vman_vm_spec_new("", "tiny", &vm));
  OK(vman_vm_spec_set_image(vm, "base"));
  OK(vman_vm_spec_add_nic(vm, network, NULL, NULL));
  OK(vman_vm_spec_set_cloud_init(vm, true, NULL));
  OK(vman_vm_spec_set_boot(vm, kernel, initrd, "console=ttyS0 quiet panic=-1"));
  return vm;
}

/* Creating `spec` fails with `status`, and changes nothing. */
static void refused(VmanStatus status, const VmanBatchSpec *spec) {
  size_t events = count_events(mgr);
  VmanBatch *batch = NULL;
  EXPECT(status, vman_batch_create(mgr, spec, &batch));
  CHECK(batch == NULL);
  CHECK(count_events(mgr) == events);
  nothing_left();
}

int main(int argc, char **argv) {
  VmanOpenOptions *options = NULL;
  VmanNetworkSpec *net = NULL;
  VmanImageSpec *image = NULL;
  VmanVmSpec *vm = NULL, *named = NULL, *few = NULL;
  VmanBatchSpec *spec = NULL;
  VmanBatch *batch = NULL;
  VmanBatchList *list = NULL;
  VmanNames *names = NULL;
  VmanManager *failing = NULL;
  const char *msg;
  CHECK(argc == 6);
  state_dir = argv[1];

  OK(vman_open_options_new(&options));
  OK(vman_open_options_set_accel(options, "tcg"));
  OK(vman_open_options_set_network(options, "isolated"));
  OK(vman_manager_open(state_dir, options, &mgr));
  OK(vman_template_create(mgr, "tiny", 1, 192, 1, NULL, NULL));
  OK(vman_network_spec_new("lan", 100, "10.100.0.0/24", &net));
  OK(vman_network_create(mgr, net, NULL));
  vman_network_spec_free(net);
  /* Two free addresses: .2 and .3. */
  OK(vman_network_spec_new("small", 9, "10.9.0.0/29", &net));
  OK(vman_network_spec_add_reserved(net, "10.9.0.4-10.9.0.6"));
  OK(vman_network_create(mgr, net, NULL));
  vman_network_spec_free(net);
  OK(vman_image_spec_new("base", argv[4], &image));
  OK(vman_image_register(mgr, image, NULL));
  vman_image_spec_free(image);
  vm = worker(argv[2], argv[3], "lan");

  /* Refused before anything: a bad pattern, a count out of range, a VM
   * spec with a name. */
  OK(vman_batch_spec_new("worker", 3, vm, &spec));
  refused(VMAN_STATUS_INVALID_ARGUMENT, spec);
  vman_batch_spec_free(spec);
  OK(vman_batch_spec_new("worker{:02}", 0, vm, &spec));
  refused(VMAN_STATUS_INVALID_ARGUMENT, spec);
  vman_batch_spec_free(spec);
  OK(vman_vm_spec_new("web", "tiny", &named));
  OK(vman_batch_spec_new("worker{:02}", 2, named, &spec));
  refused(VMAN_STATUS_INVALID_ARGUMENT, spec);
  vman_batch_spec_free(spec);
  vman_vm_spec_free(named);
  spec = NULL;
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_batch_spec_new("w{}", 1, NULL, &spec));
  CHECK(spec == NULL);

  /* The third VM finds no address: none of the three is made. */
  few = worker(argv[2], argv[3], "small");
  OK(vman_batch_spec_new("node{}", 3, few, &spec));
  refused(VMAN_STATUS_EXHAUSTED, spec);
  CHECK(allocation_count("small") == 0);
  vman_batch_spec_free(spec);
  vman_vm_spec_free(few);

  /* Made, listed, looked up. */
  OK(vman_batch_spec_new("worker{:02}", 3, vm, &spec));
  OK(vman_batch_create(mgr, spec, &batch));
  STREQ(vman_batch_name(batch), "worker");
  STREQ(vman_batch_pattern(batch), "worker{:02}");
  CHECK(vman_batch_count(batch) == 3 && vman_batch_state(batch) == VMAN_BATCH_STATE_CREATED);
  STREQ(vman_batch_state_name(vman_batch_state(batch)), "created");
  CHECK(vman_batch_id(batch) > 0 && vman_batch_created_at_ms(batch) > 0);
  CHECK(vman_batch_vm_count(batch) == 3);
  STREQ(vman_batch_vm(batch, 0), "worker01");
  STREQ(vman_batch_vm(batch, 2), "worker03");
  CHECK(vman_batch_vm(batch, 3) == NULL);
  vman_batch_free(batch);
  OK(vman_batch_list(mgr, &list));
  CHECK(vman_batch_list_len(list) == 1);
  STREQ(vman_batch_name(vman_batch_list_get(list, 0)), "worker");
  vman_batch_list_free(list);
  OK(vman_batch_get(mgr, "worker", &batch));
  CHECK(vman_batch_vm_count(batch) == 3);
  vman_batch_free(batch);
  CHECK(vm_count() == 3 && allocation_count("lan") == 3 && entries("disks") == 3);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_batch_get(mgr, "nope", &batch));

  /* Taken names: the batch's, then its VMs' (the message names them). */
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_batch_create(mgr, spec, NULL));
  OK(vman_batch_spec_set_name(spec, "again"));
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_batch_create(mgr, spec, NULL));
  msg = vman_last_error_message();
  CHECK(msg != NULL && strstr(msg, "worker01") != NULL);
  CHECK(vm_count() == 3 && batch_count() == 1);

  /* Deleted by prefix: the batch goes with its last VM. */
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_delete_by_prefix(mgr, "", false, NULL));
  OK(vman_vm_delete_by_prefix(mgr, "worker0", false, &names));
  CHECK(vman_names_len(names) == 3);
  STREQ(vman_names_get(names, 0), "worker01");
  CHECK(vman_names_get(names, 3) == NULL);
  vman_names_free(names);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_batch_get(mgr, "worker", &batch));
  nothing_left();

  /* Started whole, deleted by batch: its QEMUs go. */
  OK(vman_batch_spec_set_name(spec, "workers"));
  OK(vman_batch_spec_set_first(spec, 7));
  OK(vman_batch_spec_set_start(spec, true));
  OK(vman_batch_create(mgr, spec, &batch));
  STREQ(vman_batch_vm(batch, 0), "worker07");
  CHECK(vman_batch_vm_count(batch) == 3);
  vman_batch_free(batch);
  CHECK(processes_of_state_dir() == 3);
  /* Without force neither call kills them, and nothing is deleted. */
  names = NULL;
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_batch_delete(mgr, "workers", false, &names));
  msg = vman_last_error_message();
  CHECK(msg != NULL && strstr(msg, "worker07") != NULL && strstr(msg, "force") != NULL);
  CHECK(names == NULL);
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_delete_by_prefix(mgr, "worker", false, &names));
  CHECK(names == NULL && vm_count() == 3 && batch_count() == 1 && processes_of_state_dir() == 3);
  OK(vman_batch_delete(mgr, "workers", true, &names));
  CHECK(vman_names_len(names) == 3);
  vman_names_free(names);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_batch_delete(mgr, "workers", false, NULL));
  nothing_left();

  /* Started, the third QEMU fails for real: all three are taken back. */
  /* The QEMU binary is the directory's setting: every opener uses it. */
  OK(vman_set_setting(mgr, "qemu_binary", argv[5], NULL));
  OK(vman_manager_open(state_dir, options, &failing));
  vman_open_options_free(options);
  OK(vman_batch_spec_set_first(spec, 1));
  batch = NULL;
  EXPECT(VMAN_STATUS_QEMU, vman_batch_create(failing, spec, &batch));
  CHECK(batch == NULL);
  msg = vman_last_error_message();
  CHECK(msg != NULL && strstr(msg, "/nonexistent/vmlinuz") != NULL);
  nothing_left();
  vman_manager_free(failing);

  vman_batch_spec_free(spec);
  vman_vm_spec_free(vm);
  vman_manager_free(mgr);
  printf("all checks passed\n");
  return 0;
}
