/*
 * Disks, images, snapshots, the CD-ROM and a VM's boot, display and
 * cloud-init options through the C ABI, against a real state directory and
 * the real qemu-img. Built with
 * -Wall -Wextra -Werror -pedantic and run under valgrind (no leaks, no
 * invalid accesses). No QEMU runs: disks are attached to a VM that is not
 * running (hot-plug is tested from Python and Rust).
 * Usage: storage <empty-state-dir>
 */
#define _XOPEN_SOURCE 700 /* realpath, symlink, popen */
#include <stdint.h>
#include <unistd.h>

#include "check.h"

#define MIB (1024ull * 1024ull)

static VmanManager *mgr;
static char work[512];  /* the state directory's parent: files outside it */
static char state[512]; /* the state directory, canonical */

static size_t count_disks(const char *vm, const char *state_filter) {
  VmanDiskList *list = NULL;
  size_t n;
  OK(vman_disk_list(mgr, vm, state_filter, &list));
  n = vman_disk_list_len(list);
  vman_disk_list_free(list);
  return n;
}

/* Writes `size` bytes of `byte` to `path`. */
static void write_file(const char *path, size_t size, int byte) {
  FILE *f = fopen(path, "wb");
  char block[4096];
  size_t done;
  CHECK(f != NULL);
  memset(block, byte, sizeof block);
  for (done = 0; done < size; done += sizeof block) CHECK(fwrite(block, 1, sizeof block, f) == sizeof block);
  CHECK(fclose(f) == 0);
}

/* `sha256sum path`'s digest, into `out` (65 bytes). */
static void sha256sum(const char *path, char *out) {
  char cmd[600];
  FILE *p;
  snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
  p = popen(cmd, "r");
  CHECK(p != NULL);
  CHECK(fscanf(p, "%64s", out) == 1);
  CHECK(pclose(p) == 0);
}

