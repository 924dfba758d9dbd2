//! `movies copy`: moves both services' stores to other stores (another
//! engine, or another database of the same), with everything readers,
//! retries and the throttle rely on. See README, "From the one-command stack
//! to PostgreSQL".

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use auth_service::read_model::AuthView;
use std::time::{Duration, Instant};

use event_sourcing::read_model::rebuild;
use event_sourcing::read_model::snapshot::{Snapshot, digest};
use event_store::copy::{self, AsIs, Progress, Transform, Upcasting};
use event_store::{Event, EventStore};

use crate::{BoxError, Config};

/// Where to copy to, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyArgs {
    /// The store auth-service's events go to (e.g.
    /// `postgres://user@host/auth`): empty, or holding an earlier,
    /// interrupted copy of the same source.
    #[arg(long, env = "TO_AUTH_STORE_URL")]
    pub to_auth_store_url: String,
    /// The store catalog-service's events go to (another database than
    /// auth's).
    #[arg(long, env = "TO_CATALOG_STORE_URL")]
    pub to_catalog_store_url: String,
    /// Where auth's key table goes (users' data keys, the generated
    /// pepper): `auto`, beside the auth target (a `<file>.keys` file for
    /// SQLite, the same database for PostgreSQL).
    #[arg(long, env = "TO_AUTH_KEY_STORE_URL", default_value = "auto")]
    pub to_auth_key_store_url: String,
    /// Rewrites events of older versions into their current types and
    /// shapes on the way (otherwise each is copied as it is stored, and
    /// upcast when read, as on the source).
    #[arg(long)]
    pub upcast: bool,
    /// Rewrites auth's events written before personal data was sealed into
    /// sealed ones: usernames, emails and hashes sealed under keys made in
    /// the target's key table, streams named by id and MAC. The upgrade a
    /// store written before sealing needs before its users can be erased
    /// (see README, "Personal data"). It implies `--upcast` for auth.
    #[arg(long)]
    pub seal: bool,
    /// Skips the check at the end (rebuilding each service's read model
    /// from both stores and comparing digests).
    #[arg(long)]
    pub no_verify: bool,
}

/// The copy failed its own check, or was pointed at the wrong place.
#[derive(Debug, thiserror::Error)]
pub enum CopyRefused {
    /// The source and the target are the same store.
    #[error("{service}: the target is the source ({url})")]
    SameStore {
        /// Which service's store.
        service: &'static str,
        /// The URL, without a password.
        url: String,
    },
    /// The source is an SQLite file that does not exist (opening it would
    /// make an empty one: most likely the wrong directory or URL).
    #[error(
        "{service}: there is no store at {path} (run the copy where the stack ran, or name the store with --{service}-store-url)"
    )]
    NoSource {
        /// Which service's store.
        service: &'static str,
        /// The file looked for.
        path: String,
    },
    /// The auth target is EventStoreDB and no key table is named for it.
    #[error(
        "name auth's target key table with --to-auth-key-store-url (sqlite://file or postgres://…)"
    )]
    KeyStoreNeeded,
    /// Both services would write into one store.
    #[error("auth and catalog need separate target stores (one database each)")]
    SharedTarget,
    /// A sealed copy does not hold what its source held.
    #[error("auth: the sealed copy does not match its source: {why}")]
    NotSealed {
        /// What differs.
        why: String,
    },
    /// The read model rebuilt from the target is not the source's.
    #[error(
        "{service}: the read model rebuilt from the target differs from the source's \
         (was the source written during the copy? stop its services and run the copy again)"
    )]
    DigestMismatch {
        /// Which service's read model.
        service: &'static str,
    },
}

