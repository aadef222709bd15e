/*
 * Live events through the C ABI: a poll(2) loop on a stream's descriptor
 * receives events recorded by another manager; a stream resumes after an
 * event id; freeing the manager makes its streams answer CLOSED (they must
 * still be freed, and that is safe). Run under valgrind.
 * Usage: events <empty-state-dir>
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>

#include "check.h"

/* Whether `fd` is readable within `timeout_ms`. */
static int readable(int fd, int timeout_ms) {
  struct pollfd p;
  int n;
  p.fd = fd;
  p.events = POLLIN;
  p.revents = 0;
  n = poll(&p, 1, timeout_ms);
  CHECK(n >= 0);
  return n == 1 && (p.revents & POLLIN) != 0;
}

int main(int argc, char **argv) {
  VmanManager *mgr = NULL, *other = NULL;
  VmanEventStream *stream = NULL, *resumed = NULL, *bad = NULL;
  VmanEvent *event = NULL;
  VmanEventList *history = NULL;
  const char *names[] = {"small", "large"};
  int fd, seen = 0;
  int64_t first_id = 0;
  VmanStatus status;
  CHECK(argc == 2);

  OK(vman_manager_open(argv[1], NULL, &mgr));
  OK(vman_manager_open(argv[1], NULL, &other));
  OK(vman_template_create(mgr, "before", 1, 256, 1, NULL, NULL));

  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_event_stream_new(NULL, &stream));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_event_stream_new(mgr, NULL));
  CHECK(vman_event_stream_fd(NULL) == -1);
  OK(vman_event_stream_new(mgr, &stream));
  fd = vman_event_stream_fd(stream);
  CHECK(fd >= 0);
  CHECK(!readable(fd, 0)); /* "before" is history, not news */
  EXPECT(VMAN_STATUS_TIMEOUT, vman_event_stream_next(stream, 0, &event));
  CHECK(event == NULL);

  /* Another manager records; the poll loop wakes and drains with timeout 0. */
  OK(vman_template_create(other, "small", 1, 512, 10, NULL, NULL));
  OK(vman_template_create(other, "large", 4, 4096, 40, NULL, NULL));
  while (seen < 2) {
    CHECK(readable(fd, 10000));
    while ((status = vman_event_stream_next(stream, 0, &event)) == VMAN_STATUS_OK) {
      CHECK(seen < 2);
      STREQ(vman_event_action(event), "created");
      STREQ(vman_event_object_name(event), names[seen]);
      if (seen == 0) first_id = vman_event_id(event);
      CHECK(vman_event_id(event) == first_id + seen);
      vman_event_free(event);
      seen++;
    }
    CHECK(status == VMAN_STATUS_TIMEOUT);
  }
  CHECK(!readable(fd, 0)); /* drained: quiet until the next commit */

  /* The stream and the history are the same events. */
  OK(vman_recent_events(mgr, 2, &history));
  CHECK(vman_event_list_len(history) == 2);
  CHECK(vman_event_id(vman_event_list_get(history, 0)) == first_id);
  STREQ(vman_event_object_name(vman_event_list_get(history, 1)), "large");
  vman_event_list_free(history);

  /* Resume after the first event: exactly the second, then live ones. */
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_event_stream_new_after(mgr, -1, &bad));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_event_stream_new_after(mgr, first_id + 2, &bad));
  CHECK(bad == NULL);
  OK(vman_event_stream_new_after(mgr, first_id, &resumed));
  CHECK(readable(vman_event_stream_fd(resumed), 0)); /* history waiting */
  OK(vman_event_stream_next(resumed, 0, &event));
  CHECK(vman_event_id(event) == first_id + 1);
  STREQ(vman_event_object_name(event), "large");
  vman_event_free(event);
  EXPECT(VMAN_STATUS_TIMEOUT, vman_event_stream_next(resumed, 0, &event));
  OK(vman_template_delete(other, "small"));
  OK(vman_event_stream_next(resumed, 10000, &event));
  CHECK(vman_event_id(event) == first_id + 2);
  STREQ(vman_event_action(event), "deleted");
  vman_event_free(event);

  /* Freeing the manager closes its streams: CLOSED, not TIMEOUT, even with
   * new events in the store and a long timeout; the descriptor stays
   * readable so a poll loop learns it at once. */
  vman_manager_free(mgr);
  event = NULL;
  OK(vman_template_create(other, "later", 1, 512, 10, NULL, NULL));
  EXPECT(VMAN_STATUS_CLOSED, vman_event_stream_next(stream, 0, &event));
  CHECK(strstr(vman_last_error_message(), "closed") != NULL);
  CHECK(readable(fd, 0));
  EXPECT(VMAN_STATUS_CLOSED, vman_event_stream_next(stream, 60000, &event));
  EXPECT(VMAN_STATUS_CLOSED, vman_event_stream_next(resumed, 0, &event));
  CHECK(event == NULL); /* out-params untouched on failure */
  vman_event_stream_free(stream);
  vman_event_stream_free(resumed);
  vman_event_stream_free(NULL);

  /* The other manager's streams are unaffected. */
  OK(vman_event_stream_new_after(other, first_id + 2, &stream));
  OK(vman_event_stream_next(stream, 0, &event));
  STREQ(vman_event_object_name(event), "later");
  vman_event_free(event);
  vman_event_stream_free(stream);
  vman_manager_free(other);
  puts("events: all checks passed");
  return 0;
}
