//! Fills an empty catalog store with movies and ratings, fast (imported in
//! batches, not appended one by one): the source of `bench/copy.sh` and of
//! the killed-copy test (tests/e2e/moving.rs). Events are what the catalog
//! writes (`MovieAdded` in `movie-<id>`, `MovieRated` in
//! `rating-<movie>-<user>`), each user rating each movie at most once.
//!
//! `fill-store --catalog-store-url sqlite://data/catalog.db --auth-store-url sqlite://data/auth.db --ratings 1000000`

use chrono::Utc;
use clap::Parser;
use event_store::{Event, RecordedEvent};

use catalog_service::domain::{
    CatalogEvent, MovieId, Rating, RatingId, UserId, movie_stream, rating_stream,
};

#[derive(Parser)]
struct Args {
    /// The catalog store to fill (empty).
    #[arg(long)]
    catalog_store_url: String,
    /// An auth store to create empty beside it (`movies copy` copies both).
    #[arg(long)]
    auth_store_url: Option<String>,
    /// How many ratings.
    #[arg(long, default_value_t = 1_000_000)]
    ratings: u64,
    /// How many movies (the ratings go round them).
    #[arg(long, default_value_t = 1_000)]
    movies: u64,
}

/// Events per import.
const BATCH: usize = 10_000;

fn recorded(position: u64, stream: String, event: &CatalogEvent) -> RecordedEvent {
    let new = event.to_new_event().expect("a catalog event encodes");
    RecordedEvent {
        position,
        stream,
        version: 0,
        event_type: new.event_type,
        id: new.id,
        data: new.data,
        metadata: new.metadata,
        recorded_at: Utc::now(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(url) = &args.auth_store_url {
        event_store::open(url).await?;
    }
    let store = event_store::open(&args.catalog_store_url).await?;
    let mut position = store.head_position().await?;
    if position != 0 {
        return Err("the store is not empty".into());
    }
    let movies = args.movies.max(1) as i64;
    let added = (1..=movies).map(|id| {
        let event = CatalogEvent::MovieAdded {
            id: MovieId(id),
            title: format!("Movie {id}"),
            director: format!("Director {}", id % 97),
            added_by: UserId(1),
        };
        (movie_stream(MovieId(id)), event)
    });
    let rated = (0..args.ratings as i64).map(|n| {
        let (movie, user) = (MovieId(n % movies + 1), UserId(n / movies + 1));
        let event = CatalogEvent::MovieRated {
            id: RatingId(n + 1),
            movie,
            user,
            rating: Rating::from_stored((n % 5 + 1) as u8),
        };
        (rating_stream(movie, user), event)
    });
    let mut batch = Vec::with_capacity(BATCH);
    for (stream, event) in added.chain(rated) {
        position += 1;
        batch.push(recorded(position, stream, &event));
        if batch.len() == BATCH {
            store.import(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        store.import(batch).await?;
    }
    println!("{position} events");
    Ok(())
}
