/*
 * Templates, networks, IP allocation, VM records and history through the C
 * ABI, against a real state directory. Built with -Wall -Wextra -Werror
 * -pedantic and run under valgrind (no leaks, no invalid accesses).
 * Usage: records <empty-state-dir>
 */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

static VmanManager *mgr;

static void make_network(const char *name, uint32_t vlan, const char *cidr, const char *reserved) {
  VmanNetworkSpec *spec = NULL;
  OK(vman_network_spec_new(name, vlan, cidr, &spec));
  if (reserved) OK(vman_network_spec_add_reserved(spec, reserved));
  OK(vman_network_create(mgr, spec, NULL));
  vman_network_spec_free(spec);
}

/* Creates a VM with one automatic NIC per network in `nets`. */
static VmanStatus make_vm(const char *name, const char *const *nets, size_t n) {
  VmanVmSpec *spec = NULL;
  size_t i;
  VmanStatus status;
  OK(vman_vm_spec_new(name, "small", &spec));
  for (i = 0; i < n; i++) OK(vman_vm_spec_add_nic(spec, nets[i], NULL, NULL));
  status = vman_vm_create(mgr, spec, NULL);
  vman_vm_spec_free(spec);
  return status;
}

static size_t count_allocations(const char *network) {
  VmanAllocationList *list = NULL;
  size_t n;
  OK(vman_network_allocations(mgr, network, &list));
  n = vman_allocation_list_len(list);
  vman_allocation_list_free(list);
  return n;
}

static void test_version(void) {
  char *dir = NULL;
  OK(vman_default_state_dir(&dir));
  STREQ(dir, "/tmp/vman-c-default"); /* the test runner sets VMAN_STATE_DIR */
  vman_string_free(dir);
  vman_string_free(NULL);
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_default_state_dir(NULL));
  STREQ(vman_version(), VMAN_VERSION);
  STREQ(vman_status_name(VMAN_STATUS_NOT_FOUND), "not_found");
  STREQ(vman_status_name(12345), "unknown");
  STREQ(vman_vm_state_name(VMAN_VM_STATE_RUNNING), "running");
}

static void test_templates(void) {
  VmanTemplate *t = NULL;
  VmanTemplateList *list = NULL;
  OK(vman_template_create(mgr, "small", 1, 512, 10, "one core", &t));
  CHECK(vman_template_id(t) > 0);
  STREQ(vman_template_name(t), "small");
  CHECK(vman_template_vcpus(t) == 1 && vman_template_memory_mib(t) == 512 && vman_template_disk_gib(t) == 10);
  STREQ(vman_template_description(t), "one core");
  vman_template_free(t);
  OK(vman_template_create(mgr, "large", 8, 16384, 100, NULL, NULL));
  OK(vman_template_list(mgr, &list));
  CHECK(vman_template_list_len(list) == 2);
  STREQ(vman_template_name(vman_template_list_get(list, 0)), "large");
  CHECK(vman_template_list_get(list, 2) == NULL);
  vman_template_list_free(list);
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_template_create(mgr, "small", 2, 512, 1, NULL, NULL));
  OK(vman_template_delete(mgr, "large"));
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "large", &t));
  CHECK(strstr(vman_last_error_message(), "large") != NULL);
}

/* Every call but the static lookups sets the thread's last error: a getter
 * or a free after a failure clears it, as any success does. */
static void test_last_error(void) {
  VmanTemplate *t = NULL;
  VmanTemplateList *list = NULL;
  char *none = NULL;
  OK(vman_template_list(mgr, &list));

  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  CHECK(vman_last_error_message() != NULL);
  STREQ(vman_template_name(vman_template_list_get(list, 0)), "small");
  CHECK(vman_last_error_message() == NULL);

  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  CHECK(vman_template_vcpus(NULL) == 0); /* a getter on NULL succeeds too */
  CHECK(vman_last_error_message() == NULL);

  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  CHECK(vman_template_list_len(list) == 1);
  CHECK(vman_last_error_message() == NULL);

  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_default_state_dir(NULL));
  vman_template_list_free(list);
  CHECK(vman_last_error_message() == NULL);

  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  vman_template_free(NULL);
  CHECK(vman_last_error_message() == NULL);

  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  vman_string_free(none);
  CHECK(vman_last_error_message() == NULL);

  /* The static lookups leave the message, so they may share an expression
   * with vman_last_error_message(). */
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_template_get(mgr, "nope", &t));
  STREQ(vman_status_name(VMAN_STATUS_NOT_FOUND), "not_found");
  STREQ(vman_vm_state_name(VMAN_VM_STATE_RUNNING), "running");
  STREQ(vman_version(), VMAN_VERSION);
  CHECK(strstr(vman_last_error_message(), "nope") != NULL);
  CHECK(t == NULL);
}

