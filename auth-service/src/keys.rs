//! The key table: each user's [`DataKey`], kept beside the event store and
//! never in its log, so that destroying a user's key makes every sealed
//! field of theirs noise, in every copy of the log (crypto-shredding).
//!
//! - **SQLite** (the one-command stack): a file of its own beside the
//!   store's, `<store file>.keys`, with `secure_delete` (a deleted key's
//!   bytes are overwritten) and a rollback journal (`journal_mode=DELETE`:
//!   no write-ahead log keeps old pages around after a commit).
//! - **PostgreSQL**: the tables `auth_user_keys` and `auth_secrets` in the
//!   store's database, shared by every replica.
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

/// The key file beside an SQLite store's file.
pub fn sqlite_key_file(store_path: &std::path::Path) -> PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".keys");
    PathBuf::from(name)
}

impl Keyring {
    /// The key table beside the store at `store_url`, made if needed;
    /// `kek` wraps every key stored from now on.
    pub async fn open(store_url: &str, kek: Option<DataKey>) -> Result<Self> {
        let table = match event_store::StoreUrl::parse(store_url).map_err(table_err)? {
            event_store::StoreUrl::Sqlite(path) => {
                let file = sqlite_key_file(&path);
                let conn = tokio::task::spawn_blocking(move || {
                    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(table_err)?;
                    }
                    let conn = Connection::open(&file).map_err(table_err)?;
                    conn.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(table_err)?;
                    conn.execute_batch(SQLITE_SCHEMA).map_err(table_err)?;
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
                    "an EventStoreDB store has no key table beside it; keys need SQLite or PostgreSQL"
                        .into(),
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
        let kept = match &self.table {
            Table::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    conn.execute(
                        "INSERT INTO user_keys (user_id, key, wrapped) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (user_id) DO NOTHING",
                        params![user.0, stored.bytes, stored.wrapped],
                    )
                    .map_err(table_err)?;
                    sqlite_get(
                        &conn,
                        "SELECT key, wrapped FROM user_keys WHERE user_id = ?1",
                        user.0,
                    )
                })
                .await
                .map_err(table_err)??
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
                postgres_get(
                    &client,
                    "SELECT key, wrapped FROM auth_user_keys WHERE user_id = $1",
                    &user.0,
                )
                .await?
            }
        };
        let key = self.unwrap_key(
            &what,
            kept.ok_or(KeyError::Table("a key just stored is gone".into()))?,
        )?;
        self.remember(user, &key);
        Ok(key)
    }

