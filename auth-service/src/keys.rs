//! The key table: each user's [`DataKey`], kept beside the event store and
//! never in its log, so that destroying a user's key makes every sealed
//! field of theirs noise, in every copy of the log (crypto-shredding).
//!
//! - **SQLite** (the one-command stack): a file of its own (by default
//!   beside the store's, `<store file>.keys`), with `secure_delete` (a
//!   deleted key's bytes are overwritten) and a rollback journal
//!   (`journal_mode=DELETE`: no write-ahead log keeps old pages around
//!   after a commit).
//! - **PostgreSQL**: the tables `auth_user_keys` and `auth_secrets` (by
//!   default in the store's database), shared by every replica.
//!
//! With `AUTH_KEY_ENCRYPTION_KEY` set (64 hex digits), every key is stored
//! wrapped (sealed) under it, so a copy of the table alone opens nothing.
//! The table also keeps the generated pepper when `AUTH_PEPPER` is not set
//! (see [`Keyring::pepper`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::UserId;
use crate::seal::{self, DataKey, Pepper, SealError};

/// Why the key table failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The table could not be read or written.
    #[error("key table: {0}")]
    Table(String),
    /// A stored key is wrapped, and no key-encryption key is configured,
    /// or not the one it was wrapped with.
    #[error(
        "the key table's keys are wrapped: set AUTH_KEY_ENCRYPTION_KEY to the key they were wrapped with"
    )]
    Wrapped,
    /// Randomness or a malformed stored key.
    #[error(transparent)]
    Seal(#[from] SealError),
}

type Result<T, E = KeyError> = std::result::Result<T, E>;

fn table_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Table(e.to_string())
}

/// Where the keys are.
enum Table {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(deadpool_postgres::Pool),
}

/// Users' data keys: the table, an optional key-encryption key, and the
/// keys this process has used (a destroyed key leaves the cache too).
pub struct Keyring {
    table: Table,
    kek: Option<DataKey>,
    cache: Mutex<HashMap<UserId, DataKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("wrapped", &self.kek.is_some())
            .finish_non_exhaustive()
    }
}

/// A stored key or secret, as a row holds it.
struct Stored {
    bytes: Vec<u8>,
    wrapped: bool,
}

