/*
 * The SSH key catalogue and a VM's keys through the C ABI. The keys were
 * made by ssh-keygen and arrive in the environment with what `ssh-keygen
 * -l` printed for them. Built with -Wall -Wextra -Werror -pedantic and run
 * under valgrind (no leaks, no invalid accesses).
 * Usage: keys <empty-state-dir>
 */
#include "check.h"

static VmanManager *mgr;

static const char *env(const char *name) {
  const char *value = getenv(name);
  if (value == NULL) {
    fprintf(stderr, "%s is not set (run through vman-ffi/tests/c_programs.rs)\n", name);
    exit(2);
  }
  return value;
}

/* The line without its trailing newline, as vman normalizes it. */
static char *line_of(const char *text) {
  size_t n = strlen(text);
  char *copy = (char *)malloc(n + 1);
  CHECK(copy != NULL);
  memcpy(copy, text, n + 1);
  while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == ' ')) copy[--n] = '\0';
  return copy;
}

static size_t count_keys(void) {
  VmanSshKeyList *list = NULL;
  size_t n;
  OK(vman_ssh_key_list(mgr, &list));
  n = vman_ssh_key_list_len(list);
  vman_ssh_key_list_free(list);
  return n;
}

/* A refused import: its status, a message naming the reason, nothing recorded. */
static void refused(VmanStatus status, const char *name, const char *key, const char *says) {
  size_t events = count_events(mgr), keys = count_keys();
  const char *msg;
  EXPECT(status, vman_ssh_key_import(mgr, name, key, NULL));
  msg = vman_last_error_message();
  if (msg == NULL || strstr(msg, says) == NULL) {
    fprintf(stderr, "import of %s: message %s does not say %s\n", name, msg ? msg : "(none)", says);
    exit(1);
  }
  CHECK(count_events(mgr) == events && count_keys() == keys);
}

static void test_import_get_list(void) {
  VmanSshKey *key = NULL;
  VmanSshKeyList *list = NULL;
  char *alice = line_of(env("VMAN_TEST_ED25519"));
  char *bob = line_of(env("VMAN_TEST_RSA3072"));

  OK(vman_ssh_key_import(mgr, "alice", env("VMAN_TEST_ED25519"), &key));
  CHECK(vman_ssh_key_id(key) > 0);
  STREQ(vman_ssh_key_name(key), "alice");
  STREQ(vman_ssh_key_type(key), "ssh-ed25519");
  CHECK(vman_ssh_key_bits(key) == 256);
  STREQ(vman_ssh_key_public_key(key), alice);
  STREQ(vman_ssh_key_comment(key), "alice");
  STREQ(vman_ssh_key_fingerprint_sha256(key), env("VMAN_TEST_ED25519_SHA256"));
  STREQ(vman_ssh_key_fingerprint_md5(key), env("VMAN_TEST_ED25519_MD5"));
  CHECK(vman_ssh_key_created_at_ms(key) > 0);
  vman_ssh_key_free(key);

  /* An optional out; the same material under a second name is accepted. */
  OK(vman_ssh_key_import(mgr, "bob", env("VMAN_TEST_RSA3072"), NULL));
  OK(vman_ssh_key_import(mgr, "alice2", env("VMAN_TEST_ED25519"), NULL));

  OK(vman_ssh_key_get(mgr, "bob", &key));
  STREQ(vman_ssh_key_type(key), "ssh-rsa");
  CHECK(vman_ssh_key_bits(key) == 3072);
  STREQ(vman_ssh_key_public_key(key), bob);
  STREQ(vman_ssh_key_fingerprint_sha256(key), env("VMAN_TEST_RSA3072_SHA256"));
  vman_ssh_key_free(key);

  OK(vman_ssh_key_list(mgr, &list));
  CHECK(vman_ssh_key_list_len(list) == 3);
  STREQ(vman_ssh_key_name(vman_ssh_key_list_get(list, 0)), "alice");
  STREQ(vman_ssh_key_name(vman_ssh_key_list_get(list, 1)), "alice2");
  STREQ(vman_ssh_key_fingerprint_sha256(vman_ssh_key_list_get(list, 1)), env("VMAN_TEST_ED25519_SHA256"));
  STREQ(vman_ssh_key_name(vman_ssh_key_list_get(list, 2)), "bob");
  CHECK(vman_ssh_key_list_get(list, 3) == NULL);
  vman_ssh_key_list_free(list);

  /* NULL records and lists are answered, not crashed on. */
  CHECK(vman_ssh_key_name(NULL) == NULL && vman_ssh_key_bits(NULL) == 0 && vman_ssh_key_list_len(NULL) == 0);
  vman_ssh_key_free(NULL);
  vman_ssh_key_list_free(NULL);
  free(alice);
  free(bob);
}

