/*
 * Host networking through the C ABI, run inside a network namespace of its
 * own: a bridged VM gets a tap on its VLAN's bridge, removed when it stops;
 * the network mode is the state directory's setting (another opener asking
 * for another is refused; a change waits for running VMs); a user-mode VM
 * gets a forwarded SSH port that reaches the guest.
 * Usage: network <empty-state-dir> <kernel> <initrd>
 */
#define _DEFAULT_SOURCE /* usleep */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"

static void make_vm(VmanManager *m, const char *name, const char *kernel, const char *initrd, const char *cmdline) {
  VmanVmSpec *spec = NULL;
  OK(vman_vm_spec_new(name, "tiny", &spec));
  OK(vman_vm_spec_add_nic(spec, "v100", NULL, NULL));
  OK(vman_vm_spec_set_boot(spec, kernel, initrd, cmdline));
  OK(vman_vm_create(m, spec, NULL));
  vman_vm_spec_free(spec);
}

static int link_exists(const char *name) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "ip link show %s >/dev/null 2>&1", name);
  return system(cmd) == 0;
}

int main(int argc, char **argv) {
  VmanOpenOptions *options = NULL;
  VmanManager *bridged = NULL, *user = NULL, *refused = NULL;
  VmanSettings *settings = NULL;
  VmanNetworkSpec *net = NULL;
  VmanVm *vm = NULL;
  char tap[32];
  uint32_t nic_index = 9;
  uint16_t guest_port = 0, host_port = 0;
  struct sockaddr_in addr;
  struct timeval tv = {5, 0};
  int tries;
  char banner[64] = {0};
  int fd;
  CHECK(argc == 4);
  CHECK(system("ip link set lo up") == 0);

  OK(vman_open_options_new(&options));
  OK(vman_open_options_set_accel(options, "tcg"));
  EXPECT(VMAN_STATUS_INVALID_ARGUMENT, vman_open_options_set_network(options, "nat"));
  OK(vman_open_options_set_network(options, "bridged"));
  OK(vman_manager_open(argv[1], options, &bridged));
  OK(vman_open_options_set_network(options, "user"));
  EXPECT(VMAN_STATUS_SETTING_CONFLICT, vman_manager_open(argv[1], options, &refused));
  CHECK(refused == NULL && strstr(vman_last_error_message(), "vman settings set network user") != NULL);
  vman_open_options_free(options);

  OK(vman_template_create(bridged, "tiny", 1, 192, 1, NULL, NULL));
  OK(vman_network_spec_new("v100", 100, "10.100.0.0/24", &net));
  OK(vman_network_create(bridged, net, NULL));
  vman_network_spec_free(net);

  /* Bridged: a tap on vmbr100 while it runs, nothing after. */
  make_vm(bridged, "b1", argv[2], argv[3], "console=ttyS0 quiet panic=-1");
  OK(vman_vm_start(bridged, "b1", &vm));
  EXPECT(VMAN_STATUS_INVALID_STATE, vman_set_setting(bridged, "network", "user", NULL));
  CHECK(strstr(vman_last_error_message(), "b1") != NULL);
  CHECK(vman_nic_host_interface(vman_vm_nic(vm, 0)) != NULL);
  snprintf(tap, sizeof tap, "%s", vman_nic_host_interface(vman_vm_nic(vm, 0)));
  CHECK(vman_vm_port_forward_count(vm) == 0);
  vman_vm_free(vm);
  CHECK(link_exists(tap) && link_exists("vmbr100"));
  OK(vman_vm_force_stop(bridged, "b1", &vm));
  CHECK(vman_nic_host_interface(vman_vm_nic(vm, 0)) == NULL);
  vman_vm_free(vm);
  CHECK(!link_exists(tap) && !link_exists("vmbr100"));

  /* User mode, once no VM runs: the recorded forward reaches the guest's port 22. */
  OK(vman_set_setting(bridged, "network", "user", &settings));
  STREQ(vman_settings_network(settings), "user");
  vman_settings_free(settings);
  user = bridged;
  make_vm(user, "u1", argv[2], argv[3], "console=ttyS0 quiet panic=-1 vman.net=dhcp");
  OK(vman_vm_start(user, "u1", &vm));
  CHECK(vman_vm_port_forward_count(vm) == 1);
  EXPECT(VMAN_STATUS_NOT_FOUND, vman_vm_port_forward(vm, 1, &nic_index, &guest_port, &host_port));
  CHECK(nic_index == 9); /* untouched on failure */
  OK(vman_vm_port_forward(vm, 0, &nic_index, &guest_port, &host_port));
  CHECK(nic_index == 0 && guest_port == 22 && host_port > 0);
  vman_vm_free(vm);
  OK(vman_vm_wait_for_console(user, "u1", "^VMAN-GUEST-READY$", 120000, NULL));
  /* QEMU accepts on the host side at once and closes until the guest's
     responder listens, so retry as an SSH client would. */
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(host_port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (tries = 0; tries < 100 && strstr(banner, "VMAN-SSH-OK") == NULL; tries++) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    memset(banner, 0, sizeof banner);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
      CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
      if (read(fd, banner, sizeof banner - 1) < 0) banner[0] = 0;
    }
    close(fd);
    if (strstr(banner, "VMAN-SSH-OK") == NULL) usleep(200000);
  }
  CHECK(strstr(banner, "VMAN-SSH-OK") != NULL);
  OK(vman_vm_force_stop(user, "u1", NULL));

  vman_manager_free(bridged);
  puts("network: all checks passed");
  return 0;
}
