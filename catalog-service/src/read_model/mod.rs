//! The catalog's read models, folded from the global feed: small views,
//! each answering one question, combined into one [`CatalogView`] that
//! applies every event to each (as fmodel's `View::merge` combines views)
//! and is saved as one snapshot.
//! - [`movies`]: the movie list with each movie's rating statistics;
//! - [`finding`]: search, ordering and cursors over it (DRF's filters);
//! - [`ratings`]: the rating list, by movie, and its cuts;
//! - activity: what each user did ([`Histories`]);
//! - the [`KeyedIndex`] of what keyed commands created.

pub mod finding;
pub mod movies;
pub mod ratings;

use event_sourcing::idempotency::{Keyed, KeyedIndex, KeyedModel};
use event_sourcing::read_model::ReadModel;
use event_sourcing::read_model::history::{Fact, Histories};
use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, Frozen, Snapshot};
use event_store::RecordedEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{CatalogEvent, MovieId, RatingId, UserId};
pub use movies::{FoundPage, MovieList, MovieListing, MovieRow, Window};
pub use ratings::{RatingList, RatingRow, RatingsCut};

/// Every read model of the catalog, compact: a million ratings take about
/// 12 bytes each in the rating list, 4 in their movie's index and 12 in
/// their user's activity while ids fit in 32 bits (each vector widens by
/// itself when one does not: 24, 8 and 16), plus the vectors' spare
/// capacity. Listings go
/// by id ascending, and the serialized form (the snapshot) is canonical.
#[derive(Debug, Default, Serialize)]
pub struct CatalogView {
    /// The movie list.
    pub movies: MovieList,
    /// The rating list.
    pub ratings: RatingList,
    /// What each command sent with an idempotency key created, by the id
    /// of its event (see `event_sourcing::idempotency`).
    keyed: KeyedIndex<Created>,
    /// What each user did, oldest first.
    activity: Histories<UserId>,
    /// The position of the last catalog event applied.
    #[serde(skip)]
    position: u64,
}

/// A movie or a rating, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Created {
    /// A movie.
    Movie(MovieId),
    /// A rating.
    Rating(RatingId),
}

impl Created {
    /// As an activity entry keeps it: a movie's id, or minus a rating's
    /// (ids are positive), so that an entry stays 16 bytes.
    pub fn code(self) -> i64 {
        match self {
            Created::Movie(id) => id.0,
            Created::Rating(id) => -id.0,
        }
    }

    /// What [`Created::code`] made `code` of.
    pub fn of_code(code: i64) -> Self {
        if code < 0 {
            Created::Rating(RatingId(-code))
        } else {
            Created::Movie(MovieId(code))
        }
    }
}

/// One page of a listing and the size of the whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of the page.
    pub items: Vec<T>,
    /// How many rows the whole listing has.
    pub count: usize,
}

impl CatalogView {
    /// The rating list as it is now, as a cut to read it at.
    pub fn ratings_cut(&self) -> RatingsCut {
        self.ratings.cut(self.position)
    }

    /// The newest `newest` things `user` did (all with `None`), newest
    /// first, and how many there are in all.
    pub fn activity(&self, user: UserId, newest: Option<usize>) -> Page<Fact> {
        let (items, count) = self.activity.newest(user, newest);
        Page { items, count }
    }

    /// How many movies and ratings `user` added at or after `since_micros`
    /// (counting at most `limit`), and when the oldest of those was.
    pub fn writes_since(
        &self,
        user: UserId,
        since_micros: i64,
        limit: usize,
    ) -> (usize, Option<i64>) {
        self.activity.recent(user, since_micros, limit)
    }

    /// Canonical JSON of every read model: equal models give equal bytes.
    pub fn snapshot(&self) -> String {
        serde_json::to_string(self).expect("read models always serialize")
    }

    /// SHA-256 (hex) of [`CatalogView::snapshot`].
    pub fn snapshot_digest(&self) -> String {
        hex::encode(Sha256::digest(self.snapshot().as_bytes()))
    }
}

impl KeyedModel for CatalogView {
    type Created = Created;

    fn keyed(&self) -> &KeyedIndex<Created> {
        &self.keyed
    }
}

impl ReadModel for CatalogView {
    type Event = CatalogEvent;

