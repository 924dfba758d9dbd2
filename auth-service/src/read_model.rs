//! The in-memory read model of users and live tokens, folded from every
//! user's events: what `Authenticate` answers from, with no store read.

use chrono::{DateTime, TimeDelta, Utc};
use event_sourcing::idempotency::{Keyed, KeyedIndex, KeyedModel};
use event_sourcing::read_model::ReadModel;
use event_sourcing::read_model::cow::{CowMap, CowRanges};
use event_sourcing::read_model::history::{Fact, Histories};
use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, Frozen, Snapshot};
use event_store::RecordedEvent;
use uuid::Uuid;

use crate::domain::{AuthEvent, Personal, UserId, normalize_username, username_skeleton};

/// A user's username and email, as the view holds them: sealed (every
/// registration since sealing: opened by the service, with the user's key,
/// when an answer needs them), or in the clear (older ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// `Personal` as JSON, sealed under the user's key.
    Sealed(String),
    /// Written before sealing.
    Clear {
        /// As registered.
        username: String,
        /// As registered.
        email: String,
    },
}
use crate::token::TokenDigest;
use crate::token_table::{FrozenTokens, TokenTable};

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Positive, unique, increasing.
    pub id: UserId,
    /// The user's stream (`account-<id>`; `user-<name>` for users
    /// registered before sealing).
    pub stream: String,
    /// Username and email.
    pub profile: Profile,
    /// When the registration was stored.
    pub joined: DateTime<Utc>,
    /// How many times the password changed: tokens issued under an
    /// earlier password are dead on arrival.
    pub password_changes: u32,
}

/// A token held, without its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its owner.
    pub user_id: UserId,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it stops being valid (refreshes included).
    pub expires_at: DateTime<Utc>,
    /// The position of its `TokenIssued` (where the sealed client is).
    pub issued_position: u64,
    /// How many `TokenRefreshed` its stream holds.
    pub refreshes: u32,
}

/// A live token of a user, without its secret (what the list shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveToken {
    /// Its digest (to tell the caller's own token).
    pub digest: TokenDigest,
    /// When it was issued, until when, and where it was recorded.
    pub record: TokenRecord,
}

/// A registration sent with an idempotency key, as its retry needs it
/// (kept in the view's [`KeyedIndex`] beside the request's fingerprint):
/// the user. A retry is answered as a login (see the service's
/// `register`); what stamps of earlier releases kept beside it (the first
/// token, sealed under a key derived from the password) is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// The user registered.
    pub user_id: UserId,
}

/// How often (in event time) every expired token is forgotten.
const SWEEP_EVERY: TimeDelta = TimeDelta::hours(1);

/// Users by id and by the MAC of their normalized username (by the name
/// itself for users registered before sealing); tokens by digest.
///
/// Everything a snapshot writes is kept copy-on-write (users in
/// [`CowRanges`] by id, names in [`CowMap`]s, the token table's chunks, the
/// activity's ranges), so a save freezes the view in microseconds and
/// encodes it while new events are applied.
#[derive(Debug, Default)]
pub struct AuthView {
    by_id: CowRanges<UserId, UserRecord>,
    /// Older users by normalized username.
    by_name: CowMap<String, UserId>,
    /// Older users by the skeleton of their username (see
    /// `username_skeleton`), for the names registered before skeletons
    /// were claimed.
    by_skeleton: CowMap<String, UserId>,
    /// Users by the MAC of their normalized username.
    by_name_mac: CowMap<String, UserId>,
    /// Users by the MAC of their username's skeleton.
    by_skeleton_mac: CowMap<String, UserId>,
    /// Tokens by digest, and by user.
    tokens: TokenTable,
    /// When the next sweep of expired tokens is due, in event time, so that
    /// a rebuild forgets exactly what the live model forgot.
    next_sweep: Option<DateTime<Utc>>,
    /// Registrations sent with an idempotency key, by the id of their
    /// `UserRegistered` event.
    keyed: KeyedIndex<Registration>,
    /// What each user's account did, oldest first ("my activity").
    activity: Histories<UserId>,
    /// Users erased, in the order they were (ids only): their keys are
    /// destroyed again at each start, in case a process died between the
    /// erasure and the key's destruction.
    erased: Vec<UserId>,
}

/// What a user's account did, as their activity keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountActivity {
    /// Registered.
    Registered = 0,
    /// Logged in (a token issued).
    LoggedIn = 1,
    /// Logged out (one token revoked).
    LoggedOut = 2,
    /// Logged out everywhere.
    LoggedOutAll = 3,
    /// A login refused as throttled.
    Throttled = 4,
    /// A wrong password was given.
    LoginFailed = 5,
    /// The password changed (and every other token was revoked).
    PasswordChanged = 6,
    /// A token was revoked from another of the user's sessions.
    TokenRevoked = 7,
    /// A token's expiry moved (noted at most once a day per token).
    TokenRefreshed = 8,
}

