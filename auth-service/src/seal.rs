//! The two primitives of crypto-shredding, pure and without I/O:
//!
//! - [`seal`] / [`open`]: personal data encrypted under a user's own
//!   [`DataKey`] with XChaCha20-Poly1305 (a random 24-byte nonce per seal,
//!   so random nonces never repeat in practice), bound to what it belongs
//!   to by the associated data (a sealed field of one user does not open as
//!   another's). The text form is `v1.` + base64 of nonce and ciphertext.
//!   Destroying the key (see [`crate::keys`]) leaves only noise.
//! - [`Pepper::mac`]: a keyed HMAC-SHA256 under a server secret, for what
//!   must be found or compared without being readable (a username's claim,
//!   the throttle's keys). Without the pepper a MAC reveals nothing; with
//!   it, one can only test guesses, so the pepper is never in the log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac;
use zeroize::Zeroize;

/// The length of every key here.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// The text form's version prefix.
const PREFIX: &str = "v1.";

/// A secret of [`KEY_LEN`] bytes, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Result<Self, SealError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|_| SealError::Random)?;
        Ok(Self(key))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SealError::KeyLength)?;
        Ok(Self(bytes))
    }

    /// A key from 64 hex digits (how configuration gives one).
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| SealError::KeyLength)?;
        Ok(Self(key))
    }

    /// The key's bytes (to store it, wrapped or not).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The system's random source failed.
    #[error("no randomness available")]
    Random,
    /// A key is not 32 bytes (64 hex digits).
    #[error("a key must be 32 bytes (64 hex digits)")]
    KeyLength,
    /// Not a sealed text of this format.
    #[error("not a sealed value")]
    Malformed,
    /// The key, the associated data or the ciphertext is not the one it
    /// was sealed with (or it was altered).
    #[error("the sealed value does not open with this key")]
    Mismatch,
}

/// Seals `plaintext` under `key`, bound to `bound_to` (for example the
/// user's id and the field): `v1.` + base64(nonce ‖ ciphertext ‖ tag).
pub fn seal(key: &DataKey, bound_to: &[u8], plaintext: &[u8]) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let payload = Payload {
        msg: plaintext,
        aad: bound_to,
    };
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), payload)
        .map_err(|_| SealError::Mismatch)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(format!("{PREFIX}{}", STANDARD_NO_PAD.encode(out)))
}

/// Opens what [`seal`] made with the same key and `bound_to`.
pub fn open(key: &DataKey, bound_to: &[u8], sealed: &str) -> Result<Vec<u8>, SealError> {
    let bytes = sealed
        .strip_prefix(PREFIX)
        .and_then(|b| STANDARD_NO_PAD.decode(b).ok())
        .filter(|b| b.len() >= NONCE_LEN)
        .ok_or(SealError::Malformed)?;
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    let cipher = XChaCha20Poly1305::new(&key.0.into());
    let payload = Payload {
        msg: ciphertext,
        aad: bound_to,
    };
    cipher
        .decrypt(&XNonce::from(nonce), payload)
        .map_err(|_| SealError::Mismatch)
}

/// The server secret names are MACed under (`AUTH_PEPPER`).
#[derive(Clone, PartialEq, Eq)]
pub struct Pepper(DataKey);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(..)")
    }
}

impl Pepper {
    /// The pepper of this key.
    pub fn new(key: DataKey) -> Self {
        Self(key)
    }

    /// HMAC-SHA256 of `text` for `purpose` (so that one value MACed for
    /// two purposes gives two unrelated MACs), as 32 hex digits (the first
    /// 128 bits: collisions need 2^64 names).
    pub fn mac(&self, purpose: &str, text: &str) -> String {
        let mut mac = hmac::Hmac::<sha2_v11::Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        let out = mac.finalize().into_bytes();
        hex::encode(&out[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_binding_only() {
        let key = DataKey::random().unwrap();
        let sealed = seal(&key, b"user:7", "Zoë <zoe@example.org>".as_bytes()).unwrap();
        assert!(sealed.starts_with("v1."));
        let bytes = STANDARD_NO_PAD.decode(&sealed[3..]).unwrap();
        let plain = "zoe@example.org".as_bytes();
        assert!(!bytes.windows(plain.len()).any(|w| w == plain), "{sealed}");
        let opened = open(&key, b"user:7", &sealed).unwrap();
        assert_eq!(opened, "Zoë <zoe@example.org>".as_bytes());
        assert_eq!(open(&key, b"user:8", &sealed), Err(SealError::Mismatch));
        let other = DataKey::random().unwrap();
        assert_eq!(open(&other, b"user:7", &sealed), Err(SealError::Mismatch));
        // Two seals of the same text differ (a fresh nonce each).
        assert_ne!(
            sealed,
            seal(&key, b"user:7", "Zoë <zoe@example.org>".as_bytes()).unwrap()
        );
    }

    #[test]
    fn altered_or_foreign_text_is_refused_not_panicked_on() {
        let key = DataKey::random().unwrap();
        let sealed = seal(&key, b"a", b"secret").unwrap();
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(open(&key, b"a", &flipped).is_err());
        for junk in ["", "v1.", "v1.!!!", "v2.AAAA", "plain text", "v1.AAAA"] {
            assert!(open(&key, b"a", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn keys_come_from_64_hex_digits_only() {
        let hex64 = "00".repeat(32);
        assert!(DataKey::from_hex(&hex64).is_ok());
        assert_eq!(DataKey::from_hex("abcd").unwrap_err(), SealError::KeyLength);
        assert_eq!(
            DataKey::from_hex(&"zz".repeat(32)).unwrap_err(),
            SealError::KeyLength
        );
        assert_eq!(
            format!("{:?}", DataKey::from_hex(&hex64).unwrap()),
            "DataKey(..)"
        );
    }

    #[test]
    fn a_mac_depends_on_the_pepper_the_purpose_and_the_text() {
        let pepper = Pepper::new(DataKey::from_hex(&"11".repeat(32)).unwrap());
        let mac = pepper.mac("claim", "zoë");
        assert_eq!(mac.len(), 32);
        assert_eq!(mac, pepper.mac("claim", "zoë"));
        assert_ne!(mac, pepper.mac("throttle", "zoë"));
        assert_ne!(mac, pepper.mac("claim", "zoe"));
        let other = Pepper::new(DataKey::from_hex(&"22".repeat(32)).unwrap());
        assert_ne!(mac, other.mac("claim", "zoë"));
        // HMAC-SHA256 as published (RFC 4231 test case 2, key "Jefe"), here
        // with the purpose and a zero byte before the text.
        let mut reference = hmac::Hmac::<sha2_v11::Sha256>::new_from_slice(b"Jefe").unwrap();
        reference.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(reference.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
