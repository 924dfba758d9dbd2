//! Credentials as django-rest-knox reads them, and the in-process token
//! check.

/// Resolves a token to its user, inside one process: auth-service's token
/// index, lent to catalog-service by the all-in-one launcher. (Separate
/// processes ask auth-service's `Authenticate` RPC, which answers from the
/// same index.)
pub trait TokenCheck: Send + Sync + 'static {
    /// The id of the user of `token` if it is live now; `None` if it is
    /// malformed, unknown, revoked or expired.
    fn user_id(&self, token: &str) -> Option<i64>;
}

/// What an `Authorization` value carries, read as django-rest-knox reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No value, or another scheme than `Token`: no credentials at all.
    Missing,
    /// `Token` followed by nothing usable.
    Malformed,
    /// `Token <token>`: the token, not yet checked.
    Token(&'a str),
}

/// Reads an `Authorization` header or `authorization` metadata value.
pub fn credentials(authorization: Option<&str>) -> Credentials<'_> {
    let value = authorization.map(str::trim).unwrap_or_default();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("token") {
        return Credentials::Missing;
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        Credentials::Malformed
    } else {
        Credentials::Token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::{Credentials, credentials};

    #[test]
    fn authorization_values_read_like_knox() {
        assert_eq!(credentials(Some("Token abc")), Credentials::Token("abc"));
        assert_eq!(credentials(Some("token  abc ")), Credentials::Token("abc"));
        assert_eq!(credentials(None), Credentials::Missing);
        assert_eq!(credentials(Some("")), Credentials::Missing);
        assert_eq!(credentials(Some("Bearer abc")), Credentials::Missing);
        assert_eq!(credentials(Some("Token")), Credentials::Malformed);
        assert_eq!(credentials(Some("Token a b")), Credentials::Malformed);
    }
}