const SQLITE_SCHEMA: &str = "PRAGMA journal_mode = DELETE;
     PRAGMA secure_delete = ON;
     PRAGMA synchronous = FULL;
     CREATE TABLE IF NOT EXISTS user_keys (
         user_id INTEGER PRIMARY KEY,
         key     BLOB    NOT NULL,
         wrapped INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS secrets (
         name    TEXT    PRIMARY KEY,
         value   BLOB    NOT NULL,
         wrapped INTEGER NOT NULL
     );";

const POSTGRES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS auth_user_keys (
         user_id bigint  PRIMARY KEY,
         key     bytea   NOT NULL,
         wrapped boolean NOT NULL
     );
     CREATE TABLE IF NOT EXISTS auth_secrets (
         name    text    PRIMARY KEY,
         value   bytea   NOT NULL,
         wrapped boolean NOT NULL
     )";

/// Serializes the tables' creation between replicas (any constant).
const SCHEMA_LOCK: i64 = 0x6b65_7973_0000_0001;

/// Where the key table of the event store at `store_url` is kept by
/// default: a file beside an SQLite store's (`<file>.keys`), the same
/// database for PostgreSQL; EventStoreDB has no default (`None`).
pub fn beside(store_url: &str) -> Option<String> {
    match event_store::StoreUrl::parse(store_url).ok()? {
        event_store::StoreUrl::Sqlite(path) => {
            let mut name = path.into_os_string();
            name.push(".keys");
            Some(format!("sqlite://{}", PathBuf::from(name).display()))
        }
        event_store::StoreUrl::Postgres(url) => Some(url),
        event_store::StoreUrl::EventStoreDb(_) => None,
    }
}

impl Keyring {
    /// The key table at `url` (`sqlite://file` or `postgres://…`), made
    /// if needed; `kek` wraps every key stored from now on.
    pub async fn open(url: &str, kek: Option<DataKey>) -> Result<Self> {
        let table = match event_store::StoreUrl::parse(url).map_err(table_err)? {
            event_store::StoreUrl::Sqlite(file) => {
                let conn = tokio::task::spawn_blocking(move || {
                    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(table_err)?;
                    }
                    let conn = Connection::open(&file).map_err(table_err)?;
                    conn.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(table_err)?;
                    conn.execute_batch(SQLITE_SCHEMA).map_err(table_err)?;
                    event_store::sqlite::owner_only(&file);
                    Ok::<_, KeyError>(conn)
                })
                .await
                .map_err(table_err)??;
                Table::Sqlite(Arc::new(Mutex::new(conn)))
            }
            event_store::StoreUrl::Postgres(url) => {
                let pool = postgres_pool(&url).await?;
                Table::Postgres(pool)
            }
            event_store::StoreUrl::EventStoreDb(_) => {
                return Err(KeyError::Table(
                    "a key table is kept in SQLite or PostgreSQL, not EventStoreDB".into(),
                ));
            }
        };
        Ok(Self {
            table,
            kek,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, user: UserId) -> Option<DataKey> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&user).cloned()
    }

    fn remember(&self, user: UserId, key: &DataKey) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(user, key.clone());
    }

    /// What is stored for `key`, bound to `what`.
    fn wrap(&self, what: &str, key: &DataKey) -> Result<Stored> {
        Ok(match &self.kek {
            Some(kek) => Stored {
                bytes: seal::seal(kek, what.as_bytes(), key.as_bytes())?.into_bytes(),
                wrapped: true,
            },
            None => Stored {
                bytes: key.as_bytes().to_vec(),
                wrapped: false,
            },
        })
    }

    fn unwrap_key(&self, what: &str, stored: Stored) -> Result<DataKey> {
        if !stored.wrapped {
            return Ok(DataKey::from_bytes(&stored.bytes)?);
        }
        let kek = self.kek.as_ref().ok_or(KeyError::Wrapped)?;
        let text = String::from_utf8(stored.bytes).map_err(|_| KeyError::Wrapped)?;
        let bytes = seal::open(kek, what.as_bytes(), &text).map_err(|_| KeyError::Wrapped)?;
        Ok(DataKey::from_bytes(&bytes)?)
    }

    /// A new key for `user`, stored before it is used. If `user` has one
    /// already (a retried registration), that one.
    pub async fn create(&self, user: UserId) -> Result<DataKey> {
        let what = format!("user-key:{user}");
        let fresh = DataKey::random()?;
        let stored = self.wrap(&what, &fresh)?;
        match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    conn.execute(
                        "INSERT INTO user_keys (user_id, key, wrapped) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (user_id) DO NOTHING",
                        params![user.0, stored.bytes, stored.wrapped],
                    )
                    .map(drop)
                    .map_err(table_err)
                })
                .await?
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                client
                    .execute(
                        "INSERT INTO auth_user_keys (user_id, key, wrapped) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id) DO NOTHING",
                        &[&user.0, &stored.bytes, &stored.wrapped],
                    )
                    .await
                    .map_err(table_err)?;
            }
        }
        // What the table holds now: this key, or one a retry stored first.
        let kept = self.stored(user).await?;
        let key = self.unwrap_key(
            &what,
            kept.ok_or(KeyError::Table("a key just stored is gone".into()))?,
        )?;
        self.remember(user, &key);
        Ok(key)
    }

    /// The row of `user`'s key, as stored.
    async fn stored(&self, user: UserId) -> Result<Option<Stored>> {
        match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    sqlite_get(
                        conn,
                        "SELECT key, wrapped FROM user_keys WHERE user_id = ?1",
                        user.0,
                    )
                })
                .await
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                postgres_get(
                    &client,
                    "SELECT key, wrapped FROM auth_user_keys WHERE user_id = $1",
                    &user.0,
                )
                .await
            }
        }
    }

    /// `user`'s key, if it exists (none: never made, or destroyed).
    pub async fn get(&self, user: UserId) -> Result<Option<DataKey>> {
        if let Some(key) = self.cached(user) {
            return Ok(Some(key));
        }
        let Some(stored) = self.stored(user).await? else {
            return Ok(None);
        };
        let key = self.unwrap_key(&format!("user-key:{user}"), stored)?;
        self.remember(user, &key);
        Ok(Some(key))
    }

    /// Destroys `user`'s key, here and in the table: whatever was sealed
    /// under it can no longer be opened. Whether there was one.
    pub async fn destroy(&self, user: UserId) -> Result<bool> {
        self.forget(user);
        match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    let n = conn
                        .execute("DELETE FROM user_keys WHERE user_id = ?1", params![user.0])
                        .map_err(table_err)?;
                    Ok(n > 0)
                })
                .await
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                let n = client
                    .execute("DELETE FROM auth_user_keys WHERE user_id = $1", &[&user.0])
                    .await
                    .map_err(table_err)?;
                Ok(n > 0)
            }
        }
    }

    /// Destroys the keys of every user in `users` (those already gone are
    /// skipped), in one statement.
    pub async fn destroy_all(&self, users: &[UserId]) -> Result<()> {
        for user in users {
            self.forget(*user);
        }
        let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
        match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    let tx = conn.transaction().map_err(table_err)?;
                    for id in ids {
                        tx.execute("DELETE FROM user_keys WHERE user_id = ?1", params![id])
                            .map_err(table_err)?;
                    }
                    tx.commit().map_err(table_err)
                })
                .await
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                client
                    .execute(
                        "DELETE FROM auth_user_keys WHERE user_id = ANY($1)",
                        &[&ids],
                    )
                    .await
                    .map_err(table_err)?;
                Ok(())
            }
        }
    }

    /// Drops `user`'s key from this process's memory (another replica
    /// destroyed it).
    pub fn forget(&self, user: UserId) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Wiped as it drops.
        cache.remove(&user);
    }

    /// The pepper names are MACed under: `configured` (`AUTH_PEPPER`) if
    /// given; otherwise one generated once and kept in this table (shared
    /// by every replica, wrapped like the keys), with a warning that a
    /// dump of the database then holds it too.
    pub async fn pepper(&self, configured: Option<DataKey>) -> Result<Pepper> {
        if let Some(key) = configured {
            return Ok(Pepper::new(key));
        }
        let what = "secret:pepper";
        let fresh = self.wrap(what, &DataKey::random()?)?;
        let stored = match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    conn.execute(
                        "INSERT INTO secrets (name, value, wrapped) VALUES ('pepper', ?1, ?2) \
                         ON CONFLICT (name) DO NOTHING",
                        params![fresh.bytes, fresh.wrapped],
                    )
                    .map_err(table_err)?;
                    sqlite_get(
                        conn,
                        "SELECT value, wrapped FROM secrets WHERE name = ?1",
                        "pepper",
                    )
                })
                .await?
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                client
                    .execute(
                        "INSERT INTO auth_secrets (name, value, wrapped) VALUES ('pepper', $1, $2) \
                         ON CONFLICT (name) DO NOTHING",
                        &[&fresh.bytes, &fresh.wrapped],
                    )
                    .await
                    .map_err(table_err)?;
                postgres_get(
                    &client,
                    "SELECT value, wrapped FROM auth_secrets WHERE name = $1",
                    &"pepper",
                )
                .await?
            }
        };
        let stored = stored.ok_or(KeyError::Table("the pepper just stored is gone".into()))?;
        if matches!(self.table, Table::Postgres(_)) {
            tracing::warn!(
                "AUTH_PEPPER is not set: using the pepper generated in the key table; \
                 set AUTH_PEPPER to keep it out of the database and its dumps"
            );
        }
        Ok(Pepper::new(self.unwrap_key(what, stored)?))
    }
}

