//! End to end: the whole stack in-process (real HTTP, real gRPC, real
//! stores), driven through the REST API exactly as API.md specifies. Each
//! case runs on SQLite with the all-in-one identity check, and on PostgreSQL
//! (when available) with the gRPC identity check that separate processes use,
//! and on PostgreSQL as three separate processes of the real binaries
//! (`#[ignore]`d: `.ci/run` builds the binaries and runs them).

mod accounts;
mod activity;
mod erasure;
mod feed;
mod finding;
mod hardening;
mod helpers;
mod movies;
mod moving;
mod ops;
mod ratings;
mod releases;
mod security;
mod sessions;
mod standards;
#[path = "../support/processes.rs"]
mod support;
mod web;