    fn apply(&mut self, event: CatalogEvent, recorded: &RecordedEvent) {
        self.position = recorded.position;
        let (created, by) = match &event {
            CatalogEvent::MovieAdded { id, added_by, .. } => (Created::Movie(*id), *added_by),
            CatalogEvent::MovieRated { id, user, .. } => (Created::Rating(*id), *user),
        };
        self.activity
            .push(by, recorded.recorded_at.timestamp_micros(), created.code());
        self.keyed.note(recorded, |_| created);
        self.ratings.apply(&event);
        self.movies.apply(event);
    }
}

impl Snapshot for CatalogView {
    const NAME: &'static str = "catalog";
    /// Bump with any change to `apply` or to the encoding below; the test
    /// `the_snapshot_encoding_is_pinned` fails until you do. (3: late
    /// ratings without their positions, and a bit per rating.)
    const VERSION: u32 = 3;

    fn encode(&self, out: &mut Encoder<'_>) {
        self.snapshot_parts().encode(out);
    }

    /// The view's snapshot parts, cloned in microseconds (copy-on-write):
    /// the save encodes them with the view unlocked.
    fn freeze(&self) -> Option<Frozen> {
        let parts = self.snapshot_parts();
        Some(Box::new(move |out| parts.encode(out)))
    }

    fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut view = CatalogView {
            position: input.u64()?,
            movies: MovieList::decode(input)?,
            ratings: RatingList::decode(input)?,
            ..Self::default()
        };
        for _ in 0..input.count(33)? {
            let event = Uuid::from_bytes(input.array()?);
            let fingerprint = input.str()?;
            let created = decode_created(input)?;
            view.keyed.insert(
                event,
                Keyed {
                    fingerprint,
                    created,
                },
            );
        }
        view.activity = Histories::decode(input)?;
        Ok(view)
    }
}

/// What a snapshot of the view writes, shared with the view until either
/// changes (see [`CatalogView::snapshot_parts`]).
struct SnapshotParts {
    position: u64,
    movies: movies::FrozenMovies,
    ratings: ratings::FrozenRatings,
    keyed: KeyedIndex<Created>,
    activity: Histories<UserId>,
}

impl CatalogView {
    /// The parts a snapshot writes, as they are now: clones that share the
    /// view's ranges, chunks and shards.
    fn snapshot_parts(&self) -> SnapshotParts {
        SnapshotParts {
            position: self.position,
            movies: self.movies.frozen(),
            ratings: self.ratings.frozen(),
            keyed: self.keyed.clone(),
            activity: self.activity.clone(),
        }
    }
}

impl SnapshotParts {
    fn encode(&self, out: &mut Encoder<'_>) {
        out.u64(self.position);
        self.movies.encode(out);
        self.ratings.encode(out);
        out.count(self.keyed.len());
        for (event, k) in self.keyed.sorted() {
            out.fixed(event.as_bytes());
            out.str(&k.fingerprint);
            encode_created(out, k.created);
        }
        self.activity.encode(out);
    }
}

fn encode_created(out: &mut Encoder<'_>, created: Created) {
    match created {
        Created::Movie(id) => {
            out.u8(0);
            out.i64(id);
        }
        Created::Rating(id) => {
            out.u8(1);
            out.i64(id);
        }
    }
}

