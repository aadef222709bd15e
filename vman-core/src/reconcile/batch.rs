//! Batches a process left mid-way (`creating`, `rolling_back`,
//! `deleting`): rolled back, or their delete finished, once no live
//! process is at them.
//!
//! The process that creates, rolls back or deletes a batch holds the locks
//! of all its VMs throughout (taken before the batch is recorded), so when
//! every one of them can be taken here, that process is gone. A creation
//! whose creator died is never finished, always undone: the caller got no
//! answer, and a batch is whole or gone.

use crate::batch::state::BatchState;
use crate::context::Inner;
use crate::error::Result;
use crate::reconcile::report::{Drift, ReconcileReport};
use crate::storage::model::DiskState;
use crate::store;

pub(crate) fn reconcile_batches(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    for batch in ctx.store().read(|tx| store::unsettled_batches(tx))? {
        let mut members = ctx.store().read(|tx| store::batch_members(tx, batch.id))?;
        members.sort();
        let mut locks = Vec::with_capacity(members.len());
        for (id, _) in &members {
            match ctx.runtime().try_lock_vm(id) {
                Ok(lock) => locks.push(lock),
                Err(_) => break,
            }
        }
        if locks.len() < members.len() {
            continue; // a live process holds one: it is at the batch (or at one of its VMs)
        }
        // A killed creator's qemu-img dies with it, but a write it had in
        // flight still lands: settle once nobody holds a disk being made.
        let making: Vec<String> = ctx.store().read(|tx| {
            let mut paths = Vec::new();
            for (id, _) in &members {
                paths.extend(store::disks_of_vm(tx, id)?.into_iter().filter(|d| d.state == DiskState::Creating).map(|d| d.path));
            }
            Ok(paths)
        })?;
        if !super::storage::unheld(making.iter().map(String::as_str)) {
            continue; // next time
        }
        let Some(batch) = ctx.store().read(|tx| store::batch_by_id(tx, batch.id))? else { continue };
        if !batch.state.is_intent() {
            continue; // settled by another process meanwhile
        }
        let (via, done) = match batch.state {
            BatchState::Deleting => (BatchState::Deleting, "finished deleting it"),
            _ => (BatchState::RollingBack, "rolled it back"),
        };
        let reason = format!("the process that left it {} died", batch.state);
        let action = match crate::batch::remove_members(ctx, batch.id, &batch.name, batch.state, via, &reason) {
            Ok(deleted) => format!("{done}: deleted {} VM(s)", deleted.len()),
            Err(e) => format!("could not finish (next reconcile will): {}", e.full_message()),
        };
        report.drifts.push(Drift { vm: "-".into(), found: format!("batch {:?} left {}", batch.name, batch.state), action });
        drop(locks);
    }
    Ok(())
}
