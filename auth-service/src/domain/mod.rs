//! The rules of users and tokens, no I/O here (hashing, randomness and the
//! clock are the caller's, and come in through commands):
//!
//! - [`values`]: what a request carries, parsed once at the edge;
//! - [`events`]: every event, and why a command is refused;
//! - [`user`]: the decider of one user's stream;
//! - [`refresh`]: sliding expiry, when auto-refresh is on;
//! - [`username_claim`]: the decider of a username skeleton's claim.

pub mod events;
pub mod refresh;
pub mod user;
pub mod username_claim;
pub mod values;

pub use events::{
    AuthEvent, ClientInfo, Grant, Issue, Personal, Rejection, StoredPersonal, client_sealed_for,
    sealed_for, token_stream,
};
pub use refresh::RefreshPolicy;
pub use user::{
    Account, THROTTLE_NOTE_EVERY, ToUser, USER_IDS_STREAM, User, UserCommand, user_stream,
};
pub use username_claim::{ClaimUsername, UsernameClaim, claim_stream};
pub use values::{
    Email, MAX_EMAIL, MAX_PASSWORD, MAX_TOKEN_NAME, MAX_USER_AGENT, MAX_USERNAME, MIN_PASSWORD,
    Password, UserId, Username, nfkc, normalize_username, parse_login, parse_token_name, printable,
    username_skeleton,
};

#[cfg(test)]
mod tests;