    /// `user`'s key, if it exists (none: never made, or destroyed).
    pub async fn get(&self, user: UserId) -> Result<Option<DataKey>> {
        if let Some(key) = self.cached(user) {
            return Ok(Some(key));
        }
        let stored = match &self.table {
            Table::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    sqlite_get(
                        &conn,
                        "SELECT key, wrapped FROM user_keys WHERE user_id = ?1",
                        user.0,
                    )
                })
                .await
                .map_err(table_err)??
            }
            Table::Postgres(pool) => {
                let client = pool.get().await.map_err(table_err)?;
                postgres_get(
                    &client,
                    "SELECT key, wrapped FROM auth_user_keys WHERE user_id = $1",
                    &user.0,
                )
                .await?
            }
        };
        let Some(stored) = stored else {
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
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let n = conn
                        .execute("DELETE FROM user_keys WHERE user_id = ?1", params![user.0])
                        .map_err(table_err)?;
                    Ok(n > 0)
                })
                .await
                .map_err(table_err)?
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
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    conn.execute(
                        "INSERT INTO secrets (name, value, wrapped) VALUES ('pepper', ?1, ?2) \
                         ON CONFLICT (name) DO NOTHING",
                        params![fresh.bytes, fresh.wrapped],
                    )
                    .map_err(table_err)?;
                    sqlite_get(
                        &conn,
                        "SELECT value, wrapped FROM secrets WHERE name = ?1",
                        "pepper",
                    )
                })
                .await
                .map_err(table_err)??
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
        tracing::warn!(
            "AUTH_PEPPER is not set: using the pepper generated in the key table; \
             set AUTH_PEPPER to keep it out of the database"
        );
        Ok(Pepper::new(self.unwrap_key(what, stored)?))
    }
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
    let mut config: tokio_postgres::Config = url.parse().map_err(table_err)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .map_err(table_err)?;
    let mut client = pool.get().await.map_err(table_err)?;
    let tx = client.transaction().await.map_err(table_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(table_err)?;
    tx.batch_execute(POSTGRES_SCHEMA).await.map_err(table_err)?;
    tx.commit().await.map_err(table_err)?;
    drop(client);
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_store::testing::TempStore;

    async fn each_table(test: &str) -> Vec<TempStore> {
        let mut stores = vec![TempStore::sqlite()];
        stores.extend(TempStore::postgres(test).await);
        stores
    }

    #[tokio::test]
    async fn a_key_is_made_once_found_again_and_destroyed_for_good() {
        for store in each_table("keys_lifecycle").await {
            let ring = Keyring::open(store.url(), None).await.unwrap();
            let key = ring.create(UserId(7)).await.unwrap();
            assert_eq!(
                ring.create(UserId(7)).await.unwrap(),
                key,
                "a retry: the same key"
            );
            let sealed = seal::seal(&key, b"7", b"zoe@example.org").unwrap();
            // Another process (another replica) finds it in the table.
            let other = Keyring::open(store.url(), None).await.unwrap();
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
        for store in each_table("keys_wrapped").await {
            let kek = DataKey::from_hex(&"42".repeat(32)).unwrap();
            let ring = Keyring::open(store.url(), Some(kek.clone())).await.unwrap();
            let key = ring.create(UserId(1)).await.unwrap();
            let pepper = ring.pepper(None).await.unwrap();
            let same = Keyring::open(store.url(), Some(kek)).await.unwrap();
            assert_eq!(same.get(UserId(1)).await.unwrap().unwrap(), key);
            assert_eq!(
                same.pepper(None).await.unwrap(),
                pepper,
                "one pepper, shared"
            );
            let without = Keyring::open(store.url(), None).await.unwrap();
            assert!(matches!(
                without.get(UserId(1)).await,
                Err(KeyError::Wrapped)
            ));
            let wrong = DataKey::from_hex(&"43".repeat(32)).unwrap();
            let wrong = Keyring::open(store.url(), Some(wrong)).await.unwrap();
            assert!(matches!(wrong.get(UserId(1)).await, Err(KeyError::Wrapped)));
        }
    }

    #[tokio::test]
    async fn a_configured_pepper_wins_and_a_generated_one_is_kept() {
        for store in each_table("keys_pepper").await {
            let ring = Keyring::open(store.url(), None).await.unwrap();
            let generated = ring.pepper(None).await.unwrap();
            let again = Keyring::open(store.url(), None).await.unwrap();
            assert_eq!(again.pepper(None).await.unwrap(), generated);
            let configured = DataKey::from_hex(&"07".repeat(32)).unwrap();
            let chosen = ring.pepper(Some(configured.clone())).await.unwrap();
            assert_eq!(chosen, Pepper::new(configured));
            assert_ne!(chosen, generated);
        }
    }

    #[tokio::test]
    async fn a_destroyed_key_leaves_no_bytes_in_the_sqlite_file() {
        let store = TempStore::sqlite();
        let ring = Keyring::open(store.url(), None).await.unwrap();
        let keys: Vec<DataKey> = {
            let mut keys = Vec::new();
            for id in 1..=50 {
                keys.push(ring.create(UserId(id)).await.unwrap());
            }
            keys
        };
        assert!(ring.destroy(UserId(25)).await.unwrap());
        let event_store::StoreUrl::Sqlite(path) =
            event_store::StoreUrl::parse(store.url()).unwrap()
        else {
            unreachable!()
        };
        let dir = sqlite_key_file(&path).parent().unwrap().to_owned();
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
    }
}