/// An entry of a user's activity: what happened, and the position of the
/// event that says so (where its details are: the client, the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityEntry {
    /// What happened.
    pub kind: AccountActivity,
    /// The position of its event.
    pub position: u64,
}

impl AccountActivity {
    /// The entry `event` adds to its user's activity, if any (a refresh is
    /// decided by the view: at most one a day).
    fn of(event: &AuthEvent) -> Option<(UserId, Self)> {
        Some(match event {
            AuthEvent::UserRegistered { user_id, .. }
            | AuthEvent::UserRegisteredInClear { user_id, .. } => (*user_id, Self::Registered),
            AuthEvent::TokenIssued { user_id, .. } => (*user_id, Self::LoggedIn),
            AuthEvent::TokenRevoked {
                user_id,
                digest,
                by,
                ..
            } => match by {
                Some(by) if by != digest => (*user_id, Self::TokenRevoked),
                _ => (*user_id, Self::LoggedOut),
            },
            AuthEvent::AllTokensRevoked { user_id } => (*user_id, Self::LoggedOutAll),
            AuthEvent::LoginThrottled { user_id, .. } => (*user_id, Self::Throttled),
            AuthEvent::LoginFailed { user_id, .. } => (*user_id, Self::LoginFailed),
            AuthEvent::PasswordChanged { user_id, .. } => (*user_id, Self::PasswordChanged),
            AuthEvent::TokenRefreshed { .. }
            | AuthEvent::UserErased { .. }
            | AuthEvent::UsernameReleased { .. }
            | AuthEvent::UsernameClaimed { .. }
            | AuthEvent::UsernameClaimedInClear { .. } => {
                return None;
            }
        })
    }

    /// Every kind, in code order.
    const ALL: [Self; 9] = [
        Self::Registered,
        Self::LoggedIn,
        Self::LoggedOut,
        Self::LoggedOutAll,
        Self::Throttled,
        Self::LoginFailed,
        Self::PasswordChanged,
        Self::TokenRevoked,
        Self::TokenRefreshed,
    ];

    /// The fact kept for this kind of entry, recorded at `position`: the
    /// kind in the low [`KIND_BITS`], the position above them. A fact stays
    /// narrow (12 bytes, see `Histories`) while its code fits in 32 bits:
    /// up to position 2^27 (about 134 million events; it was 2^23, 8.4
    /// million, with the kind in a whole byte).
    fn fact(self, position: u64) -> i64 {
        ((position as i64) << KIND_BITS) | self as i64
    }
}

/// The bits of an activity fact's code that hold its kind.
const KIND_BITS: u32 = 4;
const _: () = assert!(AccountActivity::ALL.len() <= 1 << KIND_BITS);

impl ActivityEntry {
    /// What the activity fact `what` records (`None`: an unknown code).
    pub fn of_fact(what: i64) -> Option<Self> {
        let kind = AccountActivity::ALL
            .into_iter()
            .find(|a| *a as i64 == what & ((1 << KIND_BITS) - 1))?;
        Some(Self {
            kind,
            position: (what >> KIND_BITS) as u64,
        })
    }
}

impl KeyedModel for AuthView {
    type Created = Registration;

    fn keyed(&self) -> &KeyedIndex<Registration> {
        &self.keyed
    }
}

impl AuthView {
    /// The newest `newest` entries of `user`'s activity (all with `None`),
    /// newest first, and how many there are in all.
    pub fn activity(&self, user: UserId, newest: Option<usize>) -> (Vec<Fact>, usize) {
        self.activity.newest(user, newest)
    }

    /// A user by id.
    pub fn user(&self, id: UserId) -> Option<&UserRecord> {
        self.by_id.get(id)
    }

    /// The user registered under the normalized username `normalized`,
    /// whose MAC is `name_mac`.
    pub fn by_username(&self, normalized: &str, name_mac: &str) -> Option<&UserRecord> {
        self.by_name_mac
            .get(name_mac)
            .or_else(|| self.by_name.get(normalized))
            .and_then(|id| self.by_id.get(*id))
    }

    /// The user whose username a reader could take for one of skeleton
    /// `skeleton` (its MAC: `skeleton_mac`), if the name is not `name_mac`'s
    /// (or, for older users, `normalized`).
    pub fn confusable(
        &self,
        (skeleton, skeleton_mac): (&str, &str),
        (normalized, name_mac): (&str, &str),
    ) -> bool {
        let same = |id: &UserId| {
            self.by_name_mac.get(name_mac) == Some(id) || self.by_name.get(normalized) == Some(id)
        };
        [
            self.by_skeleton_mac.get(skeleton_mac),
            self.by_skeleton.get(skeleton),
        ]
        .into_iter()
        .flatten()
        .any(|id| !same(id))
    }

