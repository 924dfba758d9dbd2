//! `movies copy`: moves both services' stores to other stores (another
//! engine, or another database of the same), with everything readers,
//! retries and the throttle rely on. See README, "From the one-command stack
//! to PostgreSQL".

use std::io::{IsTerminal, Write};
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
    let auth_upcasts = args.upcast.then(auth_service::domain::AuthEvent::upcasts);
    let copied = copy_store::<auth_service::read_model::AuthView>(
        "auth",
        &config.auth.auth_store_url,
        &args.to_auth_store_url,
        auth_upcasts,
        !args.no_verify,
    )
    .await?;
    let to_keys = match args.to_auth_key_store_url.as_str() {
        "auto" => auth_service::keys::beside(&args.to_auth_store_url)
            .ok_or(CopyRefused::KeyStoreNeeded)?,
        url => url.to_owned(),
    };
    let keys = auth_service::keys::copy_table(&config.auth.key_store_url()?, &to_keys).await?;
    let books =
        auth_service::copy_books(&config.auth.auth_store_url, &args.to_auth_store_url).await?;
    println!("{copied}");
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
    let copied = copy_store::<catalog_service::CatalogView>(
        "catalog",
        &config.catalog.catalog_store_url,
        &args.to_catalog_store_url,
        catalog_upcasts,
        !args.no_verify,
    )
    .await?;
    println!("{copied}");
    Ok(())
}

/// What one store's copy did, as the report prints it.
struct Copied {
    service: &'static str,
    last: Progress,
    /// The read model's digest (source, target), if verified.
    digests: Option<(String, String)>,
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
        match &self.digests {
            Some((source, target)) => write!(
                f,
                "\n{}: read model sha256 source {source}\n{}: read model sha256 target {target} (equal)",
                self.service, self.service
            ),
            None => write!(f, "\n{}: not verified (--no-verify)", self.service),
        }
    }
}

async fn copy_store<M: Snapshot + Default>(
    service: &'static str,
    from_url: &str,
    to_url: &str,
    upcasts: Option<&'static [event_store::upcast::Upcast]>,
    verify: bool,
) -> Result<Copied, BoxError> {
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
    let from = event_store::open(from_url).await?;
    let to = event_store::open(to_url).await?;
    let mut transform: Box<dyn Transform> = match upcasts {
        Some(upcasts) => Box::new(Upcasting(upcasts)),
        None => Box::new(AsIs),
    };
    let mut shown = Shown::new(service);
    let last = copy::copy(from.clone(), &*to, &mut *transform, &mut |p| shown.show(p)).await?;
    shown.done(&last);
    let digests = if verify {
        let source = model_digest::<M>(&*from).await?;
        let target = model_digest::<M>(&*to).await?;
        if source != target {
            eprintln!("{service}: read model sha256 source {source}, target {target}");
            return Err(CopyRefused::DigestMismatch { service }.into());
        }
        Some((source, target))
    } else {
        None
    };
    Ok(Copied {
        service,
        last,
        digests,
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
