//! Settings at work: written when a directory is made (or first opened by a
//! vman that has them), checked against what an opener asks for, and taken
//! up again by a manager whenever another one may have changed them.

use std::path::PathBuf;

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::net::mode::{NetworkMode, require_net_admin, resolve_mode};
use crate::runtime::{RuntimeConfig, STORAGE_DIRS};
use crate::settings::model::{SettingKey, Settings};
use crate::storage::model::DiskFilter;
use crate::store::{self, Store, now_ms};

/// The runtime's values from the settings.
pub(crate) fn runtime_config(settings: &Settings) -> RuntimeConfig {
    RuntimeConfig {
        qemu_binary: settings.qemu_binary.clone(),
        dnsmasq_binary: settings.dnsmasq_binary.clone(),
        accel: settings.accel,
        serial_log_cap_bytes: settings.serial_log_cap_bytes,
        qemu_user: settings.qemu_user.clone(),
    }
}

/// The settings of a directory being opened. Those it lacks (it is new, or
/// was made before vman had settings) are written first, from what the
/// opener asked for or the defaults. Writing them records no event: the
/// history of a new directory starts with what its user did, and a
/// setting's row says when it was written. Then every value the opener
/// asked for must equal the directory's: [`Error::SettingConflict`] names
/// the first that does not.
///
/// `requests` are normalized ([`SettingKey::normalize`]).
pub(crate) fn at_open(store: &Store, requests: &[(SettingKey, String)]) -> Result<Settings> {
    let asked = |key: SettingKey| requests.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    let mut stored = store.read(|tx| store::settings(tx))?;
    // Making a directory bridged needs the privilege bridged networking
    // needs; opening one that is already bridged does not.
    if !stored.contains_key(SettingKey::Network.as_str()) && asked(SettingKey::Network).as_deref() == Some(NetworkMode::Bridged.as_str()) {
        require_net_admin()?;
    }
    if SettingKey::ALL.iter().any(|k| !stored.contains_key(k.as_str())) {
        let initial: Vec<(SettingKey, String)> =
            SettingKey::ALL.into_iter().map(|k| Ok((k, asked(k).map_or_else(|| k.default_value(), Ok)?))).collect::<Result<_>>()?;
        // Re-read under the write lock: another process may be making the
        // same directory; the first one's values stand.
        stored = store.write(|tx| {
            let mut stored = store::settings(tx)?;
            let now = now_ms();
            for (key, value) in &initial {
                if !stored.contains_key(key.as_str()) {
                    store::put_setting(tx, key.as_str(), value, now)?;
                    stored.insert(key.as_str().to_string(), value.clone());
                }
            }
            Ok(stored)
        })?;
    }
    for (key, requested) in requests {
        if let Some(kept) = stored.get(key.as_str())
            && kept != requested
        {
            return Err(Error::SettingConflict { key: key.as_str(), stored: kept.clone(), requested: requested.clone() });
        }
    }
    Settings::from_stored(&stored)
}

/// Takes the directory's settings as they are now into this manager (its
/// runtime and network mode): run before a VM starts and when the
/// reconciler runs, since another manager may have changed them. When
/// QEMU's user changed, the files QEMU opens get its group.
pub(crate) fn refresh(ctx: &Inner) -> Result<Settings> {
    let settings = read(ctx)?;
    let mode = resolve_mode(settings.network);
    if ctx.runtime().configure(ctx.state_dir(), &runtime_config(&settings))? {
        share_files_with_qemu(ctx)?;
    }
    ctx.set_network_mode(mode);
    Ok(settings)
}

/// The directory's settings as the store holds them.
pub(crate) fn read(ctx: &Inner) -> Result<Settings> {
    ctx.store().read(|tx| Settings::from_stored(&store::settings(tx)?))
}

/// Gives every file QEMU opens (disks, images, seeds, UEFI variables,
/// wherever they lie) the QEMU user's group, if it has another. Run at open
/// and after the QEMU user changed: a change whose process died before it
/// got here is finished by the next opener.
pub(crate) fn share_files_with_qemu(ctx: &Inner) -> Result<()> {
    if ctx.runtime().values().qemu_creds.is_none() {
        return Ok(());
    }
    let mut files: Vec<PathBuf> = ctx.store().read(|tx| {
        let disks = store::list_disks(tx, &DiskFilter::default())?;
        let images = store::list_images(tx)?;
        Ok(disks.into_iter().map(|d| d.path).chain(images.into_iter().map(|i| i.path)).map(PathBuf::from).collect())
    })?;
    for dir in STORAGE_DIRS {
        if let Ok(entries) = std::fs::read_dir(ctx.state_dir().join(dir)) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files.sort();
    files.dedup();
    for file in &files {
        ctx.runtime().regroup_for_qemu(file)?;
    }
    Ok(())
}