/// Rows copied per batch by [`copy_table`].
const COPY_BATCH: i64 = 10_000;

/// Copies every row of the key table at `from` into the one at `to` (made
/// if needed), as stored (wrapped keys stay wrapped: the target needs the
/// same `AUTH_KEY_ENCRYPTION_KEY`), in batches; a row the target has
/// already is kept, so a second run after an interruption is harmless.
/// Returns how many rows were read (user keys and secrets). A missing
/// SQLite file at `from` has nothing to copy.
pub async fn copy_table(from: &str, to: &str) -> Result<u64> {
    if let Ok(event_store::StoreUrl::Sqlite(path)) = event_store::StoreUrl::parse(from)
        && !path.exists()
    {
        return Ok(0);
    }
    let (source, target) = (
        Keyring::open(from, None).await?,
        Keyring::open(to, None).await?,
    );
    let mut copied = 0;
    for (table, key) in [("keys", "user_id"), ("secrets", "name")] {
        let mut after: Option<Row> = None;
        loop {
            let rows = source.rows(table, key, after.as_ref()).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.clone());
            copied += rows.len() as u64;
            target.insert_rows(table, rows).await?;
        }
    }
    Ok(copied)
}

/// A row of either table, as stored: its key (an id or a name), its bytes.
#[derive(Debug, Clone)]
enum Row {
    Key(i64, Vec<u8>, bool),
    Secret(String, Vec<u8>, bool),
}

