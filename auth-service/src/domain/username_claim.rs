//! A username's look-alike skeleton, claimed by one name.

use event_sourcing::decider::Decider;

use super::events::{AuthEvent, Rejection};
use super::values::UserId;

/// The stream that claims a username's skeleton, named by the skeleton's
/// MAC: its first event names the one username (by MAC) that may register
/// with that skeleton, and the user registering under it. (Claims written
/// before sealing are named by the skeleton itself.)
pub fn claim_stream(skeleton_mac: &str) -> String {
    format!("username-{skeleton_mac}")
}

/// Claim a skeleton for a username, for a user; or give it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUsername {
    /// MAC of the skeleton of the username (see `username_skeleton`): it
    /// names the claim's stream.
    pub skeleton: String,
    /// MAC of the normalized username.
    pub name: String,
    /// The user registering (or erased).
    pub user_id: UserId,
    /// Give the claim up (its user is erased) instead of taking it.
    pub release: bool,
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
    /// This username (its MAC) holds it, for this user.
    ClaimedBy {
        /// MAC of the normalized username.
        name: String,
        /// The user it was claimed for.
        user_id: UserId,
    },
}

impl UsernameClaim {
    /// The user a registration of the username `name` (a MAC) goes on as:
    /// the one the claim was made for (a registration retried after a
    /// crash between its claim and its user takes over that id; of two
    /// racing ones, only one can then create the user).
    pub fn holder_for(&self, name: &str) -> Option<UserId> {
        match self {
            Self::ClaimedBy {
                name: held,
                user_id,
            } if held == name => Some(*user_id),
            _ => None,
        }
    }
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
    /// the append conflicts and the claim is read then). A release reads it.
    fn starts_stream(c: &ClaimUsername) -> bool {
        !c.release
    }

    fn decide(command: &ClaimUsername, state: &Self) -> Result<Vec<AuthEvent>, Rejection> {
        if command.release {
            // Only the user holding it gives it up; anything else: nothing
            // to do (released already, or claimed anew since).
            return Ok(match state {
                Self::ClaimedBy { user_id, .. } if *user_id == command.user_id => {
                    vec![AuthEvent::UsernameReleased { user_id: *user_id }]
                }
                _ => vec![],
            });
        }
        match state {
            Self::Free => Ok(vec![AuthEvent::UsernameClaimed {
                name: command.name.clone(),
                user_id: command.user_id,
            }]),
            // The same name again (a registration retried, or racing):
            // already claimed, nothing to add; it goes on as the holder
            // (see `holder_for`).
            Self::ClaimedBy { name, .. } if *name == command.name => Ok(vec![]),
            Self::ClaimedBy { .. } => Err(Rejection::UsernameTaken),
        }
    }

    fn evolve(state: Self, event: &AuthEvent) -> Self {
        match (state, event) {
            (Self::Free, AuthEvent::UsernameClaimed { name, user_id }) => Self::ClaimedBy {
                name: name.clone(),
                user_id: *user_id,
            },
            (Self::ClaimedBy { user_id, .. }, AuthEvent::UsernameReleased { user_id: freed })
                if user_id == *freed =>
            {
                Self::Free
            }
            (state, _) => state,
        }
    }
}
