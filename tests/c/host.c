/*
 * Settings of a state directory and the host's stats and health through
 * the C ABI, with a real guest (TCG): the creator's settings are kept, a
 * conflicting opener is refused, a change is checked and recorded; a
 * running guest's QEMU shows CPU time and resident memory; a bogus QEMU
 * binary fails its health check with a fix.
 * Usage: host <empty-state-dir> <kernel> <initrd>
 */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

/* The last failure's message, kept past calls that clear it (frees do). */
static char refused[1024];

static int message_has(const char *text) {
  const char *msg = vman_last_error_message();
  return msg != NULL && strstr(msg, text) != NULL;
}

static VmanManager *open_dir(const char *dir, const char *accel, int create, VmanStatus expected) {
  VmanOpenOptions *options = NULL;
  VmanManager *m = NULL;
  OK(vman_open_options_new(&options));
  if (accel != NULL) OK(vman_open_options_set_accel(options, accel));
  OK(vman_open_options_set_network(options, "isolated"));
  OK(vman_open_options_set_create(options, create != 0));
  EXPECT(expected, vman_manager_open(dir, options, &m));
  snprintf(refused, sizeof refused, "%s", m == NULL ? vman_last_error_message() : "");
  vman_open_options_free(options);
  CHECK((m != NULL) == (expected == VMAN_STATUS_OK));
  return m;
}

static void test_settings(VmanManager *mgr, const char *dir) {
  VmanSettings *s = NULL;
  VmanManager *other = NULL;
  char missing[512];
  size_t events, i;
  OK(vman_settings(mgr, &s));
  STREQ(vman_settings_network(s), "isolated");
  STREQ(vman_settings_accel(s), "tcg");
  STREQ(vman_settings_qemu_binary(s), "qemu-system-x86_64");
  STREQ(vman_settings_dnsmasq_binary(s), "dnsmasq");
  CHECK(vman_settings_qemu_user(s) == NULL);
  CHECK(vman_settings_serial_log_cap_bytes(s) == 4194304);
  CHECK(vman_settings_count(s) == 6);
  STREQ(vman_settings_key(s, 0), "network");
  STREQ(vman_settings_value(s, 0), "isolated");
  STREQ(vman_settings_key(s, 5), "serial_log_cap_bytes");
  STREQ(vman_settings_value(s, 5), "4194304");
  CHECK(vman_settings_key(s, 6) == NULL && vman_settings_value(s, 6) == NULL);
  vman_settings_free(s);
  s = NULL;

  /* A later opener asking nothing, or the same, gets the directory's; one
   * asking another accelerator is refused with the command that changes it. */
  other = open_dir(dir, NULL, 0, VMAN_STATUS_OK);
  vman_manager_free(other);
  other = open_dir(dir, "kvm", 1, VMAN_STATUS_SETTING_CONFLICT);
  CHECK(strstr(refused, "accel") != NULL && strstr(refused, "\"tcg\"") != NULL);
  CHECK(strstr(refused, "vman settings set accel kvm") != NULL);
  snprintf(missing, sizeof missing, "%s-mistyped", dir);
  open_dir(missing, "tcg", 0, VMAN_STATUS_NOT_FOUND);
  CHECK(access(missing, F_OK) != 0); /* nothing was created */

  events = count_events(mgr);
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_set_setting(mgr, "acceleration", "tcg", &s));
  CHECK(s == NULL && message_has("serial_log_cap_bytes"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_set_setting(mgr, "serial_log_cap_bytes", "12", NULL));
  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_set_setting(mgr, "accel", NULL, NULL));
  CHECK(count_events(mgr) == events);
  OK(vman_set_setting(mgr, "serial_log_cap_bytes", "131072", &s));
  CHECK(vman_settings_serial_log_cap_bytes(s) == 131072);
  /* Every value reads back as set_setting takes it. */
  for (i = 0; i < vman_settings_count(s); i++) {
    OK(vman_set_setting(mgr, vman_settings_key(s, i), vman_settings_value(s, i), NULL));
  }
  vman_settings_free(s);
  CHECK(count_events(mgr) == events + 1);
}

