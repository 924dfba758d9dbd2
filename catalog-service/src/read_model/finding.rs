//! Finding movies, in DRF's words: `SearchFilter` (`?search=`),
//! `OrderingFilter` (`?ordering=`), a rating threshold (`?min_ratings=`)
//! and `CursorPagination` (`?cursor=`), over the in-memory movie list.
//! Pure: the rules here, the rows in [`super::movies`].

use std::cmp::Ordering as Order;

use serde::{Deserialize, Serialize};

use super::movies::MovieRow;

/// `text` as search compares it: compatibility-decomposed, without its
/// combining marks, lowercased ("Amélie" and "AMELIE" are both "amelie").
pub fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The most terms one search takes (the rest are ignored), and the
/// longest term, in characters: a query costs at most this many scans.
pub const MAX_TERMS: usize = 8;
/// See [`MAX_TERMS`].
pub const MAX_TERM: usize = 100;

/// The terms of a `?search=` value, as DRF's `SearchFilter` splits them:
/// on whitespace and commas, NUL characters dropped; each folded.
pub fn search_terms(raw: &str) -> Vec<String> {
    raw.replace('\0', "")
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .take(MAX_TERMS)
        .map(|t| fold(&t.chars().take(MAX_TERM).collect::<String>()))
        .filter(|t| !t.is_empty())
        .collect()
}

/// A field the list may be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The id (the default, and every ordering's last tie-break).
    Id,
    /// The title, folded as search folds it.
    Title,
    /// The director, folded.
    Director,
    /// How many ratings.
    RatingCount,
    /// The mean rating (unrated movies below every rated one).
    RatingAverage,
    /// The Bayesian average (see [`Scoring`]).
    Score,
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "title" => Self::Title,
            "director" => Self::Director,
            "rating_count" => Self::RatingCount,
            "rating_average" => Self::RatingAverage,
            "score" => Self::Score,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Title => "title",
            Self::Director => "director",
            Self::RatingCount => "rating_count",
            Self::RatingAverage => "rating_average",
            Self::Score => "score",
        }
    }
}

/// An `?ordering=`: fields, each ascending or descending (`-`), then the
/// id ascending for ties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ordering(Vec<(Field, bool)>);

impl Ordering {
    /// Parses DRF's syntax: comma-separated fields, a leading `-` for
    /// descending; unknown fields are ignored (as DRF does), and so is a
    /// field named twice (its first mention counts).
    pub fn parse(raw: &str) -> Self {
        let mut fields: Vec<(Field, bool)> = Vec::new();
        for part in raw.split(',').map(str::trim).take(8) {
            let (name, descending) = match part.strip_prefix('-') {
                Some(name) => (name, true),
                None => (part, false),
            };
            if let Some(field) = Field::parse(name) {
                if !fields.iter().any(|(f, _)| *f == field) {
                    fields.push((field, descending));
                }
            }
        }
        Self(fields)
    }

    /// The ordering as `?ordering=` writes it (empty: by id).
    pub fn canonical(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(f, d)| format!("{}{}", if *d { "-" } else { "" }, f.name()))
            .collect();
        parts.join(",")
    }
}

/// What `score` is made of: IMDb's weighted rating,
/// `(v/(v+m))·R + (m/(v+m))·C`, with `v` the movie's ratings, `R` their
/// mean, `C` the mean of every rating, and `m` the votes a movie needs
/// before its own mean outweighs everyone's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    /// `C`: the mean of every rating (`None`: no rating yet).
    pub mean: Option<f64>,
    /// `m` (`CATALOG_SCORE_MIN_VOTES`).
    pub min_votes: u64,
}

impl Scoring {
    /// The score of a movie with `count` ratings summing to `sum`
    /// (`None` while nothing at all is rated).
    pub fn score(&self, count: u64, sum: u64) -> Option<f64> {
        let c = self.mean?;
        let (v, m) = (count as f64, self.min_votes as f64);
        if count == 0 && self.min_votes == 0 {
            return Some(c);
        }
        let r = if count == 0 { 0.0 } else { sum as f64 / v };
        Some(v / (v + m) * r + m / (v + m) * c)
    }
}

impl Scoring {
    /// `row` as a found list shows it, with its score.
    pub fn found<'a>(&self, row: &'a MovieRow) -> Found<'a> {
        Found {
            row,
            score: self.score(row.rating_count, row.rating_sum),
        }
    }
}

/// One movie as a found list shows it: the row and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<'a> {
    /// The movie.
    pub row: &'a MovieRow,
    /// Its score.
    pub score: Option<f64>,
}

