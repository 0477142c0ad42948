//! The node's SQLite database: the only module that uses rusqlite.
//!
//! Migrations are append-only (never edit one that has shipped; add the next) and each says why
//! it exists. PRAGMAs are set on every connection, outside migrations. Calls here block: async
//! code reaches the store through `spawn_blocking`, never directly on the runtime.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("データベース {path} を開けません: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("データベースの操作に失敗しました: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "データベースの版 {found} はこの kaigo-field（対応 {known} まで）より新しいものです。kaigo-field を更新してください"
    )]
    TooNew { found: i64, known: i64 },
}

struct Migration {
    why: &'static str,
    sql: &'static str,
}

/// Append only. The index + 1 is the schema version kept in `PRAGMA user_version`.
const MIGRATIONS: &[Migration] = &[Migration {
    why: "v1: the node's identity and the snapshots it holds (file name and signed manifest; the \
          encrypted data stays in the verified file, which this database never decrypts)",
    sql: "
        CREATE TABLE node_meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        CREATE TABLE snapshot (
            snapshot_id      TEXT PRIMARY KEY,
            snapshot_version INTEGER NOT NULL,
            manifest         TEXT NOT NULL,
            file_name        TEXT NOT NULL,
            imported_at      TEXT NOT NULL,
            is_current       INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1))
        ) STRICT;
        CREATE UNIQUE INDEX snapshot_one_current ON snapshot (is_current) WHERE is_current = 1;
    ",
}];

pub struct Store {
    conn: Connection,
}

/// The snapshot a node holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSnapshot {
    pub snapshot_id: String,
    pub snapshot_version: u64,
    pub manifest_json: String,
    pub file_name: String,
    pub imported_at: DateTime<Utc>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::configure(&conn)?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    fn configure(conn: &Connection) -> Result<(), StoreError> {
        // WAL: readers never block the writer. synchronous=FULL: a committed transaction survives
        // power loss, which the audit log (and an atomic snapshot switch) rely on.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let found: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction()?;
            tracing::debug!(version = i + 1, why = m.why, "applying migration");
            tx.execute_batch(m.sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM node_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO node_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn current_snapshot(&self) -> Result<Option<HeldSnapshot>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT snapshot_id, snapshot_version, manifest, file_name, imported_at
                 FROM snapshot WHERE is_current = 1",
                [],
                |r| {
                    Ok(HeldSnapshot {
                        snapshot_id: r.get(0)?,
                        snapshot_version: r.get::<_, i64>(1)? as u64,
                        manifest_json: r.get(2)?,
                        file_name: r.get(3)?,
                        imported_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Makes `new` the current snapshot in one transaction and forgets the previous one, whose
    /// file name is returned so the caller can delete the file after the commit.
    pub fn switch_snapshot(&mut self, new: &HeldSnapshot) -> Result<Option<String>, StoreError> {
        let tx = self.conn.transaction()?;
        let old: Option<String> = tx
            .query_row(
                "SELECT file_name FROM snapshot WHERE is_current = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute("DELETE FROM snapshot WHERE is_current = 1", [])?;
        tx.execute(
            "INSERT INTO snapshot (snapshot_id, snapshot_version, manifest, file_name, imported_at, is_current)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)",
            params![new.snapshot_id, new.snapshot_version as i64, new.manifest_json, new.file_name, new.imported_at],
        )?;
        tx.commit()?;
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_meta_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let s = Store::open(&path).unwrap();
            s.set_meta("node_id", "n1").unwrap();
            s.set_meta("node_id", "n2").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.meta("node_id").unwrap().as_deref(), Some("n2"));
        assert_eq!(s.meta("missing").unwrap(), None);
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn switching_snapshots_keeps_exactly_one_current() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("node.db")).unwrap();
        let held = |v: u64| HeldSnapshot {
            snapshot_id: format!("id{v}"),
            snapshot_version: v,
            manifest_json: "{}".into(),
            file_name: format!("f{v}"),
            imported_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        assert_eq!(s.switch_snapshot(&held(1)).unwrap(), None);
        assert_eq!(s.switch_snapshot(&held(2)).unwrap(), Some("f1".into()));
        assert_eq!(s.current_snapshot().unwrap().unwrap(), held(2));
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
