//! The gRPC contracts of the platform, generated from
//! `proto/movies/*/v1/*.proto`.
//!
//! Each RPC answers its own `<Rpc>Response` type (buf's standard style);
//! where two of them carry the same fields, at the same numbers, a plain
//! type here names what they share and converts both ways, so code handles
//! them alike.

/// Conversions between two messages with the same fields.
macro_rules! same_fields {
    ($a:ty, $b:ty { $($field:ident),* }) => {
        impl From<$a> for $b {
            fn from(m: $a) -> Self {
                Self { $($field: m.$field),* }
            }
        }
        impl From<$b> for $a {
            fn from(m: $b) -> Self {
                Self { $($field: m.$field),* }
            }
        }
    };
}

/// `movies.auth.v1`: users and tokens.
pub mod auth {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("movies.auth.v1");

    /// A new token for a user: what `Register` and `Login` both answer.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Session {
        pub user: Option<User>,
        /// 64 hex characters; shown once, never stored.
        pub token: String,
        pub expiry: Option<prost_types::Timestamp>,
    }

    same_fields!(
        Session,
        RegisterResponse {
            user,
            token,
            expiry
        }
    );
    same_fields!(
        Session,
        LoginResponse {
            user,
            token,
            expiry
        }
    );
    same_fields!(
        User,
        AuthenticateResponse {
            id,
            username,
            email
        }
    );
}

/// `movies.catalog.v1`: movies and ratings.
pub mod catalog {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("movies.catalog.v1");

    same_fields!(
        Movie,
        AddMovieResponse {
            id,
            title,
            director
        }
    );
    same_fields!(
        Rating,
        RateMovieResponse {
            id,
            movie,
            rating,
            user
        }
    );
}

/// `movies.feed.v1`: consumer groups over a service's events, which both
/// services serve.
pub mod feed {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("movies.feed.v1");
}

/// The encoded file descriptor set of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The protobuf timestamp every message uses.
pub use prost_types::Timestamp;

/// A protobuf timestamp from microseconds since the Unix epoch (what the
/// stores record), without a calendar library.
pub fn timestamp_micros(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_before_the_epoch_keep_nanos_positive() {
        let t = super::timestamp_micros(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_000));
        let t = super::timestamp_micros(1_500_000);
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
    }
}
