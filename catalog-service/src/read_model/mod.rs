//! The catalog's read models, folded from the global feed: the movie list,
//! the rating list and per-movie rating statistics.

use std::collections::{BTreeMap, HashMap};

use event_sourcing::idempotency::{Keyed, KeyedIndex, KeyedModel};
use event_sourcing::read_model::ReadModel;
use event_sourcing::read_model::history::{Fact, Histories};
use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, Snapshot, i64_at};
use event_store::RecordedEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{CatalogEvent, MovieId, Rating, RatingId, UserId};

/// A movie with its rating statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovieRow {
    /// Its id.
    pub id: MovieId,
    /// Its title.
    pub title: String,
    /// Its director.
    pub director: String,
    /// Who added it.
    pub added_by: UserId,
    /// How many ratings it has.
    pub rating_count: u64,
    /// The sum of its ratings (the average is derived).
    pub rating_sum: u64,
}

impl MovieRow {
    /// The mean rating, or `None` when unrated.
    pub fn rating_average(&self) -> Option<f64> {
        (self.rating_count > 0).then(|| self.rating_sum as f64 / self.rating_count as f64)
    }
}

/// A rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RatingRow {
    /// Its id.
    pub id: RatingId,
    /// The movie rated.
    pub movie: MovieId,
    /// Who rated it.
    pub user: UserId,
    /// 1..=5.
    pub rating: Rating,
}

/// Every read model of the catalog, compact: a million ratings take about
/// 24 bytes each in the rating list, 8 in their movie's index and 16 in
/// their user's activity (plus the vectors' spare capacity). Listings go
/// by id ascending, and the serialized form (the snapshot) is canonical.
#[derive(Debug, Default, Serialize)]
pub struct CatalogView {
    movies: BTreeMap<MovieId, MovieRow>,
    /// Every rating, by id ascending.
    ratings: Vec<Packed>,
    /// Each movie's rating ids, ascending.
    #[serde(skip)]
    ratings_by_movie: HashMap<MovieId, Vec<RatingId>>,
    /// The movie list's tag: SHA-256 chained over every movie added, in
    /// feed order (derived, so not part of the snapshot). Any future event
    /// that changes what a list shows (id, title, director) must extend it.
    #[serde(skip)]
    movies_etag: [u8; 32],
    /// What each command sent with an idempotency key created, by the id
    /// of its event (see `event_sourcing::idempotency`).
    keyed: KeyedIndex<Created>,
    /// What each user did, oldest first.
    activity: Histories<UserId>,
    /// The position of the last catalog event applied.
    #[serde(skip)]
    position: u64,
    /// The rating list's tag: SHA-256 chained over every rating, in feed
    /// order (derived, like `movies_etag`).
    #[serde(skip)]
    ratings_tag: [u8; 32],
    /// Ratings applied after one with a greater id (ids are allocated
    /// before their command commits, so a race commits them out of order),
    /// with the position that applied them: what a [`RatingsCut`] leaves out.
    #[serde(skip)]
    late: Vec<(RatingId, u64)>,
}

/// The rating list at one position: what a listing read in pages (from
/// any replica) shows, so that the pages make up one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingsCut {
    /// Every event up to here, none after.
    pub position: u64,
    /// The greatest rating id then.
    pub max_id: RatingId,
    /// How many ratings then.
    pub count: usize,
    /// The list's tag then (128 bits).
    pub tag: [u8; 16],
}

/// A rating in 24 bytes: the user and the rating share one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Packed {
    id: RatingId,
    movie: MovieId,
    /// `user << 3 | rating` (a rating is 1..=5; user ids are positive and
    /// far below 2^60).
    user_rating: i64,
}

impl Packed {
    fn new(row: RatingRow) -> Self {
        Self {
            id: row.id,
            movie: row.movie,
            user_rating: (row.user.0 << 3) | i64::from(row.rating.get()),
        }
    }

    fn row(self) -> RatingRow {
        RatingRow {
            id: self.id,
            movie: self.movie,
            user: UserId(self.user_rating >> 3),
            rating: Rating::from_stored((self.user_rating & 7) as u8),
        }
    }
}