    /// The user a live token belongs to, if the token is known, unrevoked and
    /// unexpired at `now`.
    pub fn by_token(&self, digest: &TokenDigest, now: DateTime<Utc>) -> Option<&UserRecord> {
        self.live_token(digest, now).map(|(user, _)| user)
    }

    /// A live token (as [`AuthView::by_token`]), with its user.
    pub fn live_token(
        &self,
        digest: &TokenDigest,
        now: DateTime<Utc>,
    ) -> Option<(&UserRecord, TokenRecord)> {
        let t = self.tokens.get(digest)?;
        if t.expires_at <= now {
            return None;
        }
        Some((self.by_id.get(t.user_id)?, t))
    }

    /// Drops everything about an erased user: record, names, tokens,
    /// activity, keyed registrations. (The name maps are scanned: an
    /// erasure is rare.)
    fn forget(&mut self, user: UserId) {
        self.by_id.remove(user);
        for names in [
            &mut self.by_name,
            &mut self.by_skeleton,
            &mut self.by_name_mac,
            &mut self.by_skeleton_mac,
        ] {
            names.retain(|_, id| *id != user);
        }
        self.tokens.retain_of(user, |_, _| false);
        self.activity.forget(user);
        self.keyed.retain(|r| r.user_id != user);
        self.erased.push(user);
    }

    /// The users erased so far, oldest first.
    pub fn erased(&self) -> &[UserId] {
        &self.erased
    }

    /// `user`'s tokens live at `now`, oldest first.
    pub fn live_tokens(&self, user: UserId, now: DateTime<Utc>) -> Vec<LiveToken> {
        let mut live: Vec<LiveToken> = self
            .tokens
            .of(user)
            .filter(|(_, t)| t.expires_at > now)
            .map(|(digest, record)| LiveToken { digest, record })
            .collect();
        live.sort_by_key(|t| (t.record.issued_at, *t.digest.bytes()));
        live
    }

    /// How many users were stored before personal data was sealed.
    pub fn users_in_clear(&self) -> usize {
        self.users()
            .filter(|u| matches!(u.profile, Profile::Clear { .. }))
            .count()
    }

    /// Every user, by id.
    pub fn users(&self) -> impl Iterator<Item = &UserRecord> {
        self.by_id.iter().map(|(_, user)| user)
    }

    /// How many users exist.
    pub fn user_count(&self) -> usize {
        self.by_id.len()
    }

    /// How many tokens are held (live, or expired since the last sweep).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Forgets every token expired by `now`, at most once per [`SWEEP_EVERY`]:
    /// memory then follows the tokens issued within one lifetime (plus an
    /// hour), not every login ever made.
    fn sweep_expired(&mut self, now: DateTime<Utc>) {
        if self.next_sweep.is_some_and(|due| now < due) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        self.tokens.retain(|_, t| t.expires_at > now);
    }
}

impl ReadModel for AuthView {
    type Event = AuthEvent;

    fn apply(&mut self, event: AuthEvent, recorded: &RecordedEvent) {
        if let AuthEvent::UserRegistered { user_id, .. }
        | AuthEvent::UserRegisteredInClear { user_id, .. } = &event
        {
            self.keyed
                .note(recorded, |_| Registration { user_id: *user_id });
        }
        self.apply_in(
            event,
            &recorded.stream,
            recorded.recorded_at,
            recorded.position,
        );
    }
}