static void test_disks(void) {
  VmanDisk *d = NULL;
  VmanDiskList *list = NULL;
  char source[600], inside[600], data_path[600];

  OK(vman_disk_create(mgr, "data", 64 * MIB, NULL, &d));
  CHECK(vman_disk_id(d) > 0);
  STREQ(vman_disk_name(d), "data");
  STREQ(vman_disk_format(d), "qcow2");
  CHECK(vman_disk_size_bytes(d) == 64 * MIB);
  CHECK(vman_disk_state(d) == VMAN_DISK_STATE_AVAILABLE);
  CHECK(vman_disk_owned(d) && !vman_disk_delete_with_vm(d));
  CHECK(vman_disk_vm(d) == NULL && vman_disk_slot(d) == -1 && vman_disk_image(d) == NULL);
  CHECK(vman_disk_last_error(d) == NULL && vman_disk_created_at_ms(d) > 0);
  CHECK(strncmp(vman_disk_path(d), state, strlen(state)) == 0);
  CHECK(access(vman_disk_path(d), F_OK) == 0);
  snprintf(data_path, sizeof data_path, "%s", vman_disk_path(d));
  vman_disk_free(d);

  OK(vman_disk_create(mgr, "scratch", 8 * MIB, "raw", NULL));
  OK(vman_disk_list(mgr, NULL, NULL, &list));
  CHECK(vman_disk_list_len(list) == 2);
  STREQ(vman_disk_name(vman_disk_list_get(list, 0)), "data");
  STREQ(vman_disk_format(vman_disk_list_get(list, 1)), "raw");
  CHECK(vman_disk_list_get(list, 2) == NULL);
  vman_disk_list_free(list);
  CHECK(count_disks(NULL, "available") == 2 && count_disks(NULL, "attached") == 0);

  /* Imported: copied in (format probed), or used in place inside the state directory. */
  snprintf(source, sizeof source, "%s/import.raw", work);
  write_file(source, 4 * MIB, 7);
  OK(vman_disk_import(mgr, "imported", source, NULL, true, &d));
  STREQ(vman_disk_format(d), "raw");
  CHECK(vman_disk_size_bytes(d) == 4 * MIB && vman_disk_owned(d));
  CHECK(strcmp(vman_disk_path(d), source) != 0);
  vman_disk_free(d);
  snprintf(inside, sizeof inside, "%s/kept.raw", state);
  write_file(inside, 2 * MIB, 1);
  OK(vman_disk_import(mgr, "kept", inside, "raw", false, &d));
  STREQ(vman_disk_path(d), inside);
  CHECK(!vman_disk_owned(d));
  vman_disk_free(d);
  OK(vman_disk_delete(mgr, "kept"));
  CHECK(access(inside, F_OK) == 0); /* a file used in place stays */
  OK(vman_disk_delete(mgr, "imported"));

  /* Grow; a shrink needs force. */
  OK(vman_disk_resize(mgr, "data", 96 * MIB, false, &d));
  CHECK(vman_disk_size_bytes(d) == 96 * MIB);
  vman_disk_free(d);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_resize(mgr, "data", 32 * MIB, false, NULL));
  CHECK(strstr(vman_last_error_message(), "force") != NULL);
  OK(vman_disk_get(mgr, "data", &d));
  CHECK(vman_disk_size_bytes(d) == 96 * MIB);
  vman_disk_free(d);
  OK(vman_disk_resize(mgr, "data", 32 * MIB, true, NULL));

  /* Attached to a VM that does not run: recorded for its next start. */
  {
    VmanVmSpec *spec = NULL;
    OK(vman_vm_spec_new("v", "small", &spec));
    OK(vman_vm_create(mgr, spec, NULL));
    vman_vm_spec_free(spec);
  }
  OK(vman_disk_attach(mgr, "v", "data", &d));
  CHECK(vman_disk_state(d) == VMAN_DISK_STATE_ATTACHED);
  STREQ(vman_disk_vm(d), "v");
  CHECK(vman_disk_slot(d) == 0);
  vman_disk_free(d);
  OK(vman_disk_attach(mgr, "v", "scratch", &d));
  CHECK(vman_disk_slot(d) == 1);
  vman_disk_free(d);
  CHECK(count_disks("v", NULL) == 2 && count_disks(NULL, "attached") == 2);
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_disk_attach(mgr, "v", "data", NULL));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_disk_delete(mgr, "data"));
  CHECK(strstr(vman_last_error_message(), "detach it first") != NULL);

  OK(vman_disk_detach(mgr, "v", "data", VMAN_DEFAULT_DETACH_TIMEOUT_MS, &d));
  CHECK(vman_disk_state(d) == VMAN_DISK_STATE_AVAILABLE);
  CHECK(vman_disk_vm(d) == NULL && vman_disk_slot(d) == -1);
  vman_disk_free(d);
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_disk_detach(mgr, "v", "data", VMAN_DEFAULT_DETACH_TIMEOUT_MS, NULL));
  OK(vman_disk_detach(mgr, "v", "scratch", 0, NULL));

  OK(vman_disk_delete(mgr, "data"));
  CHECK(access(data_path, F_OK) != 0); /* its file went with it */
  d = NULL;
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_get(mgr, "data", &d));
  CHECK(d == NULL); /* not written on failure */
  OK(vman_disk_delete(mgr, "scratch"));
  CHECK(count_disks(NULL, NULL) == 0);
}

