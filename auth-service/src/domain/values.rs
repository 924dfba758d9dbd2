//! The values a request carries, parsed once at the edge: ids, usernames
//! (with their normalized form and look-alike skeleton), e-mail addresses
//! and passwords.

use platform::FieldError;

event_store::id_type! {
    /// A user's id: positive, unique, increasing, never reused.
    pub struct UserId;
}

/// Longest username accepted (as Django's `User.username`).
pub const MAX_USERNAME: usize = 150;
/// Longest e-mail address accepted (as Django's `EmailField`).
pub const MAX_EMAIL: usize = 254;
/// Shortest password accepted at registration.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted anywhere (checked before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// A username: 1–150 letters, digits and `@.+-_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// A letter or a number by Unicode general category (L*, N*): what
/// Python's `str.isalnum` and so Django's `\w` accept. (Rust's
/// `char::is_alphanumeric` also accepts combining marks such as Devanagari
/// vowel signs, which Django refuses.)
fn is_alphanumeric(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

impl Username {
    /// Parses a username for registration, NFKC-normalised first (as
    /// Django does).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let raw = &nfkc(raw);
        let f = |m: &str| FieldError::new("username", m);
        if raw.is_empty() {
            return Err(f("This field may not be blank."));
        }
        if raw.chars().count() > MAX_USERNAME {
            return Err(f("Ensure this field has no more than 150 characters."));
        }
        if !raw
            .chars()
            .all(|c| is_alphanumeric(c) || "@.+-_".contains(c))
        {
            return Err(f(
                "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The username as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login's fields: the username (only bounded: any name may be tried) and
/// the password, or every field error at once.
pub fn parse_login(
    username: &str,
    password: String,
) -> Result<(String, Password), Vec<FieldError>> {
    let mut errors = Vec::new();
    if username.is_empty() {
        errors.push(FieldError::new("username", "This field may not be blank."));
    } else if username.chars().count() > MAX_USERNAME {
        errors.push(FieldError::new(
            "username",
            "Ensure this field has no more than 150 characters.",
        ));
    }
    match Password::parse_given(password) {
        Ok(p) if errors.is_empty() => Ok((username.to_owned(), p)),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

/// The key under which usernames are unique: case-folded.
/// A username as Django stores it: NFKC-normalised, so `ａｄｍｉｎ`
/// (fullwidth) is `admin` and `ﬁle` is `file`.
pub fn nfkc(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    raw.nfkc().collect()
}

/// The key of a user's stream: the NFKC form, lowercased. (ASCII names
/// keep the key they always had.)
pub fn normalize_username(raw: &str) -> String {
    nfkc(raw).to_lowercase()
}

/// What two usernames share when a reader could take one for the other:
/// the Unicode TR39 skeleton of the name's NFKC form under full case
/// folding. `Admin`, `аdmin` (Cyrillic а), `admіn` (Ukrainian і) and `ａｄｍｉｎ` have one;
/// so have `straße` and `STRASSE`. Registration refuses a name whose
/// skeleton is taken.
pub fn username_skeleton(raw: &str) -> String {
    let folded = nfkc(&caseless::default_case_fold_str(&nfkc(raw)));
    unicode_security::skeleton(&folded).collect()
}

/// An e-mail address of plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: `local@domain.tld`, no spaces, at most 254 chars.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("email", "Enter a valid email address.");
        if raw.is_empty() {
            return Err(FieldError::new("email", "This field may not be blank."));
        }
        if raw.chars().count() > MAX_EMAIL {
            return Err(FieldError::new(
                "email",
                "Ensure this field has no more than 254 characters.",
            ));
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| is_alphanumeric(c) || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| is_alphanumeric(c) || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
        if local_ok && domain_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid())
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password within the accepted length (counted in characters).
pub struct Password(String);

impl Password {
    /// Parses a new password (registration): 8–1024 characters.
    pub fn parse_new(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(FieldError::new("password", "This field may not be blank."));
        }
        if n < MIN_PASSWORD {
            return Err(FieldError::new(
                "password",
                "Ensure this field has at least 8 characters.",
            ));
        }
        Self::parse_given(raw)
    }

    /// Parses a password given at login: 1–1024 characters.
    pub fn parse_given(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(FieldError::new("password", "This field may not be blank."));
        }
        if n > MAX_PASSWORD {
            return Err(FieldError::new(
                "password",
                "Ensure this field has no more than 1024 characters.",
            ));
        }
        Ok(Self(raw))
    }

    /// The password's bytes, for hashing.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The longest token name, in characters.
pub const MAX_TOKEN_NAME: usize = 64;

/// The most of a `User-Agent` kept, in characters.
pub const MAX_USER_AGENT: usize = 256;

/// `raw` as a log or a list may show it: control characters (line
/// breaks, escapes, bidirectional overrides) dropped, runs of spaces made
/// one, at most `max` characters.
pub fn printable(raw: &str, max: usize) -> String {
    let kept = raw
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !c.is_control() && !is_format(*c));
    let mut out = String::new();
    for c in kept {
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end().chars().take(max).collect()
}

/// Invisible formatting characters (bidirectional overrides, zero-width
/// joiners...): they could make a shown name read as another.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// The name a login gives its token: optional, printable, at most
/// [`MAX_TOKEN_NAME`] characters (`None`: none given, or only blanks).
pub fn parse_token_name(raw: &str) -> Result<Option<String>, FieldError> {
    let name = printable(raw, usize::MAX);
    if name.chars().count() > MAX_TOKEN_NAME {
        return Err(FieldError::new(
            "name",
            "Ensure this field has no more than 64 characters.",
        ));
    }
    Ok((!name.is_empty()).then_some(name))
}