/// Copies the configured auth and catalog stores to the targets in `args`,
/// printing progress to stderr and a report to stdout.
pub async fn run(config: &Config, args: &CopyArgs) -> Result<(), BoxError> {
    if args.to_auth_store_url == args.to_catalog_store_url {
        return Err(CopyRefused::SharedTarget.into());
    }
    // The key table first: the pepper and the keys sealed data needs.
    let to_keys = match args.to_auth_key_store_url.as_str() {
        "auto" => auth_service::keys::beside(&args.to_auth_store_url)
            .ok_or(CopyRefused::KeyStoreNeeded)?,
        url => url.to_owned(),
    };
    let keys = auth_service::keys::copy_table(&config.auth.key_store_url()?, &to_keys).await?;
    let (from, to) =
        open_pair("auth", &config.auth.auth_store_url, &args.to_auth_store_url).await?;
    let copied = if args.seal {
        let kek = config.auth.auth_key_encryption_key.clone().map(|s| s.0);
        let keyring = || auth_service::keys::Keyring::open(&to_keys, kek.clone());
        let pepper = keyring()
            .await?
            .pepper(config.auth.auth_pepper.clone().map(|s| s.0))
            .await?;
        let mut sealing =
            auth_service::upgrade::Sealing::new(&*from, keyring().await?, pepper).await?;
        let last = copy_events("auth", &from, &*to, &mut sealing).await?;
        let verified = if args.no_verify {
            Verified::Skipped
        } else {
            let (source, _) = rebuild(&*from, AuthView::default()).await?;
            let (target, _) = rebuild(&*to, AuthView::default()).await?;
            let checked = auth_service::upgrade::verify_sealed(&source, &target, &keyring().await?)
                .await
                .map_err(|why| CopyRefused::NotSealed { why })?;
            Verified::Sealed(checked)
        };
        Copied {
            service: "auth",
            last,
            verified,
        }
    } else {
        let upcasts = args.upcast.then(auth_service::domain::AuthEvent::upcasts);
        copy_store::<AuthView>("auth", (from.clone(), &*to), upcasts, !args.no_verify).await?
    };
    let books =
        auth_service::copy_books(&config.auth.auth_store_url, &args.to_auth_store_url).await?;
    let auth_groups = event_store::groups::copy(&*from, &*to).await?;
    println!("{copied}");
    println!("auth: consumer groups: {auth_groups} copied (checkpoints and parked events)");
    println!("auth: key table: {keys} rows copied");
    println!(
        "auth: login throttle: {}",
        match books {
            auth_service::BooksCopied::Records(n) => format!("{n} records copied"),
            auth_service::BooksCopied::NoneStored =>
                "the source kept it in memory (SQLite): the target starts afresh".to_owned(),
            auth_service::BooksCopied::NotKept =>
                "the target keeps it in memory (SQLite): it starts afresh there".to_owned(),
        }
    );
    let catalog_upcasts = args
        .upcast
        .then(catalog_service::domain::CatalogEvent::upcasts);
    let (from, to) = open_pair(
        "catalog",
        &config.catalog.catalog_store_url,
        &args.to_catalog_store_url,
    )
    .await?;
    let copied = copy_store::<catalog_service::CatalogView>(
        "catalog",
        (from.clone(), &*to),
        catalog_upcasts,
        !args.no_verify,
    )
    .await?;
    let catalog_groups = event_store::groups::copy(&*from, &*to).await?;
    println!("{copied}");
    println!("catalog: consumer groups: {catalog_groups} copied (checkpoints and parked events)");
    Ok(())
}

/// What one store's copy did, as the report prints it.
struct Copied {
    service: &'static str,
    last: Progress,
    verified: Verified,
}

/// How a copy was checked.
enum Verified {
    /// The read models' digests, source and target, equal.
    Digests(String, String),
    /// A sealed copy: this many users, each opening to the source's.
    Sealed(usize),
    /// `--no-verify`.
    Skipped,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.last;
        write!(
            f,
            "{}: {} events copied in {:.1} s ({:.0} events/s); target head {}",
            self.service,
            p.copied,
            p.elapsed.as_secs_f64(),
            p.rate(),
            p.position
        )?;
        if p.resumed_from > 0 {
            write!(f, " (resumed after position {})", p.resumed_from)?;
        }
        match &self.verified {
            Verified::Digests(source, target) => write!(
                f,
                "\n{}: read model sha256 source {source}\n{}: read model sha256 target {target} (equal)",
                self.service, self.service
            ),
            Verified::Sealed(users) => write!(
                f,
                "\n{}: {users} users checked: each sealed profile opens to the source's (equal)",
                self.service
            ),
            Verified::Skipped => write!(f, "\n{}: not verified (--no-verify)", self.service),
        }
    }
}