static void test_bad_disk_input_changes_nothing(void) {
  size_t events;
  VmanDisk *untouched = (VmanDisk *)&events; /* sentinel: must stay as is */
  VmanDisk *out = untouched;
  VmanDiskList *list = NULL;
  const char bad_utf8[] = {'d', (char)0xff, 0};
  char outside[600], link_path[600], text[600];

  OK(vman_disk_create(mgr, "taken", 8 * MIB, NULL, NULL));
  snprintf(outside, sizeof outside, "%s/outside.raw", work);
  write_file(outside, MIB, 0);
  snprintf(link_path, sizeof link_path, "%s/link.raw", work);
  CHECK(symlink(outside, link_path) == 0);
  snprintf(text, sizeof text, "%s/notes.txt", work);
  write_file(text, 4096, 'x');
  events = count_events(mgr);

  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_create(mgr, "a", 0, NULL, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_create(mgr, "a", UINT64_MAX, NULL, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_create(mgr, "a", MIB + 1, NULL, &out));
  CHECK(strstr(vman_last_error_message(), "512") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_create(mgr, "a", MIB, "vmdk", &out));
  CHECK(strstr(vman_last_error_message(), "qcow2") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_create(mgr, "../a", MIB, NULL, &out));
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_disk_create(mgr, "taken", MIB, NULL, &out));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_disk_create(NULL, "a", MIB, NULL, &out));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_disk_create(mgr, NULL, MIB, NULL, &out));
  EXPECT(VMAN_STATUS_INVALID_UTF8, vman_disk_create(mgr, bad_utf8, MIB, NULL, &out));
  EXPECT(VMAN_STATUS_INVALID_UTF8, vman_disk_create(mgr, "a", MIB, bad_utf8, &out));

  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", "import.raw", NULL, true, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", "/dev/zero", NULL, true, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", link_path, NULL, true, &out));
  CHECK(strstr(vman_last_error_message(), "symlink") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", text, "qcow2", true, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", outside, NULL, false, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_import(mgr, "a", outside, "iso", true, &out));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_disk_import(mgr, "a", NULL, NULL, true, &out));

  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_resize(mgr, "taken", MIB, false, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_resize(mgr, "taken", 0, true, &out));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_resize(mgr, "nope", 8 * MIB, false, &out));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_disk_detach(mgr, "v", "taken", 1000, &out));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_detach(mgr, "v", "taken", UINT64_MAX, &out));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_attach(mgr, "nope", "taken", &out));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_attach(mgr, "v", "nope", &out));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_delete(mgr, "nope"));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_disk_delete(mgr, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_disk_get(mgr, "taken", NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_disk_list(mgr, NULL, "asleep", &list));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_list(mgr, "nope", NULL, &list));
  CHECK(out == untouched && list == NULL);

  CHECK(count_events(mgr) == events);
  CHECK(count_disks(NULL, NULL) == 1);
  OK(vman_disk_get(mgr, "taken", &out));
  CHECK(vman_disk_size_bytes(out) == 8 * MIB && vman_disk_state(out) == VMAN_DISK_STATE_AVAILABLE);
  vman_disk_free(out);
  OK(vman_disk_delete(mgr, "taken"));

  /* Getters and frees on NULL are harmless. */
  CHECK(vman_disk_name(NULL) == NULL && vman_disk_size_bytes(NULL) == 0 && vman_disk_list_len(NULL) == 0);
  CHECK(vman_image_name(NULL) == NULL && vman_image_list_get(NULL, 0) == NULL);
  vman_disk_free(NULL);
  vman_disk_list_free(NULL);
  vman_image_free(NULL);
  vman_image_list_free(NULL);
  vman_image_spec_free(NULL);
  STREQ(vman_disk_state_name(VMAN_DISK_STATE_ATTACHED), "attached");
  STREQ(vman_disk_state_name(99), "unknown");
}

