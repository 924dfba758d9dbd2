//! The rules of users and tokens: value types parsed at the edge, the
//! events, and the pure decider of one user's stream. No I/O here: hashing,
//! randomness and the clock are the caller's, and come in through commands.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use event_sourcing::decider::Decider;
use event_store::Event;
use platform::FieldError;
use serde::{Deserialize, Serialize};

use crate::token::TokenDigest;

event_store::id_type! {
    /// A user's id: positive, unique, increasing, never reused.
    pub struct UserId;
}

/// Longest username accepted (as Django's `User.username`).
pub const MAX_USERNAME: usize = 150;
/// Longest e-mail address accepted (as Django's `EmailField`).
pub const MAX_EMAIL: usize = 254;
/// Shortest password accepted at registration.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted anywhere (checked before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// A username: 1–150 letters, digits and `@.+-_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// A letter or a number by Unicode general category (L*, N*): what
/// Python's `str.isalnum` and so Django's `\w` accept. (Rust's
/// `char::is_alphanumeric` also accepts combining marks such as Devanagari
/// vowel signs, which Django refuses.)
fn is_alphanumeric(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

impl Username {
    /// Parses a username for registration, NFKC-normalised first (as
    /// Django does).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let raw = &nfkc(raw);
        let f = |m: &str| FieldError::new("username", m);
        if raw.is_empty() {
            return Err(f("This field may not be blank."));
        }
        if raw.chars().count() > MAX_USERNAME {
            return Err(f("Ensure this field has no more than 150 characters."));
        }
        if !raw
            .chars()
            .all(|c| is_alphanumeric(c) || "@.+-_".contains(c))
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

/// A login's fields: the username (only bounded: any name may be tried) and
/// the password, or every field error at once.
pub fn parse_login(
    username: &str,
    password: String,
) -> Result<(String, Password), Vec<FieldError>> {
    let mut errors = Vec::new();
    if username.is_empty() {
        errors.push(FieldError::new("username", "This field may not be blank."));
    } else if username.chars().count() > MAX_USERNAME {
        errors.push(FieldError::new(
            "username",
            "Ensure this field has no more than 150 characters.",
        ));
    }
    match Password::parse_given(password) {
        Ok(p) if errors.is_empty() => Ok((username.to_owned(), p)),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

/// The key under which usernames are unique: case-folded.
/// A username as Django stores it: NFKC-normalised, so `ａｄｍｉｎ`
/// (fullwidth) is `admin` and `ﬁle` is `file`.
pub fn nfkc(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    raw.nfkc().collect()
}

/// The key of a user's stream: the NFKC form, lowercased. (ASCII names
/// keep the key they always had.)
pub fn normalize_username(raw: &str) -> String {
    nfkc(raw).to_lowercase()
}

/// What two usernames share when a reader could take one for the other:
/// the Unicode TR39 skeleton of the name's NFKC form under full case
/// folding. `Admin`, `аdmin` (Cyrillic а), `admіn` (Ukrainian і) and `ａｄｍｉｎ` have one;
/// so have `straße` and `STRASSE`. Registration refuses a name whose
/// skeleton is taken.
pub fn username_skeleton(raw: &str) -> String {
    let folded = nfkc(&caseless::default_case_fold_str(&nfkc(raw)));
    unicode_security::skeleton(&folded).collect()
}

/// The event stream of one user, keyed by the normalized username, so that
/// appending its first event with `NoStream` claims the name.
pub fn user_stream(normalized: &str) -> String {
    format!("user-{normalized}")
}

/// The stream that claims a username's skeleton: its first event names the
/// one username that may register with that skeleton.
pub fn claim_stream(skeleton: &str) -> String {
    format!("username-{skeleton}")
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
                .all(|c| is_alphanumeric(c) || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| is_alphanumeric(c) || c == '-')
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
        /// Its id.
        user_id: UserId,
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
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
        /// When it stops being valid.
        expires_at: DateTime<Utc>,
    },
    /// One token was revoked.
    TokenRevoked {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
    },
    /// Every token the user held at that point was revoked.
    AllTokensRevoked {
        /// The user.
        user_id: UserId,
    },
    /// Logins of the user were being refused after failed attempts (noted
    /// at most once per [`THROTTLE_NOTE_EVERY`], for the user's activity).
    LoginThrottled {
        /// The user.
        user_id: UserId,
        /// When a refusal was noted.
        at: DateTime<Utc>,
    },
    /// A username skeleton is claimed by one username (normalized). First
    /// event of a claim stream.
    UsernameClaimed {
        /// The normalized username that holds the claim.
        username: String,
    },
}

impl Event for AuthEvent {}

/// A token handed out: its digest and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The token's digest.
    pub digest: TokenDigest,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// What may be asked of one user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create the user, with a first token.
    Register {
        /// A freshly allocated id.
        user_id: UserId,
        /// The username.
        username: Username,
        /// The address.
        email: Email,
        /// argon2id PHC string of the password.
        password_hash: String,
        /// The first token.
        grant: Grant,
    },
    /// Issue a token (the caller has checked the password).
    IssueToken(Grant),
    /// Revoke one token, if it is live at `now`.
    RevokeToken {
        /// The token's digest.
        digest: TokenDigest,
        /// The time of the request.
        now: DateTime<Utc>,
    },
    /// Revoke every token of the user.
    RevokeAllTokens,
    /// Note that a login was refused as throttled at `now` (nothing, if
    /// one was noted less than [`THROTTLE_NOTE_EVERY`] before).
    NoteThrottled {
        /// The time of the refusal.
        now: DateTime<Utc>,
    },
}

/// A command to one user, named by their normalized username, which names
/// the user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToUser {
    /// The user's normalized username (see `normalize_username`).
    pub user: String,
    /// What is asked of them.
    pub command: UserCommand,
}

impl UserCommand {
    /// This command, to the user whose normalized username is `user`.
    pub fn to(self, user: impl Into<String>) -> ToUser {
        ToUser {
            user: user.into(),
            command: self,
        }
    }
}

/// The least time between two `LoginThrottled` events of one user: a flood
/// of refused logins writes one event a minute, not one per attempt.
pub const THROTTLE_NOTE_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Why a user command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The username is taken (case-insensitively).
    UsernameTaken,
    /// No user has this username.
    UnknownUser,
    /// The token is not a live token of this user.
    InvalidToken,
}

