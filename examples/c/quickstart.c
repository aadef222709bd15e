/*
 * vman from C: a template, a VLAN network, two VMs with addresses, a data
 * disk, events through a poll(2) loop and the history; with a kernel and
 * an initrd, one VM also boots and answers on its serial console.
 *
 *   cc -std=c11 -Wall -Wextra -Werror -pedantic quickstart.c $(pkg-config --cflags --libs vman)
 *   ./a.out STATE_DIR [KERNEL INITRD]
 *
 * (From a clone: -Iinclude -Ltarget/debug -Wl,-rpath,target/debug -lvman.)
 * The example removes what it made, so it can run again on the same
 * directory. The guest must print `VMAN-GUEST-READY` or `login:` on ttyS0
 * when it is up and run a shell there (tests/guest/build.sh's guest does).
 * docs/c.md explains the conventions it follows.
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <vman.h>

/* Every fallible call returns a status; the thread's last error says why. */
#define TRY(call)                                                                                  \
  do {                                                                                             \
    VmanStatus status_ = (call);                                                                   \
    if (status_ != VMAN_STATUS_OK) {                                                               \
      fprintf(stderr, "%s: %s (%s)\n", #call, vman_last_error_message(), vman_status_name(status_)); \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)

static void print_vm(const VmanVm *vm) {
  const VmanNic *nic = vman_vm_nic(vm, 0); /* borrowed from vm: never freed */
  printf("%s %s %s %s\n", vman_vm_name(vm), vman_vm_state_name(vman_vm_state(vm)), vman_nic_ip(nic), vman_nic_mac(nic));
}

/* Prints every event the stream holds: poll(2) says when there is news,
 * vman_event_stream_next with timeout 0 takes what is there. */
static int drain(VmanEventStream *events) {
  struct pollfd p = {.fd = vman_event_stream_fd(events), .events = POLLIN, .revents = 0};
  VmanEvent *e = NULL;
  VmanStatus status;
  if (poll(&p, 1, 1000) < 0) return -1;
  while ((status = vman_event_stream_next(events, 0, &e)) == VMAN_STATUS_OK) {
    printf("event %lld %s %s %s\n", (long long)vman_event_id(e), vman_event_object_kind(e), vman_event_object_name(e),
           vman_event_action(e));
    vman_event_free(e);
  }
  return status == VMAN_STATUS_TIMEOUT ? 0 : -1; /* TIMEOUT: nothing more for now */
}

int main(int argc, char **argv) {
  int rc = 1;
  VmanManager *m = NULL;
  VmanEventStream *events = NULL;
  VmanNetworkSpec *lan = NULL;
  VmanVmSpec *web_spec = NULL, *db_spec = NULL;
  VmanVm *web = NULL, *db = NULL, *vm = NULL;
  VmanAllocationList *held = NULL;
  VmanDisk *data = NULL;
  VmanConsole *console = NULL;
  VmanBytes answer = {NULL, 0};
  VmanEventList *history = NULL;
  size_t i;

  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: %s STATE_DIR [KERNEL INITRD]\n", argv[0]);
    return 2;
  }
  TRY(vman_manager_open(argv[1], NULL, &m)); /* NULL: the default options */
  TRY(vman_event_stream_new(m, &events));    /* every change committed from now on */

  TRY(vman_template_create(m, "qs-small", 1, 256, 1, "a small size", NULL)); /* NULL: no record wanted */
  TRY(vman_network_spec_new("qs-lan", 3302, "10.33.2.0/24", &lan));
  TRY(vman_network_spec_add_reserved(lan, "10.33.2.2-10.33.2.9"));
  TRY(vman_network_create(m, lan, NULL));

  TRY(vman_vm_spec_new("qs-web", "qs-small", &web_spec));
  TRY(vman_vm_spec_add_nic(web_spec, "qs-lan", NULL, NULL)); /* next free address, a fresh MAC */
  if (argc == 4) TRY(vman_vm_spec_set_boot(web_spec, argv[2], argv[3], "console=ttyS0 quiet panic=-1"));
  TRY(vman_vm_create(m, web_spec, &web));
  TRY(vman_vm_spec_new("qs-db", "qs-small", &db_spec));
  TRY(vman_vm_spec_add_nic(db_spec, "qs-lan", "10.33.2.100", NULL));
  TRY(vman_vm_create(m, db_spec, &db));
  print_vm(web);
  print_vm(db);
  TRY(vman_network_allocations(m, "qs-lan", &held));
  for (i = 0; i < vman_allocation_list_len(held); i++) {
    const VmanAllocation *a = vman_allocation_list_get(held, i);
    printf("qs-lan: %s held by %s (NIC %u)\n", vman_allocation_ip(a), vman_allocation_vm_name(a), vman_allocation_nic_index(a));
  }

  /* A sparse qcow2 disk (NULL format); qs-db has no QEMU, so it joins at its next start. */
  TRY(vman_disk_create(m, "qs-data", 1ULL << 30, NULL, NULL));
  TRY(vman_disk_attach(m, "qs-db", "qs-data", &data));
  printf("disk %s: %llu bytes, attached to %s at slot %d\n", vman_disk_name(data),
         (unsigned long long)vman_disk_size_bytes(data), vman_disk_vm(data), (int)vman_disk_slot(data));

  if (argc == 4) {
    const char *cmd = "uname -s\n";
    TRY(vman_vm_start(m, "qs-web", &vm)); /* returns once QEMU answers; the guest boots on */
    printf("qs-web %s (pid %u, %s)\n", vman_vm_state_name(vman_vm_state(vm)), (unsigned)vman_vm_pid(vm), vman_vm_accel(vm));
    vman_vm_free(vm);
    vm = NULL;
    TRY(vman_vm_wait_for_console(m, "qs-web", "VMAN-GUEST-READY|login:", 120000, NULL));
    TRY(vman_console_attach(m, "qs-web", &console)); /* one client at a time */
    TRY(vman_console_write(console, (const uint8_t *)cmd, strlen(cmd), 10000));
    TRY(vman_console_read_until(console, "(?m)^Linux", 30000, &answer)); /* ends with the match */
    printf("the guest says \"%.*s\"\n", 5, (const char *)answer.data + answer.len - 5);
    vman_console_free(console); /* lets the next client in */
    console = NULL;
    TRY(vman_vm_stop(m, "qs-web", VMAN_DEFAULT_STOP_TIMEOUT_MS, &vm)); /* ACPI power button, then forced */
    printf("qs-web %s\n", vman_vm_state_name(vman_vm_state(vm)));
  }

  TRY(vman_vm_delete(m, "qs-web", false)); /* releases its address, keeps its history */
  TRY(vman_vm_delete(m, "qs-db", false));  /* the disk it was given stays, available */
  TRY(vman_disk_delete(m, "qs-data"));
  TRY(vman_network_delete(m, "qs-lan"));
  TRY(vman_template_delete(m, "qs-small"));

  if (drain(events) != 0) {
    fprintf(stderr, "events: %s\n", vman_last_error_message());
    goto out;
  }
  /* A deleted VM's history stays, found by its id. */
  TRY(vman_vm_history(m, vman_vm_id(web), VMAN_DEFAULT_HISTORY_LIMIT, &history));
  for (i = 0; i < vman_event_list_len(history); i++) {
    const VmanEvent *e = vman_event_list_get(history, i);
    printf("qs-web history: %s %s\n", vman_event_action(e), vman_event_details_json(e));
  }
  rc = 0;

out: /* every *_free accepts NULL */
  vman_event_list_free(history);
  vman_bytes_free(&answer);
  vman_console_free(console);
  vman_disk_free(data);
  vman_allocation_list_free(held);
  vman_vm_free(vm);
  vman_vm_free(db);
  vman_vm_free(web);
  vman_vm_spec_free(db_spec);
  vman_vm_spec_free(web_spec);
  vman_network_spec_free(lan);
  vman_event_stream_free(events);
  vman_manager_free(m); /* running VMs are not affected */
  return rc;
}