/// What a find asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Folded terms, each of which must be in the title or the director.
    pub terms: Vec<String>,
    /// The order.
    pub ordering: Ordering,
    /// Only movies with at least this many ratings.
    pub min_ratings: u64,
}

impl Query {
    /// Whether `row` is found.
    pub fn matches(&self, row: &MovieRow) -> bool {
        let folded = &row.folded;
        row.rating_count >= self.min_ratings
            && self
                .terms
                .iter()
                .all(|t| folded.title.contains(t.as_str()) || folded.director.contains(t.as_str()))
    }

    /// How `a` and `b` compare in this query's order (then by id).
    pub fn compare(&self, a: &Found<'_>, b: &Found<'_>) -> Order {
        for (field, descending) in &self.ordering.0 {
            let o = compare_field(*field, a, b);
            let o = if *descending { o.reverse() } else { o };
            if o != Order::Equal {
                return o;
            }
        }
        a.row.id.cmp(&b.row.id)
    }

    /// Where `key` (a cursor's boundary) stands against `b` in this order.
    pub fn compare_key(&self, key: &Key, b: &Found<'_>) -> Order {
        for (i, (field, descending)) in self.ordering.0.iter().enumerate() {
            let o = key
                .values
                .get(i)
                .map_or(Order::Equal, |v| v.compare(&Value::of(*field, b)));
            let o = if *descending { o.reverse() } else { o };
            if o != Order::Equal {
                return o;
            }
        }
        key.id.cmp(&b.row.id.0)
    }

    /// The boundary `s` makes for a cursor.
    pub fn key_of(&self, s: &Found<'_>) -> Key {
        Key {
            values: self
                .ordering
                .0
                .iter()
                .map(|(f, _)| Value::of(*f, s))
                .collect(),
            id: s.row.id.0,
        }
    }
}

/// A movie's title and director as search and ordering compare them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Folded {
    /// The folded title.
    pub title: Box<str>,
    /// The folded director.
    pub director: Box<str>,
}

impl Folded {
    /// Folds `row`'s title and director.
    pub fn of(title: &str, director: &str) -> Self {
        Self {
            title: fold(title).into(),
            director: fold(director).into(),
        }
    }
}

/// `a` against `b` on one field, without making a [`Value`] (a sort
/// compares often).
fn compare_field(field: Field, a: &Found<'_>, b: &Found<'_>) -> Order {
    let (x, y) = (a.row, b.row);
    let real = |p: Option<f64>, q: Option<f64>| match (p, q) {
        (Some(p), Some(q)) => p.total_cmp(&q),
        (p, q) => p.is_some().cmp(&q.is_some()),
    };
    match field {
        Field::Id => x.id.cmp(&y.id),
        Field::Title => a.row.folded.title.cmp(&b.row.folded.title),
        Field::Director => a.row.folded.director.cmp(&b.row.folded.director),
        Field::RatingCount => x.rating_count.cmp(&y.rating_count),
        Field::RatingAverage => real(x.rating_average(), y.rating_average()),
        Field::Score => real(a.score, b.score),
    }
}

/// One field's value, as a cursor keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// An id or a count.
    Int(i64),
    /// An average or a score (`null`: none, below every number).
    Real(Option<f64>),
    /// A folded title or director.
    Text(String),
}

impl Value {
    fn of(field: Field, s: &Found<'_>) -> Self {
        let row = s.row;
        match field {
            Field::Id => Self::Int(row.id.0),
            Field::Title => Self::Text(s.row.folded.title.to_string()),
            Field::Director => Self::Text(s.row.folded.director.to_string()),
            Field::RatingCount => Self::Int(row.rating_count as i64),
            Field::RatingAverage => Self::Real(row.rating_average()),
            Field::Score => Self::Real(s.score),
        }
    }

    fn compare(&self, other: &Self) -> Order {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Real(a), Self::Real(b)) => match (a, b) {
                (Some(a), Some(b)) => a.total_cmp(b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            },
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            // A cursor of another ordering: not ours (see `Cursor`).
            _ => Order::Equal,
        }
    }
}

/// Where a cursor page starts: the boundary movie's ordering values and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// The ordering fields' values, in order.
    #[serde(rename = "v")]
    pub values: Vec<Value>,
    /// The id.
    pub id: i64,
}

/// A `CursorPagination` cursor: the ordering it was made for, the
/// boundary, and the direction (`previous` pages go backwards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The ordering, canonical.
    #[serde(rename = "o")]
    pub ordering: String,
    /// The movie the page starts after (or, backwards, before).
    #[serde(rename = "k")]
    pub key: Key,
    /// Backwards.
    #[serde(rename = "r", default)]
    pub reverse: bool,
}

/// The longest cursor accepted, in characters.
pub const MAX_CURSOR: usize = 2_048;