static void test_bad_input(void) {
  refused(VMAN_STATUS_INVALID_ARGUMENT, "weak", env("VMAN_TEST_RSA1024"), "1024 bits");
  refused(VMAN_STATUS_INVALID_ARGUMENT, "private", env("VMAN_TEST_PRIVATE"), "private key");
  refused(VMAN_STATUS_INVALID_ARGUMENT, "empty", "", "empty");
  refused(VMAN_STATUS_INVALID_ARGUMENT, "dss", "ssh-dss AAAAB3NzaC1kc3MAAACBAOZ5", "DSA");
  refused(VMAN_STATUS_INVALID_ARGUMENT, "short", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEE", "truncated");
  refused(VMAN_STATUS_INVALID_ARGUMENT, "bad/name", env("VMAN_TEST_ED25519"), "SSH key name");
  refused(VMAN_STATUS_ALREADY_EXISTS, "alice", env("VMAN_TEST_ED25519"), "alice");
  refused(VMAN_STATUS_NULL_PARAMETER, "nokey", NULL, "public_key");
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_ssh_key_delete(mgr, "nope"));
  {
    VmanSshKey *key = NULL;
    EXPECT(VMAN_STATUS_NOT_FOUND, vman_ssh_key_get(mgr, "nope", &key));
    CHECK(key == NULL);
  }
}

static VmanStatus make_vm(const char *name, const char *const *keys, size_t n, VmanVm **out) {
  VmanVmSpec *spec = NULL;
  size_t i;
  VmanStatus status;
  OK(vman_vm_spec_new(name, "small", &spec));
  for (i = 0; i < n; i++) OK(vman_vm_spec_add_ssh_key(spec, keys[i]));
  status = vman_vm_create(mgr, spec, out);
  vman_vm_spec_free(spec);
  return status;
}

static void test_vm_keys(void) {
  static const char *const given[] = {"bob", "alice"};
  static const char *const unknown[] = {"alice", "nope"};
  static const char *const twice[] = {"alice", "alice"};
  VmanVm *vm = NULL;
  const VmanVmSshKey *copy;
  size_t events;
  char *alice = line_of(env("VMAN_TEST_ED25519"));

  OK(vman_template_create(mgr, "small", 1, 512, 1, NULL, NULL));
  OK(make_vm("web1", given, 2, &vm));
  CHECK(vman_vm_ssh_key_count(vm) == 2);
  STREQ(vman_vm_ssh_key_name(vman_vm_ssh_key(vm, 0)), "bob");
  copy = vman_vm_ssh_key(vm, 1);
  STREQ(vman_vm_ssh_key_name(copy), "alice");
  STREQ(vman_vm_ssh_key_public_key(copy), alice);
  STREQ(vman_vm_ssh_key_fingerprint_sha256(copy), env("VMAN_TEST_ED25519_SHA256"));
  CHECK(vman_vm_ssh_key(vm, 2) == NULL);
  CHECK(vman_vm_ssh_key_name(NULL) == NULL);
  vman_vm_free(vm);

  events = count_events(mgr);
  EXPECT(VMAN_STATUS_NOT_FOUND, make_vm("web2", unknown, 2, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, make_vm("web2", twice, 2, NULL));
  CHECK(count_events(mgr) == events);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_get(mgr, "web2", &vm));

  /* The catalogue's key goes; the VM keeps its copy. */
  OK(vman_ssh_key_delete(mgr, "alice"));
  OK(vman_vm_get(mgr, "web1", &vm));
  CHECK(vman_vm_ssh_key_count(vm) == 2);
  STREQ(vman_vm_ssh_key_fingerprint_sha256(vman_vm_ssh_key(vm, 1)), env("VMAN_TEST_ED25519_SHA256"));
  vman_vm_free(vm);
  free(alice);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <state-dir>\n", argv[0]);
    return 2;
  }
  OK(vman_manager_open(argv[1], NULL, &mgr));
  test_import_get_list();
  test_bad_input();
  test_vm_keys();
  vman_manager_free(mgr);
  printf("all checks passed\n");
  return 0;
}
