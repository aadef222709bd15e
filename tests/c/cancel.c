/*
 * Cancellation tokens through the C ABI: a token cancelled from another
 * thread ends a wait with VMAN_STATUS_CANCELLED and the stream goes on; a
 * token already cancelled changes nothing; NULL tokens are the plain
 * calls. Run under valgrind.
 * Usage: cancel <empty-state-dir>
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "check.h"

static void *cancel_soon(void *token) {
  struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  vman_cancel_cancel((const VmanCancel *)token);
  return NULL;
}

int main(int argc, char **argv) {
  VmanManager *mgr = NULL;
  VmanCancel *cancel = NULL, *done = NULL;
  VmanEventStream *stream = NULL;
  VmanEvent *event = NULL;
  VmanVm *vm = NULL;
  VmanVmSpec *spec = NULL;
  char *line = NULL;
  pthread_t canceller;
  size_t events;
  CHECK(argc == 2);

  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_cancel_new(NULL));
  vman_cancel_cancel(NULL);
  CHECK(!vman_cancel_is_cancelled(NULL));
  vman_cancel_free(NULL);

  OK(vman_manager_open(argv[1], NULL, &mgr));
  OK(vman_template_create(mgr, "t", 1, 256, 1, NULL, NULL));
  OK(vman_vm_spec_new("v", "t", &spec));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);

  /* An hour-long wait, ended from another thread; nothing is lost. */
  OK(vman_event_stream_new(mgr, &stream));
  OK(vman_cancel_new(&cancel));
  CHECK(!vman_cancel_is_cancelled(cancel));
  CHECK(pthread_create(&canceller, NULL, cancel_soon, cancel) == 0);
  EXPECT(VMAN_STATUS_CANCELLED, vman_event_stream_next_cancellable(stream, 3600000, cancel, &event));
  CHECK(strstr(vman_last_error_message(), "Cancelled") != NULL);
  CHECK(event == NULL);
  CHECK(pthread_join(canceller, NULL) == 0);
  CHECK(vman_cancel_is_cancelled(cancel));
  OK(vman_template_create(mgr, "after", 1, 256, 1, NULL, NULL));
  OK(vman_event_stream_next_cancellable(stream, 10000, NULL, &event));
  STREQ(vman_event_object_name(event), "after");
  vman_event_free(event);
  EXPECT(VMAN_STATUS_TIMEOUT, vman_event_stream_next_cancellable(stream, 0, NULL, &event));

  /* A cancelled token: every waiting call refuses at once, changing nothing. */
  events = count_events(mgr);
  EXPECT(VMAN_STATUS_CANCELLED, vman_vm_start_cancellable(mgr, "v", cancel, &vm));
  EXPECT(VMAN_STATUS_CANCELLED, vman_vm_stop_cancellable(mgr, "v", 1000, cancel, &vm));
  EXPECT(VMAN_STATUS_CANCELLED, vman_vm_restart_cancellable(mgr, "v", 1000, cancel, &vm));
  EXPECT(VMAN_STATUS_CANCELLED, vman_vm_wait_for_console_cancellable(mgr, "v", "x", 1000, cancel, &line));
  EXPECT(VMAN_STATUS_CANCELLED, vman_disk_detach_cancellable(mgr, "v", "d", 1000, cancel, NULL));
  EXPECT(VMAN_STATUS_CANCELLED, vman_snapshot_create_cancellable(mgr, "v", "s", cancel, NULL));
  CHECK(vm == NULL && line == NULL);
  CHECK(count_events(mgr) == events);
  OK(vman_vm_get(mgr, "v", &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_CREATED);
  vman_vm_free(vm);
  vm = NULL;

  /* A NULL token is the plain call: its own errors, not CANCELLED. */
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_stop_cancellable(mgr, "v", 1000, NULL, &vm));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_vm_stop_cancellable(mgr, NULL, 1000, cancel, &vm));
  /* A fresh token does not refuse. */
  OK(vman_cancel_new(&done));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_stop_cancellable(mgr, "v", 1000, done, &vm));

  vman_cancel_free(done);
  vman_cancel_free(cancel);
  vman_event_stream_free(stream);
  vman_manager_free(mgr);
  printf("all checks passed\n");
  return 0;
}
