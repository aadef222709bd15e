/*
 * A real guest through the C ABI (TCG): start, console (log and live
 * stream, one client at a time, what freeing the manager does to it),
 * pause, resume, graceful stop, an outside kill seen on the event stream,
 * reconcile, forced delete.
 * Usage: lifecycle <empty-state-dir> <kernel> <initrd>
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include "check.h"

static VmanManager *mgr;

/* Whether the last error message mentions `text`. */
static int message_has(const char *text) {
  const char *msg = vman_last_error_message();
  return msg != NULL && strstr(msg, text) != NULL;
}

/* Waits for the next event whose details contain `needle`. */
static void expect_event(VmanEventStream *stream, const char *needle) {
  for (;;) {
    VmanEvent *event = NULL;
    OK(vman_event_stream_next(stream, 10000, &event));
    if (strstr(vman_event_details_json(event), needle) != NULL) {
      vman_event_free(event);
      return;
    }
    vman_event_free(event);
  }
}

/* QEMU runs under a seccomp filter, and not as root when vman is root. */
static void check_least_privilege(uint32_t pid) {
  char path[64], line[256];
  unsigned ruid = 0, euid = 0;
  int seccomp = -1;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%u/status", (unsigned)pid);
  f = fopen(path, "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "Uid:", 4) == 0) {
      CHECK(sscanf(line + 4, "%u %u", &ruid, &euid) == 2);
    }
    if (strncmp(line, "Seccomp:", 8) == 0) {
      seccomp = atoi(line + 8);
    }
  }
  fclose(f);
  CHECK(seccomp == 2);
  if (geteuid() == 0) {
    CHECK(ruid != 0 && euid != 0);
  }
}