impl Keyring {
    /// The next batch of `table`'s rows after `after`, in key order.
    async fn rows(&self, table: &str, key: &str, after: Option<&Row>) -> Result<Vec<Row>> {
        let secrets = table == "secrets";
        let (after_id, after_name) = match after {
            Some(Row::Key(id, ..)) => (*id, String::new()),
            Some(Row::Secret(name, ..)) => (0, name.clone()),
            None => (i64::MIN, String::new()),
        };
        let row = move |secrets: bool, a: Option<i64>, b: Option<String>, bytes, wrapped| {
            if secrets {
                Row::Secret(b.unwrap_or_default(), bytes, wrapped)
            } else {
                Row::Key(a.unwrap_or_default(), bytes, wrapped)
            }
        };
        match &self.table {
            Table::Sqlite(conn) => {
                let (name, value) = if secrets {
                    ("secrets", "value")
                } else {
                    ("user_keys", "key")
                };
                let sql = format!(
                    "SELECT {key}, {value}, wrapped FROM {name} WHERE {key} > ?1 ORDER BY {key} LIMIT {COPY_BATCH}"
                );
                sqlite(conn, move |conn| {
                    let mut stmt = conn.prepare(&sql).map_err(table_err)?;
                    let read = |r: &rusqlite::Row<'_>| {
                        let (a, b) = if secrets {
                            (None, Some(r.get::<_, String>(0)?))
                        } else {
                            (Some(r.get::<_, i64>(0)?), None)
                        };
                        Ok(row(secrets, a, b, r.get(1)?, r.get(2)?))
                    };
                    let rows = if secrets {
                        stmt.query_map(params![after_name], read)
                    } else {
                        stmt.query_map(params![after_id], read)
                    };
                    rows.map_err(table_err)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(table_err)
                })
                .await
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                let (name, value) = if secrets {
                    ("auth_secrets", "value")
                } else {
                    ("auth_user_keys", "key")
                };
                let sql = format!(
                    "SELECT {key}, {value}, wrapped FROM {name} WHERE {key} > $1 ORDER BY {key} LIMIT {COPY_BATCH}"
                );
                let rows = if secrets {
                    client.query(&sql, &[&after_name]).await
                } else {
                    client.query(&sql, &[&after_id]).await
                }
                .map_err(table_err)?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let (a, b) = if secrets {
                            (None, Some(r.get::<_, String>(0)))
                        } else {
                            (Some(r.get::<_, i64>(0)), None)
                        };
                        row(secrets, a, b, r.get(1), r.get(2))
                    })
                    .collect())
            }
        }
    }

    /// Inserts `rows`, keeping any the table has already.
    async fn insert_rows(&self, table: &str, rows: Vec<Row>) -> Result<()> {
        let secrets = table == "secrets";
        match &self.table {
            Table::Sqlite(conn) => {
                sqlite(conn, move |conn| {
                    let tx = conn.transaction().map_err(table_err)?;
                    for row in &rows {
                        match row {
                            Row::Key(id, bytes, wrapped) => tx.execute(
                                "INSERT INTO user_keys (user_id, key, wrapped) VALUES (?1, ?2, ?3) \
                                 ON CONFLICT DO NOTHING",
                                params![id, bytes, wrapped],
                            ),
                            Row::Secret(name, bytes, wrapped) => tx.execute(
                                "INSERT INTO secrets (name, value, wrapped) VALUES (?1, ?2, ?3) \
                                 ON CONFLICT DO NOTHING",
                                params![name, bytes, wrapped],
                            ),
                        }
                        .map_err(table_err)?;
                    }
                    tx.commit().map_err(table_err)
                })
                .await
            }
            Table::Postgres(pool) => {
                let mut client = pool.get().await.map_err(table_err)?;
                let tx = client.transaction().await.map_err(table_err)?;
                let sql = if secrets {
                    "INSERT INTO auth_secrets (name, value, wrapped) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                } else {
                    "INSERT INTO auth_user_keys (user_id, key, wrapped) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                };
                let stmt = tx.prepare(sql).await.map_err(table_err)?;
                for row in &rows {
                    match row {
                        Row::Key(id, bytes, wrapped) => {
                            tx.execute(&stmt, &[id, bytes, wrapped]).await
                        }
                        Row::Secret(name, bytes, wrapped) => {
                            tx.execute(&stmt, &[name, bytes, wrapped]).await
                        }
                    }
                    .map_err(table_err)?;
                }
                tx.commit().await.map_err(table_err)
            }
        }
    }
}

