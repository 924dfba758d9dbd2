//! A username's look-alike skeleton, claimed by one name.

use event_sourcing::decider::Decider;

use super::events::{AuthEvent, Rejection};

/// The stream that claims a username's skeleton: its first event names the
/// one username that may register with that skeleton.
pub fn claim_stream(skeleton: &str) -> String {
    format!("username-{skeleton}")
}

/// Claim a skeleton for a normalized username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUsername {
    /// The skeleton of the username (see `username_skeleton`): it names
    /// the claim's stream.
    pub skeleton: String,
    /// The normalized username.
    pub username: String,
}

/// A claim stream: which username holds a skeleton. Registration claims the
/// skeleton first, then creates the user: two confusable names registered
/// at once, on any replica, cannot both get through, since both claims go
/// to one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UsernameClaim {
    /// Nobody holds it.
    #[default]
    Free,
    /// This normalized username holds it.
    ClaimedBy(String),
}

impl Decider for UsernameClaim {
    type Command = ClaimUsername;
    type Event = AuthEvent;
    type State = UsernameClaim;
    type Rejection = Rejection;

    fn stream(c: &ClaimUsername) -> String {
        claim_stream(&c.skeleton)
    }

    /// Most skeletons are claimed once: assume a new stream (if it exists,
    /// the append conflicts and the claim is read then).
    fn starts_stream(_: &ClaimUsername) -> bool {
        true
    }

    fn decide(command: &ClaimUsername, state: &Self) -> Result<Vec<AuthEvent>, Rejection> {
        match state {
            Self::Free => Ok(vec![AuthEvent::UsernameClaimed {
                username: command.username.clone(),
            }]),
            // The same name again (a registration retried after a crash
            // between its two appends): already claimed, nothing to add.
            Self::ClaimedBy(holder) if *holder == command.username => Ok(vec![]),
            Self::ClaimedBy(_) => Err(Rejection::UsernameTaken),
        }
    }

    fn evolve(state: Self, event: &AuthEvent) -> Self {
        match (state, event) {
            (Self::Free, AuthEvent::UsernameClaimed { username }) => {
                Self::ClaimedBy(username.clone())
            }
            (state, _) => state,
        }
    }
}
