//! An append-only event store: one [`EventStore`] trait, several backends.
//!
//! Every backend gives the same guarantees, checked by one conformance suite
//! (`tests/conformance`):
//!
//! - **Optimistic concurrency.** [`EventStore::append`] takes an
//!   [`ExpectedVersion`]; a mismatch is [`EventStoreError::WrongExpectedVersion`]
//!   and nothing is written. Under any concurrency exactly one of several
//!   writers expecting the same version wins.
//! - **Atomic, durable appends.** All events of one call are written or none
//!   are; when `append` returns `Ok`, the events survive a crash.
//! - **Idempotent retries.** Appending events whose ids are already stored, at
//!   the same place in the same stream, succeeds again without duplicates.
//! - **A gap-free global order for readers.** Every event gets a global
//!   position, strictly increasing in commit order. Once a reader has seen
//!   position `p`, no event with a position `< p` can appear later, so a
//!   subscriber that remembers its checkpoint never skips an event.
//!
//! Backends are chosen by URL with [`open`]: `sqlite://path/to/file.db`
//! (embedded, the default) or `postgres://user@host/db`.

mod append_rules;
pub mod copy;
mod error;
#[cfg(feature = "eventstoredb")]
pub mod esdb;
mod event;
mod group;
pub mod groups;
pub mod ids;
pub mod lease;
mod model;
mod open;
pub mod postgres;
mod row;
pub mod sqlite;
pub mod stats;
mod store;
mod subscription;
pub mod trace;
pub mod upcast;

pub use error::redact_url;
pub use error::{EventStoreError, Result};
pub use event::Event;
pub use model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};
pub use open::{StoreUrl, open};
pub use store::{EventStore, EventStream};
pub(crate) use store::{fresh_secret, secret_of};
pub use subscription::SUBSCRIPTION_POLL_INTERVAL;

#[cfg(feature = "testing")]
pub mod testing;