static void test_bad_input_changes_nothing(void) {
  size_t events = count_events(mgr);
  VmanTemplate *untouched = (VmanTemplate *)&events; /* sentinel: must stay as is */
  VmanTemplate *out = untouched;
  VmanNetworkSpec *nspec = NULL;
  const char bad_utf8[] = {'w', (char)0xff, 'b', 0};
  char long_name[80];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = 0;

  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_template_create(NULL, "t", 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_template_create(mgr, NULL, 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_template_get(mgr, "small", NULL));
  EXPECT(VMAN_STATUS_INVALID_UTF8, vman_template_create(mgr, bad_utf8, 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_UTF8, vman_template_get(mgr, bad_utf8, &out));
  CHECK(out == untouched);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "", 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, long_name, 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "a/b", 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "..", 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "a;b", 1, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "t", 0, 512, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "t", 1, 0, 1, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "t", 1, 512, 0, NULL, NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_template_create(mgr, "t", (uint32_t)-1, 512, 1, NULL, NULL));
  CHECK(strstr(vman_last_error_message(), "vcpus") != NULL);

  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_network_spec_new("n", 70000, "10.9.0.0/24", &nspec));
  CHECK(nspec == NULL);
  OK(vman_network_spec_new("n", 0, "10.9.0.0/24", &nspec));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_network_create(mgr, nspec, NULL));
  vman_network_spec_free(nspec);
  OK(vman_network_spec_new("n", 4095, "10.9.0.0/24", &nspec));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_network_create(mgr, nspec, NULL));
  vman_network_spec_free(nspec);
  OK(vman_network_spec_new("n", 9, "10.9.0.1/24", &nspec));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_network_create(mgr, nspec, NULL));
  CHECK(strstr(vman_last_error_message(), "host bits") != NULL);
  vman_network_spec_free(nspec);
  OK(vman_network_spec_new("n", 9, "10.9.0.0/24", &nspec));
  OK(vman_network_spec_set_gateway(nspec, "10.8.0.1"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_network_create(mgr, nspec, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_network_spec_add_dns(nspec, NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_network_spec_add_dns(NULL, "1.1.1.1"));
  vman_network_spec_free(nspec);
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_network_create(mgr, NULL, NULL));
  /* No 802.1Q on this kernel: an uplink is refused, clearly, at creation. */
  OK(vman_network_spec_new("up", 9, "10.9.0.0/24", &nspec));
  OK(vman_network_spec_set_uplink(nspec, "eth0"));
  if (access("/proc/net/vlan", F_OK) != 0) {
    EXPECT(VMAN_STATUS_UNSUPPORTED, vman_network_create(mgr, nspec, NULL));
    CHECK(strstr(vman_last_error_message(), "802.1Q") != NULL);
  }
  vman_network_spec_free(nspec);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_network_delete(mgr, "nope"));

  /* Getters and frees on NULL are harmless. */
  CHECK(vman_template_name(NULL) == NULL && vman_template_vcpus(NULL) == 0);
  CHECK(vman_vm_list_len(NULL) == 0 && vman_vm_nic(NULL, 0) == NULL);
  vman_template_free(NULL);
  vman_vm_list_free(NULL);
  vman_manager_free(NULL);

  CHECK(count_events(mgr) == events);
  /* A success clears the thread's error message. */
  OK(vman_template_get(mgr, "small", &out));
  CHECK(vman_last_error_message() == NULL);
  vman_template_free(out);
}

