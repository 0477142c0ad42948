//! The node's SQLite database: the only module that uses rusqlite.
//!
//! Migrations are append-only (never edit one that has shipped; add the next) and each says why
//! it exists. PRAGMAs are set on every connection, outside migrations. Calls here block: async
//! code reaches the store through `spawn_blocking`, never directly on the runtime.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::audit::{Checkpoint, CheckpointSeal, Entry};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("データベース {path} を開けません: {cause}")]
    Open { path: String, cause: rusqlite::Error },
    #[error("データベースの操作に失敗しました: {0}")]
    Sql(rusqlite::Error),
    /// The disk is full (or the file system refuses the database's shared-memory file, which is
    /// how a full disk shows at start): said plainly, with what to do.
    #[error(
        "ディスクがいっぱいで、データベースに書けません（{0}）。不要なファイルを消すか、空きのあるディスクに移してから、もう一度起動してください。監査ログに書けない間は何も出しません"
    )]
    DiskFull(rusqlite::Error),
    #[error(
        "データベース {path} を本人だけが読めるようにできません: {cause}。ファイルの持ち主と権限を確かめてください"
    )]
    Private { path: String, cause: std::io::Error },
    #[error(
        "データベースの版 {found} はこの kaigo-field（対応 {known} まで）より新しいものです。kaigo-field を更新してください"
    )]
    TooNew { found: i64, known: i64 },
    /// An append whose entries do not follow the log's head (a writer bug, or two writers at one
    /// head): refused, nothing written.
    #[error("監査ログの記録 {seq} が、ログの末尾（{head}）につながっていません。書き込みをやめました")]
    NotChained { seq: u64, head: u64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi;
        let full = match &e {
            rusqlite::Error::SqliteFailure(f, _) => {
                f.code == rusqlite::ErrorCode::DiskFull
                    || [ffi::SQLITE_IOERR_SHMMAP, ffi::SQLITE_IOERR_SHMSIZE, ffi::SQLITE_IOERR_SHMOPEN]
                        .contains(&f.extended_code)
            }
            _ => false,
        };
        if full { StoreError::DiskFull(e) } else { StoreError::Sql(e) }
    }
}

struct Migration {
    why: &'static str,
    sql: &'static str,
}

