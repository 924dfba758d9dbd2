use chrono::{DateTime, Utc};
use event_sourcing::decider::Decider;

use super::user::issued;
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

/// A claim of `name` for user `id`. The service MACs the name and the
/// skeleton under the pepper; the rules only compare them, so the tests
/// stand a readable tag in for each MAC.
fn claim(name: &str, id: i64) -> ClaimUsername {
    ClaimUsername {
        skeleton: format!("mac({})", username_skeleton(name)),
        name: format!("mac({})", normalize_username(name)),
        user_id: UserId(id),
        release: false,
    }
}

fn claimed(name: &str, id: i64) -> AuthEvent {
    AuthEvent::UsernameClaimed {
        name: format!("mac({})", normalize_username(name)),
        user_id: UserId(id),
    }
}

#[test]
fn a_skeleton_is_claimed_once_and_again_only_by_the_same_name() {
    given::<UsernameClaim>(vec![])
        .when(claim("admin", 1))
        .then(vec![claimed("admin", 1)]);
    // The same name again, by a retry or a racing registration: nothing
    // to add, and it goes on as the user the claim holds.
    given::<UsernameClaim>(vec![claimed("admin", 1)])
        .when(claim("Admin", 2))
        .then(vec![]);
    let held = [claimed("admin", 1)]
        .iter()
        .fold(UsernameClaim::default(), UsernameClaim::evolve);
    assert_eq!(held.holder_for(&claim("Admin", 2).name), Some(UserId(1)));
    assert_eq!(held.holder_for(&claim("bob", 2).name), None);
    given::<UsernameClaim>(vec![claimed("admin", 1)])
        .when(claim("\u{0430}dmin", 3))
        .then_rejects(Rejection::UsernameTaken);
}

