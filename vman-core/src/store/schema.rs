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
    // 5: storage and guest configuration: disk images, the image catalogue,
    // snapshots, SSH keys, and what a VM boots and shows.
    r#"
-- Base images. Never written once registered: VMs boot from linked clones.
-- `path` is absolute: a file under <state>/images/ (owned = 1, removed with
-- the image) or a caller's file referenced in place (owned = 0).
CREATE TABLE images (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    os            TEXT    NOT NULL DEFAULT '',
    arch          TEXT    NOT NULL DEFAULT 'x86_64',
    description   TEXT    NOT NULL DEFAULT '',
    format        TEXT    NOT NULL CHECK (format IN ('qcow2', 'raw')),
    virtual_size  INTEGER NOT NULL CHECK (virtual_size > 0),
    sha256        TEXT    NOT NULL,
    firmware      TEXT    NOT NULL DEFAULT 'bios' CHECK (firmware IN ('bios', 'uefi')),
    path          TEXT    NOT NULL,
    owned         INTEGER NOT NULL CHECK (owned IN (0, 1)),
    -- 'importing' is written before the copy and hash, 'deleting' before
    -- the file is removed: a crash leaves a row the reconciler finishes.
    state         TEXT    NOT NULL CHECK (state IN ('importing', 'available', 'deleting')),
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Disks. A disk is attached to at most one VM, at a slot that fixes the
-- guest's device order. `image_id` is set for a linked clone (a qcow2
-- overlay on that image); the image cannot be deleted while one exists.
-- The transitional states are intents written before the host work
-- (qemu-img, QMP) and settled after it, or by the reconciler.
CREATE TABLE disks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    format        TEXT    NOT NULL CHECK (format IN ('qcow2', 'raw')),
    size_bytes    INTEGER NOT NULL CHECK (size_bytes > 0),
    path          TEXT    NOT NULL,
    owned         INTEGER NOT NULL CHECK (owned IN (0, 1)),
    image_id      INTEGER REFERENCES images(id),
    state         TEXT    NOT NULL CHECK (state IN
                  ('creating', 'available', 'attaching', 'attached', 'detaching', 'deleting', 'error')),
    vm_id         TEXT    REFERENCES vms(id),
    slot          INTEGER CHECK (slot >= 0),
    -- Made with its VM (a boot disk from an image or template size): deleted with it.
    delete_with_vm INTEGER NOT NULL DEFAULT 0 CHECK (delete_with_vm IN (0, 1)),
    last_error    TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    CHECK ((vm_id IS NULL) = (slot IS NULL)),
    CHECK (state NOT IN ('attaching', 'attached', 'detaching') OR vm_id IS NOT NULL)
) STRICT;
CREATE UNIQUE INDEX disks_by_vm_slot ON disks (vm_id, slot) WHERE vm_id IS NOT NULL;
CREATE INDEX disks_by_image ON disks (image_id) WHERE image_id IS NOT NULL;

-- Snapshots of a VM: one internal qcow2 snapshot of that name on each of
-- its disks (and, when live, the VM's memory).
CREATE TABLE snapshots (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id         TEXT    NOT NULL REFERENCES vms(id),
    name          TEXT    NOT NULL,
    live          INTEGER NOT NULL CHECK (live IN (0, 1)),
    state         TEXT    NOT NULL CHECK (state IN ('creating', 'ready', 'reverting', 'deleting', 'error')),
    created_at_ms INTEGER NOT NULL,
    UNIQUE (vm_id, name)
) STRICT;

-- The SSH key catalogue, and each VM's own copy of the keys it was given
-- (deleting a key from the catalogue leaves the VMs' copies).
CREATE TABLE ssh_keys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL UNIQUE,
    key_type           TEXT    NOT NULL,
    bits               INTEGER NOT NULL,
    public_key         TEXT    NOT NULL,
    comment            TEXT    NOT NULL DEFAULT '',
    fingerprint_sha256 TEXT    NOT NULL,
    fingerprint_md5    TEXT    NOT NULL,
    created_at_ms      INTEGER NOT NULL
) STRICT;
CREATE TABLE vm_ssh_keys (
    vm_id      TEXT    NOT NULL REFERENCES vms(id),
    position   INTEGER NOT NULL CHECK (position >= 0),
    name       TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    PRIMARY KEY (vm_id, position)
) STRICT;

-- How a VM boots and what it shows. firmware: SeaBIOS or OVMF. cdrom: an
-- ISO's absolute path ('' for an empty drive). boot_order: 'disk' or
-- 'cdrom' first. display: off, VNC on a unix socket in the run directory,
-- or VNC on 127.0.0.1 at display_port (chosen at start). cloud_init: a
-- NoCloud seed is made and attached at start, with user_data appended.
ALTER TABLE vms ADD COLUMN firmware     TEXT    NOT NULL DEFAULT 'bios' CHECK (firmware IN ('bios', 'uefi'));
ALTER TABLE vms ADD COLUMN cdrom        TEXT    NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN boot_order   TEXT    NOT NULL DEFAULT 'disk' CHECK (boot_order IN ('disk', 'cdrom'));
ALTER TABLE vms ADD COLUMN display      TEXT    NOT NULL DEFAULT 'none' CHECK (display IN ('none', 'vnc-unix', 'vnc-tcp'));
ALTER TABLE vms ADD COLUMN display_port INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vms ADD COLUMN cloud_init   INTEGER NOT NULL DEFAULT 0 CHECK (cloud_init IN (0, 1));
ALTER TABLE vms ADD COLUMN user_data    TEXT    NOT NULL DEFAULT '';
"#,
    // 6: the settings a state directory keeps for every process that opens
    // it, and batches of VMs provisioned in one call.
    r#"
-- One row per setting (network mode, accelerator, binaries, QEMU user...):
-- written when the directory is made, read by every opener. Keys and
-- values are checked in core; a new setting is a new key, never a new
-- meaning for an old one.
CREATE TABLE settings (
    key           TEXT    PRIMARY KEY,
    value         TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- A batch: N VMs made in one call from one template (and image) with a
-- naming pattern. 'creating' is written before the first VM and settled
-- to 'created' after the last; 'rolling_back' and 'deleting' are intents
-- the reconciler finishes if the process that wrote them died.
CREATE TABLE batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    pattern       TEXT    NOT NULL,
    count         INTEGER NOT NULL CHECK (count > 0),
    state         TEXT    NOT NULL CHECK (state IN ('creating', 'created', 'rolling_back', 'deleting', 'deleted')),
    created_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER,
    CHECK ((state = 'deleted') = (deleted_at_ms IS NOT NULL))
) STRICT;
-- Names are unique among live batches only.
CREATE UNIQUE INDEX batches_live_name ON batches (name) WHERE deleted_at_ms IS NULL;
ALTER TABLE vms ADD COLUMN batch_id INTEGER REFERENCES batches(id);
CREATE INDEX vms_by_batch ON vms (batch_id) WHERE batch_id IS NOT NULL;
"#,
];
