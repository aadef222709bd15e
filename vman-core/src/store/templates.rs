use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::template::{Template, TemplateSpec};

const COLUMNS: &str = "id, name, vcpus, memory_mib, disk_gib, description, created_at_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Template> {
    Ok(Template {
        id: row.get(0)?,
        name: row.get(1)?,
        vcpus: row.get(2)?,
        memory_mib: row.get(3)?,
        disk_gib: row.get(4)?,
        description: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}

pub(crate) fn insert_template(tx: &Connection, spec: &TemplateSpec, now_ms: i64) -> Result<Template> {
    if template_by_name(tx, &spec.name)?.is_some() {
        return Err(Error::AlreadyExists { kind: "template", field: "name", value: spec.name.clone() });
    }
    tx.execute(
        "INSERT INTO templates (name, vcpus, memory_mib, disk_gib, description, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![spec.name, spec.vcpus, spec.memory_mib, spec.disk_gib, spec.description, now_ms],
    )?;
    Ok(Template {
        id: tx.last_insert_rowid(),
        name: spec.name.clone(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        disk_gib: spec.disk_gib,
        description: spec.description.clone(),
        created_at_ms: now_ms,
    })
}

pub(crate) fn template_by_name(conn: &Connection, name: &str) -> Result<Option<Template>> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM templates WHERE name = ?1"), [name], from_row).optional()?)
}

pub(crate) fn list_templates(conn: &Connection) -> Result<Vec<Template>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM templates ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes a template no live VM uses; returns what was deleted.
pub(crate) fn delete_template(tx: &Connection, name: &str) -> Result<Template> {
    let template = template_by_name(tx, name)?.ok_or_else(|| Error::not_found("template", name))?;
    let users: Vec<String> = {
        let mut stmt = tx.prepare("SELECT name FROM vms WHERE template_id = ?1 AND deleted_at_ms IS NULL ORDER BY name LIMIT 4")?;
        stmt.query_map([template.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    if !users.is_empty() {
        return Err(Error::InUse { kind: "Template", name: name.to_string(), user: describe_users("VM", &users) });
    }
    tx.execute("DELETE FROM templates WHERE id = ?1", [template.id])?;
    Ok(template)
}

/// "VM a, b, c and others" — at most three names, to keep messages short.
pub(crate) fn describe_users(kind: &str, names: &[String]) -> String {
    let shown = names.iter().take(3).map(String::as_str).collect::<Vec<_>>().join(", ");
    if names.len() > 3 { format!("{kind} {shown} and others") } else { format!("{kind} {shown}") }
}