static void test_images(void) {
  VmanImageSpec *spec = NULL;
  VmanImage *image = NULL;
  VmanImageList *list = NULL;
  VmanVmSpec *vspec = NULL;
  VmanVm *vm = NULL;
  VmanDisk *boot = NULL;
  char source[600], expected[65], image_path[600];
  size_t events;

  snprintf(source, sizeof source, "%s/base.raw", work);
  write_file(source, 4 * MIB, 7);
  sha256sum(source, expected);

  OK(vman_image_spec_new("base", source, &spec));
  OK(vman_image_spec_set_os(spec, "test-os"));
  OK(vman_image_spec_set_description(spec, "four MiB of sevens"));
  OK(vman_image_spec_set_arch(spec, "x86_64"));
  OK(vman_image_spec_set_firmware(spec, "bios"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_image_spec_set_firmware(spec, "efi"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_image_spec_set_format(spec, "vmdk"));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_image_spec_set_os(spec, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_image_spec_set_copy(NULL, true));
  OK(vman_image_spec_set_copy(spec, true));
  OK(vman_image_register(mgr, spec, &image));
  CHECK(vman_image_id(image) > 0);
  STREQ(vman_image_name(image), "base");
  STREQ(vman_image_os(image), "test-os");
  STREQ(vman_image_arch(image), "x86_64");
  STREQ(vman_image_description(image), "four MiB of sevens");
  STREQ(vman_image_format(image), "raw");
  STREQ(vman_image_firmware(image), "bios");
  STREQ(vman_image_sha256(image), expected);
  CHECK(vman_image_virtual_size(image) == 4 * MIB && vman_image_owned(image));
  CHECK(strncmp(vman_image_path(image), state, strlen(state)) == 0 && vman_image_created_at_ms(image) > 0);
  snprintf(image_path, sizeof image_path, "%s", vman_image_path(image));
  vman_image_free(image);
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_image_register(mgr, spec, NULL));
  vman_image_spec_free(spec);

  /* Refused at registration: nothing recorded. */
  events = count_events(mgr);
  OK(vman_image_spec_new("arm", source, &spec));
  OK(vman_image_spec_set_arch(spec, "aarch64"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_image_register(mgr, spec, NULL));
  vman_image_spec_free(spec);
  OK(vman_image_spec_new("placed", source, &spec));
  OK(vman_image_spec_set_copy(spec, false)); /* in place, but outside the state directory */
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_image_register(mgr, spec, NULL));
  vman_image_spec_free(spec);
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_image_spec_new("x", NULL, &spec));
  CHECK(count_events(mgr) == events);

  OK(vman_image_list(mgr, &list));
  CHECK(vman_image_list_len(list) == 1);
  STREQ(vman_image_name(vman_image_list_get(list, 0)), "base");
  vman_image_list_free(list);
  OK(vman_image_get(mgr, "base", &image));
  STREQ(vman_image_sha256(image), expected);
  vman_image_free(image);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_image_get(mgr, "nope", &image));

  /* A VM from the image boots a linked clone, sized by the template. */
  OK(vman_vm_spec_new("c1", "small", &vspec));
  OK(vman_vm_spec_set_image(vspec, "base"));
  OK(vman_vm_create(mgr, vspec, &vm));
  vman_vm_spec_free(vspec);
  STREQ(vman_vm_firmware(vm), "bios");
  vman_vm_free(vm);
  OK(vman_disk_get(mgr, "c1.boot", &boot));
  STREQ(vman_disk_image(boot), "base");
  STREQ(vman_disk_vm(boot), "c1");
  CHECK(vman_disk_slot(boot) == 0 && vman_disk_delete_with_vm(boot));
  CHECK(vman_disk_size_bytes(boot) == 1024 * MIB);
  CHECK(vman_disk_state(boot) == VMAN_DISK_STATE_ATTACHED);
  vman_disk_free(boot);

  EXPECT(VMAN_STATUS_IN_USE, vman_image_delete(mgr, "base"));
  CHECK(strstr(vman_last_error_message(), "c1.boot") != NULL);
  CHECK(access(image_path, F_OK) == 0);
  OK(vman_vm_delete(mgr, "c1", false));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_disk_get(mgr, "c1.boot", &boot));
  OK(vman_image_delete(mgr, "base"));
  CHECK(access(image_path, F_OK) != 0);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_image_delete(mgr, "base"));
}

