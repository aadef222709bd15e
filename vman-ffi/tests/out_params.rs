//! The header says of each out-parameter either "must not be NULL" or "may
//! be NULL"; this holds the code to it. A required one is checked before
//! any work (NULL answers VMAN_STATUS_NULL_PARAMETER and changes nothing);
//! an optional one may be NULL and the call still acts.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::ffi::{CStr, c_char};
use std::ptr::{null, null_mut};

use vman::*;

fn message() -> String {
    let m = vman_last_error_message();
    assert!(!m.is_null(), "a failed call leaves a message");
    // SAFETY: non-NULL, NUL-terminated, read before the next vman call.
    unsafe { CStr::from_ptr(m) }.to_string_lossy().into_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    manager: *mut VmanManager,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: the manager this fixture opened, freed once.
        unsafe { vman_manager_free(self.manager) };
    }
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = std::ffi::CString::new(dir.path().join("state").to_str().unwrap()).unwrap();
    let mut manager = null_mut();
    // SAFETY: valid string, NULL options, writable out.
    assert_eq!(unsafe { vman_manager_open(path.as_ptr(), null(), &mut manager) }, VmanStatus::Ok);
    Fixture { _dir: dir, manager }
}

/// The number of events recorded: a call that changed something recorded one.
fn events(m: *const VmanManager) -> usize {
    let mut list = null_mut();
    // SAFETY: live manager, writable out; the list is freed here.
    unsafe {
        assert_eq!(vman_recent_events(m, 10000, &mut list), VmanStatus::Ok);
        let n = vman_event_list_len(list);
        vman_event_list_free(list);
        n
    }
}

fn null_parameter(status: VmanStatus, name: &str) {
    assert_eq!(status, VmanStatus::NullParameter, "{name}");
    assert!(message().contains(name), "{}", message());
}

#[test]
fn required_out_params_answer_null_parameter_before_any_work() {
    let f = open();
    let m = f.manager.cast_const();
    let name = c"small".as_ptr();
    // SAFETY: every pointer is NULL or valid; required outs are NULL on purpose.
    unsafe {
        assert_eq!(vman_template_create(m, name, 1, 512, 1, null(), null_mut()), VmanStatus::Ok);
        let before = events(m);
        null_parameter(vman_template_get(m, name, null_mut()), "out");
        null_parameter(vman_template_list(m, null_mut()), "out");
        null_parameter(vman_ssh_key_get(m, name, null_mut()), "out");
        null_parameter(vman_ssh_key_list(m, null_mut()), "out");
        null_parameter(vman_network_get(m, c"lan".as_ptr(), null_mut()), "out");
        null_parameter(vman_network_list(m, null_mut()), "out");
        null_parameter(vman_network_allocations(m, c"lan".as_ptr(), null_mut()), "out");
        null_parameter(vman_network_spec_new(c"lan".as_ptr(), 10, c"10.0.0.0/24".as_ptr(), null_mut()), "out");
        null_parameter(vman_vm_spec_new(name, name, null_mut()), "out");
        null_parameter(vman_vm_get(m, name, null_mut()), "out");
        null_parameter(vman_vm_list(m, null(), null(), null_mut()), "out");
        null_parameter(vman_vm_history(m, name, 10, null_mut()), "out");
        null_parameter(vman_recent_events(m, 10, null_mut()), "out");
        null_parameter(vman_event_stream_new(m, null_mut()), "out");
        null_parameter(vman_event_stream_new_after(m, 0, null_mut()), "out");
        null_parameter(vman_disk_get(m, name, null_mut()), "out");
        null_parameter(vman_disk_list(m, null(), null(), null_mut()), "out");
        null_parameter(vman_image_get(m, name, null_mut()), "out");
        null_parameter(vman_image_list(m, null_mut()), "out");
        null_parameter(vman_snapshot_list(m, name, null_mut()), "out");
        null_parameter(vman_image_spec_new(name, c"/tmp/x.img".as_ptr(), null_mut()), "out");
        null_parameter(vman_open_options_new(null_mut()), "out");
        null_parameter(vman_settings(m, null_mut()), "out");
        null_parameter(vman_host_stats(m, null_mut()), "out");
        null_parameter(vman_host_health(m, null_mut()), "out");
        null_parameter(vman_default_state_dir(null_mut()), "out");
        // Checked first: no such VM would be NOT_FOUND, not what is answered.
        null_parameter(vman_console_attach(m, c"no-such-vm".as_ptr(), null_mut()), "out");
        let mut buf = [0u8; 16];
        let mut len = 0usize;
        null_parameter(vman_vm_console_tail(m, c"no-such-vm".as_ptr(), buf.as_mut_ptr(), buf.len(), null_mut()), "out_len");
        null_parameter(vman_vm_console_tail(m, c"no-such-vm".as_ptr(), null_mut(), 16, &mut len), "buf");
        assert_eq!(events(m), before, "a refused call recorded nothing");

        let mut stream = null_mut();
        assert_eq!(vman_event_stream_new_after(m, 0, &mut stream), VmanStatus::Ok);
        null_parameter(vman_event_stream_next(stream, 0, null_mut()), "out");
        let mut event = null_mut();
        assert_eq!(vman_event_stream_next(stream, 0, &mut event), VmanStatus::Ok, "the event is still there");
        vman_event_free(event);
        vman_event_stream_free(stream);

        let mut vm = null_mut();
        let mut spec = null_mut();
        assert_eq!(vman_vm_spec_new(c"web".as_ptr(), name, &mut spec), VmanStatus::Ok);
        assert_eq!(vman_vm_create(m, spec, &mut vm), VmanStatus::Ok);
        vman_vm_spec_free(spec);
        let (mut nic, mut port) = (0u32, 0u16);
        null_parameter(vman_vm_port_forward(vm, 0, null_mut(), &mut port, &mut port), "out_nic_index");
        null_parameter(vman_vm_port_forward(vm, 0, &mut nic, null_mut(), &mut port), "out_guest_port");
        null_parameter(vman_vm_port_forward(vm, 0, &mut nic, &mut port, null_mut()), "out_host_port");
        vman_vm_free(vm);
    }
}

