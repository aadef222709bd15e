/*
 * A C program built against an installed vman with nothing but pkg-config
 * (tests/packaging/test_c_install.py). It opens a state directory, creates
 * a template, reads it back and sees a refusal with its message.
 *
 * Built with -DWITH_SQLITE it also uses the system's SQLite (libsqlite3-dev)
 * next to libvman.a, and checks that its own calls reach that SQLite, not
 * the copy built into vman (which libvman.a must keep to itself).
 */
#include <stdio.h>
#include <string.h>

#include <vman.h>
#ifdef WITH_SQLITE
#include <sqlite3.h>
#endif

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", __FILE__, __LINE__,  \
              #cond, vman_last_error_message() ? vman_last_error_message()  \
                                               : "no vman error");           \
      return 1;                                                              \
    }                                                                        \
  } while (0)

int main(int argc, char **argv) {
  VmanManager *m = NULL;
  VmanTemplate *t = NULL;
  if (argc != 2) {
    fprintf(stderr, "usage: %s STATE_DIR\n", argv[0]);
    return 2;
  }
  CHECK(strcmp(vman_version(), VMAN_VERSION) == 0);
  CHECK(vman_manager_open(argv[1], NULL, &m) == VMAN_STATUS_OK);
  CHECK(vman_template_create(m, "small", 2, 512, 10, NULL, &t) == VMAN_STATUS_OK);
  CHECK(strcmp(vman_template_name(t), "small") == 0);
  CHECK(vman_template_vcpus(t) == 2);
  vman_template_free(t);
  /* A refusal: a typed status and a message (vman's error path works). */
  CHECK(vman_template_create(m, "small", 1, 512, 10, NULL, NULL) == VMAN_STATUS_ALREADY_EXISTS);
  CHECK(vman_last_error_message() != NULL);
  vman_manager_free(m);
#ifdef WITH_SQLITE
  {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    /* The library this program linked is the one whose header it read. */
    CHECK(strcmp(sqlite3_libversion(), SQLITE_VERSION) == 0);
    CHECK(sqlite3_libversion_number() == SQLITE_VERSION_NUMBER);
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT sqlite_version()", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(strcmp((const char *)sqlite3_column_text(st, 0), SQLITE_VERSION) == 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    printf("system sqlite %s\n", sqlite3_libversion());
  }
#endif
  printf("vman %s: all checks passed\n", vman_version());
  return 0;
}
