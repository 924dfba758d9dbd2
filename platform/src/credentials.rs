//! Credentials as django-rest-knox reads them.

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