impl Cursor {
    /// The opaque text of this cursor (URL-safe base64 of its JSON).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        base64_url(&json)
    }

    /// Reads a cursor made by [`Cursor::encode`] for `ordering`; `None`
    /// for anything else (DRF answers "Invalid cursor").
    pub fn decode(text: &str, ordering: &Ordering) -> Option<Self> {
        if text.len() > MAX_CURSOR {
            return None;
        }
        let json = unbase64_url(text)?;
        let cursor: Cursor = serde_json::from_slice(&json).ok()?;
        let fields = &ordering.0;
        let fits = cursor.ordering == ordering.canonical()
            && cursor.key.values.len() == fields.len()
            && cursor.key.values.iter().zip(fields).all(|(v, (f, _))| {
                matches!(
                    (v, f),
                    (Value::Int(_), Field::Id | Field::RatingCount)
                        | (Value::Real(_), Field::RatingAverage | Field::Score)
                        | (Value::Text(_), Field::Title | Field::Director)
                )
            });
        fits.then_some(cursor)
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn unbase64_url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = ALPHABET.iter().position(|a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MovieId, UserId};

    fn row(id: i64, title: &str, director: &str, ratings: &[u64]) -> MovieRow {
        MovieRow {
            id: MovieId(id),
            title: title.into(),
            director: director.into(),
            added_by: UserId(1),
            rating_count: ratings.len() as u64,
            rating_sum: ratings.iter().sum(),
            folded: Folded::of(title, director),
        }
    }

    #[test]
    fn folding_drops_accents_and_case() {
        assert_eq!(fold("Amélie"), "amelie");
        assert_eq!(fold("KUROSAWA"), "kurosawa");
        assert_eq!(fold("Ｆｕｌｌ"), "full", "compatibility forms");
        assert_eq!(fold("千と千尋の神隠し"), "千と千尋の神隠し");
    }

    #[test]
    fn terms_split_on_whitespace_and_commas() {
        assert_eq!(
            search_terms(" Amélie,jeunet  \t x\0y "),
            ["amelie", "jeunet", "xy"]
        );
        assert!(search_terms(" , ").is_empty());
        assert_eq!(search_terms(&"a ".repeat(50)).len(), MAX_TERMS);
    }

    #[test]
    fn every_term_must_match_the_title_or_the_director() {
        let amelie = row(1, "Amélie", "Jean-Pierre Jeunet", &[]);
        let query = |raw: &str| Query {
            terms: search_terms(raw),
            ..Query::default()
        };
        assert!(query("amelie jeunet").matches(&amelie));
        assert!(query("ELIE").matches(&amelie));
        assert!(!query("amelie kurosawa").matches(&amelie));
        let rated = Query {
            min_ratings: 1,
            ..query("amelie")
        };
        assert!(!rated.matches(&amelie));
    }

    #[test]
    fn unknown_and_repeated_ordering_fields_are_ignored() {
        let o = Ordering::parse("-score, nope,title,-title,");
        assert_eq!(o.0, [(Field::Score, true), (Field::Title, false)]);
        assert_eq!(o.canonical(), "-score,title");
        assert_eq!(Ordering::parse("nope").canonical(), "");
    }

    #[test]
    fn the_score_pulls_few_votes_toward_the_mean() {
        let s = Scoring {
            mean: Some(3.0),
            min_votes: 10,
        };
        assert_eq!(s.score(0, 0), Some(3.0));
        // One 5: (1/11)*5 + (10/11)*3.
        let one = s.score(1, 5).unwrap();
        assert!((one - (5.0 / 11.0 + 30.0 / 11.0)).abs() < 1e-12);
        // A hundred 5s outweigh the mean.
        assert!(s.score(100, 500).unwrap() > 4.8);
        assert_eq!(
            Scoring {
                mean: None,
                min_votes: 10
            }
            .score(1, 5),
            None
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_orderings_and_garbage() {
        let ordering = Ordering::parse("-score,title");
        let cursor = Cursor {
            ordering: ordering.canonical(),
            key: Key {
                values: vec![Value::Real(Some(4.25)), Value::Text("ran".into())],
                id: 7,
            },
            reverse: true,
        };
        let text = cursor.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text, &ordering), Some(cursor));
        assert_eq!(Cursor::decode(&text, &Ordering::parse("title")), None);
        for bad in ["", "x", "!!!!", "e30", &"A".repeat(MAX_CURSOR + 1)] {
            assert_eq!(Cursor::decode(bad, &ordering), None, "{bad}");
        }
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(unbase64_url(&base64_url(&bytes)).unwrap(), bytes);
        }
    }
}
