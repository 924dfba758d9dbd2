//! catalog-service over real gRPC, with a real auth-service in-process: each
//! test starts both on ephemeral ports, on SQLite and (when available) on
//! PostgreSQL, each service on a store of its own.

mod helpers;
mod movies;
mod ratings;
mod recovery;
mod subscribe;
