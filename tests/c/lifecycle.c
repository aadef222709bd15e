/*
 * A real guest through the C ABI (TCG): start, console (log and live
 * stream), pause, resume, graceful stop, an outside kill seen on the event
 * stream, reconcile, forced delete.
 * Usage: lifecycle <empty-state-dir> <kernel> <initrd>
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <sys/types.h>

#include "check.h"

static VmanManager *mgr;

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

int main(int argc, char **argv) {
  VmanOpenOptions *options = NULL;
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  VmanEventStream *stream = NULL;
  VmanConsole *console = NULL;
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
  expect_event(stream, "\"to\":\"running\"");
  OK(vman_vm_wait_for_console(mgr, "g1", "^VMAN-GUEST-READY$", 90000, &line));
  STREQ(line, "VMAN-GUEST-READY");
  vman_string_free(line);
  EXPECT(VMAN_STATUS_TIMEOUT, vman_vm_wait_for_console(mgr, "g1", "^never$", 50, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_wait_for_console(mgr, "g1", "(", 50, NULL));

  /* The live console: type into the guest's shell, read its answer. */
  OK(vman_console_attach(mgr, "g1", &console));
  CHECK(vman_console_fd(console) >= 0);
  OK(vman_console_write(console, (const uint8_t *)"echo c-$((6*7))\n", 16));
  text[0] = 0;
  while (strstr(text, "c-42") == NULL) {
    OK(vman_console_read(console, buf, sizeof buf - 1, 20000, &n));
    CHECK(n > 0 && seen + n < sizeof text);
    memcpy(text + seen, buf, n);
    seen += n;
    text[seen] = 0;
  }
  vman_console_free(console);

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

  OK(vman_vm_start(mgr, "g1", NULL));
  OK(vman_vm_delete(mgr, "g1", true));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_get(mgr, "g1", &vm));
  vman_event_stream_free(stream);
  vman_manager_free(mgr);
  puts("lifecycle: all checks passed");
  return 0;
}
