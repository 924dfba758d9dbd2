//! Users and tokens: value types parsed at the edge, the events, and errors.

use chrono::{DateTime, Utc};
use event_store::{EventStoreError, NewEvent};
use serde::{Deserialize, Serialize};

/// Longest username accepted (as Django's `User.username`).
pub const MAX_USERNAME: usize = 150;
/// Longest e-mail address accepted (as Django's `EmailField`).
pub const MAX_EMAIL: usize = 254;
/// Shortest password accepted at registration.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted anywhere (checked before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// A field that failed validation and why, in DRF's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, as named in the REST API.
    pub field: &'static str,
    /// The message shown to the client.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What an auth command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// One or more request fields are invalid.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// The username is taken (case-insensitively).
    #[error("username taken")]
    UsernameTaken,
    /// Wrong username or password (deliberately the same error for both).
    #[error("incorrect credentials")]
    IncorrectCredentials,
    /// Too many failed logins for this username.
    #[error("login throttled for {retry_after_secs} s")]
    Throttled {
        /// Seconds until a login may be tried again.
        retry_after_secs: u64,
    },
    /// The token is unknown, revoked, expired or malformed.
    #[error("invalid token")]
    InvalidToken,
    /// The change committed but this instance has not applied it in time.
    #[error("committed, but not yet visible on this instance")]
    NotYetApplied,
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// Hashing failed (not a client's fault).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// `Result` with [`AuthError`].
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// A username: 1–150 letters, digits and `@.+-_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Parses a username for registration.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let f = |m: &str| FieldError::new("username", m);
        if raw.is_empty() {
            return Err(f("This field may not be blank."));
        }
        if raw.chars().count() > MAX_USERNAME {
            return Err(f("Ensure this field has no more than 150 characters."));
        }
        if !raw
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
        {
            return Err(f(
                "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The username as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key under which usernames are unique: case-folded.
pub fn normalize_username(raw: &str) -> String {
    raw.to_lowercase()
}

/// The event stream of one user, keyed by the normalized username, so that
/// appending its first event with `NoStream` claims the name.
pub fn user_stream(normalized: &str) -> String {
    format!("user-{normalized}")
}

/// The stream whose versions allocate user ids (see `event_store::ids`).
pub const USER_IDS_STREAM: &str = "user-ids";

/// An e-mail address of plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: `local@domain.tld`, no spaces, at most 254 chars.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("email", "Enter a valid email address.");
        if raw.is_empty() {
            return Err(FieldError::new("email", "This field may not be blank."));
        }
        if raw.chars().count() > MAX_EMAIL {
            return Err(FieldError::new(
                "email",
                "Ensure this field has no more than 254 characters.",
            ));
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
        if local_ok && domain_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid())
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password within the accepted length (counted in characters).
pub struct Password(String);

impl Password {
    /// Parses a new password (registration): 8–1024 characters.
    pub fn parse_new(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(FieldError::new("password", "This field may not be blank."));
        }
        if n < MIN_PASSWORD {
            return Err(FieldError::new(
                "password",
                "Ensure this field has at least 8 characters.",
            ));
        }
        Self::parse_given(raw)
    }

    /// Parses a password given at login: 1–1024 characters.
    pub fn parse_given(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(FieldError::new("password", "This field may not be blank."));
        }
        if n > MAX_PASSWORD {
            return Err(FieldError::new(
                "password",
                "Ensure this field has no more than 1024 characters.",
            ));
        }
        Ok(Self(raw))
    }

    /// The password's bytes, for hashing.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Every event of the auth service. The variant names are the stored event
/// types: stable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AuthEvent {
    /// A user exists. First event of the user's stream.
    UserRegistered {
        /// Positive, unique, increasing.
        user_id: i64,
        /// As given at registration.
        username: String,
        /// As given at registration.
        email: String,
        /// argon2id PHC string.
        password_hash: String,
    },
    /// A token was issued. Only its SHA-256 digest is stored.
    TokenIssued {
        /// Its owner.
        user_id: i64,
        /// Hex SHA-256 of the token's 32 bytes.
        digest: String,
        /// When it stops being valid.
        expires_at: DateTime<Utc>,
    },
    /// One token was revoked.
    TokenRevoked {
        /// Its owner.
        user_id: i64,
        /// Hex SHA-256 of the token's 32 bytes.
        digest: String,
    },
    /// Every token the user held at that point was revoked.
    AllTokensRevoked {
        /// The user.
        user_id: i64,
    },
}

impl AuthEvent {
    /// The stored event type: the variant's name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::TokenIssued { .. } => "TokenIssued",
            Self::TokenRevoked { .. } => "TokenRevoked",
            Self::AllTokensRevoked { .. } => "AllTokensRevoked",
        }
    }

    /// The event ready to append.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), self).expect("auth events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_django_rules() {
        assert!(Username::parse("hp1").is_ok());
        assert!(Username::parse("a.b+c-d_e@f").is_ok());
        assert!(Username::parse("Zoë").is_ok());
        assert!(Username::parse("").is_err());
        assert!(Username::parse("has space").is_err());
        assert!(Username::parse(&"x".repeat(150)).is_ok());
        assert!(Username::parse(&"x".repeat(151)).is_err());
    }

    #[test]
    fn emails_need_a_plausible_shape() {
        for ok in [
            "rit@gmail.com",
            "a.b+c@sub.example.org",
            "x@xn--d1acufc.xn--p1ai",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@x.com",
            "a@",
            "a@b",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            "a@1.2",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_limits_count_characters() {
        assert!(Password::parse_new("1234567".into()).is_err());
        assert!(Password::parse_new("12345678".into()).is_ok());
        assert!(Password::parse_new("é".repeat(1024)).is_ok());
        assert!(Password::parse_new("é".repeat(1025)).is_err());
        assert!(Password::parse_given("x".into()).is_ok());
        assert_eq!(
            format!("{:?}", Password::parse_given("secret".into()).unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn event_types_match_their_tag() {
        let e = AuthEvent::AllTokensRevoked { user_id: 3 };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], e.event_type());
        assert_eq!(serde_json::from_value::<AuthEvent>(json).unwrap(), e);
    }
}
