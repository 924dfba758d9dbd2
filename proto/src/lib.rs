//! The gRPC contracts of the platform, generated from `proto/*.proto`.

/// `movies.auth.v1`: users and tokens.
pub mod auth {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("movies.auth.v1");
}

/// `movies.catalog.v1`: movies and ratings.
pub mod catalog {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("movies.catalog.v1");
}

/// The encoded file descriptor set of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