/// The source and target stores of `service`, opened (a missing SQLite
/// source and a target that is its source refused).
async fn open_pair(
    service: &'static str,
    from_url: &str,
    to_url: &str,
) -> Result<(Arc<dyn EventStore>, Arc<dyn EventStore>), BoxError> {
    if from_url == to_url {
        let url = event_store::redact_url(from_url);
        return Err(CopyRefused::SameStore { service, url }.into());
    }
    if let Ok(event_store::StoreUrl::Sqlite(path)) = event_store::StoreUrl::parse(from_url)
        && !path.exists()
    {
        let path = path.display().to_string();
        return Err(CopyRefused::NoSource { service, path }.into());
    }
    Ok((
        event_store::open(from_url).await?,
        event_store::open(to_url).await?,
    ))
}

/// Copies `from` into `to` through `transform`, with progress shown.
async fn copy_events(
    service: &'static str,
    from: &Arc<dyn EventStore>,
    to: &dyn EventStore,
    transform: &mut dyn Transform,
) -> Result<Progress, BoxError> {
    let mut shown = Shown::new(service);
    let last = copy::copy(from.clone(), to, transform, &mut |p| shown.show(p)).await?;
    shown.done(&last);
    Ok(last)
}

/// Copies, upcast or as is, and compares the read models' digests.
async fn copy_store<M: Snapshot + Default>(
    service: &'static str,
    (from, to): (Arc<dyn EventStore>, &dyn EventStore),
    upcasts: Option<&'static [event_store::upcast::Upcast]>,
    verify: bool,
) -> Result<Copied, BoxError> {
    let mut transform: Box<dyn Transform> = match upcasts {
        Some(upcasts) => Box::new(Upcasting(upcasts)),
        None => Box::new(AsIs),
    };
    let last = copy_events(service, &from, to, &mut *transform).await?;
    let verified = if verify {
        let source = model_digest::<M>(&*from).await?;
        let target = model_digest::<M>(to).await?;
        if source != target {
            eprintln!("{service}: read model sha256 source {source}, target {target}");
            return Err(CopyRefused::DigestMismatch { service }.into());
        }
        Verified::Digests(source, target)
    } else {
        Verified::Skipped
    };
    Ok(Copied {
        service,
        last,
        verified,
    })
}

/// The read model rebuilt from every event of `store`, as a digest.
async fn model_digest<M: Snapshot + Default>(store: &dyn EventStore) -> Result<String, BoxError> {
    let (model, _) = rebuild(store, M::default()).await?;
    let digest = digest(&model);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Progress on stderr: one line redrawn on a terminal, a line every few
/// seconds otherwise (logs).
struct Shown {
    service: &'static str,
    terminal: bool,
    last: Option<Instant>,
    /// The position last shown.
    shown: u64,
}

impl Shown {
    fn new(service: &'static str) -> Self {
        Self {
            service,
            terminal: std::io::stderr().is_terminal(),
            last: None,
            shown: 0,
        }
    }

    fn show(&mut self, p: &Progress) {
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = p.position;
        let eta = p
            .eta()
            .map_or_else(|| "?".to_owned(), |d| format!("{} s", d.as_secs()));
        let line = format!(
            "{}: position {} of {} ({:.1} %), {:.0} events/s, {eta} left",
            self.service,
            p.position,
            p.until,
            p.done() * 100.0,
            p.rate()
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
    }

    fn done(&mut self, p: &Progress) {
        if self.shown != p.position || self.last.is_none() {
            self.last = None;
            self.show(p);
        }
        if self.terminal {
            eprintln!();
        }
    }
}
