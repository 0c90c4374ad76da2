//! Who may use roster: a user's name, role and password, parsed from untrusted input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A user's name: 1–64 letters, digits, `.`, `_` or `-` (it appears in URLs, logs and
/// job records).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "must be 1 to {} letters, digits, '.', '_' or '-'",
                Self::MAX_CHARS
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> String {
        name.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: every job and schedule, users.
    Admin,
    /// Students, and their own jobs, schedules and tokens.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err("must be admin or member".into()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password as a person chose it: 8 to 1024 characters (the upper bound keeps hashing
/// cheap for an attacker's megabyte "password").
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_BYTES: usize = 1024;
    /// The least zxcvbn score taken (0-4): 3 is "safely unguessable: moderate protection
    /// from offline slow-hash scenario" (argon2id here).
    const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;
    /// Characters the estimator reads: a longer passphrase is long enough already, and its
    /// cost grows with the length.
    const ESTIMATED_CHARS: usize = 100;

    /// A password that is long enough and not a common or trivially guessable one, as the
    /// zxcvbn estimator judges it (dictionary words, names, keyboard walks, repeats, dates).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() < Self::MIN_CHARS || raw.len() > Self::MAX_BYTES {
            return Err(format!(
                "must be {} to {} characters",
                Self::MIN_CHARS,
                Self::MAX_BYTES
            ));
        }
        let estimated: String = raw.chars().take(Self::ESTIMATED_CHARS).collect();
        let entropy = zxcvbn::zxcvbn(&estimated, &[]);
        if entropy.score() < Self::MIN_SCORE {
            let why = entropy
                .feedback()
                .and_then(|f| f.warning())
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            return Err(format!(
                "is too easy to guess{why}; use a longer passphrase of uncommon words"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Never printed, even by mistake.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_plain() {
        assert!(UserName::parse("ada.lovelace_1-x").is_ok());
        for bad in ["", "a b", "ada/x", "émile", &"a".repeat(65)] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_bounds_and_never_print() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(2000)).is_err());
        let p = Password::parse(STRONG).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    /// A password the estimator takes, for tests.
    const STRONG: &str = "Juniper-ochre tidal 42 lantern";

    #[test]
    fn guessable_passwords_are_refused_however_long() {
        for weak in [
            "12345678",
            "        ",
            "123456789012",
            "passwordpassword",
            "qwertyuiopasdf",
            "aaaaaaaaaaaaaaaa",
        ] {
            assert!(Password::parse(weak).is_err(), "{weak:?}");
        }
        assert!(Password::parse(STRONG).is_ok());
    }
}