#[test]
fn a_null_out_to_open_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = std::ffi::CString::new(state.to_str().unwrap()).unwrap();
    // SAFETY: valid string and NULL options; `out` NULL on purpose.
    null_parameter(unsafe { vman_manager_open(path.as_ptr(), null(), null_mut()) }, "out");
    assert!(!state.exists(), "no state directory without a manager to use it");
}

#[test]
fn optional_out_params_may_be_null_and_the_call_acts() {
    let f = open();
    let m = f.manager.cast_const();
    let name: *const c_char = c"small".as_ptr();
    // SAFETY: every pointer is NULL or valid; optional outs are NULL on purpose.
    unsafe {
        assert_eq!(vman_template_create(m, name, 1, 512, 1, null(), null_mut()), VmanStatus::Ok);
        let mut spec = null_mut();
        assert_eq!(vman_network_spec_new(c"lan".as_ptr(), 10, c"10.10.0.0/24".as_ptr(), &mut spec), VmanStatus::Ok);
        assert_eq!(vman_network_create(m, spec, null_mut()), VmanStatus::Ok);
        vman_network_spec_free(spec);
        let mut spec = null_mut();
        assert_eq!(vman_vm_spec_new(c"web".as_ptr(), name, &mut spec), VmanStatus::Ok);
        assert_eq!(vman_vm_spec_add_nic(spec, c"lan".as_ptr(), null(), null()), VmanStatus::Ok);
        assert_eq!(vman_vm_create(m, spec, null_mut()), VmanStatus::Ok);
        vman_vm_spec_free(spec);
        assert_eq!(vman_reconcile(m, null_mut()), VmanStatus::Ok);
        let key = c"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIEEHKILeIA5KIMgEOxa+GSMJKC0wYoXMrzyXxBvwHzw alice@example";
        assert_eq!(vman_ssh_key_import(m, c"alice".as_ptr(), key.as_ptr(), null_mut()), VmanStatus::Ok);
        assert_eq!(vman_set_setting(m, c"serial_log_cap_bytes".as_ptr(), c"65536".as_ptr(), null_mut()), VmanStatus::Ok);

        // Each acted: the records exist.
        let mut vm = null_mut();
        assert_eq!(vman_vm_get(m, c"web".as_ptr(), &mut vm), VmanStatus::Ok);
        assert_eq!(vman_vm_nic_count(vm), 1);
        assert_eq!(CStr::from_ptr(vman_nic_ip(vman_vm_nic(vm, 0))).to_str().unwrap(), "10.10.0.2");
        vman_vm_free(vm);
        let mut template = null_mut();
        assert_eq!(vman_template_get(m, name, &mut template), VmanStatus::Ok);
        vman_template_free(template);
        let mut key = null_mut();
        assert_eq!(vman_ssh_key_get(m, c"alice".as_ptr(), &mut key), VmanStatus::Ok);
        assert_eq!(vman_ssh_key_bits(key), 256);
        vman_ssh_key_free(key);
        let mut settings = null_mut();
        assert_eq!(vman_settings(m, &mut settings), VmanStatus::Ok);
        assert_eq!(vman_settings_serial_log_cap_bytes(settings), 65536);
        vman_settings_free(settings);
    }
}
