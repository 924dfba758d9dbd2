//! The small PostgreSQL pools auth-service keeps beside its store (the
//! login throttle's books, the key table): made with their tables, which
//! are created once under an advisory lock, so that replicas starting
//! together do not race.

use std::time::Duration;

/// A pool of at most `size` connections to `url`, with `schema` applied
/// (idempotent statements) under the advisory lock `lock`. The error is the
/// database's, as text, for the caller's own error type.
pub(crate) async fn pool_with_schema(
    url: &str,
    size: usize,
    lock: i64,
    schema: &str,
) -> Result<deadpool_postgres::Pool, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| text(&e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| text(&e))?;
    let mut client = pool.get().await.map_err(|e| text(&e))?;
    let tx = client.transaction().await.map_err(|e| text(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
        .await
        .map_err(|e| text(&e))?;
    tx.batch_execute(schema).await.map_err(|e| text(&e))?;
    tx.commit().await.map_err(|e| text(&e))?;
    drop(client);
    Ok(pool)
}
