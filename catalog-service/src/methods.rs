//! How a caller reaches each method of the catalog's gRPC service: declared
//! once, in one table the authentication layer reads, and checked against
//! the proto.

/// How a caller reaches a method of the catalog's gRPC service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Without a token (the method has checks of its own).
    Open,
    /// With a token; it only reads the views, so its read point (see
    /// `Projection::read_point`) is asked while the token is checked, and
    /// the two round trips overlap instead of adding up.
    Read,
    /// With a token; it writes.
    Write,
}

/// Each method of the service, and how it is reached: declared once, here.
/// The authentication layer (`authenticated.rs`) reads it; a test checks
/// that it names every method of the proto, once.
/// (The proto's own `idempotency_level = NO_SIDE_EFFECTS` would say "reads"
/// on the method itself, but `buf breaking` counts adding it to a method of
/// v1 as a breaking change.)
pub const METHODS: [(&str, Access); 7] = [
    ("AddMovie", Access::Write),
    ("GetMovie", Access::Read),
    ("ListMovies", Access::Read),
    ("RateMovie", Access::Write),
    ("ListRatings", Access::Read),
    ("ListActivity", Access::Read),
    ("SubscribeEvents", Access::Open),
];

/// How the method at `path` (`/movies.catalog.v1.CatalogService/<Method>`)
/// is reached; an unknown one needs a token like a write (and is then
/// answered UNIMPLEMENTED).
pub fn access(path: &str) -> Access {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(proto::catalog::catalog_service_server::SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(access_of)
        .unwrap_or(Access::Write)
}

/// How the method named `method` is reached, if the service has it.
pub fn access_of(method: &str) -> Option<Access> {
    METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, access)| *access)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every method of the proto's service is declared in [`METHODS`], once.
    #[test]
    fn every_method_declares_how_it_is_reached() {
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = set
            .file
            .iter()
            .filter(|f| f.package() == "movies.catalog.v1")
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "CatalogService")
            .unwrap();
        let mut in_proto: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut declared: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
        in_proto.sort_unstable();
        declared.sort_unstable();
        assert_eq!(declared, in_proto);
        let path = |m: &str| format!("/movies.catalog.v1.CatalogService/{m}");
        assert_eq!(access(&path("SubscribeEvents")), Access::Open);
        assert_eq!(access(&path("ListMovies")), Access::Read);
        assert_eq!(access(&path("RateMovie")), Access::Write);
        assert_eq!(access(&path("MadeUp")), Access::Write);
        assert_eq!(access("/other.Service/ListMovies"), Access::Write);
    }
}
