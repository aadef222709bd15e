/* Tiny assertion helpers shared by vman's C tests. */
#ifndef VMAN_TEST_CHECK_H
#define VMAN_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vman.h"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

/* Asserts a call's status; prints vman's message when it differs. */
#define EXPECT(status, call)                                                     \
  do {                                                                           \
    VmanStatus got_ = (call);                                                    \
    if (got_ != (status)) {                                                      \
      const char *msg_ = vman_last_error_message();                              \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__,     \
              __LINE__, #call, vman_status_name(got_), vman_status_name(status), \
              msg_ ? msg_ : "no message");                                       \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

#define OK(call) EXPECT(VMAN_STATUS_OK, call)
#define STREQ(a, b) CHECK((a) != NULL && strcmp((a), (b)) == 0)

/* How many events the store holds (up to 10000): a refused call adds none. */
static inline size_t count_events(const VmanManager *m) {
  VmanEventList *list = NULL;
  size_t n;
  OK(vman_recent_events(m, 10000, &list));
  n = vman_event_list_len(list);
  vman_event_list_free(list);
  return n;
}

#endif
