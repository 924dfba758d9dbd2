//! Bearer tokens: 32 random bytes shown as 64 hex characters; only their
//! SHA-256 digest is kept.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The SHA-256 of a token's bytes: what events (as 64 hex characters) and
/// memory hold; never the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenDigest([u8; 32]);

impl TryFrom<String> for TokenDigest {
    type Error = hex::FromHexError;

    fn try_from(hex_digest: String) -> Result<Self, Self::Error> {
        let mut d = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut d)?;
        Ok(Self(d))
    }
}

impl From<TokenDigest> for String {
    fn from(d: TokenDigest) -> String {
        hex::encode(d.0)
    }
}

impl TokenDigest {
    /// The digest's bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A digest from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// A new token from the OS random number generator, and its digest.
pub fn generate() -> std::io::Result<(String, TokenDigest)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((hex::encode(bytes), digest_of(&bytes)))
}

/// The digest of a token given as 64 hex characters, or `None` if it is not one.
pub fn parse(token: &str) -> Option<TokenDigest> {
    if token.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(token, &mut bytes).ok()?;
    Some(digest_of(&bytes))
}

fn digest_of(bytes: &[u8; 32]) -> TokenDigest {
    TokenDigest(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_tokens_parse_back_to_their_digest() {
        let (token, digest) = super::generate().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(super::parse(&token), Some(digest));
        assert_eq!(super::parse(&token.to_uppercase()), Some(digest));
        assert_ne!(super::generate().unwrap().0, token);
    }

    #[test]
    fn digests_are_stored_as_hex() {
        let (_, digest) = super::generate().unwrap();
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(
            serde_json::from_str::<super::TokenDigest>(&json).unwrap(),
            digest
        );
        assert!(serde_json::from_str::<super::TokenDigest>("\"zz\"").is_err());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(super::parse(""), None);
        assert_eq!(super::parse(&"g".repeat(64)), None);
        assert_eq!(super::parse(&"a".repeat(63)), None);
        assert_eq!(super::parse(&"é".repeat(32)), None);
    }
}