/// Inserts `item` into `sorted` (ascending by `key`), where it almost
/// always goes last: ids are allocated in order, and only a race between
/// two commands commits them out of order.
fn insert_sorted<T, K: Ord>(sorted: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    match sorted.last() {
        Some(last) if key(last) > k => {
            let at = sorted.partition_point(|x| key(x) < k);
            sorted.insert(at, item);
        }
        _ => sorted.push(item),
    }
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
    /// A rating by id.
    pub fn rating(&self, id: RatingId) -> Option<RatingRow> {
        let at = self.ratings.binary_search_by_key(&id, |p| p.id).ok()?;
        Some(self.ratings[at].row())
    }

    /// A movie by id.
    pub fn movie(&self, id: MovieId) -> Option<&MovieRow> {
        self.movies.get(&id)
    }

    /// Movies by id ascending; `limit: None` means all.
    pub fn movies(&self, limit: Option<usize>, offset: usize) -> Page<MovieRow> {
        Page {
            items: self
                .movies
                .values()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .cloned()
                .collect(),
            count: self.movies.len(),
        }
    }

    /// Names the movie list's content: it changes with every movie added, and
    /// replicas that folded the same events agree on it.
    pub fn movies_etag(&self) -> &[u8; 32] {
        &self.movies_etag
    }

    /// Ratings by id ascending, optionally of one movie; `limit: None` means all.
    pub fn ratings(
        &self,
        movie: Option<MovieId>,
        limit: Option<usize>,
        offset: usize,
    ) -> Page<RatingRow> {
        let take = limit.unwrap_or(usize::MAX);
        match movie {
            None => Page {
                items: self
                    .ratings
                    .iter()
                    .skip(offset)
                    .take(take)
                    .map(|p| p.row())
                    .collect(),
                count: self.ratings.len(),
            },
            Some(m) => {
                let ids = self.ratings_by_movie.get(&m).map_or(&[][..], Vec::as_slice);
                Page {
                    items: ids
                        .iter()
                        .skip(offset)
                        .take(take)
                        .filter_map(|&id| self.rating(id))
                        .collect(),
                    count: ids.len(),
                }
            }
        }
    }

    /// The rating list as it is now, as a cut to read it at.
    pub fn ratings_cut(&self) -> RatingsCut {
        let mut tag = [0; 16];
        tag.copy_from_slice(&self.ratings_tag[..16]);
        RatingsCut {
            position: self.position,
            max_id: self.ratings.last().map_or(RatingId(0), |p| p.id),
            count: self.ratings.len(),
            tag,
        }
    }

    /// Up to `limit` ratings with an id above `after`, by id ascending, of
    /// the list as it was at `cut` (`cut.position` must be applied here).
    pub fn ratings_at(&self, cut: &RatingsCut, after: RatingId, limit: usize) -> Vec<RatingRow> {
        // Applied after the cut below its greatest id: few, and at the end.
        let later: std::collections::HashSet<RatingId> = self
            .late
            .iter()
            .rev()
            .take_while(|(_, at)| *at > cut.position)
            .map(|(id, _)| *id)
            .collect();
        let start = self.ratings.partition_point(|p| p.id <= after);
        self.ratings[start..]
            .iter()
            .take_while(|p| p.id <= cut.max_id)
            .filter(|p| !later.contains(&p.id))
            .take(limit)
            .map(|p| p.row())
            .collect()
    }

    /// The newest `newest` things `user` did (all with `None`), newest
    /// first, and how many there are in all.
    pub fn activity(&self, user: UserId, newest: Option<usize>) -> Page<Fact> {
        let (items, count) = self.activity.newest(user, newest);
        Page { items, count }
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
        match event {
            CatalogEvent::MovieAdded {
                id,
                title,
                director,
                added_by,
            } => {
                self.movies_etag = chain_movie(&self.movies_etag, id.0, &title, &director);
                self.movies.insert(
                    id,
                    MovieRow {
                        id,
                        title,
                        director,
                        added_by,
                        rating_count: 0,
                        rating_sum: 0,
                    },
                );
            }
            CatalogEvent::MovieRated {
                id,
                movie,
                user,
                rating,
            } => {
                if let Some(m) = self.movies.get_mut(&movie) {
                    m.rating_count += 1;
                    m.rating_sum += u64::from(rating.get());
                }
                let row = RatingRow {
                    id,
                    movie,
                    user,
                    rating,
                };
                if self.ratings.last().is_some_and(|last| last.id > id) {
                    self.late.push((id, recorded.position));
                }
                self.ratings_tag = chain_rating(&self.ratings_tag, &row);
                insert_sorted(&mut self.ratings, Packed::new(row), |p| p.id);
                insert_sorted(self.ratings_by_movie.entry(movie).or_default(), id, |&i| i);
            }
        }
    }
}

