//! The settings of a state directory (network mode, accelerator, binaries,
//! QEMU user, serial log cap): kept in the directory, so every process that
//! opens it runs its VMs the same way. `model.rs` the values and their
//! checks, `apply.rs` how a manager takes them up; here the public calls.

pub(crate) mod apply;
pub(crate) mod model;

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::net::mode::{NetworkMode, require_net_admin};
use crate::settings::model::{SettingKey, Settings};
use crate::store;

impl Manager {
    /// The settings of this state directory, as it keeps them now.
    pub fn settings(&self) -> Result<Settings> {
        apply::read(&self.inner)
    }

    /// Changes one setting of the state directory, for every process that
    /// uses it, and returns the settings as they are now. `key` is one of
    /// [`SettingKey`]'s names (`network`, `accel`, `qemu_binary`,
    /// `dnsmasq_binary`, `qemu_user`, `serial_log_cap_bytes`); `value` is
    /// checked as [`SettingKey::normalize`] says (`network` `auto` is
    /// resolved by this process; changing to bridged needs CAP_NET_ADMIN
    /// here: [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied),
    /// while leaving bridged for `user` or `isolated` needs no privilege).
    ///
    /// `network`, `dnsmasq_binary` and `qemu_user` change only while no VM
    /// of the directory has a QEMU ([`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState)
    /// names the VMs to stop); the others apply from each VM's next start.
    /// A change records a `setting`/`changed` event with the old and new
    /// values; setting the value the directory already keeps changes and
    /// records nothing. Managers open elsewhere take the change up before
    /// their next start or reconcile. After a change of `qemu_user` the
    /// files QEMU opens get that user's group.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<Settings> {
        let key: SettingKey = key.parse()?;
        let value = key.normalize(value)?;
        let ctx = &*self.inner;
        let _lock = ctx.runtime().lock_settings(true)?;
        ctx.write(|w| {
            let old = store::setting(w.tx, key.as_str())?;
            if old.as_deref() == Some(value.as_str()) {
                return Ok(());
            }
            if key == SettingKey::Network && value == NetworkMode::Bridged.as_str() {
                require_net_admin()?;
            }
            if key.needs_no_running_vm() {
                let running: Vec<String> = store::vms_with_process(w.tx)?.into_iter().map(|vm| vm.name).collect();
                if !running.is_empty() {
                    return Err(Error::SettingNeedsStoppedVms { key: key.as_str(), vms: store::describe_users("VM", &running) });
                }
            }
            store::put_setting(w.tx, key.as_str(), &value, w.now)?;
            w.record(ObjectKind::Setting, key.as_str(), key.as_str(), "changed", json!({ "from": old, "to": value }))
        })?;
        apply::refresh(ctx)
    }
}