static void test_allocation(void) {
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  VmanAllocationList *allocs = NULL;
  const VmanNic *nic;
  const char *tiny[] = {"tiny"};
  /* /29: hosts .1-.6; gateway .1; .6 reserved: .2 .3 .4 .5 assignable. */
  make_network("tiny", 7, "10.7.0.0/29", "10.7.0.6");

  OK(vman_vm_spec_new("a", "small", &spec));
  OK(vman_vm_spec_add_nic(spec, "tiny", NULL, NULL));
  OK(vman_vm_create(mgr, spec, &vm));
  vman_vm_spec_free(spec);
  CHECK(vman_vm_nic_count(vm) == 1);
  nic = vman_vm_nic(vm, 0);
  STREQ(vman_nic_ip(nic), "10.7.0.2");
  STREQ(vman_nic_gateway(nic), "10.7.0.1");
  CHECK(vman_nic_prefix_len(nic) == 29 && vman_nic_vlan(nic) == 7);
  CHECK(strncmp(vman_nic_mac(nic), "52:54:00:", 9) == 0);
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_CREATED);
  vman_vm_free(vm);
  /* Nothing to boot: start is refused and the VM stays created. */
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_vm_start(mgr, "a", NULL));
  CHECK(strstr(vman_last_error_message(), "boot source") != NULL);
  OK(vman_vm_get(mgr, "a", &vm));
  CHECK(vman_vm_state(vm) == VMAN_VM_STATE_CREATED);
  vman_vm_free(vm);

  OK(vman_vm_spec_new("b", "small", &spec));
  OK(vman_vm_spec_add_nic(spec, "tiny", "10.7.0.4", "52:54:00:aa:bb:cc"));
  OK(vman_vm_create(mgr, spec, &vm));
  STREQ(vman_nic_ip(vman_vm_nic(vm, 0)), "10.7.0.4");
  STREQ(vman_nic_mac(vman_vm_nic(vm, 0)), "52:54:00:aa:bb:cc");
  vman_vm_free(vm);
  vman_vm_spec_free(spec);

  OK(vman_vm_spec_new("c", "small", &spec));
  OK(vman_vm_spec_add_nic(spec, "tiny", "10.7.0.4", NULL));
  EXPECT(VMAN_STATUS_ALREADY_EXISTS, vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  OK(vman_vm_spec_new("c", "small", &spec));
  OK(vman_vm_spec_add_nic(spec, "tiny", "10.7.0.1", NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  CHECK(strstr(vman_last_error_message(), "gateway") != NULL);
  vman_vm_spec_free(spec);

  CHECK(make_vm("c", tiny, 1) == VMAN_STATUS_OK);
  CHECK(make_vm("d", tiny, 1) == VMAN_STATUS_OK);
  CHECK(make_vm("e", tiny, 1) == VMAN_STATUS_EXHAUSTED);
  CHECK(count_allocations("tiny") == 4);

  OK(vman_network_allocations(mgr, "tiny", &allocs));
  STREQ(vman_allocation_ip(vman_allocation_list_get(allocs, 2)), "10.7.0.4");
  STREQ(vman_allocation_vm_name(vman_allocation_list_get(allocs, 2)), "b");
  CHECK(vman_allocation_nic_index(vman_allocation_list_get(allocs, 2)) == 0);
  vman_allocation_list_free(allocs);

  EXPECT(VMAN_STATUS_IN_USE, vman_network_delete(mgr, "tiny"));
  OK(vman_vm_delete(mgr, "b", false));
  CHECK(count_allocations("tiny") == 3);
  CHECK(make_vm("e", tiny, 1) == VMAN_STATUS_OK); /* gets the released .4 */
  OK(vman_vm_get(mgr, "e", &vm));
  STREQ(vman_nic_ip(vman_vm_nic(vm, 0)), "10.7.0.4");
  vman_vm_free(vm);
}

static void test_vms_and_history(void) {
  const char *three[] = {"lan", "second", "full"};
  VmanVmList *list = NULL;
  VmanEventList *events = NULL;
  VmanVm *vm = NULL;
  size_t before;
  make_network("lan", 100, "10.100.0.0/24", NULL);
  make_network("second", 200, "10.200.0.0/24", NULL);
  make_network("full", 300, "10.30.0.0/30", NULL);
  CHECK(make_vm("holder", three + 2, 1) == VMAN_STATUS_OK);

  before = count_events(mgr);
  CHECK(make_vm("multi", three, 3) == VMAN_STATUS_EXHAUSTED);
  CHECK(count_allocations("lan") == 0 && count_allocations("second") == 0);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_get(mgr, "multi", &vm));
  CHECK(count_events(mgr) == before);

  CHECK(make_vm("multi", three, 2) == VMAN_STATUS_OK);
  OK(vman_vm_get(mgr, "multi", &vm));
  CHECK(vman_vm_nic_count(vm) == 2);
  STREQ(vman_nic_network(vman_vm_nic(vm, 1)), "second");
  STREQ(vman_vm_template(vm), "small");
  CHECK(vman_vm_vcpus(vm) == 1 && vman_vm_memory_mib(vm) == 512);
  CHECK(strlen(vman_vm_id(vm)) == 36);
  vman_vm_free(vm);

  OK(vman_vm_list(mgr, NULL, "mul", &list));
  CHECK(vman_vm_list_len(list) == 1);
  vman_vm_list_free(list);
  OK(vman_vm_list(mgr, "created", NULL, &list));
  CHECK(vman_vm_list_len(list) == 6); /* a c d e holder multi */
  vman_vm_list_free(list);
  OK(vman_vm_list(mgr, "running", NULL, &list));
  CHECK(vman_vm_list_len(list) == 0);
  vman_vm_list_free(list);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_list(mgr, "sleepy", NULL, &list));

  EXPECT(VMAN_STATUS_IN_USE, vman_template_delete(mgr, "small"));
  OK(vman_vm_delete(mgr, "multi", false));
  OK(vman_vm_history(mgr, "holder", VMAN_DEFAULT_HISTORY_LIMIT, &events));
  CHECK(vman_event_list_len(events) == 1);
  STREQ(vman_event_action(vman_event_list_get(events, 0)), "created");
  STREQ(vman_event_object_kind(vman_event_list_get(events, 0)), "vm");
  vman_event_list_free(events);

  OK(vman_recent_events(mgr, 1, &events));
  CHECK(vman_event_list_len(events) == 1);
  {
    const VmanEvent *e = vman_event_list_get(events, 0);
    STREQ(vman_event_action(e), "deleted");
    STREQ(vman_event_object_name(e), "multi");
    CHECK(strstr(vman_event_details_json(e), "10.100.0.2") != NULL);
    CHECK(vman_event_pid(e) > 0 && vman_event_at_ms(e) > 0 && vman_event_id(e) > 0);
    CHECK(strlen(vman_event_os_user(e)) > 0);
  }
  vman_event_list_free(events);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_recent_events(mgr, 0, &events));
}