int main(int argc, char **argv) {
  VmanOpenOptions *options = NULL;
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  VmanEventStream *stream = NULL;
  VmanConsole *console = NULL, *second = NULL;
  VmanManager *other = NULL;
  VmanBytes bytes = {NULL, 0};
  VmanReconcileReport *report = NULL;
  VmanEvent *none = NULL;
  char *line = NULL;
  uint8_t buf[8192];
  size_t n = 0, seen = 0;
  uint32_t pid;
  char text[16384];
  CHECK(argc == 4);

  OK(vman_open_options_new(&options));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_accel(options, "hvf"));
  OK(vman_open_options_set_accel(options, "tcg"));
  /* The host's interfaces are not this test's to touch. */
  OK(vman_open_options_set_network(options, "isolated"));
  OK(vman_manager_open(argv[1], options, &mgr));
  vman_open_options_free(options);
  OK(vman_template_create(mgr, "tiny", 1, 256, 1, NULL, NULL));

  OK(vman_vm_spec_new("g1", "tiny", &spec));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_vm_spec_set_boot(spec, NULL, NULL, NULL));
  OK(vman_vm_spec_set_boot(spec, argv[2], argv[3], "console=ttyS0 quiet panic=-1"));
  OK(vman_vm_create(mgr, spec, &vm));
  vman_vm_spec_free(spec);
  STREQ(vman_vm_kernel(vm), argv[2]);
  CHECK(vman_vm_pid(vm) == 0 && vman_vm_accel(vm) == NULL);
  vman_vm_free(vm);

  OK(vman_event_stream_new(mgr, &stream));
  EXPECT(VMAN_STATUS_TIMEOUT, vman_event_stream_next(stream, 10, &none));
  CHECK(none == NULL);

  OK(vman_vm_start(mgr, "g1", &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_RUNNING);
  STREQ(vman_vm_accel(vm), "tcg");
  pid = vman_vm_pid(vm);
  CHECK(pid > 0);
  vman_vm_free(vm);
  check_least_privilege(pid);
  expect_event(stream, "\"to\":\"running\"");
  /* A VM that never ran has no console output to wait for, and the
   * message names it without internal paths. */
  OK(vman_vm_spec_new("idle", "tiny", &spec));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_wait_for_console(mgr, "idle", "x", 1000, NULL));
  CHECK(message_has("\"idle\"") && !message_has(argv[1]));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_console_attach(mgr, "idle", &console));
  CHECK(console == NULL);
  OK(vman_vm_delete(mgr, "idle", false));

  OK(vman_vm_wait_for_console(mgr, "g1", "^VMAN-GUEST-READY$", 90000, &line));
  STREQ(line, "VMAN-GUEST-READY");
  vman_string_free(line);
  EXPECT(VMAN_STATUS_TIMEOUT, vman_vm_wait_for_console(mgr, "g1", "^never$", 50, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_wait_for_console(mgr, "g1", "(", 50, NULL));

  /* The live console: type into the guest's shell, read its answer. One
   * client at a time: a second attach is refused and disturbs nothing. */
  OK(vman_console_attach(mgr, "g1", &console));
  CHECK(vman_console_fd(console) >= 0);
  EXPECT(VMAN_STATUS_IN_USE, vman_console_attach(mgr, "g1", &second));
  CHECK(second == NULL && message_has("\"g1\"") && !message_has(argv[1]));
  OK(vman_console_write(console, (const uint8_t *)"echo c-$((6*7))\n", 16, 5000));
  text[0] = 0;
  while (strstr(text, "c-42") == NULL) {
    OK(vman_console_read(console, buf, sizeof buf - 1, 20000, &n));
    CHECK(n > 0 && seen + n < sizeof text);
    memcpy(text + seen, buf, n);
    seen += n;
    text[seen] = 0;
  }
  OK(vman_console_write(console, (const uint8_t *)"echo u-$((6*8))\n", 16, 5000));
  OK(vman_console_read_until(console, "u-48", 20000, &bytes));
  CHECK(bytes.len >= 4 && memcmp(bytes.data + bytes.len - 4, "u-48", 4) == 0);
  vman_bytes_free(&bytes);
  CHECK(bytes.data == NULL && bytes.len == 0);
  vman_bytes_free(&bytes);
  vman_bytes_free(NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_console_read_until(console, "(", 10, &bytes));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_console_read_until(console, "x", 10, NULL));
  /* Drain the prompt; then nothing more comes. */
  while (vman_console_read(console, buf, sizeof buf, 500, &n) == VMAN_STATUS_OK) {
  }
  EXPECT(VMAN_STATUS_TIMEOUT, vman_console_read(console, buf, sizeof buf, 0, &n));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_console_read(console, buf, 0, 0, &n));
  vman_console_free(console);
  vman_console_free(NULL);
  CHECK(vman_console_fd(NULL) == -1);

  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_start(mgr, "g1", NULL));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_delete(mgr, "g1", false));
  OK(vman_vm_pause(mgr, "g1", &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_PAUSED);
  vman_vm_free(vm);
  OK(vman_vm_resume(mgr, "g1", NULL));

  OK(vman_vm_stop(mgr, "g1", 30000, &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_STOPPED && vman_vm_pid(vm) == 0);
  vman_vm_free(vm);
  OK(vman_vm_console_tail(mgr, "g1", buf, sizeof buf - 1, &n));
  buf[n] = 0;
  CHECK(strstr((const char *)buf, "VMAN-POWEROFF") != NULL);
  /* Stopped: the last run's READY line is in the log but does not count. */
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_wait_for_console(mgr, "g1", "^VMAN-GUEST-READY$", 1000, NULL));

  /* Killed from outside: the stream says so. */
  OK(vman_vm_start(mgr, "g1", &vm));
  pid = vman_vm_pid(vm);
  vman_vm_free(vm);
  CHECK(kill((pid_t)pid, SIGKILL) == 0);
  expect_event(stream, "\"to\":\"error\"");
  OK(vman_vm_get(mgr, "g1", &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_ERROR);
  CHECK(strstr(vman_vm_last_error(vm), "killed") != NULL);
  vman_vm_free(vm);

  OK(vman_reconcile(mgr, &report));
  CHECK(vman_reconcile_report_drift_count(report) == 0);
  CHECK(vman_reconcile_report_drift_vm(report, 0) == NULL);
  vman_reconcile_report_free(report);
  OK(vman_reconcile(mgr, NULL)); /* `out` may be NULL: the repairs are the point */

  OK(vman_vm_start(mgr, "g1", NULL));
  /* A console outlives the manager that made it: it answers CLOSED, its
   * descriptor stays open, and freeing it is still required and safe. */
  OK(vman_manager_open(argv[1], NULL, &other));
  OK(vman_console_attach(other, "g1", &console));
  vman_manager_free(other);
  EXPECT(VMAN_STATUS_CLOSED, vman_console_read(console, buf, sizeof buf, 0, &n));
  EXPECT(VMAN_STATUS_CLOSED, vman_console_write(console, (const uint8_t *)"x", 1, 1000));
  EXPECT(VMAN_STATUS_CLOSED, vman_console_read_until(console, "x", 10, &bytes));
  CHECK(vman_console_fd(console) >= 0);
  vman_console_free(console);
  OK(vman_vm_delete(mgr, "g1", true));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_get(mgr, "g1", &vm));
  vman_event_stream_free(stream);
  vman_manager_free(mgr);
  puts("lifecycle: all checks passed");
  return 0;
}