/// A registered user, as their stream tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub user_id: UserId,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Tokens issued and not revoked, with their expiry.
    tokens: HashMap<TokenDigest, DateTime<Utc>>,
    /// When a throttled login was last noted.
    throttled_at: Option<DateTime<Utc>>,
}

/// One user's stream: the decider of registration and tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum User {
    /// Nobody has this username.
    #[default]
    Unregistered,
    /// The user exists.
    Registered(Account),
}

impl User {
    /// The account, if registered.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Self::Unregistered => None,
            Self::Registered(a) => Some(a),
        }
    }
}

fn issued(user_id: UserId, grant: &Grant) -> AuthEvent {
    AuthEvent::TokenIssued {
        user_id,
        digest: grant.digest,
        expires_at: grant.expires_at,
    }
}

impl Decider for User {
    type Command = ToUser;
    type Event = AuthEvent;
    type State = User;
    type Rejection = Rejection;

    fn stream(c: &ToUser) -> String {
        user_stream(&c.user)
    }

    /// Registering starts the user's stream: appending its first event
    /// expecting no stream claims the name.
    fn starts_stream(c: &ToUser) -> bool {
        matches!(c.command, UserCommand::Register { .. })
    }

    fn decide(c: &ToUser, state: &User) -> Result<Vec<AuthEvent>, Rejection> {
        match (&c.command, state) {
            (UserCommand::Register { .. }, User::Registered(_)) => Err(Rejection::UsernameTaken),
            (
                UserCommand::Register {
                    user_id,
                    username,
                    email,
                    password_hash,
                    grant,
                },
                User::Unregistered,
            ) => Ok(vec![
                AuthEvent::UserRegistered {
                    user_id: *user_id,
                    username: username.as_str().to_owned(),
                    email: email.as_str().to_owned(),
                    password_hash: password_hash.clone(),
                },
                issued(*user_id, grant),
            ]),
            (
                UserCommand::IssueToken(_) | UserCommand::NoteThrottled { .. },
                User::Unregistered,
            ) => Err(Rejection::UnknownUser),
            (_, User::Unregistered) => Err(Rejection::InvalidToken),
            (UserCommand::IssueToken(grant), User::Registered(a)) => {
                Ok(vec![issued(a.user_id, grant)])
            }
            (UserCommand::RevokeToken { digest, now }, User::Registered(a)) => {
                if a.tokens.get(digest).is_none_or(|expiry| expiry <= now) {
                    return Err(Rejection::InvalidToken);
                }
                Ok(vec![AuthEvent::TokenRevoked {
                    user_id: a.user_id,
                    digest: *digest,
                }])
            }
            (UserCommand::RevokeAllTokens, User::Registered(a)) => {
                Ok(vec![AuthEvent::AllTokensRevoked { user_id: a.user_id }])
            }
            (UserCommand::NoteThrottled { now }, User::Registered(a)) => {
                if a.throttled_at
                    .is_some_and(|at| *now - at < THROTTLE_NOTE_EVERY)
                {
                    return Ok(vec![]);
                }
                Ok(vec![AuthEvent::LoginThrottled {
                    user_id: a.user_id,
                    at: *now,
                }])
            }
        }
    }