/* Expects vman_network_create to refuse `cidr` (and gateway, reserved, dns
 * when given) with `status`, the message holding `needle`. */
static void refuse_network(VmanStatus status, const char *cidr, const char *gateway, const char *reserved,
                           const char *dns, const char *needle) {
  VmanNetworkSpec *spec = NULL;
  OK(vman_network_spec_new("refused", 78, cidr, &spec));
  if (gateway) OK(vman_network_spec_set_gateway(spec, gateway));
  if (reserved) OK(vman_network_spec_add_reserved(spec, reserved));
  if (dns) OK(vman_network_spec_add_dns(spec, dns));
  EXPECT(status, vman_network_create(mgr, spec, NULL));
  if (strstr(vman_last_error_message(), needle) == NULL) {
    fprintf(stderr, "%s: message lacks \"%s\": %s\n", cidr, needle, vman_last_error_message());
    exit(1);
  }
  vman_network_spec_free(spec);
}

static void test_network_rules(void) {
  size_t events;
  VmanVmSpec *spec = NULL;
  make_network("ovl", 77, "10.77.0.0/24", NULL);
  events = count_events(mgr);
  /* Blocks a bridge must never carry, also when a subnet merely reaches in. */
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "127.0.0.0/8", NULL, NULL, NULL, "loopback");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "0.0.0.0/8", NULL, NULL, NULL, "0.0.0.0/8");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "169.254.0.0/16", NULL, NULL, NULL, "link-local");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "224.1.0.0/16", NULL, NULL, NULL, "multicast");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "255.255.255.0/24", NULL, NULL, NULL, "reserved");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "96.0.0.0/3", NULL, NULL, NULL, "127.0.0.0/8");
  /* Leading zeros, which other parsers read as octal, wherever an address is given. */
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "10.078.0.0/24", NULL, NULL, NULL, "leading zero");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "10.78.0.0/024", NULL, NULL, NULL, "leading zero");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "10.78.0.0/24", "10.78.0.01", NULL, NULL, "leading zero");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "10.78.0.0/24", NULL, "10.78.0.2-10.78.0.09", NULL, "leading zero");
  refuse_network(VMAN_STATUS_INVALID_ARGUMENT, "10.78.0.0/24", NULL, NULL, "8.8.8.08", "leading zero");
  /* A subnet sharing any address with a live network's, named in the message. */
  refuse_network(VMAN_STATUS_ALREADY_EXISTS, "10.77.0.0/24", NULL, NULL, NULL, "\"ovl\"");
  refuse_network(VMAN_STATUS_ALREADY_EXISTS, "10.77.0.128/25", NULL, NULL, NULL, "\"ovl\"");
  refuse_network(VMAN_STATUS_ALREADY_EXISTS, "10.0.0.0/8", NULL, NULL, NULL, "overlaps");
  OK(vman_vm_spec_new("zeros", "small", &spec));
  OK(vman_vm_spec_add_nic(spec, "ovl", "10.77.0.010", NULL));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_vm_create(mgr, spec, NULL));
  CHECK(strstr(vman_last_error_message(), "leading zero") != NULL);
  vman_vm_spec_free(spec);
  CHECK(count_events(mgr) == events);
  make_network("next-door", 78, "10.78.0.0/24", NULL);
}