/// Append only. The index + 1 is the schema version kept in `PRAGMA user_version`.
const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        why: "v2: disaster-area authorizations (the text code, and so the wrapped data key, is kept \
              only while active), the trusted-time high-water mark with the coordinator's forward \
              offset, and the record of clock moves",
        sql: "
        CREATE TABLE authorization (
            id            TEXT PRIMARY KEY,
            serial        INTEGER NOT NULL,
            code          TEXT,
            disaster      TEXT NOT NULL,
            not_before    TEXT NOT NULL,
            not_after     TEXT NOT NULL,
            drill         INTEGER NOT NULL CHECK (drill IN (0, 1)),
            state         TEXT NOT NULL CHECK (state IN ('active', 'closed')),
            closed_reason TEXT,
            updated_at    TEXT NOT NULL,
            CHECK ((state = 'active') = (code IS NOT NULL))
        ) STRICT;
        CREATE UNIQUE INDEX authorization_one_active ON authorization (state) WHERE state = 'active';
        CREATE TABLE trusted_time (
            singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
            high_water     TEXT NOT NULL,
            offset_seconds INTEGER NOT NULL CHECK (offset_seconds >= 0)
        ) STRICT;
        CREATE TABLE clock_move (
            seq       INTEGER PRIMARY KEY,
            moved_at  TEXT NOT NULL,
            from_time TEXT NOT NULL,
            to_time   TEXT NOT NULL
        ) STRICT;
    ",
    },
    Migration {
        why: "v3: the audit log (a hash chain of entries) and the node-signed checkpoints over it; \
              triggers refuse updates and deletes, so a careless operator cannot change history \
              (a deliberate one is caught by the chain and the signatures)",
        sql: "
        CREATE TABLE audit (
            seq        INTEGER PRIMARY KEY,
            wall_time  TEXT NOT NULL,
            mono_ms    INTEGER NOT NULL,
            boot_id    TEXT NOT NULL,
            operator   TEXT NOT NULL,
            facility   TEXT,
            role       TEXT,
            action     TEXT NOT NULL,
            subjects   TEXT NOT NULL,
            query_hash TEXT,
            purpose    TEXT,
            outcome    TEXT NOT NULL,
            detail     TEXT NOT NULL,
            prev_hash  TEXT NOT NULL,
            hash       TEXT NOT NULL
        ) STRICT;
        CREATE TABLE audit_checkpoint (
            seq       INTEGER PRIMARY KEY,
            head_hash TEXT NOT NULL,
            wall_time TEXT NOT NULL,
            signature TEXT NOT NULL
        ) STRICT;
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    ",
    },
    Migration {
        why: "v4: enrolled staff (operators): who may search, for which facility and role; the \
              one-time login code (argon2) and the API token (SHA-256 of 32 random bytes) are \
              stored only hashed",
        sql: "
        CREATE TABLE staff (
            id               TEXT PRIMARY KEY,
            name             TEXT NOT NULL,
            facility         TEXT NOT NULL,
            role             TEXT NOT NULL CHECK (role IN ('support', 'receiving', 'coordinator')),
            login_code_hash  TEXT,
            token_hash       TEXT NOT NULL UNIQUE,
            enrolled_at      TEXT NOT NULL,
            revoked_at       TEXT
        ) STRICT;
    ",
    },
    Migration {
        why: "v5: the web app. Staff set their own PIN or passphrase (argon2) after the one-time \
              code; failed logins lock an account for a while; staff enrolled under an \
              authorization lose access when it ends. Sessions are stored by the SHA-256 of their \
              cookie. Field events (whereabouts, handover notes) are sealed under the data key \
              of the authorization in force: only the pseudonymous person id is in clear.",
        sql: "
        ALTER TABLE staff ADD COLUMN secret_hash TEXT;
        ALTER TABLE staff ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE staff ADD COLUMN locked_until TEXT;
        ALTER TABLE staff ADD COLUMN authorization_id TEXT;
        CREATE TABLE session (
            token_hash   TEXT PRIMARY KEY,
            staff_id     TEXT NOT NULL REFERENCES staff (id),
            csrf         TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            last_seen    TEXT NOT NULL
        ) STRICT;
        CREATE TABLE session_purpose (
            token_hash   TEXT NOT NULL REFERENCES session (token_hash) ON DELETE CASCADE,
            person_id    TEXT NOT NULL,
            purpose      TEXT NOT NULL,
            at           TEXT NOT NULL,
            PRIMARY KEY (token_hash, person_id)
        ) STRICT;
        CREATE TABLE field_event (
            seq          INTEGER PRIMARY KEY,
            person_id    TEXT NOT NULL,
            staff_id     TEXT NOT NULL,
            facility     TEXT NOT NULL,
            at           TEXT NOT NULL,
            data_key_id  TEXT NOT NULL,
            sealed       BLOB NOT NULL
        ) STRICT;
        CREATE INDEX field_event_person ON field_event (person_id, seq);
    ",
    },
    Migration {
        why: "v6: forward-secure sealing of the audit log. Each checkpoint also carries the seal \
              epoch and an HMAC under that epoch's key, which evolves and is erased, and whose \
              first value only the central keeps: a thief with the node's keys cannot reseal \
              history. Columns are added (the triggers forbid changing rows, not the table); \
              checkpoints written before have none and no longer verify.",
        sql: "
        ALTER TABLE audit_checkpoint ADD COLUMN epoch INTEGER CHECK (epoch >= 0);
        ALTER TABLE audit_checkpoint ADD COLUMN seal TEXT;
    ",
    },
];

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

/// Creates the database file with mode 0600 before SQLite does (it would create it 0644 under
/// the usual umask), and takes group and other permissions off an existing one and its `-wal`
/// and `-shm` files. SQLite gives the `-wal` and `-shm` files it creates the database file's
/// mode, so they too are the owner's only.
fn make_private(path: &Path) -> Result<(), StoreError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |cause| StoreError::Private { path, cause }
    };
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(err(path))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(file, fs::Permissions::from_mode(meta.permissions().mode() & 0o700))
                    .map_err(err(file))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(file)(e)),
        }
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        make_private(path)?;
        let conn =
            Connection::open(path).map_err(|cause| StoreError::Open { path: path.display().to_string(), cause })?;
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
        // Deleted content (a closed authorization's code, and with it the wrapped data key) is
        // overwritten, not left in free pages for whoever copies the disk.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    /// Runs `f` as one unit: its own `BEGIN IMMEDIATE` transaction, or a savepoint inside the
    /// transaction the caller already holds (a state change made inside
    /// `ChainWriter::commit`, so it commits with its audit entry or not at all).
    fn atomically<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let outer = self.conn.is_autocommit();
        self.conn.execute_batch(if outer { "BEGIN IMMEDIATE" } else { "SAVEPOINT atomically" })?;
        match f(&self.conn) {
            Ok(t) => {
                self.conn.execute_batch(if outer { "COMMIT" } else { "RELEASE atomically" })?;
                Ok(t)
            }
            Err(e) => {
                let undo = if outer { "ROLLBACK" } else { "ROLLBACK TO atomically; RELEASE atomically" };
                // A failed rollback leaves the connection unusable, which the next statement reports.
                let _ = self.conn.execute_batch(undo);
                Err(e)
            }
        }
    }

    /// Whether a transaction is open on this connection (a change waiting for its audit entry).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let found: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tracing::debug!(version = i + 1, why = m.why, "applying migration");
            tx.execute_batch(m.sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row("SELECT value FROM node_meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
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
    pub fn switch_snapshot(&self, new: &HeldSnapshot) -> Result<Option<String>, StoreError> {
        self.atomically(|tx| {
            let old: Option<String> =
                tx.query_row("SELECT file_name FROM snapshot WHERE is_current = 1", [], |r| r.get(0)).optional()?;
            tx.execute("DELETE FROM snapshot WHERE is_current = 1", [])?;
            tx.execute(
                "INSERT INTO snapshot (snapshot_id, snapshot_version, manifest, file_name, imported_at, is_current)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                params![
                    new.snapshot_id,
                    new.snapshot_version as i64,
                    new.manifest_json,
                    new.file_name,
                    new.imported_at
                ],
            )?;
            Ok(old)
        })
    }
}