    /// Issuing a token and revoking every token only add to a registered
    /// user's stream: concurrent logins of one user must not conflict.
    fn commutes(c: &ToUser) -> bool {
        matches!(
            c.command,
            UserCommand::IssueToken(_) | UserCommand::RevokeAllTokens
        )
    }

    fn evolve(state: User, event: &AuthEvent) -> User {
        match (state, event) {
            (
                User::Unregistered,
                AuthEvent::UserRegistered {
                    user_id,
                    username,
                    email,
                    password_hash,
                },
            ) => User::Registered(Account {
                user_id: *user_id,
                username: username.clone(),
                email: email.clone(),
                password_hash: password_hash.clone(),
                tokens: HashMap::new(),
                throttled_at: None,
            }),
            (User::Registered(mut a), event) => {
                match event {
                    AuthEvent::TokenIssued {
                        digest, expires_at, ..
                    } => {
                        a.tokens.insert(*digest, *expires_at);
                    }
                    AuthEvent::TokenRevoked { digest, .. } => {
                        a.tokens.remove(digest);
                    }
                    AuthEvent::AllTokensRevoked { .. } => a.tokens.clear(),
                    AuthEvent::LoginThrottled { at, .. } => a.throttled_at = Some(*at),
                    AuthEvent::UserRegistered { .. } | AuthEvent::UsernameClaimed { .. } => {}
                }
                User::Registered(a)
            }
            (state, _) => state,
        }
    }
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
        // Python's `\w`: letters and numbers of any script, not marks.
        assert!(Username::parse("Ωμέγα٣").is_ok());
        assert!(
            Username::parse("\u{915}\u{93F}").is_err(),
            "a vowel sign is a mark"
        );
        assert!(
            Username::parse("\u{301}").is_err(),
            "a lone combining accent"
        );
    }

    #[test]
    fn usernames_are_nfkc_and_confusables_share_a_skeleton() {
        assert_eq!(Username::parse("ａｄｍｉｎ").unwrap().as_str(), "admin");
        assert_eq!(Username::parse("ﬁle").unwrap().as_str(), "file");
        assert_eq!(normalize_username("Admin"), "admin");
        let admin = username_skeleton("admin");
        for confusable in [
            "Admin",
            "ADMIN",
            "\u{0430}dmin",
            "ａｄｍｉｎ",
            "adm\u{0456}n",
        ] {
            assert_eq!(username_skeleton(confusable), admin, "{confusable}");
        }
        assert_eq!(username_skeleton("straße"), username_skeleton("STRASSE"));
        assert_eq!(username_skeleton("ﬁle"), username_skeleton("file"));
        assert_ne!(username_skeleton("alice"), username_skeleton("bob"));
        assert_ne!(username_skeleton("admin1"), username_skeleton("admin2"));
    }

    #[test]
    fn a_skeleton_is_claimed_once_and_again_only_by_the_same_name() {
        let claim = |name: &str| ClaimUsername {
            skeleton: username_skeleton(name),
            username: name.to_owned(),
        };
        given::<UsernameClaim>(vec![])
            .when(claim("admin"))
            .then(vec![AuthEvent::UsernameClaimed {
                username: "admin".into(),
            }]);
        let claimed = || {
            vec![AuthEvent::UsernameClaimed {
                username: "admin".into(),
            }]
        };
        given::<UsernameClaim>(claimed())
            .when(claim("admin"))
            .then(vec![]);
        given::<UsernameClaim>(claimed())
            .when(claim("\u{0430}dmin"))
            .then_rejects(Rejection::UsernameTaken);
    }

    #[test]
    fn a_throttled_login_is_noted_once_a_minute_and_only_for_a_user() {
        let registered = AuthEvent::UserRegistered {
            user_id: UserId(7),
            username: "ann".into(),
            email: "ann@example.com".into(),
            password_hash: "h".into(),
        };
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let noted = AuthEvent::LoginThrottled {
            user_id: UserId(7),
            at: t0,
        };
        let note = |secs| UserCommand::NoteThrottled {
            now: t0 + chrono::TimeDelta::seconds(secs),
        };
        given::<User>(vec![registered.clone()])
            .when(alice(note(0)))
            .then(vec![noted.clone()]);
        given::<User>(vec![registered.clone(), noted.clone()])
            .when(alice(note(59)))
            .then(vec![]);
        given::<User>(vec![registered, noted])
            .when(alice(note(60)))
            .then(vec![AuthEvent::LoginThrottled {
                user_id: UserId(7),
                at: t0 + THROTTLE_NOTE_EVERY,
            }]);
        given::<User>(vec![])
            .when(alice(note(0)))
            .then_rejects(Rejection::UnknownUser);
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

    use chrono::TimeDelta;
    use event_sourcing::decider::spec::given;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn grant() -> Grant {
        let (_, digest) = crate::token::generate().unwrap();
        Grant {
            digest,
            expires_at: t0() + TimeDelta::hours(10),
        }
    }

    /// `command`, to the user the tests register (Alice).
    fn alice(command: UserCommand) -> ToUser {
        command.to("alice")
    }

    fn register(grant: Grant) -> UserCommand {
        UserCommand::Register {
            user_id: UserId(7),
            username: Username::parse("Alice").unwrap(),
            email: Email::parse("a@example.com").unwrap(),
            password_hash: "$argon2id$x".into(),
            grant,
        }
    }

    fn registered() -> AuthEvent {
        AuthEvent::UserRegistered {
            user_id: UserId(7),
            username: "Alice".into(),
            email: "a@example.com".into(),
            password_hash: "$argon2id$x".into(),
        }
    }

    #[test]
    fn registering_records_the_user_and_a_first_token() {
        let g = grant();
        given::<User>([])
            .when(alice(register(g)))
            .then([registered(), issued(UserId(7), &g)]);
    }

    #[test]
    fn a_taken_username_is_refused() {
        given::<User>([registered()])
            .when(alice(register(grant())))
            .then_rejects(Rejection::UsernameTaken);
    }

    #[test]
    fn tokens_are_issued_to_registered_users_only() {
        let g = grant();
        given::<User>([registered()])
            .when(alice(UserCommand::IssueToken(g)))
            .then([issued(UserId(7), &g)]);
        given::<User>([])
            .when(alice(UserCommand::IssueToken(g)))
            .then_rejects(Rejection::UnknownUser);
    }

    #[test]
    fn a_live_token_is_revoked_once() {
        let g = grant();
        let revoke = || UserCommand::RevokeToken {
            digest: g.digest,
            now: t0(),
        };
        let revoked = AuthEvent::TokenRevoked {
            user_id: UserId(7),
            digest: g.digest,
        };
        given::<User>([registered(), issued(UserId(7), &g)])
            .when(alice(revoke()))
            .then([revoked.clone()]);
        given::<User>([registered(), issued(UserId(7), &g), revoked])
            .when(alice(revoke()))
            .then_rejects(Rejection::InvalidToken);
        given::<User>([
            registered(),
            issued(UserId(7), &g),
            AuthEvent::AllTokensRevoked { user_id: UserId(7) },
        ])
        .when(alice(revoke()))
        .then_rejects(Rejection::InvalidToken);
    }

    #[test]
    fn an_expired_or_unknown_token_cannot_be_revoked() {
        let g = grant();
        given::<User>([registered(), issued(UserId(7), &g)])
            .when(alice(UserCommand::RevokeToken {
                digest: g.digest,
                now: g.expires_at,
            }))
            .then_rejects(Rejection::InvalidToken);
        given::<User>([registered()])
            .when(alice(UserCommand::RevokeToken {
                digest: g.digest,
                now: t0(),
            }))
            .then_rejects(Rejection::InvalidToken);
        given::<User>([])
            .when(alice(UserCommand::RevokeAllTokens))
            .then_rejects(Rejection::InvalidToken);
    }

    #[test]
    fn logging_out_everywhere_revokes_every_token() {
        given::<User>([
            registered(),
            issued(UserId(7), &grant()),
            issued(UserId(7), &grant()),
        ])
        .when(alice(UserCommand::RevokeAllTokens))
        .then([AuthEvent::AllTokensRevoked { user_id: UserId(7) }]);
    }

    #[test]
    fn events_decode_to_what_was_stored() {
        let g = grant();
        for e in [
            registered(),
            issued(UserId(7), &g),
            AuthEvent::AllTokensRevoked { user_id: UserId(3) },
        ] {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<AuthEvent>(&json).unwrap(), e);
        }
    }
}