#[test]
fn a_throttled_login_is_noted_once_a_minute_and_only_for_a_user() {
    let registered = registered();
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let noted = AuthEvent::LoginThrottled {
        user_id: UserId(7),
        at: t0,
        client: None,
    };
    let note = |secs| UserCommand::NoteThrottled {
        now: t0 + chrono::TimeDelta::seconds(secs),
        client: None,
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
            client: None,
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

fn grant() -> Issue {
    let (_, digest) = crate::token::generate().unwrap();
    Issue {
        grant: Grant {
            digest,
            expires_at: t0() + TimeDelta::hours(10),
        },
        client: Some("v1.client-sealed-by-the-service".into()),
        credentials: 0,
    }
}

/// `command`, to the user the tests register (Alice, user 7).
fn alice(command: UserCommand) -> ToUser {
    command.to(user_stream(UserId(7)))
}

/// Alice's personal data, sealed (the service seals; the rules carry it).
const SEALED: &str = "v1.sealed-by-the-service";

fn register(issue: Issue) -> UserCommand {
    UserCommand::Register {
        user_id: UserId(7),
        name: "mac(alice)".into(),
        skeleton: "mac(skeleton of alice)".into(),
        sealed: SEALED.into(),
        issue,
    }
}

fn registered() -> AuthEvent {
    AuthEvent::UserRegistered {
        user_id: UserId(7),
        name: "mac(alice)".into(),
        skeleton: "mac(skeleton of alice)".into(),
        sealed: SEALED.into(),
    }
}

#[test]
fn registering_records_the_user_and_a_first_token() {
    let g = grant();
    given::<User>([])
        .when(alice(register(g.clone())))
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
        .when(alice(UserCommand::IssueToken(g.clone())))
        .then([issued(UserId(7), &g)]);
    given::<User>([])
        .when(alice(UserCommand::IssueToken(g.clone())))
        .then_rejects(Rejection::UnknownUser);
}

#[test]
fn a_live_token_is_revoked_once() {
    let g = grant();
    let revoke = || UserCommand::RevokeToken {
        digest: g.grant.digest,
        by: g.grant.digest,
    };
    let revoked = AuthEvent::TokenRevoked {
        user_id: UserId(7),
        digest: g.grant.digest,
        by: Some(g.grant.digest),
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
fn an_unknown_token_cannot_be_revoked() {
    let g = grant();
    given::<User>([registered()])
        .when(alice(UserCommand::RevokeToken {
            digest: g.grant.digest,
            by: g.grant.digest,
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

fn revoked(g: &Issue) -> AuthEvent {
    AuthEvent::TokenRevoked {
        user_id: UserId(7),
        digest: g.grant.digest,
        by: Some(g.grant.digest),
    }
}

#[test]
fn registration_records_the_macs_and_the_sealed_data_as_given() {
    let g = grant();
    let command = UserCommand::Register {
        user_id: UserId(9),
        name: "mac(zoë)".into(),
        skeleton: "mac(zoe)".into(),
        sealed: "v1.zoë-sealed".into(),
        issue: g.clone(),
    };
    given::<User>([])
        .when(command.to(user_stream(UserId(9))))
        .then([
            AuthEvent::UserRegistered {
                user_id: UserId(9),
                name: "mac(zoë)".into(),
                skeleton: "mac(zoe)".into(),
                sealed: "v1.zoë-sealed".into(),
            },
            issued(UserId(9), &g),
        ]);
}

#[test]
fn a_user_registered_before_sealing_is_a_user_as_any_other() {
    let old = AuthEvent::UserRegisteredInClear {
        user_id: UserId(3),
        personal: Personal {
            username: "Zoë".into(),
            email: "zoe@example.org".into(),
            password_hash: "$argon2id$z".into(),
        },
    };
    let g = grant();
    given::<User>([old.clone()])
        .when(UserCommand::IssueToken(g.clone()).to("user-zoë"))
        .then([issued(UserId(3), &g)]);
    let state = [old].iter().fold(User::default(), User::evolve);
    assert!(matches!(
        &state.account().unwrap().personal,
        StoredPersonal::Clear(p) if p.username == "Zoë"
    ));
}

#[test]
fn a_user_logged_out_everywhere_can_log_in_again() {
    let (first, again) = (grant(), grant());
    given::<User>([
        registered(),
        issued(UserId(7), &first),
        AuthEvent::AllTokensRevoked { user_id: UserId(7) },
    ])
    .when(alice(UserCommand::IssueToken(again.clone())))
    .then([issued(UserId(7), &again)]);
}

#[test]
fn revoking_one_token_leaves_the_others_live() {
    let (one, other) = (grant(), grant());
    let revoke = |g: &Issue| {
        alice(UserCommand::RevokeToken {
            digest: g.grant.digest,
            by: g.grant.digest,
        })
    };
    given::<User>([
        registered(),
        issued(UserId(7), &one),
        issued(UserId(7), &other),
        revoked(&one),
    ])
    .when(revoke(&other))
    .then([revoked(&other)]);
}

#[test]
fn logging_out_everywhere_with_no_live_token_is_still_recorded() {
    given::<User>([registered()])
        .when(alice(UserCommand::RevokeAllTokens))
        .then([AuthEvent::AllTokensRevoked { user_id: UserId(7) }]);
}

#[test]
fn a_token_issued_after_logging_out_everywhere_can_be_revoked() {
    let (old, new) = (grant(), grant());
    given::<User>([
        registered(),
        issued(UserId(7), &old),
        AuthEvent::AllTokensRevoked { user_id: UserId(7) },
        issued(UserId(7), &new),
    ])
    .when(alice(UserCommand::RevokeToken {
        digest: new.grant.digest,
        by: new.grant.digest,
    }))
    .then([revoked(&new)]);
}

#[test]
fn a_throttled_login_is_noted_at_most_once_a_minute_after_the_last_note() {
    let at = |secs| t0() + TimeDelta::seconds(secs);
    given::<User>([
        registered(),
        AuthEvent::LoginThrottled {
            user_id: UserId(7),
            at: at(0),
            client: None,
        },
        AuthEvent::LoginThrottled {
            user_id: UserId(7),
            at: at(60),
            client: None,
        },
    ])
    .when(alice(UserCommand::NoteThrottled {
        now: at(119),
        client: None,
    }))
    .then([]);
}

#[test]
fn a_registered_name_claims_no_other_skeleton_again() {
    given::<UsernameClaim>([claimed("bob", 4)])
        .when(claim("bob", 5))
        .then([]);
}

#[test]
fn each_user_and_skeleton_has_a_stream_of_its_own() {
    let to = |id: i64| UserCommand::RevokeAllTokens.to(user_stream(UserId(id)));
    assert_ne!(User::stream(&to(1)), User::stream(&to(2)));
    assert_eq!(User::stream(&to(7)), "account-7");
    // Look-alikes share the claim's stream: that is what makes one win.
    assert_eq!(
        UsernameClaim::stream(&claim("admin", 1)),
        UsernameClaim::stream(&claim("\u{0430}dmin", 2))
    );
}

#[test]
fn only_registration_starts_a_users_stream_and_only_additions_commute() {
    let g = grant();
    assert!(User::starts_stream(&alice(register(g.clone()))));
    assert!(!User::starts_stream(&alice(UserCommand::IssueToken(
        g.clone()
    ))));
    assert!(User::commutes(&alice(UserCommand::IssueToken(g.clone()))));
    assert!(User::commutes(&alice(UserCommand::RevokeAllTokens)));
    let revoke = UserCommand::RevokeToken {
        digest: g.grant.digest,
        by: g.grant.digest,
    };
    assert!(!User::commutes(&alice(revoke)));
}

#[test]
fn a_free_skeleton_goes_to_whoever_claims_it_first() {
    given::<UsernameClaim>([])
        .when(claim("bob", 6))
        .then([claimed("bob", 6)]);
}

#[test]
fn an_unknown_user_cannot_log_out_everywhere() {
    given::<User>([])
        .when(alice(UserCommand::RevokeAllTokens))
        .then_rejects(Rejection::InvalidToken);
}

#[test]
fn an_unknown_user_cannot_revoke_a_token() {
    let g = grant();
    given::<User>([])
        .when(alice(UserCommand::RevokeToken {
            digest: g.grant.digest,
            by: g.grant.digest,
        }))
        .then_rejects(Rejection::InvalidToken);
}

#[test]
fn a_token_of_another_user_is_not_revoked_here() {
    let (mine, theirs) = (grant(), grant());
    given::<User>([registered(), issued(UserId(7), &mine)])
        .when(alice(UserCommand::RevokeToken {
            digest: theirs.grant.digest,
            by: theirs.grant.digest,
        }))
        .then_rejects(Rejection::InvalidToken);
}

/// A stored event as the store hands it to readers.
fn stored(event_type: &str, data: &str) -> event_store::RecordedEvent {
    event_store::RecordedEvent {
        position: 1,
        stream: "user-x".into(),
        version: 0,
        event_type: event_type.into(),
        id: uuid::Uuid::nil(),
        data: serde_json::value::RawValue::from_string(data.into()).unwrap(),
        metadata: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        recorded_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    }
}

/// Byte for byte what release 3c5e5a3 stored (tests/fixtures/release-3c5e5a3).
const REGISTERED_V1: &str = r#"{"type":"UserRegistered","user_id":2,"username":"Zoë","email":"user1@example.com","password_hash":"$argon2id$v=19$m=19456,t=2,p=1$XJ0lmsr1UU6JZZYRQe54LA$FqIsnsHDEdOfflEC+G5IF1TyBmCnwGlobh52AdDBmPI"}"#;

#[test]
fn a_version_1_registration_reads_as_version_2_with_its_personal_fields_in_one_object() {
    use event_store::Event;
    // Given the stored version 1, when read, then version 2.
    let read = AuthEvent::from_recorded(&stored("UserRegistered", REGISTERED_V1)).unwrap();
    assert_eq!(
        read,
        AuthEvent::UserRegisteredInClear {
            user_id: UserId(2),
            personal: Personal {
                username: "Zoë".into(),
                email: "user1@example.com".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$XJ0lmsr1UU6JZZYRQe54LA$FqIsnsHDEdOfflEC+G5IF1TyBmCnwGlobh52AdDBmPI".into(),
            },
        }
    );
    // What a subscriber or a rewriting copy gets: the current type and JSON.
    let (event_type, json) = AuthEvent::current(&stored("UserRegistered", REGISTERED_V1)).unwrap();
    assert_eq!(event_type, "UserRegistered.v2");
    assert_eq!(
        serde_json::Value::Object(json),
        serde_json::json!({
            "type": "UserRegistered.v2",
            "user_id": 2,
            "personal": {
                "username": "Zoë",
                "email": "user1@example.com",
                "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$XJ0lmsr1UU6JZZYRQe54LA$FqIsnsHDEdOfflEC+G5IF1TyBmCnwGlobh52AdDBmPI",
            }
        })
    );
}

#[test]
fn a_new_registration_is_stored_as_version_3_and_reads_back_unchanged() {
    use event_store::Event;
    let new = registered().to_new_event().unwrap();
    assert_eq!(new.event_type, "UserRegistered.v3");
    assert_eq!(
        new.data.get(),
        r#"{"type":"UserRegistered.v3","user_id":7,"name":"mac(alice)","skeleton":"mac(skeleton of alice)","sealed":"v1.sealed-by-the-service"}"#
    );
    let read = AuthEvent::from_recorded(&stored(&new.event_type, new.data.get())).unwrap();
    assert_eq!(read, registered());
    // A claim: the name's MAC and the user, no name.
    let claim = claimed("alice", 7).to_new_event().unwrap();
    assert_eq!(claim.event_type, "UsernameClaimed.v2");
}

#[test]
fn a_version_1_registration_without_its_fields_is_refused_saying_why() {
    use event_store::Event;
    let broken = r#"{"type":"UserRegistered","user_id":2,"username":"Zoë","password_hash":"h"}"#;
    let e = AuthEvent::from_recorded(&stored("UserRegistered", broken)).unwrap_err();
    assert!(
        e.to_string()
            .contains("UserRegistered -> UserRegistered.v2: no email"),
        "{e}"
    );
    let numeric =
        r#"{"type":"UserRegistered","user_id":2,"username":7,"email":"e","password_hash":"h"}"#;
    let e = AuthEvent::from_recorded(&stored("UserRegistered", numeric)).unwrap_err();
    assert!(e.to_string().contains("username is not text"), "{e}");
}

#[test]
fn an_erased_user_is_asked_nothing_more() {
    let g = grant();
    given::<User>([registered(), issued(UserId(7), &g)])
        .when(alice(UserCommand::Erase))
        .then([AuthEvent::UserErased { user_id: UserId(7) }]);
    let erased = || [registered(), AuthEvent::UserErased { user_id: UserId(7) }];
    given::<User>(erased())
        .when(alice(UserCommand::IssueToken(grant())))
        .then_rejects(Rejection::InvalidToken);
    given::<User>(erased())
        .when(alice(UserCommand::Erase))
        .then_rejects(Rejection::InvalidToken);
    given::<User>(erased())
        .when(alice(register(grant())))
        .then_rejects(Rejection::UsernameTaken);
    given::<User>([])
        .when(alice(UserCommand::Erase))
        .then_rejects(Rejection::InvalidToken);
}

#[test]
fn a_released_name_is_free_for_anyone_again() {
    let release = |name: &str, id: i64| ClaimUsername {
        release: true,
        ..claim(name, id)
    };
    let released = AuthEvent::UsernameReleased { user_id: UserId(1) };
    given::<UsernameClaim>([claimed("admin", 1)])
        .when(release("admin", 1))
        .then([released.clone()]);
    // Only its holder releases it; a second release adds nothing.
    given::<UsernameClaim>([claimed("admin", 1)])
        .when(release("admin", 2))
        .then([]);
    given::<UsernameClaim>([claimed("admin", 1), released.clone()])
        .when(release("admin", 1))
        .then([]);
    // Free again: a new user, even a look-alike, takes it.
    given::<UsernameClaim>([claimed("admin", 1), released])
        .when(claim("\u{0430}dmin", 8))
        .then([claimed("\u{0430}dmin", 8)]);
    assert!(UsernameClaim::starts_stream(&claim("a", 1)));
    assert!(!UsernameClaim::starts_stream(&release("a", 1)));
}

#[test]
fn a_password_change_keeps_the_requests_token_and_revokes_the_others() {
    let (mine, other) = (grant(), grant());
    let change = UserCommand::ChangePassword {
        sealed: "v1.new-hash-sealed".into(),
        kept: mine.grant.digest,
    };
    let changed = AuthEvent::PasswordChanged {
        user_id: UserId(7),
        sealed: "v1.new-hash-sealed".into(),
        kept: Some(mine.grant.digest),
    };
    let history = [
        registered(),
        issued(UserId(7), &mine),
        issued(UserId(7), &other),
    ];
    given::<User>(history.clone())
        .when(alice(change.clone()))
        .then([changed.clone()]);
    // After it: the other token is gone, the kept one is not, and the
    // personal data is the one sealed with the new hash.
    let after: Vec<_> = history.iter().chain([&changed]).cloned().collect();
    let revoke = |g: &Issue| {
        alice(UserCommand::RevokeToken {
            digest: g.grant.digest,
            by: mine.grant.digest,
        })
    };
    given::<User>(after.clone())
        .when(revoke(&other))
        .then_rejects(Rejection::InvalidToken);
    given::<User>(after.clone())
        .when(revoke(&mine))
        .then([AuthEvent::TokenRevoked {
            user_id: UserId(7),
            digest: mine.grant.digest,
            by: Some(mine.grant.digest),
        }]);
    let state = after.iter().fold(User::default(), User::evolve);
    let account = state.account().unwrap();
    assert_eq!(
        (&account.personal, account.password_changes),
        (&StoredPersonal::Sealed("v1.new-hash-sealed".into()), 1)
    );
    // A request whose token was revoked meanwhile changes nothing.
    given::<User>([registered(), issued(UserId(7), &other)])
        .when(alice(change))
        .then_rejects(Rejection::InvalidToken);
    assert!(!User::commutes(&alice(UserCommand::ChangePassword {
        sealed: String::new(),
        kept: mine.grant.digest,
    })));
}

/// A login that checked the old password, racing a change, appends its
/// token after the change (issuing commutes): that token is dead on
/// arrival, because it names the password it was checked under.
#[test]
fn a_token_issued_under_a_changed_password_is_dead_on_arrival() {
    let (mine, racing, later) = (grant(), grant(), grant());
    let later = Issue {
        credentials: 1,
        ..later
    };
    let history = [
        registered(),
        issued(UserId(7), &mine),
        AuthEvent::PasswordChanged {
            user_id: UserId(7),
            sealed: "v1.new".into(),
            kept: Some(mine.grant.digest),
        },
        issued(UserId(7), &racing),
        issued(UserId(7), &later),
    ];
    let revoke = |g: &Issue| {
        alice(UserCommand::RevokeToken {
            digest: g.grant.digest,
            by: g.grant.digest,
        })
    };
    given::<User>(history.clone())
        .when(revoke(&racing))
        .then_rejects(Rejection::InvalidToken);
    given::<User>(history)
        .when(revoke(&later))
        .then([revoked(&later)]);
}

#[test]
fn a_wrong_password_is_noted_for_a_user_only() {
    let note = || {
        alice(UserCommand::NoteFailed {
            client: Some("v1.client".into()),
        })
    };
    given::<User>([registered()])
        .when(note())
        .then([AuthEvent::LoginFailed {
            user_id: UserId(7),
            client: Some("v1.client".into()),
        }]);
    given::<User>([])
        .when(note())
        .then_rejects(Rejection::UnknownUser);
    assert!(User::commutes(&note()));
}

#[test]
fn a_token_revoked_from_another_session_names_the_session_that_did() {
    let (mine, other) = (grant(), grant());
    given::<User>([
        registered(),
        issued(UserId(7), &mine),
        issued(UserId(7), &other),
    ])
    .when(alice(UserCommand::RevokeToken {
        digest: other.grant.digest,
        by: mine.grant.digest,
    }))
    .then([AuthEvent::TokenRevoked {
        user_id: UserId(7),
        digest: other.grant.digest,
        by: Some(mine.grant.digest),
    }]);
}

#[test]
fn a_refresh_moves_the_expiry_past_the_interval_and_stops_at_the_cap() {
    let policy = RefreshPolicy {
        ttl: TimeDelta::hours(10),
        min_refresh: TimeDelta::seconds(60),
        max_ttl: Some(TimeDelta::hours(12)),
    };
    let issued = t0();
    let expires = issued + TimeDelta::hours(10);
    let at = |secs| issued + TimeDelta::seconds(secs);
    // Within the interval: nothing (knox: strictly more than it).
    assert_eq!(policy.refreshed(issued, expires, at(60)), None);
    assert_eq!(
        policy.refreshed(issued, expires, at(61)),
        Some(at(61) + TimeDelta::hours(10))
    );
    // Near the cap: up to it, then never again.
    let cap = issued + TimeDelta::hours(12);
    let late = at(3 * 3600);
    assert_eq!(policy.refreshed(issued, expires, late), Some(cap));
    assert_eq!(policy.refreshed(issued, cap, late), None);
    assert_eq!(policy.refreshed(issued, cap, at(11 * 3600)), None);
    // No cap: a full lifetime from now, each time.
    let uncapped = RefreshPolicy {
        max_ttl: None,
        ..policy
    };
    assert_eq!(
        uncapped.refreshed(issued, cap, at(24 * 3600)),
        Some(at(24 * 3600) + TimeDelta::hours(10))
    );
}

/// Token events of the first release read as their second version: no
/// client known, no password change seen, no revoking session known.
#[test]
fn token_events_of_version_one_read_as_version_two() {
    use event_store::Event;
    let digest = "ab".repeat(32);
    let issued = format!(
        r#"{{"type":"TokenIssued","user_id":7,"digest":"{digest}","expires_at":"2026-01-01T00:00:00Z"}}"#
    );
    let e = AuthEvent::from_recorded(&stored("TokenIssued", &issued)).unwrap();
    assert!(matches!(
        e,
        AuthEvent::TokenIssued {
            client: None,
            credentials: 0,
            ..
        }
    ));
    let revoked = format!(r#"{{"type":"TokenRevoked","user_id":7,"digest":"{digest}"}}"#);
    let e = AuthEvent::from_recorded(&stored("TokenRevoked", &revoked)).unwrap();
    assert!(matches!(e, AuthEvent::TokenRevoked { by: None, .. }));
    let throttled = r#"{"type":"LoginThrottled","user_id":7,"at":"2026-01-01T00:00:00Z"}"#;
    let e = AuthEvent::from_recorded(&stored("LoginThrottled", throttled)).unwrap();
    assert!(matches!(e, AuthEvent::LoginThrottled { client: None, .. }));
    // One that claims to be version 1 but holds a version 2 field is refused.
    let odd = r#"{"type":"LoginThrottled","user_id":7,"at":"2026-01-01T00:00:00Z","client":"x"}"#;
    assert!(AuthEvent::from_recorded(&stored("LoginThrottled", odd)).is_err());
}

#[test]
fn names_and_user_agents_are_kept_printable_and_short() {
    assert_eq!(parse_token_name("  ").unwrap(), None);
    assert_eq!(
        parse_token_name(" my\tlaptop\u{202E}\n")
            .unwrap()
            .as_deref(),
        Some("my laptop")
    );
    assert!(parse_token_name(&"x".repeat(65)).is_err());
    assert_eq!(
        parse_token_name(&"é".repeat(64)).unwrap().unwrap().len(),
        128
    );
    assert_eq!(
        printable("curl/8.0\r\nX-Evil: 1", 256),
        "curl/8.0 X-Evil: 1"
    );
    assert_eq!(printable(&"a".repeat(300), 256).len(), 256);
}
