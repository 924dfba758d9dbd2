//! The values a request carries, parsed once at the edge: ids, titles and
//! directors, ratings.

use platform::FieldError;
use serde::{Deserialize, Serialize};

event_store::id_type! {
    /// A movie's id: positive, unique, increasing, never reused.
    pub struct MovieId;
}
event_store::id_type! {
    /// A rating's id: positive, unique, increasing, never reused.
    pub struct RatingId;
}
event_store::id_type! {
    /// A user's id, as auth-service gives it.
    pub struct UserId;
}

/// Longest title or director accepted.
pub const MAX_TEXT: usize = 200;

/// A title or director: 1–200 characters after trimming surrounding white
/// space (as DRF's `CharField`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// Parses the value of `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let message = if trimmed.is_empty() {
            "This field may not be blank."
        } else if trimmed.chars().count() > MAX_TEXT {
            "Ensure this field has no more than 200 characters."
        } else if trimmed.contains('\0') {
            "Null characters are not allowed."
        } else if trimmed.chars().any(disguises_text) {
            "Control characters and invisible formatting characters are not allowed."
        } else {
            return Ok(Self(trimmed.to_owned()));
        };
        Err(FieldError::new(field, message))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` is a control character (Unicode Cc: NUL, ESC of ANSI
/// sequences, ...) or an invisible character that can make text read
/// otherwise than it is stored: bidi marks, embeddings, overrides and
/// isolates, zero-width space, word joiner, BOM. The zero-width joiner and
/// non-joiner (U+200D, U+200C), which real scripts and emoji need, pass.
fn disguises_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A rating: an integer from 1 to 5. Stored as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    /// A rating read back from a read model that stored a valid one (out
    /// of range: clamped, never a panic).
    pub fn from_stored(value: u8) -> Self {
        Self(value.clamp(1, 5))
    }

    /// Parses a rating as the API receives it.
    pub fn parse(raw: i32) -> Result<Self, FieldError> {
        let message = match raw {
            1..=5 => return Ok(Self(raw as u8)),
            ..=0 => "Ensure this value is greater than or equal to 1.",
            _ => "Ensure this value is less than or equal to 5.",
        };
        Err(FieldError::new("rating", message))
    }

    /// The value, 1..=5.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, String> {
        Self::parse(i32::from(value)).map_err(|e| e.message)
    }
}

impl From<Rating> for u8 {
    fn from(r: Rating) -> u8 {
        r.0
    }
}