/* Bad options are refused by the setter itself, leaving the options usable;
 * a state directory too long for socket paths is refused before it exists. */
static void test_open_options(const char *dir) {
  VmanOpenOptions *options = NULL;
  VmanManager *other = (VmanManager *)&options; /* sentinel: must stay as is */
  char long_dir[256];
  size_t len;
  OK(vman_open_options_new(&options));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_busy_timeout_ms(options, 0));
  CHECK(strstr(vman_last_error_message(), "busy timeout") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_busy_timeout_ms(options, 3600001));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_busy_timeout_ms(options, UINT64_MAX));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_qemu_binary(options, ""));
  CHECK(strstr(vman_last_error_message(), "QEMU binary") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_dnsmasq_binary(options, ""));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_qemu_user(options, "no-such-user-here"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_qemu_user(options, ""));
  OK(vman_open_options_set_qemu_user(options, "nobody"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_serial_log_cap(options, 0));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_serial_log_cap(options, 4095));
  CHECK(strstr(vman_last_error_message(), "serial log cap") != NULL);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_serial_log_cap(options, UINT64_MAX));
  OK(vman_open_options_set_serial_log_cap(options, 4096));
  OK(vman_open_options_set_busy_timeout_ms(options, 1));

  len = (size_t)snprintf(long_dir, sizeof long_dir, "%s/", dir);
  while (len < 120) long_dir[len++] = 'd';
  long_dir[len] = 0;
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_manager_open(long_dir, options, &other));
  CHECK(strstr(vman_last_error_message(), "at most") != NULL);
  CHECK(other == (VmanManager *)&options);
  CHECK(access(long_dir, F_OK) != 0); /* nothing was created */
  vman_open_options_free(options);
}

int main(int argc, char **argv) {
  VmanOpenOptions *options = NULL;
  CHECK(argc == 2);
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_manager_open(NULL, NULL, &mgr));
  OK(vman_open_options_new(&options));
  OK(vman_open_options_set_busy_timeout_ms(options, 5000));
  OK(vman_manager_open(argv[1], options, &mgr));
  vman_open_options_free(options);

  test_version();
  test_templates();
  test_last_error();
  test_bad_input_changes_nothing();
  test_allocation();
  test_vms_and_history();
  test_network_rules();
  test_open_options(argv[1]);

  vman_manager_free(mgr);
  puts("records: all checks passed");
  return 0;
}
