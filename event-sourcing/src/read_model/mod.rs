//! The read-model runtime. Its parts, each depending only on those above it:
//!
//! - [`model`]: what a read model is (a pure fold) and how long readers wait;
//! - [`snapshot`]: a model's snapshot file, its encoding and its checks;
//! - [`history`]: who did what and when, per user ("my activity");
//! - [`saver`]: where and how often snapshots are saved, and loading one;
//! - [`read_index`] and [`lease`]: how a projection on a shared store knows
//!   it holds every acknowledged write;
//! - [`projection`]: a model fed by the store's feed, using all of the above.

pub mod compact;
pub mod cow;
pub mod history;
pub mod lease;
pub mod model;
pub mod projection;
pub mod read_index;
pub mod saver;
pub mod snapshot;

pub use model::{APPLY_TIMEOUT, NotApplied, READ_TIMEOUT, ReadModel, StaleRead, rebuild};
pub use projection::{Projection, ReadPoint};
pub use saver::{SAVE_CHECK_EVERY, Saved, SnapshotPolicy};