impl AuthView {
    /// Folds `event`, stored in `stream` at `recorded_at`, at `position`.
    fn apply_in(
        &mut self,
        event: AuthEvent,
        stream: &str,
        recorded_at: DateTime<Utc>,
        position: u64,
    ) {
        self.sweep_expired(recorded_at);
        let at = recorded_at.timestamp_micros();
        if let Some((user, did)) = AccountActivity::of(&event) {
            self.activity.push(user, at, did.fact(position));
        }
        match event {
            AuthEvent::UserRegistered {
                user_id,
                name,
                skeleton,
                sealed,
            } => {
                self.by_name_mac.insert(name, user_id);
                self.by_skeleton_mac.insert_if_absent(skeleton, user_id);
                self.by_id.insert(
                    user_id,
                    UserRecord {
                        id: user_id,
                        stream: stream.to_owned(),
                        profile: Profile::Sealed(sealed),
                        joined: recorded_at,
                        password_changes: 0,
                    },
                );
            }
            AuthEvent::UserRegisteredInClear {
                user_id,
                personal: Personal {
                    username, email, ..
                },
            } => {
                self.by_name.insert(normalize_username(&username), user_id);
                self.by_skeleton
                    .insert_if_absent(username_skeleton(&username), user_id);
                self.by_id.insert(
                    user_id,
                    UserRecord {
                        id: user_id,
                        stream: stream.to_owned(),
                        profile: Profile::Clear { username, email },
                        joined: recorded_at,
                        password_changes: 0,
                    },
                );
            }
            AuthEvent::TokenIssued {
                user_id,
                digest,
                expires_at,
                credentials,
                ..
            } => {
                let changes = self.by_id.get(user_id).map_or(0, |u| u.password_changes);
                if credentials < changes {
                    // Issued under a password changed meanwhile.
                    return;
                }
                self.tokens.insert(
                    digest,
                    TokenRecord {
                        user_id,
                        issued_at: recorded_at,
                        expires_at,
                        issued_position: position,
                        refreshes: 0,
                    },
                );
            }
            AuthEvent::TokenRefreshed {
                user_id,
                digest,
                expires_at,
            } => {
                let Some(mut t) = self.tokens.get(&digest) else {
                    return;
                };
                t.refreshes += 1;
                if expires_at > t.expires_at {
                    // In the activity at most once a day per token: when
                    // the expiry enters a new day.
                    if expires_at.date_naive() != t.expires_at.date_naive() {
                        let did = AccountActivity::TokenRefreshed;
                        self.activity.push(user_id, at, did.fact(position));
                    }
                    t.expires_at = expires_at;
                }
                self.tokens.set(&digest, &t);
            }
            AuthEvent::PasswordChanged {
                user_id,
                sealed,
                kept,
            } => {
                if let Some(user) = self.by_id.get_mut(user_id) {
                    user.profile = Profile::Sealed(sealed);
                    user.password_changes += 1;
                }
                self.tokens.retain_of(user_id, |d, _| Some(*d) == kept);
            }
            AuthEvent::TokenRevoked { digest, .. } => {
                self.tokens.remove(&digest);
            }
            AuthEvent::AllTokensRevoked { user_id } => {
                self.tokens.retain_of(user_id, |_, _| false);
            }
            AuthEvent::UserErased { user_id } => self.forget(user_id),
            AuthEvent::UsernameClaimed { .. }
            | AuthEvent::UsernameReleased { .. }
            | AuthEvent::UsernameClaimedInClear { .. }
            | AuthEvent::LoginThrottled { .. }
            | AuthEvent::LoginFailed { .. } => {}
        }
    }
}

impl Snapshot for AuthView {
    const NAME: &'static str = "auth";
    /// Bump with any change to `apply` or to the encoding below; the test
    /// `the_snapshot_encoding_is_pinned` fails until you do. (2: tokens by
    /// user are no longer written, but rebuilt.)
    /// 3: users without their password hash (the login reads it from the
    /// user's stream; the view never needed it), and each user's activity.
    /// 5: sealed profiles, users' streams, names by MAC. 6: erased users.
    /// 7: when each token was issued. 8: keyed registrations without the
    /// sealed first token. 9: tokens' positions and refreshes, users'
    /// password changes, activity facts with their event's position.
    /// 10: an activity fact's kind in 4 bits, not 8.
    const VERSION: u32 = 10;

    fn encode(&self, out: &mut Encoder<'_>) {
        self.snapshot_parts().encode(out);
    }

    /// The view's snapshot parts, cloned in microseconds (copy-on-write).
    fn freeze(&self) -> Option<Frozen> {
        let parts = self.snapshot_parts();
        Some(Box::new(move |out| parts.encode(out)))
    }

    fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut view = Self::default();
        for _ in 0..input.count(42)? {
            let id = input.id()?;
            let stream = input.str()?;
            let profile = match input.u8()? {
                0 => Profile::Sealed(input.str()?),
                1 => Profile::Clear {
                    username: input.str()?,
                    email: input.str()?,
                },
                _ => return Err(Damaged("an unknown profile")),
            };
            let user = UserRecord {
                id,
                stream,
                profile,
                joined: decode_time(input)?,
                password_changes: decode_u32(input)?,
            };
            view.by_id.insert(user.id, user);
        }
        for names in [
            &mut view.by_name,
            &mut view.by_skeleton,
            &mut view.by_name_mac,
            &mut view.by_skeleton_mac,
        ] {
            for _ in 0..input.count(16)? {
                names.insert(input.str()?, input.id()?);
            }
        }
        for _ in 0..input.count(88)? {
            let digest = TokenDigest::from_bytes(input.array()?);
            let record = TokenRecord {
                user_id: input.id()?,
                issued_at: decode_time(input)?,
                expires_at: decode_time(input)?,
                issued_position: input.u64()?,
                refreshes: decode_u32(input)?,
            };
            view.tokens.insert(digest, record);
        }
        view.next_sweep = match input.u8()? {
            0 => None,
            1 => Some(decode_time(input)?),
            _ => return Err(Damaged("an unknown option")),
        };
        for _ in 0..input.count(32)? {
            let event = Uuid::from_bytes(input.array()?);
            let fingerprint = input.str()?;
            let user_id = input.id()?;
            view.keyed.insert(
                event,
                Keyed {
                    fingerprint,
                    created: Registration { user_id },
                },
            );
        }
        view.activity = Histories::decode(input)?;
        for _ in 0..input.count(8)? {
            view.erased.push(input.id()?);
        }
        Ok(view)
    }
}

