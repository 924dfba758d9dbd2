//! auth-service over real gRPC: each test starts the service on an ephemeral
//! port, on SQLite and (when available) on PostgreSQL.

mod helpers;
mod login;
mod ops;
mod register;
mod tokens;