static void test_vm_options(void) {
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  char iso[600];
  size_t events;

  snprintf(iso, sizeof iso, "%s/install.iso", work);
  write_file(iso, MIB, 0);
  OK(vman_vm_spec_new("opts", "small", &spec));
  OK(vman_vm_spec_set_blank_disk(spec, true));
  OK(vman_vm_spec_set_firmware(spec, "uefi"));
  OK(vman_vm_spec_set_cdrom(spec, iso));
  OK(vman_vm_spec_set_boot_from_cdrom(spec, true));
  OK(vman_vm_spec_set_display(spec, "vnc-tcp"));
  OK(vman_vm_spec_set_cloud_init(spec, true, "#cloud-config\nruncmd: [true]\n"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_spec_set_display(spec, "sdl"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_spec_set_firmware(spec, "coreboot"));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_vm_spec_set_cdrom(spec, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_vm_spec_set_blank_disk(NULL, true));
  OK(vman_vm_create(mgr, spec, &vm));
  vman_vm_spec_free(spec);
  STREQ(vman_vm_firmware(vm), "uefi");
  STREQ(vman_vm_cdrom(vm), iso);
  CHECK(vman_vm_boot_from_cdrom(vm) && vman_vm_cloud_init(vm));
  STREQ(vman_vm_display(vm), "vnc-tcp");
  CHECK(vman_vm_display_address(vm) == NULL); /* only while it runs */
  STREQ(vman_vm_user_data(vm), "#cloud-config\nruncmd: [true]\n");
  vman_vm_free(vm);
  CHECK(count_disks("opts", NULL) == 1); /* its blank boot disk */
  OK(vman_vm_delete(mgr, "opts", false));

  /* The defaults: BIOS, no CD-ROM, no display, no seed. */
  OK(vman_vm_spec_new("plain", "small", &spec));
  OK(vman_vm_create(mgr, spec, &vm));
  vman_vm_spec_free(spec);
  STREQ(vman_vm_firmware(vm), "bios");
  STREQ(vman_vm_display(vm), "none");
  CHECK(vman_vm_cdrom(vm) == NULL && vman_vm_user_data(vm) == NULL);
  CHECK(!vman_vm_boot_from_cdrom(vm) && !vman_vm_cloud_init(vm));
  vman_vm_free(vm);
  OK(vman_vm_delete(mgr, "plain", false));

  /* Inconsistent specs are refused when the VM is created; nothing recorded. */
  events = count_events(mgr);
  OK(vman_vm_spec_new("bad", "small", &spec));
  OK(vman_vm_spec_set_cloud_init(spec, false, "#cloud-config\n"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  CHECK(strstr(vman_last_error_message(), "cloud_init") != NULL);
  OK(vman_vm_spec_set_cloud_init(spec, false, NULL));
  OK(vman_vm_spec_set_boot_from_cdrom(spec, true));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  OK(vman_vm_spec_set_boot_from_cdrom(spec, false));
  OK(vman_vm_spec_set_cdrom(spec, "/dev/zero"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  OK(vman_vm_spec_new("bad", "small", &spec));
  OK(vman_vm_spec_set_image(spec, "nope"));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_create(mgr, spec, NULL));
  OK(vman_vm_spec_set_blank_disk(spec, true));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  CHECK(count_events(mgr) == events);
  CHECK(count_disks(NULL, NULL) == 0);
}

/* Offline snapshots (no QEMU runs): taken, listed, reverted and deleted
 * with qemu-img; what cannot be done is refused with its status. */
static void test_snapshots(void) {
  VmanVmSpec *spec = NULL;
  VmanSnapshot *snap = NULL;
  VmanSnapshotList *list = NULL;
  size_t events;

  OK(vman_vm_spec_new("snap", "small", &spec));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_snapshot_create(mgr, "snap", "s0", NULL)); /* no disk yet */
  CHECK(strstr(vman_last_error_message(), "disk") != NULL);
  OK(vman_disk_create(mgr, "snap-data", 8 * MIB, NULL, NULL));
  OK(vman_disk_attach(mgr, "snap", "snap-data", NULL));

  OK(vman_snapshot_create(mgr, "snap", "s1", &snap));
  STREQ(vman_snapshot_vm(snap), "snap");
  STREQ(vman_snapshot_name(snap), "s1");
  STREQ(vman_snapshot_state(snap), "ready");
  CHECK(!vman_snapshot_live(snap) && vman_snapshot_id(snap) > 0 && vman_snapshot_created_at_ms(snap) > 0);
  vman_snapshot_free(snap);
  OK(vman_snapshot_create(mgr, "snap", "s2", NULL));

  events = count_events(mgr);
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_snapshot_create(mgr, "snap", "s1", NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_snapshot_create(mgr, "snap", "a/b", NULL));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_snapshot_create(mgr, "nope", "s3", NULL));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_snapshot_revert(mgr, "snap", "nope", NULL));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_snapshot_delete(mgr, "snap", "nope"));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_snapshot_list(mgr, "snap", NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_snapshot_create(mgr, NULL, "s3", NULL));
  CHECK(count_events(mgr) == events);

  OK(vman_snapshot_list(mgr, "snap", &list));
  CHECK(vman_snapshot_list_len(list) == 2);
  STREQ(vman_snapshot_name(vman_snapshot_list_get(list, 0)), "s1"); /* oldest first */
  STREQ(vman_snapshot_name(vman_snapshot_list_get(list, 1)), "s2");
  CHECK(vman_snapshot_list_get(list, 2) == NULL);
  vman_snapshot_list_free(list);

  OK(vman_snapshot_revert(mgr, "snap", "s1", &snap));
  STREQ(vman_snapshot_name(snap), "s1");
  vman_snapshot_free(snap);
  OK(vman_snapshot_delete(mgr, "snap", "s1"));
  OK(vman_snapshot_delete(mgr, "snap", "s2"));
  OK(vman_snapshot_list(mgr, "snap", &list));
  CHECK(vman_snapshot_list_len(list) == 0);
  vman_snapshot_list_free(list);

  /* A raw disk cannot hold snapshots. */
  OK(vman_disk_create(mgr, "snap-raw", 8 * MIB, "raw", NULL));
  OK(vman_disk_attach(mgr, "snap", "snap-raw", NULL));
  EXPECT(VMAN_STATUS_UNSUPPORTED, vman_snapshot_create(mgr, "snap", "s3", NULL));
  CHECK(strstr(vman_last_error_message(), "raw") != NULL);
  OK(vman_vm_delete(mgr, "snap", false));
  OK(vman_disk_delete(mgr, "snap-data"));
  OK(vman_disk_delete(mgr, "snap-raw"));
  CHECK(vman_snapshot_name(NULL) == NULL && vman_snapshot_list_len(NULL) == 0);
  vman_snapshot_free(NULL);
  vman_snapshot_list_free(NULL);
}

/* The CD-ROM of a VM that does not run: inserted, changed, ejected. */
static void test_cdrom(void) {
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  char iso[600];

  snprintf(iso, sizeof iso, "%s/other.iso", work);
  write_file(iso, MIB, 0);
  OK(vman_vm_spec_new("cd", "small", &spec));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  OK(vman_vm_change_cdrom(mgr, "cd", iso, &vm));
  STREQ(vman_vm_cdrom(vm), iso);
  vman_vm_free(vm);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_change_cdrom(mgr, "cd", "/dev/zero", NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_change_cdrom(mgr, "cd", "relative.iso", NULL));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_change_cdrom(mgr, "nope", iso, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_vm_change_cdrom(mgr, NULL, iso, NULL));
  OK(vman_vm_get(mgr, "cd", &vm));
  STREQ(vman_vm_cdrom(vm), iso);
  vman_vm_free(vm);
  OK(vman_vm_change_cdrom(mgr, "cd", NULL, &vm));
  CHECK(vman_vm_cdrom(vm) == NULL);
  vman_vm_free(vm);
  OK(vman_vm_delete(mgr, "cd", false));

  /* A VM that boots from its CD-ROM cannot be left without one. */
  OK(vman_vm_spec_new("installer", "small", &spec));
  OK(vman_vm_spec_set_cdrom(spec, iso));
  OK(vman_vm_spec_set_boot_from_cdrom(spec, true));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_change_cdrom(mgr, "installer", NULL, NULL));
  OK(vman_vm_delete(mgr, "installer", false));
}

int main(int argc, char **argv) {
  char *slash, *real;
  CHECK(argc == 2);
  OK(vman_manager_open(argv[1], NULL, &mgr));
  real = realpath(argv[1], NULL);
  CHECK(real != NULL && strlen(real) < sizeof state);
  snprintf(state, sizeof state, "%s", real);
  free(real);
  snprintf(work, sizeof work, "%s", state);
  slash = strrchr(work, '/');
  CHECK(slash != NULL);
  *slash = 0;
  OK(vman_template_create(mgr, "small", 1, 64, 1, NULL, NULL));

  test_disks();
  test_bad_disk_input_changes_nothing();
  test_images();
  test_vm_options();
  test_snapshots();
  test_cdrom();

  vman_manager_free(mgr);
  puts("storage: all checks passed");
  return 0;
}