/// What a snapshot of the view writes, shared with the view until either
/// changes (see [`AuthView::snapshot_parts`]).
struct SnapshotParts {
    by_id: CowRanges<UserId, UserRecord>,
    /// `by_name`, `by_skeleton`, `by_name_mac`, `by_skeleton_mac`.
    names: [CowMap<String, UserId>; 4],
    tokens: FrozenTokens,
    next_sweep: Option<DateTime<Utc>>,
    keyed: KeyedIndex<Registration>,
    activity: Histories<UserId>,
    erased: Vec<UserId>,
}

impl AuthView {
    /// The parts a snapshot writes, as they are now: clones that share
    /// the view's shards and chunks.
    fn snapshot_parts(&self) -> SnapshotParts {
        SnapshotParts {
            by_id: self.by_id.clone(),
            names: [
                self.by_name.clone(),
                self.by_skeleton.clone(),
                self.by_name_mac.clone(),
                self.by_skeleton_mac.clone(),
            ],
            tokens: self.tokens.frozen(),
            next_sweep: self.next_sweep,
            keyed: self.keyed.clone(),
            activity: self.activity.clone(),
            erased: self.erased.clone(),
        }
    }
}

impl SnapshotParts {
    fn encode(&self, out: &mut Encoder<'_>) {
        out.count(self.by_id.len());
        // By id: the canonical order, with no sort.
        for (_, user) in self.by_id.iter() {
            out.i64(user.id);
            out.str(&user.stream);
            match &user.profile {
                Profile::Sealed(sealed) => {
                    out.u8(0);
                    out.str(sealed);
                }
                Profile::Clear { username, email } => {
                    out.u8(1);
                    out.str(username);
                    out.str(email);
                }
            }
            encode_time(out, user.joined);
            out.u64(user.password_changes.into());
        }
        for names in &self.names {
            out.count(names.len());
            let mut names: Vec<_> = names.iter().collect();
            if out.canonical() {
                names.sort_unstable();
            }
            for (name, id) in names {
                out.str(name);
                out.i64(*id);
            }
        }
        out.count(self.tokens.len());
        let encode_token = |out: &mut Encoder<'_>, (digest, t): (TokenDigest, TokenRecord)| {
            out.fixed(digest.bytes());
            out.i64(t.user_id);
            encode_time(out, t.issued_at);
            encode_time(out, t.expires_at);
            out.u64(t.issued_position);
            out.u64(t.refreshes.into());
        };
        if out.canonical() {
            let mut tokens: Vec<_> = self.tokens.iter().collect();
            tokens.sort_unstable_by_key(|(d, _)| *d.bytes());
            tokens.into_iter().for_each(|t| encode_token(out, t));
        } else {
            // In slot order, with no copy of the slots.
            self.tokens.iter().for_each(|t| encode_token(out, t));
        }
        // Tokens by user are not written: they are rebuilt on decode.
        match self.next_sweep {
            Some(at) => {
                out.u8(1);
                encode_time(out, at);
            }
            None => out.u8(0),
        }
        out.count(self.keyed.len());
        for (event, k) in self.keyed.sorted() {
            out.fixed(event.as_bytes());
            out.str(&k.fingerprint);
            out.i64(k.created.user_id);
        }
        self.activity.encode(out);
        out.count(self.erased.len());
        for id in &self.erased {
            out.i64(*id);
        }
    }
}

fn encode_time(out: &mut Encoder<'_>, at: DateTime<Utc>) {
    out.i64(at.timestamp());
    out.u64(at.timestamp_subsec_nanos().into());
}

fn decode_u32(input: &mut Decoder<'_>) -> Result<u32, Damaged> {
    u32::try_from(input.u64()?).map_err(|_| Damaged("a count out of range"))
}