static void test_stats_and_health(VmanManager *mgr, const char *kernel, const char *initrd) {
  VmanVmSpec *spec = NULL;
  VmanVm *vm = NULL;
  VmanHostStats *stats = NULL;
  VmanHostHealth *health = NULL;
  const VmanVmStats *g = NULL;
  const VmanHealthCheck *check = NULL;
  uint32_t pid;
  size_t i;
  OK(vman_template_create(mgr, "tiny", 1, 192, 1, NULL, NULL));
  OK(vman_vm_spec_new("g1", "tiny", &spec));
  OK(vman_vm_spec_set_boot(spec, kernel, initrd, "console=ttyS0 quiet panic=-1"));
  OK(vman_vm_create(mgr, spec, NULL));
  vman_vm_spec_free(spec);
  OK(vman_vm_start(mgr, "g1", &vm));
  pid = vman_vm_pid(vm);
  vman_vm_free(vm);
  OK(vman_vm_wait_for_console(mgr, "g1", "^VMAN-GUEST-READY$", 90000, NULL));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_set_setting(mgr, "network", "user", NULL));
  CHECK(message_has("g1"));

  EXPECT(VMAN_STATUS_NULL_PARAMETER, vman_host_stats(mgr, NULL));
  OK(vman_host_stats(mgr, &stats));
  CHECK(vman_host_stats_cpu_count(stats) >= 1);
  CHECK(vman_host_stats_sample_ms(stats) >= 200);
  CHECK(vman_host_stats_cpu_busy_percent(stats) >= 0.0 && vman_host_stats_cpu_busy_percent(stats) <= 100.0);
  CHECK(vman_host_stats_load_1(stats) >= 0.0);
  CHECK(vman_host_stats_memory_available_bytes(stats) > 0);
  CHECK(vman_host_stats_memory_available_bytes(stats) <= vman_host_stats_memory_total_bytes(stats));
  CHECK(vman_host_stats_disk_available_bytes(stats) <= vman_host_stats_disk_total_bytes(stats));
  CHECK(vman_host_stats_vm_count(stats) == 1);
  CHECK(vman_host_stats_vm(stats, 1) == NULL);
  g = vman_host_stats_vm(stats, 0);
  STREQ(vman_vm_stats_name(g), "g1");
  CHECK(vman_vm_stats_state(g) == VMAN_VM_STATE_RUNNING);
  CHECK(vman_vm_stats_has_qemu(g) && vman_vm_stats_pid(g) == pid);
  CHECK(vman_vm_stats_cpu_time_ms(g) > 0);
  CHECK(vman_vm_stats_rss_bytes(g) > 16u << 20);
  CHECK(vman_vm_stats_cpu_percent(g) >= 0.0);
  vman_host_stats_free(stats);

  OK(vman_host_health(mgr, &health));
  CHECK(vman_host_health_ok(health));
  CHECK(vman_host_health_check_count(health) == 7);
  for (i = 0; i < vman_host_health_check_count(health); i++) {
    check = vman_host_health_check(health, i);
    CHECK((vman_health_check_fix(check) == NULL) == vman_health_check_ok(check));
  }
  check = vman_host_health_check(health, 0);
  STREQ(vman_health_check_name(check), "qemu");
  CHECK(strstr(vman_health_check_detail(check), "QEMU emulator version") != NULL);
  vman_host_health_free(health);

  OK(vman_vm_force_stop(mgr, "g1", NULL));
  OK(vman_set_setting(mgr, "qemu_binary", "/nonexistent/qemu-system-x86_64", NULL));
  OK(vman_host_health(mgr, &health));
  CHECK(!vman_host_health_ok(health));
  check = vman_host_health_check(health, 0);
  CHECK(!vman_health_check_ok(check) && vman_health_check_required(check));
  CHECK(strstr(vman_health_check_detail(check), "/nonexistent/qemu-system-x86_64") != NULL);
  CHECK(strstr(vman_health_check_fix(check), "qemu_binary") != NULL);
  vman_host_health_free(health);
  EXPECT(VMAN_STATUS_UNSUPPORTED, vman_vm_start(mgr, "g1", NULL));
}

int main(int argc, char **argv) {
  VmanManager *mgr = NULL;
  CHECK(argc == 4);
  mgr = open_dir(argv[1], "tcg", 1, VMAN_STATUS_OK);
  test_settings(mgr, argv[1]);
  test_stats_and_health(mgr, argv[2], argv[3]);
  vman_manager_free(mgr);
  puts("host: all checks passed");
  return 0;
}
