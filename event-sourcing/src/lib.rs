//! Event sourcing over an [`event_store::EventStore`]: what the services
//! build on, above the storage.
//!
//! - [`consumer_group`]: durable consumer groups over the feed, shared
//!   by every process on the store;
//! - [`decider`]: a command's rules as a pure decider, and its execution
//!   against a stream (optimistic concurrency, retries on conflict);
//! - [`idempotency`]: keyed requests, so a retried command answers what
//!   its first run recorded;
//! - [`read_model`]: the read-model runtime: a projection of the global
//!   feed kept in memory, linearizable reads (read index, read leases), and
//!   snapshots.

pub mod consumer_group;
pub mod decider;
pub mod idempotency;
pub mod read_model;