impl Snapshot for CatalogView {
    const NAME: &'static str = "catalog";
    /// Bump with any change to `apply` or to the encoding below; the test
    /// `the_snapshot_encoding_is_pinned` fails until you do.
    const VERSION: u32 = 1;

    fn encode(&self, out: &mut Encoder<'_>) {
        out.u64(self.position);
        out.fixed(&self.movies_etag);
        out.fixed(&self.ratings_tag);
        out.count(self.movies.len());
        for m in self.movies.values() {
            out.i64(m.id);
            out.str(&m.title);
            out.str(&m.director);
            out.i64(m.added_by);
            out.u64(m.rating_count);
            out.u64(m.rating_sum);
        }
        out.records(&self.ratings, 24, |p, slot| {
            slot[..8].copy_from_slice(&p.id.0.to_le_bytes());
            slot[8..16].copy_from_slice(&p.movie.0.to_le_bytes());
            slot[16..].copy_from_slice(&p.user_rating.to_le_bytes());
        });
        out.count(self.late.len());
        for &(id, position) in &self.late {
            out.i64(id);
            out.u64(position);
        }
        out.count(self.keyed.len());
        for (event, k) in self.keyed.sorted() {
            out.fixed(event.as_bytes());
            out.str(&k.fingerprint);
            encode_created(out, k.created);
        }
        self.activity.encode(out);
    }

    fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged> {
        let mut view = CatalogView {
            position: input.u64()?,
            movies_etag: input.array()?,
            ratings_tag: input.array()?,
            ..Self::default()
        };
        for _ in 0..input.count(48)? {
            let id = input.i64()?;
            let row = MovieRow {
                id: MovieId(id),
                title: input.str()?,
                director: input.str()?,
                added_by: input.id()?,
                rating_count: input.u64()?,
                rating_sum: input.u64()?,
            };
            view.movies.insert(MovieId(id), row);
        }
        input.records(24, |record| {
            let p = Packed {
                id: RatingId(i64_at(record, 0)),
                movie: MovieId(i64_at(record, 8)),
                user_rating: i64_at(record, 16),
            };
            if !(1..=5).contains(&(p.user_rating & 7)) {
                return Err(Damaged("a rating out of range"));
            }
            if view.ratings.last().is_some_and(|last| last.id >= p.id) {
                return Err(Damaged("ratings out of order"));
            }
            view.ratings.push(p);
            view.ratings_by_movie.entry(p.movie).or_default().push(p.id);
            Ok(())
        })?;
        for _ in 0..input.count(16)? {
            view.late.push((input.id()?, input.u64()?));
        }
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

/// The next movie-list tag: `previous` extended by one movie, each field
/// length-prefixed so that no two different lists hash the same input.
fn chain_movie(previous: &[u8; 32], id: i64, title: &str, director: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(id.to_le_bytes());
    for text in [title, director] {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().into()
}

/// The next rating-list tag: `previous` extended by one rating.
fn chain_rating(previous: &[u8; 32], row: &RatingRow) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(previous);
    for field in [
        row.id.0,
        row.movie.0,
        row.user.0,
        i64::from(row.rating.get()),
    ] {
        h.update(field.to_le_bytes());
    }
    h.finalize().into()
}

/// What [`CatalogView::movie_list`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum MovieListing {
    /// The list still has the tag the caller gave.
    NotModified {
        /// The list's tag.
        etag: [u8; 32],
        /// How many movies exist.
        count: usize,
    },
    /// The list has changed, or the caller gave no tag.
    Page {
        /// The list's tag.
        etag: [u8; 32],
        /// The rows asked for.
        page: Page<MovieRow>,
    },
}

impl CatalogView {
    /// Movies by id ascending with the list's tag, both read at one instant;
    /// no rows when the list's tag is `if_none_match` (the caller has them).
    pub fn movie_list(
        &self,
        limit: Option<usize>,
        offset: usize,
        if_none_match: &[u8],
    ) -> MovieListing {
        let etag = self.movies_etag;
        if if_none_match == etag {
            MovieListing::NotModified {
                etag,
                count: self.movies.len(),
            }
        } else {
            MovieListing::Page {
                etag,
                page: self.movies(limit, offset),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = v.movie(MovieId(1)).unwrap();
        assert_eq!((m.rating_count, m.rating_average()), (2, Some(4.5)));
        assert_eq!(v.movie(MovieId(2)).unwrap().rating_average(), None);
        assert!(v.movie(MovieId(3)).is_none());
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
        let page = v.movies(Some(2), 1);
        assert_eq!(page.count, 3);
        assert_eq!(
            page.items.iter().map(|m| m.id.0).collect::<Vec<_>>(),
            [2, 3]
        );
        let of_two = v.ratings(Some(MovieId(2)), None, 0);
        assert_eq!(
            of_two.items.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(v.ratings(None, Some(1), 2).items[0].id, RatingId(3));
        assert_eq!(v.ratings(Some(MovieId(9)), None, 0).count, 0);
    }

    #[test]
    fn the_list_tag_changes_with_movies_not_ratings() {
        let one = view([added(1)]);
        let rated_one = view([added(1), rated(1, 1, 2)]);
        let two = view([added(1), added(2)]);
        assert_eq!(one.movies_etag(), rated_one.movies_etag());
        assert_ne!(one.movies_etag(), two.movies_etag());
        let tag = *one.movies_etag();
        assert!(matches!(
            one.movie_list(None, 0, &tag),
            MovieListing::NotModified { count: 1, .. }
        ));
        assert!(matches!(
            two.movie_list(None, 0, &tag),
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
        assert_eq!(ids(v.ratings(None, None, 0)), [1, 2, 3]);
        assert_eq!(ids(v.ratings(Some(MovieId(1)), None, 0)), [2, 3]);
        let r = v.rating(RatingId(3)).unwrap();
        assert_eq!((r.movie.0, r.user.0, r.rating.get()), (1, 13, 5));
        assert!(v.rating(RatingId(4)).is_none());
        assert_eq!(v.movie(MovieId(1)).unwrap().rating_average(), Some(4.0));
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
    fn a_snapshot_decodes_to_the_same_model() {
        let v = fixed_history();
        let bytes = v.to_bytes();
        let back = CatalogView::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(back.snapshot(), v.snapshot());
        assert_eq!(back.ratings_cut(), v.ratings_cut());
        assert_eq!(back.movies_etag(), v.movies_etag());
        assert_eq!(
            back.ratings(Some(MovieId(2)), None, 0),
            v.ratings(Some(MovieId(2)), None, 0)
        );
        assert_eq!(back.late, v.late);
        // Every shorter prefix is refused, without a panic.
        for cut in 0..bytes.len() {
            assert!(CatalogView::from_bytes(&bytes[..cut]).is_err(), "{cut}");
        }
    }

    /// Pins what version 1 of the projection makes of a fixed history.
    /// When this fails, you changed `apply` or the encoding: bump
    /// `CatalogView::VERSION` (old snapshots are then ignored, not
    /// misread) and update the digest.
    #[test]
    fn the_snapshot_encoding_is_pinned() {
        assert_eq!(CatalogView::VERSION, 1);
        assert_eq!(
            hex::encode(Sha256::digest(fixed_history().to_bytes())),
            "6534e5fc2d5a064e07c56cae58c29905504f3aafa467b3097033d2a91c9df7c0"
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
        assert_eq!(ids(v.ratings_at(&cut, RatingId(0), 10)), [1, 3]);
        assert_eq!(ids(v.ratings_at(&cut, RatingId(1), 10)), [3]);
        assert_eq!(ids(v.ratings_at(&cut, RatingId(0), 1)), [1]);
        let now = v.ratings_cut();
        assert_eq!(ids(v.ratings_at(&now, RatingId(0), 10)), [1, 2, 3, 4]);
        assert_ne!(now.tag, cut.tag, "a rating changes the tag");
        let mut again = CatalogView::default();
        for (p, e) in [(1, added(1)), (2, rated(1, 1, 3)), (3, rated(3, 1, 4))] {
            apply_at(&mut again, p, e);
        }
        assert_eq!(again.ratings_cut(), cut, "replicas agree on a cut");
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
