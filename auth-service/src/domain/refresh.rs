//! Sliding expiry, as knox's `AUTO_REFRESH`: an authenticated request
//! moves its token's expiry to a full lifetime from now, at most once per
//! interval, and never past a cap counted from the token's issue.

use chrono::{DateTime, TimeDelta, Utc};

/// When and how far tokens are refreshed (`AUTH_TOKEN_AUTO_REFRESH` on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// A token's lifetime: a refresh moves its expiry to `now + ttl`.
    pub ttl: TimeDelta,
    /// The least move worth an event (knox's `MIN_REFRESH_INTERVAL`).
    pub min_refresh: TimeDelta,
    /// No expiry beyond `issued + max_ttl` (knox's `AUTO_REFRESH_MAX_TTL`).
    pub max_ttl: Option<TimeDelta>,
}

impl RefreshPolicy {
    /// The new expiry of a token issued at `issued` and expiring at
    /// `expires`, used at `now`, if it moves by more than
    /// [`RefreshPolicy::min_refresh`] (as knox: strictly more); `None`
    /// otherwise, and always once the cap is reached.
    pub fn refreshed(
        &self,
        issued: DateTime<Utc>,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut new = now.checked_add_signed(self.ttl)?;
        if let Some(cap) = self.max_ttl.and_then(|max| issued.checked_add_signed(max)) {
            new = new.min(cap);
        }
        (new - expires > self.min_refresh).then_some(new)
    }
}
