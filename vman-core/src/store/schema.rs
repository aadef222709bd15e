//! Numbered migrations. Rules (deltachat's): STRICT tables, ids never reused
//! (AUTOINCREMENT), a column's meaning never changes, new columns are NOT NULL
//! with a DEFAULT, one migration per version, each in its own transaction.
//! Append only: never edit a migration that has shipped.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: templates, networks with their free-address extents, VMs, NICs, events.
    r#"
CREATE TABLE templates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    vcpus         INTEGER NOT NULL CHECK (vcpus >= 1),
    memory_mib    INTEGER NOT NULL CHECK (memory_mib >= 1),
    disk_gib      INTEGER NOT NULL CHECK (disk_gib >= 1),
    description   TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE networks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    vlan          INTEGER NOT NULL UNIQUE CHECK (vlan BETWEEN 1 AND 4094),
    network_addr  INTEGER NOT NULL,
    prefix_len    INTEGER NOT NULL CHECK (prefix_len BETWEEN 8 AND 30),
    gateway       INTEGER NOT NULL,
    dns           TEXT    NOT NULL DEFAULT '[]',
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE network_reserved (
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    first      INTEGER NOT NULL,
    last       INTEGER NOT NULL CHECK (first <= last),
    PRIMARY KEY (network_id, first)
) STRICT;

-- The allocator's index of what is free: disjoint extents of assignable
-- addresses. Finding, taking, splitting and merging an extent are index
-- lookups, so an allocation costs the same in an empty and a full network.
-- The truth of who holds what is nics(network_id, ip), which is UNIQUE.
CREATE TABLE free_ranges (
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    first      INTEGER NOT NULL,
    last       INTEGER NOT NULL CHECK (first <= last),
    PRIMARY KEY (network_id, first)
) STRICT;
CREATE UNIQUE INDEX free_ranges_by_last ON free_ranges (network_id, last);

CREATE TABLE vms (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    template_id   INTEGER REFERENCES templates(id) ON DELETE SET NULL,
    vcpus         INTEGER NOT NULL,
    memory_mib    INTEGER NOT NULL,
    disk_gib      INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN
                  ('created','starting','running','paused','stopping','stopped','error','deleted')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER,
    CHECK ((state = 'deleted') = (deleted_at_ms IS NOT NULL))
) STRICT;
-- Names are unique among live VMs only: a deleted VM frees its name.
CREATE UNIQUE INDEX vms_live_name ON vms (name) WHERE deleted_at_ms IS NULL;
CREATE INDEX vms_by_template ON vms (template_id) WHERE deleted_at_ms IS NULL;

-- A NIC row exists while its VM does; deleting the VM deletes its NICs and
-- so releases address and MAC in the same transaction. network_id has no
-- ON DELETE: a network with NICs on it cannot be deleted.
CREATE TABLE nics (
    vm_id      TEXT    NOT NULL REFERENCES vms(id),
    slot       INTEGER NOT NULL CHECK (slot >= 0),
    network_id INTEGER NOT NULL REFERENCES networks(id),
    ip         INTEGER NOT NULL,
    mac        TEXT    NOT NULL UNIQUE,
    PRIMARY KEY (vm_id, slot),
    UNIQUE (network_id, ip)
) STRICT;

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    object_kind TEXT    NOT NULL,
    object_id   TEXT    NOT NULL,
    object_name TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}',
    os_user     TEXT    NOT NULL,
    pid         INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_object ON events (object_kind, object_id, id);
"#,
    // 2: what a VM boots (direct kernel boot) and what its QEMU is.
    r#"
ALTER TABLE vms ADD COLUMN kernel     TEXT    NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN initrd     TEXT    NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN cmdline    TEXT    NOT NULL DEFAULT '';
-- The QEMU process while the VM has one (0 otherwise), the accelerator it
-- runs with, and why the last start or run failed.
ALTER TABLE vms ADD COLUMN pid        INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN accel      TEXT    NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN last_error TEXT    NOT NULL DEFAULT '';
CREATE INDEX vms_with_process ON vms (state) WHERE state IN ('starting','running','paused','stopping');
"#,
    // 3: host networking: the interfaces vman makes, and user-mode forwards.
    r#"
-- Host interfaces vman makes. The row is written before the interface is
-- created and removed after it is deleted, so a crash in between leaves
-- something the reconciler can finish or undo; an interface with a vman-like
-- name but no row is someone else's and is never touched.
CREATE TABLE host_links (
    name          TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('bridge', 'tap')),
    network_id    INTEGER NOT NULL REFERENCES networks(id),
    vm_id         TEXT    REFERENCES vms(id),
    slot          INTEGER,
    created_at_ms INTEGER NOT NULL,
    CHECK ((kind = 'tap') = (vm_id IS NOT NULL AND slot IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX host_links_bridge_of_network ON host_links (network_id) WHERE kind = 'bridge';
CREATE INDEX host_links_by_vm ON host_links (vm_id) WHERE kind = 'tap';

-- Host ports forwarded to guests in user mode, chosen at each start.
CREATE TABLE port_forwards (
    vm_id      TEXT    NOT NULL REFERENCES vms(id),
    slot       INTEGER NOT NULL,
    guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),
    host_port  INTEGER NOT NULL UNIQUE CHECK (host_port BETWEEN 1 AND 65535),
    PRIMARY KEY (vm_id, slot, guest_port)
) STRICT;
"#,
    // 4: an optional uplink per network: `<uplink>.<vid>` joins its bridge.
    r#"
ALTER TABLE networks ADD COLUMN uplink TEXT NOT NULL DEFAULT '';
"#,
];