/// Runs `f` with the key file's connection, on the blocking pool.
async fn sqlite<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    })
    .await
    .map_err(table_err)?
}

fn sqlite_get(conn: &Connection, sql: &str, id: impl rusqlite::ToSql) -> Result<Option<Stored>> {
    conn.query_row(sql, params![id], |r| {
        Ok(Stored {
            bytes: r.get(0)?,
            wrapped: r.get(1)?,
        })
    })
    .optional()
    .map_err(table_err)
}

async fn postgres_get(
    client: &deadpool_postgres::Object,
    sql: &str,
    id: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<Stored>> {
    let row = client.query_opt(sql, &[id]).await.map_err(table_err)?;
    Ok(row.map(|r| Stored {
        bytes: r.get(0),
        wrapped: r.get(1),
    }))
}

async fn postgres_pool(url: &str) -> Result<deadpool_postgres::Pool> {
    crate::pg::pool_with_schema(url, 4, SCHEMA_LOCK, POSTGRES_SCHEMA)
        .await
        .map_err(KeyError::Table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_store::testing::TempStore;

    /// Key tables beside a fresh SQLite store and a fresh PostgreSQL one.
    async fn each_table(test: &str) -> Vec<(TempStore, String)> {
        let mut stores = vec![TempStore::sqlite()];
        stores.extend(TempStore::postgres(test).await);
        stores
            .into_iter()
            .map(|s| {
                let url = beside(s.url()).unwrap();
                (s, url)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_key_is_made_once_found_again_and_destroyed_for_good() {
        for (_store, url) in each_table("keys_lifecycle").await {
            let ring = Keyring::open(&url, None).await.unwrap();
            let key = ring.create(UserId(7)).await.unwrap();
            assert_eq!(
                ring.create(UserId(7)).await.unwrap(),
                key,
                "a retry: the same key"
            );
            let sealed = seal::seal(&key, b"7", b"zoe@example.org").unwrap();
            // Another process (another replica) finds it in the table.
            let other = Keyring::open(&url, None).await.unwrap();
            let found = other.get(UserId(7)).await.unwrap().unwrap();
            assert_eq!(
                seal::open(&found, b"7", &sealed).unwrap(),
                b"zoe@example.org"
            );
            assert!(other.get(UserId(8)).await.unwrap().is_none());
            assert!(ring.destroy(UserId(7)).await.unwrap());
            assert!(ring.get(UserId(7)).await.unwrap().is_none());
            other.forget(UserId(7));
            assert!(other.get(UserId(7)).await.unwrap().is_none());
            assert!(!ring.destroy(UserId(7)).await.unwrap());
        }
    }

    #[tokio::test]
    async fn wrapped_keys_need_their_key_encryption_key() {
        for (_store, url) in each_table("keys_wrapped").await {
            let kek = DataKey::from_hex(&"42".repeat(32)).unwrap();
            let ring = Keyring::open(&url, Some(kek.clone())).await.unwrap();
            let key = ring.create(UserId(1)).await.unwrap();
            let pepper = ring.pepper(None).await.unwrap();
            let same = Keyring::open(&url, Some(kek)).await.unwrap();
            assert_eq!(same.get(UserId(1)).await.unwrap().unwrap(), key);
            assert_eq!(
                same.pepper(None).await.unwrap(),
                pepper,
                "one pepper, shared"
            );
            let without = Keyring::open(&url, None).await.unwrap();
            assert!(matches!(
                without.get(UserId(1)).await,
                Err(KeyError::Wrapped)
            ));
            let wrong = DataKey::from_hex(&"43".repeat(32)).unwrap();
            let wrong = Keyring::open(&url, Some(wrong)).await.unwrap();
            assert!(matches!(wrong.get(UserId(1)).await, Err(KeyError::Wrapped)));
        }
    }

    #[tokio::test]
    async fn a_configured_pepper_wins_and_a_generated_one_is_kept() {
        for (_store, url) in each_table("keys_pepper").await {
            let ring = Keyring::open(&url, None).await.unwrap();
            let generated = ring.pepper(None).await.unwrap();
            let again = Keyring::open(&url, None).await.unwrap();
            assert_eq!(again.pepper(None).await.unwrap(), generated);
            let configured = DataKey::from_hex(&"07".repeat(32)).unwrap();
            let chosen = ring.pepper(Some(configured.clone())).await.unwrap();
            assert_eq!(chosen, Pepper::new(configured));
            assert_ne!(chosen, generated);
        }
    }

    #[tokio::test]
    async fn a_copied_table_opens_the_same_keys_and_pepper_elsewhere() {
        let tables = each_table("keys_copy").await;
        let (_, sqlite) = &tables[0];
        let ring = Keyring::open(sqlite, None).await.unwrap();
        let mut keys = Vec::new();
        for id in 1..=25 {
            keys.push(ring.create(UserId(id)).await.unwrap());
        }
        let pepper = ring.pepper(None).await.unwrap();
        let targets: Vec<String> = match tables.get(1) {
            Some((_, pg)) => vec![pg.clone()],
            None => vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let other_sqlite = format!("sqlite://{}", dir.path().join("copy.keys").display());
        for target in targets.iter().chain([&other_sqlite]) {
            assert_eq!(copy_table(sqlite, target).await.unwrap(), 26);
            assert_eq!(
                copy_table(sqlite, target).await.unwrap(),
                26,
                "again: harmless"
            );
            let copy = Keyring::open(target, None).await.unwrap();
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(
                    copy.get(UserId(i as i64 + 1)).await.unwrap().as_ref(),
                    Some(key)
                );
            }
            assert_eq!(copy.pepper(None).await.unwrap(), pepper);
        }
        let missing = format!("sqlite://{}", dir.path().join("none.keys").display());
        assert_eq!(copy_table(&missing, &other_sqlite).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_destroyed_key_leaves_no_bytes_in_the_sqlite_file() {
        let store = TempStore::sqlite();
        let url = beside(store.url()).unwrap();
        let ring = Keyring::open(&url, None).await.unwrap();
        let keys: Vec<DataKey> = {
            let mut keys = Vec::new();
            for id in 1..=50 {
                keys.push(ring.create(UserId(id)).await.unwrap());
            }
            keys
        };
        assert!(ring.destroy(UserId(25)).await.unwrap());
        let event_store::StoreUrl::Sqlite(path) = event_store::StoreUrl::parse(&url).unwrap()
        else {
            unreachable!()
        };
        let dir = path.parent().unwrap().to_owned();
        let mut files = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            if !path.to_string_lossy().contains(".keys") {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            let has = |key: &DataKey| bytes.windows(seal::KEY_LEN).any(|w| w == key.as_bytes());
            assert!(
                !has(&keys[24]),
                "the destroyed key is still in {}",
                path.display()
            );
            assert!(has(&keys[23]), "the search reads {}", path.display());
        }
        assert_eq!(files, 1, "the key file alone: no journal left behind");
        assert!(beside("esdb://localhost:2113").is_none());
    }
}