fn decode_time(input: &mut Decoder<'_>) -> Result<DateTime<Utc>, Damaged> {
    let (secs, nanos) = (input.i64()?, input.u64()?);
    u32::try_from(nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(secs, nanos))
        .ok_or(Damaged("a time out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AuthView {
        /// Folds `event` as stored in its user's stream at `at`.
        fn apply_at(&mut self, event: AuthEvent, at: DateTime<Utc>) {
            self.apply_in(event, "account-test", at, 0);
        }
    }

    fn digest(byte: u8) -> TokenDigest {
        TokenDigest::try_from(hex::encode([byte; 32])).unwrap()
    }

    fn issue(users: &mut AuthView, user_id: UserId, byte: u8, at: DateTime<Utc>, ttl: TimeDelta) {
        let event = AuthEvent::TokenIssued {
            user_id,
            digest: digest(byte),
            expires_at: at + ttl,
            client: None,
            credentials: 0,
        };
        users.apply_at(event, at);
    }

    /// Each user's activity is what their events did, newest first; the
    /// skeleton claims are nobody's activity.
    #[test]
    fn a_users_activity_follows_their_events() {
        let history = fixed_history();
        let kinds = |user: i64, newest| {
            let (facts, count) = history.activity(UserId(user), newest);
            let kinds: Vec<_> = facts
                .iter()
                .map(|f| ActivityEntry::of_fact(f.what).unwrap().kind)
                .collect();
            (kinds, count)
        };
        use AccountActivity::*;
        assert_eq!(kinds(1, None), (vec![LoggedIn, LoggedIn, Registered], 3));
        assert_eq!(
            kinds(2, Some(4)),
            (vec![LoginFailed, TokenRefreshed, TokenRevoked, LoggedIn], 6)
        );
        assert_eq!(kinds(3, None), (vec![], 0));
        assert_eq!(ActivityEntry::of_fact(9), None);
    }

    #[test]
    fn expired_tokens_are_forgotten_by_the_hourly_sweep() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut users = AuthView::default();
        let minute = TimeDelta::minutes(1);
        // User 1 logs in once and never again; user 2 holds a long token.
        issue(&mut users, UserId(1), 1, t0, minute);
        issue(&mut users, UserId(2), 2, t0, TimeDelta::days(1));
        issue(&mut users, UserId(2), 3, t0 + minute * 30, minute);
        assert_eq!(users.token_count(), 3, "no sweep within the hour");
        // The first event an hour later sweeps every expired token, whoever
        // it belonged to; live ones stay valid.
        issue(&mut users, UserId(3), 4, t0 + SWEEP_EVERY, minute);
        assert_eq!(users.token_count(), 2);
        assert!(!users.tokens.holds_any(UserId(1)));
        assert_eq!(
            users.tokens.get(&digest(2)).map(|t| t.user_id),
            Some(UserId(2))
        );
        assert!(users.tokens.get(&digest(4)).is_some());
    }

    /// Users, tokens issued, one revoked, a sweep, at fixed times.
    fn fixed_history() -> AuthView {
        let t0 = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let mut users = AuthView::default();
        // Ann registered sealed; bob before sealing, in the clear.
        let ann = AuthEvent::UserRegistered {
            user_id: UserId(1),
            name: "mac(ann)".into(),
            skeleton: "mac(skeleton of ann)".into(),
            sealed: "v1.ann-sealed".into(),
        };
        users.apply_in(ann, "account-1", t0, 1);
        let bob = AuthEvent::UserRegisteredInClear {
            user_id: UserId(2),
            personal: Personal {
                username: "bob".into(),
                email: "bob@example.com".into(),
                password_hash: "$argon2id$x".into(),
            },
        };
        users.apply_in(bob, "user-bob", t0, 2);
        // Cy registered, logged in, and was erased.
        let cy = AuthEvent::UserRegistered {
            user_id: UserId(3),
            name: "mac(cy)".into(),
            skeleton: "mac(skeleton of cy)".into(),
            sealed: "v1.cy-sealed".into(),
        };
        users.apply_in(cy, "account-3", t0, 3);
        issue(&mut users, UserId(3), 7, t0, TimeDelta::days(1));
        users.apply_in(
            AuthEvent::UserErased { user_id: UserId(3) },
            "account-3",
            t0,
            4,
        );
        let minute = TimeDelta::minutes(1);
        issue(&mut users, UserId(1), 1, t0, minute);
        issue(&mut users, UserId(2), 2, t0, TimeDelta::days(1));
        issue(&mut users, UserId(2), 3, t0, TimeDelta::days(1));
        let revoke = AuthEvent::TokenRevoked {
            user_id: UserId(2),
            digest: digest(2),
            by: Some(digest(3)),
        };
        users.apply_at(revoke, t0 + minute);
        issue(&mut users, UserId(1), 4, t0 + SWEEP_EVERY, minute);
        let refreshed = AuthEvent::TokenRefreshed {
            user_id: UserId(2),
            digest: digest(3),
            expires_at: t0 + TimeDelta::days(2),
        };
        users.apply_in(refreshed, "token-3", t0 + minute, 30);
        let failed = AuthEvent::LoginFailed {
            user_id: UserId(2),
            client: Some("v1.client".into()),
        };
        users.apply_in(failed, "user-bob", t0 + minute, 31);
        users.keyed.insert(
            Uuid::from_u128(9),
            Keyed {
                fingerprint: "f".into(),
                created: Registration { user_id: UserId(2) },
            },
        );
        users
    }

    /// Ann changes her password from token 4: token 1 dies, 4 stays, a
    /// token checked under the old password and stored after the change
    /// (5) is dead on arrival, one issued under the new one (6) lives.
    #[test]
    fn a_password_change_leaves_only_the_requests_token_and_later_ones() {
        let mut users = fixed_history();
        let t0 = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let now = t0 + SWEEP_EVERY;
        issue(&mut users, UserId(1), 8, t0, TimeDelta::days(1));
        let changed = AuthEvent::PasswordChanged {
            user_id: UserId(1),
            sealed: "v1.ann-new".into(),
            kept: Some(digest(4)),
        };
        users.apply_in(changed, "account-1", now, 40);
        issue(&mut users, UserId(1), 5, now, TimeDelta::days(1));
        let later = AuthEvent::TokenIssued {
            user_id: UserId(1),
            digest: digest(6),
            expires_at: now + TimeDelta::days(1),
            client: None,
            credentials: 1,
        };
        users.apply_at(later, now);
        let live: Vec<_> = users
            .live_tokens(UserId(1), now)
            .iter()
            .map(|t| t.digest)
            .collect();
        assert_eq!(live, [digest(4), digest(6)]);
        assert!(users.by_token(&digest(8), now).is_none());
        let ann = users.user(UserId(1)).unwrap();
        assert_eq!(ann.profile, Profile::Sealed("v1.ann-new".into()));
        assert_eq!(ann.password_changes, 1);
        let (facts, _) = users.activity(UserId(1), Some(3));
        let entry = ActivityEntry::of_fact(facts[2].what).unwrap();
        assert_eq!(
            (entry.kind, entry.position),
            (AccountActivity::PasswordChanged, 40)
        );
    }

    /// Each refresh moves the expiry and is counted (its stream's
    /// version); the activity notes one when the expiry enters a new day.
    #[test]
    fn refreshes_move_the_expiry_and_are_noted_once_a_day() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut users = AuthView::default();
        issue(&mut users, UserId(1), 1, t0, TimeDelta::hours(10));
        let refresh = |users: &mut AuthView, minutes: i64, position| {
            let at = t0 + TimeDelta::minutes(minutes);
            let event = AuthEvent::TokenRefreshed {
                user_id: UserId(1),
                digest: digest(1),
                expires_at: at + TimeDelta::hours(10),
            };
            users.apply_in(event, "token-x", at, position);
        };
        for (i, minutes) in [1, 2, 3, 5 * 60, 14 * 60 + 1].into_iter().enumerate() {
            refresh(&mut users, minutes, 10 + i as u64);
        }
        let t = users.tokens.get(&digest(1)).expect("held");
        assert_eq!(t.refreshes, 5);
        assert_eq!(
            t.expires_at,
            t0 + TimeDelta::minutes(14 * 60 + 1) + TimeDelta::hours(10)
        );
        // Expiry 20:00 on day 1 → 20:01, 20:02, 20:03 (same day), 01:00
        // on day 2 (noted), then 10:01 on day 2 (same day: not noted).
        let (facts, _) = users.activity(UserId(1), None);
        let refreshed: Vec<u64> = facts
            .iter()
            .filter_map(|f| ActivityEntry::of_fact(f.what))
            .filter(|e| e.kind == AccountActivity::TokenRefreshed)
            .map(|e| e.position)
            .collect();
        assert_eq!(refreshed, [13]);
        // A refresh that does not move the expiry is counted, not applied.
        refresh(&mut users, 0, 20);
        let t = users.tokens.get(&digest(1)).expect("held");
        assert_eq!(t.refreshes, 6);
        assert_eq!(
            t.expires_at,
            t0 + TimeDelta::minutes(14 * 60 + 1) + TimeDelta::hours(10)
        );
    }

    #[test]
    fn a_users_live_tokens_are_listed_oldest_first_without_the_revoked_or_expired() {
        let users = fixed_history();
        let t0 = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let live = users.live_tokens(UserId(2), t0);
        assert_eq!(live.len(), 1, "token 2 was revoked");
        assert_eq!((live[0].digest, live[0].record.issued_at), (digest(3), t0));
        assert_eq!(
            live[0].record.expires_at,
            t0 + TimeDelta::days(2),
            "refreshed"
        );
        let later = t0 + TimeDelta::days(3);
        assert!(users.live_tokens(UserId(2), later).is_empty());
        assert!(users.live_tokens(UserId(3), t0).is_empty(), "erased");
    }

    #[test]
    fn an_erased_user_leaves_nothing_but_their_id() {
        let users = fixed_history();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(users.user(UserId(3)).is_none());
        assert!(users.by_username("cy", "mac(cy)").is_none());
        assert!(!users.confusable(("cy", "mac(skeleton of cy)"), ("cy2", "mac(cy2)")));
        assert!(users.by_token(&digest(7), now).is_none());
        assert_eq!(users.activity(UserId(3), None), (vec![], 0));
        assert_eq!(users.erased(), &[UserId(3)]);
        // The others are untouched.
        assert!(users.user(UserId(1)).is_some() && users.user(UserId(2)).is_some());
        let back = AuthView::from_bytes(&users.to_bytes()).unwrap();
        assert_eq!(back.erased(), &[UserId(3)]);
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_model() {
        let users = fixed_history();
        let bytes = users.to_bytes();
        let back = AuthView::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            back.by_token(&digest(3), now),
            users.by_token(&digest(3), now)
        );
        assert!(back.by_token(&digest(2), now).is_none());
        assert_eq!(
            back.by_username("ann", "mac(ann)").map(|u| u.id),
            Some(UserId(1))
        );
        assert_eq!(
            back.by_username("bob", "mac(bob)")
                .map(|u| (u.id, u.stream.as_str())),
            Some((UserId(2), "user-bob"))
        );
        assert_eq!(
            back.user(UserId(1)).map(|u| &u.profile),
            Some(&Profile::Sealed("v1.ann-sealed".into()))
        );
        assert_eq!(
            back.keyed.get(Uuid::from_u128(9)),
            users.keyed.get(Uuid::from_u128(9))
        );
        assert_eq!(back.next_sweep, users.next_sweep);
        for cut in 0..bytes.len() {
            assert!(AuthView::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
        // Tokens by user are rebuilt: logging out everywhere still works.
        let mut back = back;
        back.apply_at(AuthEvent::AllTokensRevoked { user_id: UserId(2) }, now);
        assert!(back.by_token(&digest(3), now).is_none());
        assert!(!back.tokens.holds_any(UserId(2)));
    }

    #[test]
    fn a_frozen_view_encodes_what_it_was_while_events_are_applied() {
        let mut users = fixed_history();
        let before = users.to_bytes();
        let frozen = users.freeze().expect("the auth view freezes");
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        // Tokens, names, users, activity, keyed registrations and the
        // erased list all change after the freeze.
        users.apply_at(AuthEvent::AllTokensRevoked { user_id: UserId(2) }, now);
        issue(&mut users, UserId(1), 40, now, TimeDelta::hours(1));
        users.apply_at(AuthEvent::UserErased { user_id: UserId(1) }, now);
        assert_ne!(users.to_bytes(), before);
        let mut out = Encoder::default();
        frozen(&mut out);
        assert_eq!(out.into_inner(), before);
    }

    /// An activity fact's code stays within 32 bits (a narrow fact) up to
    /// position 2^27, and any position comes back from it.
    #[test]
    fn activity_codes_are_narrow_to_position_2_27_and_exact_beyond() {
        let last = AccountActivity::TokenRefreshed;
        assert!(i32::try_from(last.fact((1 << 27) - 1)).is_ok());
        assert!(i32::try_from(last.fact(1 << 27)).is_err());
        for kind in AccountActivity::ALL {
            for position in [0, 1, (1 << 27) - 1, 1 << 27, 1 << 50] {
                let entry = ActivityEntry::of_fact(kind.fact(position));
                assert_eq!(entry, Some(ActivityEntry { kind, position }));
            }
        }
        assert_eq!(ActivityEntry::of_fact(15), None);
    }

    /// Pins what version 10 of the projection makes of a fixed history.
    /// When this fails, you changed `apply` or the encoding: bump
    /// `AuthView::VERSION` (old snapshots are then ignored, not misread)
    /// and update the digest.
    #[test]
    fn the_snapshot_encoding_is_pinned() {
        use sha2::Digest;
        assert_eq!(AuthView::VERSION, 10);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(fixed_history().to_bytes())),
            "3d0c8a9e422278489f1f1ab6a169521cfbfcc74bb7bdacbbd7d713b2b73e9aca"
        );
    }
}
