//! One conformance suite, run unchanged against every backend.
//!
//! Each case is a generic async function over a [`harness::Harness`]; the
//! `conformance!` macro instantiates every case once per backend. Postgres
//! cases run on a database created for the test and dropped after; without a
//! server they print a notice and pass, unless `MOVIES_REQUIRE_POSTGRES=1`.
//! EventStoreDB cases (feature `eventstoredb`) run only where `EVENTSTORE_URL`
//! names a server, and otherwise report themselves as not run.

mod cases;
mod harness;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::cases::$case(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(h) = crate::harness::Harness::postgres(stringify!($case)).await
                    else { return };
                    crate::cases::$case(&h).await;
                }
            )*
        }
        #[cfg(feature = "eventstoredb")]
        mod esdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(h) = crate::harness::Harness::esdb(stringify!($case)).await
                    else { return };
                    crate::cases::$case(&h).await;
                }
            )*
        }
    };
}

conformance!(
    expected_version_semantics,
    multi_event_append_is_atomic_and_contiguous,
    racing_no_stream_appends_have_exactly_one_winner,
    concurrent_writers_are_seen_once_in_order_by_a_live_subscriber,
    reopening_keeps_everything,
    retrying_the_same_event_ids_is_idempotent,
    json_round_trips_byte_for_byte,
    stream_names_with_spaces_slashes_and_unicode_work,
    read_all_honours_from_and_limit,
    read_positions_finds_exactly_the_events_asked_for,
    a_subscription_from_the_middle_catches_up_then_goes_live,
    id_sequences_never_repeat_across_allocators,
);