/// An authorization as the node keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRow {
    pub id: String,
    pub serial: u32,
    /// The text code while active; None once closed (the wrapped key is then gone from disk).
    pub code: Option<String>,
    pub disaster: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub drill: bool,
    pub active: bool,
    pub closed_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const AUTHZ_COLUMNS: &str =
    "id, serial, code, disaster, not_before, not_after, drill, state, closed_reason, updated_at";

fn authz_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthorizationRow> {
    Ok(AuthorizationRow {
        id: r.get(0)?,
        serial: r.get::<_, i64>(1)? as u32,
        code: r.get(2)?,
        disaster: r.get(3)?,
        not_before: r.get(4)?,
        not_after: r.get(5)?,
        drill: r.get::<_, i64>(6)? == 1,
        active: r.get::<_, String>(7)? == "active",
        closed_reason: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// A coordinator's forward move of the node's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockMove {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The trusted-time record: the latest time the node has reason to believe, and how far the
/// coordinator has moved the clock forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedTime {
    pub high_water: Option<DateTime<Utc>>,
    pub offset_seconds: i64,
}

impl Store {
    pub fn authorization(&self, id: &str) -> Result<Option<AuthorizationRow>, StoreError> {
        let sql = format!("SELECT {AUTHZ_COLUMNS} FROM authorization WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], authz_row).optional()?)
    }

    /// The latest not-after of any authorization this node has held or refused as ended.
    pub fn latest_not_after(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT not_after FROM authorization")?;
        let ends = stmt.query_map([], |r| r.get::<_, DateTime<Utc>>(0))?;
        let mut latest = None;
        for end in ends {
            latest = latest.max(Some(end?));
        }
        Ok(latest)
    }

    pub fn active_authorization(&self) -> Result<Option<AuthorizationRow>, StoreError> {
        let sql = format!("SELECT {AUTHZ_COLUMNS} FROM authorization WHERE state = 'active'");
        Ok(self.conn.query_row(&sql, [], authz_row).optional()?)
    }

    /// The most recently changed authorization, active or not: what the status page reports.
    pub fn latest_authorization(&self) -> Result<Option<AuthorizationRow>, StoreError> {
        let sql = format!(
            "SELECT {AUTHZ_COLUMNS} FROM authorization ORDER BY state = 'active' DESC, updated_at DESC LIMIT 1"
        );
        Ok(self.conn.query_row(&sql, [], authz_row).optional()?)
    }

    /// Records an authorization. If it is active, any other active one is closed with
    /// `replaced_reason` in the same transaction: at most one is ever in force.
    pub fn put_authorization(&self, row: &AuthorizationRow, replaced_reason: &str) -> Result<(), StoreError> {
        assert_eq!(row.active, row.code.is_some(), "an authorization keeps its code exactly while active");
        self.atomically(|tx| self.put_authorization_in(tx, row, replaced_reason))?;
        self.forget_old_pages()
    }

    fn put_authorization_in(
        &self,
        tx: &Connection,
        row: &AuthorizationRow,
        replaced_reason: &str,
    ) -> Result<(), StoreError> {
        if row.active {
            tx.execute(
                "UPDATE authorization SET state = 'closed', code = NULL, closed_reason = ?1, updated_at = ?2
                 WHERE state = 'active' AND id != ?3",
                params![replaced_reason, row.updated_at, row.id],
            )?;
        }
        tx.execute(
            &format!(
                "INSERT INTO authorization ({AUTHZ_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, code = excluded.code,
                   disaster = excluded.disaster, not_before = excluded.not_before,
                   not_after = excluded.not_after, drill = excluded.drill, state = excluded.state,
                   closed_reason = excluded.closed_reason, updated_at = excluded.updated_at"
            ),
            params![
                row.id,
                i64::from(row.serial),
                row.code,
                row.disaster,
                row.not_before,
                row.not_after,
                i64::from(row.drill),
                if row.active { "active" } else { "closed" },
                row.closed_reason,
                row.updated_at
            ],
        )?;
        Ok(())
    }

    /// Closes the active authorization, forgetting its code (and so its wrapped key).
    pub fn close_active_authorization(&self, reason: &str, at: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let id = self.atomically(|tx| {
            let id: Option<String> =
                tx.query_row("SELECT id FROM authorization WHERE state = 'active'", [], |r| r.get(0)).optional()?;
            tx.execute(
                "UPDATE authorization SET state = 'closed', code = NULL, closed_reason = ?1, updated_at = ?2
                 WHERE state = 'active'",
                params![reason, at],
            )?;
            Ok(id)
        })?;
        if id.is_some() {
            self.forget_old_pages()?;
        }
        Ok(id)
    }

    /// Copies the WAL into the database and empties it, so that no old version of a page (with a
    /// forgotten code in it) stays in the WAL file. Inside a transaction this cannot run: the
    /// caller runs it again once the transaction has committed (`ChainWriter::commit` does).
    pub fn forget_old_pages(&self) -> Result<(), StoreError> {
        if self.in_transaction() {
            return Ok(());
        }
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn trusted_time(&self) -> Result<TrustedTime, StoreError> {
        let row: Option<(DateTime<Utc>, i64)> = self
            .conn
            .query_row("SELECT high_water, offset_seconds FROM trusted_time", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match row {
            Some((hw, offset)) => TrustedTime { high_water: Some(hw), offset_seconds: offset },
            None => TrustedTime { high_water: None, offset_seconds: 0 },
        })
    }

    /// Raises the high-water mark to `t` if `t` is later; never lowers it.
    pub fn raise_high_water(&self, t: DateTime<Utc>) -> Result<(), StoreError> {
        // The comparison is made in SQL, so two writers can never lower the mark between a read
        // and a write.
        self.conn.execute(
            "INSERT INTO trusted_time (singleton, high_water, offset_seconds) VALUES (1, ?1, 0)
             ON CONFLICT (singleton) DO UPDATE SET high_water = excluded.high_water
             WHERE trusted_time.high_water < excluded.high_water",
            params![t],
        )?;
        Ok(())
    }

    /// Records a forward clock move: the new offset, the high-water mark at the new time, and
    /// the move itself, in one transaction.
    pub fn move_clock(&self, from: DateTime<Utc>, to: DateTime<Utc>, offset_seconds: i64) -> Result<(), StoreError> {
        assert!(to > from && offset_seconds >= 0, "the clock only moves forward");
        self.atomically(|tx| {
            let high_water = self.trusted_time()?.high_water.map_or(to, |hw| hw.max(to));
            tx.execute(
                "INSERT INTO trusted_time (singleton, high_water, offset_seconds) VALUES (1, ?1, ?2)
             ON CONFLICT (singleton) DO UPDATE SET high_water = excluded.high_water,
               offset_seconds = excluded.offset_seconds",
                params![high_water, offset_seconds],
            )?;
            tx.execute("INSERT INTO clock_move (moved_at, from_time, to_time) VALUES (?1, ?1, ?2)", params![from, to])?;
            // A correction of the clock is not time spent: sessions move with it, so nobody is
            // signed out as idle because the coordinator set the time right.
            let shift = to - from;
            let sessions: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = tx
                .prepare("SELECT token_hash, created_at, last_seen FROM session")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (hash, created, seen) in sessions {
                tx.execute(
                    "UPDATE session SET created_at = ?2, last_seen = ?3 WHERE token_hash = ?1",
                    params![hash, created + shift, seen + shift],
                )?;
            }
            Ok(())
        })
    }

    /// Every forward move of the node's clock: (from, to).
    pub fn clock_moves(&self) -> Result<Vec<ClockMove>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT from_time, to_time FROM clock_move ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok(ClockMove { from: r.get(0)?, to: r.get(1)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const AUDIT_COLUMNS: &str = "seq, wall_time, mono_ms, boot_id, operator, facility, role, action, subjects, \
                             query_hash, purpose, outcome, detail, prev_hash, hash";

fn audit_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let subjects: String = r.get(8)?;
    Ok(Entry {
        seq: r.get::<_, i64>(0)? as u64,
        wall_time: r.get(1)?,
        mono_ms: r.get::<_, i64>(2)? as u64,
        boot_id: r.get(3)?,
        operator: r.get(4)?,
        facility: r.get(5)?,
        role: r.get(6)?,
        action: r.get(7)?,
        subjects: if subjects.is_empty() { Vec::new() } else { subjects.split(',').map(str::to_owned).collect() },
        query_hash: r.get(9)?,
        purpose: r.get(10)?,
        outcome: r.get(11)?,
        detail: r.get(12)?,
        prev_hash: r.get(13)?,
        hash: r.get(14)?,
    })
}

const CHECKPOINT_COLUMNS: &str = "seq, head_hash, wall_time, signature, epoch, seal";

fn audit_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    let epoch: Option<i64> = r.get(4)?;
    let mac: Option<String> = r.get(5)?;
    Ok(Checkpoint {
        seq: r.get::<_, i64>(0)? as u64,
        head_hash: r.get(1)?,
        wall_time: r.get(2)?,
        signature: r.get(3)?,
        seal: epoch.zip(mac).map(|(epoch, mac)| CheckpointSeal { epoch: epoch as u64, mac }),
    })
}

impl Store {
    /// The last entry's number and hash.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    /// Appends entries and their checkpoint in one transaction; with `synchronous=FULL` the
    /// commit returns only once it is on disk.
    pub fn append_audit(&self, entries: &[Entry], checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.append_audit_with(|_| Ok::<_, StoreError>((entries.to_vec(), checkpoint.clone(), ())))
    }

    /// Appends what `build` makes, in one write transaction begun before `build` reads anything
    /// (`BEGIN IMMEDIATE`): the head it chains to is the head when it commits, whoever else
    /// writes the log (the server's writer, a command run beside it). `build` may change the
    /// node's state first (through this store's methods, which then nest as savepoints): the
    /// change and its entries commit together or not at all. Nothing is written if `build` or
    /// the commit fails.
    pub fn append_audit_with<T, E: From<StoreError>>(
        &self,
        build: impl FnOnce(&Store) -> Result<(Vec<Entry>, Checkpoint, T), E>,
    ) -> Result<T, E> {
        assert!(self.conn.is_autocommit(), "an audit append is never nested in another transaction");
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::from)?;
        let result = build(self).and_then(|(entries, checkpoint, out)| {
            self.insert_audit(&entries, &checkpoint)?;
            self.conn.execute_batch("COMMIT").map_err(StoreError::from)?;
            Ok(out)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // Nothing of the batch may stay half-written; a failed rollback leaves the
            // connection unusable, which the next statement reports.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// The inserts of `append_audit_with`, inside its transaction: only entries that follow the
    /// head read here, in this transaction, each chained to the one before.
    fn insert_audit(&self, entries: &[Entry], checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let (mut seq, mut prev) = self.audit_head()?.unwrap_or((0, hex::encode(crate::audit::GENESIS)));
        let head = seq;
        for e in entries {
            if e.seq != seq + 1 || e.prev_hash != prev {
                return Err(StoreError::NotChained { seq: e.seq, head });
            }
            (seq, prev) = (e.seq, e.hash.clone());
        }
        let tx = &self.conn;
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?;
            for e in entries {
                insert.execute(params![
                    e.seq as i64,
                    e.wall_time,
                    e.mono_ms as i64,
                    e.boot_id,
                    e.operator,
                    e.facility,
                    e.role,
                    e.action,
                    e.subjects.join(","),
                    e.query_hash,
                    e.purpose,
                    e.outcome,
                    e.detail,
                    e.prev_hash,
                    e.hash
                ])?;
            }
            tx.execute(
                "INSERT INTO audit_checkpoint (seq, head_hash, wall_time, signature, epoch, seal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (seq) DO NOTHING",
                params![
                    checkpoint.seq as i64,
                    checkpoint.head_hash,
                    checkpoint.wall_time,
                    checkpoint.signature,
                    checkpoint.seal.as_ref().map(|s| s.epoch as i64),
                    checkpoint.seal.as_ref().map(|s| s.mac.as_str())
                ],
            )?;
        }
        Ok(())
    }

    /// Entries from `from` on, in order.
    pub fn audit_entries(&self, from: u64) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq >= ?1 ORDER BY seq"))?;
        let rows = stmt.query_map([from as i64], audit_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` entries before sequence `before` (or the newest), newest first.
    pub fn audit_page(&self, before: Option<u64>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let before = before.map_or(i64::MAX, |b| b as i64);
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"))?;
        let rows = stmt.query_map(params![before, limit as i64], audit_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Who searched at or after `since` (RFC 3339, as entries store their time), one row per
    /// search, looking back over at most the newest `RATE_SEED_ENTRIES_MAX` entries: what a
    /// restarted node needs to go on counting searches per operator.
    pub fn searches_since(&self, since: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT operator, wall_time FROM audit
             WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM audit) - ?1 AND action = 'search' AND wall_time >= ?2
             ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![crate::limits::RATE_SEED_ENTRIES_MAX as i64, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every entry naming `person`.
    pub fn audit_entries_for(&self, person: &str) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE instr(',' || subjects || ',', ',' || ?1 || ',') > 0 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([person], audit_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY seq"))?;
        let rows = stmt.query_map([], audit_checkpoint)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Hands `f` the entries after `after` and the checkpoints after `after`, each in `seq`
    /// order, read row by row inside one read transaction: a verification sees one consistent
    /// state of the log however long it takes and whatever a writer commits meanwhile, and holds
    /// one row at a time, however long the log. Also the hash of entry `after` as it is now (if
    /// `after` > 0), for a verification that resumes there.
    pub fn audit_stream<T>(
        &self,
        after: u64,
        f: impl FnOnce(Option<String>, AuditRows<'_, Entry>, AuditRows<'_, Checkpoint>) -> T,
    ) -> Result<T, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let at_anchor: Option<String> = if after == 0 {
            None
        } else {
            tx.query_row("SELECT hash FROM audit WHERE seq = ?1", [after as i64], |r| r.get(0)).optional()?
        };
        let mut entries = tx.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq"))?;
        let mut checkpoints =
            tx.prepare(&format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint WHERE seq > ?1 ORDER BY seq"))?;
        let entry_rows = entries.query_map([after as i64], audit_entry)?;
        let checkpoint_rows = checkpoints.query_map([after as i64], audit_checkpoint)?;
        let out = f(
            at_anchor,
            Box::new(entry_rows.map(|r| r.map_err(StoreError::from))),
            Box::new(checkpoint_rows.map(|r| r.map_err(StoreError::from))),
        );
        drop(entries);
        drop(checkpoints);
        tx.commit()?;
        Ok(out)
    }

    /// The newest checkpoint: where the writer takes the seal epoch from.
    pub fn audit_last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY seq DESC LIMIT 1"),
                [],
                audit_checkpoint,
            )
            .optional()?)
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// Rows of the audit log as `Store::audit_stream` hands them out, one at a time.
pub type AuditRows<'a, T> = Box<dyn Iterator<Item = Result<T, StoreError>> + 'a>;

/// Whether a sign-in may be checked now (`Store::claim_login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Claimed {
        failures: u32,
    },
    /// Resting after failures, or being checked by another attempt, until then.
    Held {
        until: DateTime<Utc>,
    },
    NoSuchStaff,
}

/// An enrolled operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRow {
    pub id: String,
    pub name: String,
    /// 事業所番号; empty for the node's own coordinator.
    pub facility: String,
    pub role: String,
    /// The one-time enrolment code, until the person has set their own PIN or passphrase.
    pub login_code_hash: Option<String>,
    pub token_hash: String,
    pub enrolled_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The PIN or passphrase the person set (argon2).
    pub secret_hash: Option<String>,
    pub failures: u32,
    pub locked_until: Option<DateTime<Utc>>,
    /// The authorization the person was enrolled under: their access ends with it. `None` only
    /// for the coordinator made at `node init`.
    pub authorization_id: Option<String>,
}

const STAFF_COLUMNS: &str = "id, name, facility, role, login_code_hash, token_hash, enrolled_at, revoked_at, \
                             secret_hash, failures, locked_until, authorization_id";

fn staff_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StaffRow> {
    Ok(StaffRow {
        id: r.get(0)?,
        name: r.get(1)?,
        facility: r.get(2)?,
        role: r.get(3)?,
        login_code_hash: r.get(4)?,
        token_hash: r.get(5)?,
        enrolled_at: r.get(6)?,
        revoked_at: r.get(7)?,
        secret_hash: r.get(8)?,
        failures: r.get(9)?,
        locked_until: r.get(10)?,
        authorization_id: r.get(11)?,
    })
}

/// A signed-in browser, by the SHA-256 of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub staff_id: String,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// A whereabouts or handover note, as stored: sealed under the data key named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldEventRow {
    pub seq: i64,
    pub person_id: String,
    pub staff_id: String,
    pub facility: String,
    pub at: DateTime<Utc>,
    pub data_key_id: String,
    pub sealed: Vec<u8>,
}

impl Store {
    pub fn add_staff(&self, s: &StaffRow) -> Result<(), StoreError> {
        self.conn.execute(
            &format!("INSERT INTO staff ({STAFF_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                s.id,
                s.name,
                s.facility,
                s.role,
                s.login_code_hash,
                s.token_hash,
                s.enrolled_at,
                s.revoked_at,
                s.secret_hash,
                s.failures,
                s.locked_until,
                s.authorization_id
            ],
        )?;
        Ok(())
    }

    /// The operator holding an API token, by the token's hash.
    pub fn staff_by_token_hash(&self, hash: &str) -> Result<Option<StaffRow>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE token_hash = ?1");
        Ok(self.conn.query_row(&sql, [hash], staff_row).optional()?)
    }

    pub fn staff(&self, id: &str) -> Result<Option<StaffRow>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], staff_row).optional()?)
    }

    /// Everyone enrolled, in enrolment order.
    pub fn all_staff(&self) -> Result<Vec<StaffRow>, StoreError> {
        let sql = format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY enrolled_at, rowid");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], staff_row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Claims the right to check one sign-in to `id` now: atomically, only if the account is
    /// not resting after failures nor being checked by another attempt, and then holds it until
    /// `hold_until` (released by `finish_login`). So parallel guesses at one account are not all
    /// checked, and the failure count cannot be raced.
    pub fn claim_login(&self, id: &str, now: DateTime<Utc>, hold_until: DateTime<Utc>) -> Result<Claim, StoreError> {
        let claimed: Option<u32> = self
            .conn
            .query_row(
                "UPDATE staff SET locked_until = ?3 WHERE id = ?1 AND (locked_until IS NULL OR locked_until <= ?2)
                 RETURNING failures",
                params![id, now, hold_until],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(failures) = claimed {
            return Ok(Claim::Claimed { failures });
        }
        let until: Option<Option<DateTime<Utc>>> =
            self.conn.query_row("SELECT locked_until FROM staff WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        Ok(match until {
            Some(Some(until)) => Claim::Held { until },
            // Gone between the two statements (it cannot be unlocked and unclaimed at once).
            Some(None) | None => Claim::NoSuchStaff,
        })
    }

    /// Releases a claimed sign-in that was not checked after all (the hashing queue was full):
    /// nothing is counted. A claim is only made when the account was not resting, so nothing
    /// else is lost.
    pub fn release_login(&self, id: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE staff SET locked_until = NULL WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Ends a claimed sign-in: a success clears the failures; a failure counts one more and
    /// rests the account until `rest_until` (if any). Returns the failures in a row.
    pub fn finish_login(
        &self,
        id: &str,
        success: bool,
        rest_until: impl Fn(u32) -> Option<DateTime<Utc>>,
    ) -> Result<u32, StoreError> {
        if success {
            self.conn.execute("UPDATE staff SET failures = 0, locked_until = NULL WHERE id = ?1", [id])?;
            return Ok(0);
        }
        let tx = self.conn.unchecked_transaction()?;
        let failures: u32 =
            tx.query_row("UPDATE staff SET failures = failures + 1 WHERE id = ?1 RETURNING failures", [id], |r| {
                r.get(0)
            })?;
        tx.execute("UPDATE staff SET locked_until = ?2 WHERE id = ?1", params![id, rest_until(failures)])?;
        tx.commit()?;
        Ok(failures)
    }

    /// Sets the person's own PIN or passphrase; the one-time code is gone from then on.
    pub fn set_staff_secret(&self, id: &str, secret_hash: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE staff SET secret_hash = ?2, login_code_hash = NULL WHERE id = ?1",
            params![id, secret_hash],
        )?;
        Ok(())
    }

    /// Revokes an operator and ends their sessions at once. False if there was no such operator
    /// or it was revoked already.
    pub fn revoke_staff(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.atomically(|tx| {
            let changed =
                tx.execute("UPDATE staff SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, at])?;
            tx.execute("DELETE FROM session WHERE staff_id = ?1", [id])?;
            Ok(changed == 1)
        })
    }

    pub fn add_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO session (token_hash, staff_id, csrf, created_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.token_hash, s.staff_id, s.csrf, s.created_at, s.last_seen],
        )?;
        Ok(())
    }

    pub fn session(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT token_hash, staff_id, csrf, created_at, last_seen FROM session WHERE token_hash = ?1",
                [token_hash],
                |r| {
                    Ok(SessionRow {
                        token_hash: r.get(0)?,
                        staff_id: r.get(1)?,
                        csrf: r.get(2)?,
                        created_at: r.get(3)?,
                        last_seen: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn touch_session(&self, token_hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute("UPDATE session SET last_seen = ?2 WHERE token_hash = ?1", params![token_hash, at])?;
        Ok(())
    }

    pub fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM session WHERE token_hash = ?1", [token_hash])?;
        Ok(())
    }

    /// Ends every session that has been idle since before `idle_before` or began before
    /// `started_before`.
    pub fn expire_sessions(&self, idle_before: DateTime<Utc>, started_before: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM session WHERE last_seen < ?1 OR created_at < ?2",
            params![idle_before, started_before],
        )?;
        Ok(())
    }

    pub fn set_session_purpose(
        &self,
        token_hash: &str,
        person_id: &str,
        purpose: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO session_purpose (token_hash, person_id, purpose, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (token_hash, person_id) DO UPDATE SET purpose = excluded.purpose, at = excluded.at",
            params![token_hash, person_id, purpose, at],
        )?;
        Ok(())
    }

    pub fn session_purpose(&self, token_hash: &str, person_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT purpose FROM session_purpose WHERE token_hash = ?1 AND person_id = ?2",
                [token_hash, person_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn add_field_event(&self, e: &FieldEventRow) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "INSERT INTO field_event (person_id, staff_id, facility, at, data_key_id, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
            params![e.person_id, e.staff_id, e.facility, e.at, e.data_key_id, e.sealed],
            |r| r.get(0),
        )?)
    }

    /// One person's field events, newest first.
    pub fn field_events(&self, person_id: &str) -> Result<Vec<FieldEventRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, person_id, staff_id, facility, at, data_key_id, sealed FROM field_event
             WHERE person_id = ?1 ORDER BY seq DESC",
        )?;
        let rows = stmt
            .query_map([person_id], |r| {
                Ok(FieldEventRow {
                    seq: r.get(0)?,
                    person_id: r.get(1)?,
                    staff_id: r.get(2)?,
                    facility: r.get(3)?,
                    at: r.get(4)?,
                    data_key_id: r.get(5)?,
                    sealed: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
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
        let mode: String = s.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn switching_snapshots_keeps_exactly_one_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("node.db")).unwrap();
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
    fn parallel_sign_ins_to_one_account_are_checked_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        let s = Store::open(&path).unwrap();
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        s.add_staff(&StaffRow {
            id: "K7QM-3XDA".into(),
            name: "能登 花子".into(),
            facility: "1772090005".into(),
            role: "support".into(),
            login_code_hash: None,
            token_hash: "t".into(),
            enrolled_at: now,
            revoked_at: None,
            secret_hash: Some("h".into()),
            failures: 0,
            locked_until: None,
            authorization_id: Some("a1".into()),
        })
        .unwrap();
        // 40 attempts at once, each on its own connection as the server's requests would be.
        let hold = now + chrono::Duration::seconds(30);
        let claims: Vec<Claim> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..40)
                .map(|_| scope.spawn(|| Store::open(&path).unwrap().claim_login("K7QM-3XDA", now, hold).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(claims.iter().filter(|c| matches!(c, Claim::Claimed { .. })).count(), 1, "{claims:?}");
        assert!(claims.iter().all(|c| matches!(c, Claim::Claimed { .. } | Claim::Held { .. })));
        // A wrong secret counts and rests the account as the caller says; the next claim waits.
        let rest = now + chrono::Duration::seconds(5);
        assert_eq!(s.finish_login("K7QM-3XDA", false, |failures| (failures >= 1).then_some(rest)).unwrap(), 1);
        assert_eq!(s.claim_login("K7QM-3XDA", now, hold).unwrap(), Claim::Held { until: rest });
        assert!(matches!(s.claim_login("K7QM-3XDA", rest, hold).unwrap(), Claim::Claimed { failures: 1 }));
        assert_eq!(s.finish_login("K7QM-3XDA", true, |_| None).unwrap(), 0);
        assert_eq!(s.claim_login("nobody", now, hold).unwrap(), Claim::NoSuchStaff);
    }

    #[test]
    fn a_full_disk_is_called_a_full_disk() {
        use rusqlite::ffi;
        // What SQLite says when a node restarts on a full disk, and when a write finds it full.
        for code in [ffi::SQLITE_IOERR_SHMMAP, ffi::SQLITE_FULL] {
            let e = rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("disk I/O error".into()));
            let message = StoreError::from(e).to_string();
            assert!(message.starts_with("ディスクがいっぱい"), "{message}");
        }
        let other = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_CORRUPT), None);
        assert!(matches!(StoreError::from(other), StoreError::Sql(_)));
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }
}