fn decode_created(input: &mut Decoder<'_>) -> Result<Created, Damaged> {
    match (input.u8()?, input.i64()?) {
        (0, id) => Ok(Created::Movie(MovieId(id))),
        (1, id) => Ok(Created::Rating(RatingId(id))),
        _ => Err(Damaged("an unknown kind of creation")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rating;

    fn view(events: impl IntoIterator<Item = CatalogEvent>) -> CatalogView {
        let mut v = CatalogView::default();
        for (position, e) in (1..).zip(events) {
            apply_at(&mut v, position, e);
        }
        v
    }

    fn added(id: i64) -> CatalogEvent {
        CatalogEvent::MovieAdded {
            id: MovieId(id),
            title: format!("t{id}"),
            director: "d".into(),
            added_by: UserId(1),
        }
    }

    fn rated(id: i64, movie: i64, rating: u8) -> CatalogEvent {
        CatalogEvent::MovieRated {
            id: RatingId(id),
            movie: MovieId(movie),
            user: UserId(10 + id),
            rating: Rating::parse(rating.into()).unwrap(),
        }
    }

    #[test]
    fn a_movie_shows_its_ratings_count_and_average() {
        let v = view([added(1), added(2), rated(1, 1, 4), rated(2, 1, 5)]);
        let m = v.movies.get(MovieId(1)).unwrap();
        assert_eq!((m.rating_count, m.rating_average()), (2, Some(4.5)));
        assert_eq!(v.movies.get(MovieId(2)).unwrap().rating_average(), None);
        assert!(v.movies.get(MovieId(3)).is_none());
    }

    #[test]
    fn listings_page_by_id_and_filter_by_movie() {
        let v = view([
            added(1),
            added(2),
            added(3),
            rated(1, 2, 3),
            rated(2, 3, 1),
            rated(3, 2, 5),
        ]);
        let page = v.movies.page(Some(2), 1);
        assert_eq!(page.count, 3);
        assert_eq!(
            page.items.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            [2, 3]
        );
        let of_two = v.ratings.page(Some(MovieId(2)), None, 0);
        assert_eq!(
            of_two.items.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(v.ratings.page(None, Some(1), 2).items[0].id, RatingId(3));
        assert_eq!(v.ratings.page(Some(MovieId(9)), None, 0).count, 0);
    }

    #[test]
    fn the_list_tag_changes_with_movies_not_ratings() {
        let one = view([added(1)]);
        let rated_one = view([added(1), rated(1, 1, 2)]);
        let two = view([added(1), added(2)]);
        assert_eq!(one.movies.etag(), rated_one.movies.etag());
        assert_ne!(one.movies.etag(), two.movies.etag());
        let tag = *one.movies.etag();
        assert!(matches!(
            one.movies.listing(None, 0, &tag),
            MovieListing::NotModified { count: 1, .. }
        ));
        assert!(matches!(
            two.movies.listing(None, 0, &tag),
            MovieListing::Page { .. }
        ));
    }

    #[test]
    fn ratings_committed_out_of_order_are_listed_by_id() {
        let v = view([
            added(1),
            added(2),
            rated(3, 1, 5),
            rated(1, 2, 1),
            rated(2, 1, 3),
        ]);
        let ids = |p: Page<RatingRow>| p.items.iter().map(|r| r.id.0).collect::<Vec<_>>();
        assert_eq!(ids(v.ratings.page(None, None, 0)), [1, 2, 3]);
        assert_eq!(ids(v.ratings.page(Some(MovieId(1)), None, 0)), [2, 3]);
        let r = v.ratings.get(RatingId(3)).unwrap();
        assert_eq!((r.movie.0, r.user.0, r.rating.get()), (1, 13, 5));
        assert!(v.ratings.get(RatingId(4)).is_none());
        assert_eq!(
            v.movies.get(MovieId(1)).unwrap().rating_average(),
            Some(4.0)
        );
    }

    /// `event`, applied at `position`.
    fn apply_at(v: &mut CatalogView, position: u64, event: CatalogEvent) {
        apply_when(v, position, chrono::Utc::now(), event);
    }

    /// `event`, applied at `position`, recorded at `at`.
    fn apply_when(
        v: &mut CatalogView,
        position: u64,
        at: chrono::DateTime<chrono::Utc>,
        event: CatalogEvent,
    ) {
        let new = event_store::NewEvent::new("x", &()).unwrap();
        let recorded = RecordedEvent {
            position,
            stream: "s".into(),
            version: 0,
            event_type: new.event_type,
            id: Uuid::from_u128(u128::from(position)),
            data: new.data,
            metadata: new.metadata,
            recorded_at: at,
        };
        v.apply(event, &recorded);
    }

    /// A history touching every part of the model: movies, ratings in and
    /// out of order, several users; recorded at fixed times.
    fn fixed_history() -> CatalogView {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut v = CatalogView::default();
        let events = [
            added(1),
            added(2),
            rated(2, 1, 4),
            rated(1, 2, 5),
            rated(3, 2, 1),
        ];
        for (i, e) in (1..).zip(events) {
            apply_when(&mut v, i * 2, t0 + chrono::TimeDelta::seconds(i as i64), e);
        }
        v.keyed.insert(
            Uuid::from_u128(7),
            Keyed {
                fingerprint: "f".into(),
                created: Created::Rating(RatingId(3)),
            },
        );
        v
    }

    #[test]
    fn ids_past_32_bits_widen_the_vectors_and_nothing_is_cut() {
        let big = 1_i64 << 33;
        let mut v = view([added(1), added(big), rated(1, 1, 4)]);
        assert!(v.ratings.get(RatingId(1)).is_some());
        // A rating id, a movie id and a user id that do not fit narrow.
        for (position, (id, movie, user)) in
            (4..).zip([(big, 1, 11), (big + 1, big, 12), (big + 2, 1, 1 << 30)])
        {
            let rating = Rating::parse(5).unwrap();
            let (id, movie, user) = (RatingId(id), MovieId(movie), UserId(user));
            let event = CatalogEvent::MovieRated {
                id,
                movie,
                user,
                rating,
            };
            apply_at(&mut v, position, event);
        }
        let row = v.ratings.get(RatingId(big + 2)).unwrap();
        assert_eq!((row.movie, row.user), (MovieId(1), UserId(1 << 30)));
        let of_one = v.ratings.page(Some(MovieId(1)), None, 0);
        let ids: Vec<i64> = of_one.items.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [1, big, big + 2]);
        let of_big = v.ratings.page(Some(MovieId(big)), None, 0);
        assert_eq!(of_big.items[0].id, RatingId(big + 1));
        assert_eq!(v.activity(UserId(12), None).items[0].what, -(big + 1));
        // Applied late (below the greatest id), after four ratings.
        apply_at(&mut v, big as u64, rated(2, 1, 3));
        assert_eq!(v.ratings.late(), [(RatingId(2), 4)]);
        let bytes = v.to_bytes();
        let back = CatalogView::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.ratings.get(RatingId(big + 2)), Some(row));
        assert_eq!(back.ratings.late(), v.ratings.late());
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_model() {
        let v = fixed_history();
        let bytes = v.to_bytes();
        let back = CatalogView::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.snapshot(), v.snapshot());
        assert_eq!(back.ratings_cut(), v.ratings_cut());
        assert_eq!(back.movies.etag(), v.movies.etag());
        assert_eq!(
            back.ratings.page(Some(MovieId(2)), None, 0),
            v.ratings.page(Some(MovieId(2)), None, 0)
        );
        assert_eq!(back.ratings.late(), v.ratings.late());
        // Every shorter prefix is refused, without a panic.
        for cut in 0..bytes.len() {
            assert!(CatalogView::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn a_frozen_view_encodes_what_it_was_while_events_are_applied() {
        // Enough ratings for the list to have chunks after its first.
        let ratings = (1..=3_000).map(|id| rated(2 * id, 1 + id % 3, 1 + (id % 5) as u8));
        let mut v = view([added(1), added(2), added(3)].into_iter().chain(ratings));
        let before = v.to_bytes();
        let frozen = v.freeze().expect("the catalog view freezes");
        // A movie, a rating counted in a movie's row, ratings late (in the
        // list's first and middle chunks) and at the end, after the freeze.
        for (position, e) in (10_000..).zip([
            added(4),
            rated(1, 2, 5),
            rated(4_001, 3, 1),
            rated(7_000, 4, 2),
        ]) {
            apply_at(&mut v, position, e);
        }
        assert_ne!(v.to_bytes(), before);
        let mut out = Encoder::default();
        frozen(&mut out);
        assert_eq!(out.into_inner(), before);
        assert_eq!(
            v.ratings.get(RatingId(4_001)).map(|r| r.movie),
            Some(MovieId(3))
        );
        assert_eq!(
            v.movies.get(MovieId(2)).map(|m| m.rating_count),
            Some(1_001)
        );
    }

    /// Pins what version 3 of the projection makes of a fixed history.
    /// When this fails, you changed `apply` or the encoding: bump
    /// `CatalogView::VERSION` (old snapshots are then ignored, not
    /// misread) and update the digest.
    #[test]
    fn the_snapshot_encoding_is_pinned() {
        assert_eq!(CatalogView::VERSION, 3);
        assert_eq!(
            hex::encode(Sha256::digest(fixed_history().to_bytes())),
            "c05494add946df2da1fa67c0d74794b068099ea4215abde9958e6fe3ea8c7180"
        );
    }

    #[test]
    fn a_cut_lists_the_ratings_of_its_moment_whatever_came_after() {
        let mut v = CatalogView::default();
        apply_at(&mut v, 1, added(1));
        apply_at(&mut v, 2, rated(1, 1, 3));
        apply_at(&mut v, 3, rated(3, 1, 4));
        let cut = v.ratings_cut();
        assert_eq!((cut.position, cut.max_id, cut.count), (3, RatingId(3), 2));
        // After the cut: one out of order (below the cut's greatest id), one after.
        apply_at(&mut v, 4, rated(2, 1, 5));
        apply_at(&mut v, 5, rated(4, 1, 1));
        let ids = |rows: Vec<RatingRow>| rows.iter().map(|r| r.id.0).collect::<Vec<_>>();
        assert_eq!(ids(v.ratings.at(&cut, RatingId(0), 10)), [1, 3]);
        assert_eq!(ids(v.ratings.at(&cut, RatingId(1), 10)), [3]);
        assert_eq!(ids(v.ratings.at(&cut, RatingId(0), 1)), [1]);
        let now = v.ratings_cut();
        assert_eq!(ids(v.ratings.at(&now, RatingId(0), 10)), [1, 2, 3, 4]);
        assert_ne!(now.tag, cut.tag, "a rating changes the tag");
        let mut again = CatalogView::default();
        for (p, e) in [(1, added(1)), (2, rated(1, 1, 3)), (3, rated(3, 1, 4))] {
            apply_at(&mut again, p, e);
        }
        assert_eq!(again.ratings_cut(), cut, "replicas agree on a cut");
    }

    /// Cuts taken at every moment of a history with ratings late across
    /// many words of bits each list what a view of that moment holds, on
    /// the view and on its snapshot decoded.
    #[test]
    fn every_cut_lists_its_moment_with_late_ratings_across_words() {
        // Ids 1..=300 applied in runs of 7 in reverse: most are late.
        let ids: Vec<i64> = (0..300_i64)
            .map(|n| (n / 7) * 7 + (6 - n % 7) + 1)
            .filter(|&id| id <= 300)
            .collect();
        let events: Vec<CatalogEvent> = std::iter::once(added(1))
            .chain(ids.iter().map(|&id| rated(id, 1, 1 + (id % 5) as u8)))
            .collect();
        let mut v = CatalogView::default();
        let mut moments = vec![];
        for (position, event) in (1..).zip(&events) {
            apply_at(&mut v, position, event.clone());
            let mut then = CatalogView::default();
            for (p, e) in (1..=position).zip(&events) {
                apply_at(&mut then, p, e.clone());
            }
            let listed = then.ratings.page(None, None, 0).items;
            moments.push((v.ratings_cut(), listed));
        }
        assert!(v.ratings.late().len() > 200, "{}", v.ratings.late().len());
        let back = CatalogView::from_bytes(&v.to_bytes()).unwrap();
        for (cut, listed) in &moments {
            assert_eq!(
                &v.ratings.at(cut, RatingId(0), usize::MAX),
                listed,
                "{cut:?}"
            );
            assert_eq!(
                &back.ratings.at(cut, RatingId(0), usize::MAX),
                listed,
                "{cut:?}"
            );
        }
    }

    #[test]
    fn each_user_sees_only_what_they_did_newest_first() {
        // Movies are added by user 1; rating n is given by user 10 + n.
        let v = view([added(1), added(2), rated(1, 1, 4), rated(2, 2, 5)]);
        let mine = v.activity(UserId(1), None);
        assert_eq!(mine.count, 2);
        assert_eq!(
            mine.items
                .iter()
                .map(|d| Created::of_code(d.what))
                .collect::<Vec<_>>(),
            [Created::Movie(MovieId(2)), Created::Movie(MovieId(1))]
        );
        let rater = v.activity(UserId(11), Some(5));
        assert_eq!(
            rater
                .items
                .iter()
                .map(|d| Created::of_code(d.what))
                .collect::<Vec<_>>(),
            [Created::Rating(RatingId(1))]
        );
        assert_eq!(v.activity(UserId(1), Some(1)).items.len(), 1);
        assert_eq!(v.activity(UserId(99), None).count, 0);
    }
}
