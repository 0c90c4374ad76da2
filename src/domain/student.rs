//! A student's name and age, parsed from untrusted input.

use std::fmt;

use super::fields::Fields;

/// A student's name: 1–200 characters after trimming, never blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentName(String);

/// The longest name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 200;

impl StudentName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be blank".into());
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for StudentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A student's age in years: 0–150.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "i64", into = "i32")]
pub struct Age(i32);

impl Age {
    pub const MIN: i32 = 0;
    pub const MAX: i32 = 150;

    pub fn new(years: i64) -> Result<Self, String> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&years) {
            Ok(Self(years as i32))
        } else {
            Err(format!(
                "must be an integer from {} to {}",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Age {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        Self::new(v)
    }
}

impl From<Age> for i32 {
    fn from(a: Age) -> i32 {
        a.0
    }
}

/// Reads an optional age range from `min_age`/`max_age` parameters.
pub fn age_range(
    fields: &mut Fields,
    min: Option<Result<i64, String>>,
    max: Option<Result<i64, String>>,
) -> (Option<Age>, Option<Age>) {
    let mut age = |name: &str, raw: Option<Result<i64, String>>| {
        raw.and_then(|r| fields.check(name, r.and_then(Age::new)))
    };
    let (min, max) = (age("min_age", min), age("max_age", max));
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            fields.fail("min_age", "must not be greater than max_age");
        }
    }
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed() {
        assert_eq!(StudentName::parse("  Ada ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn blank_names_are_refused() {
        for raw in ["", "   ", "\t\n"] {
            assert!(StudentName::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn names_are_counted_in_characters_not_bytes() {
        let two_hundred = "é".repeat(200);
        assert!(StudentName::parse(&two_hundred).is_ok());
        assert!(StudentName::parse(&format!("{two_hundred}é")).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(StudentName::parse("Ada\u{0}Lovelace").is_err());
        assert!(StudentName::parse("Ada\nLovelace").is_err());
    }

    #[test]
    fn unicode_names_are_kept_exactly() {
        let name = "Zoë Łukasz-Ñúñez 山田 🎓";
        assert_eq!(StudentName::parse(name).unwrap().as_str(), name);
    }

    #[test]
    fn ages_are_bounded() {
        assert!(Age::new(0).is_ok());
        assert!(Age::new(150).is_ok());
        assert!(Age::new(-1).is_err());
        assert!(Age::new(151).is_err());
        assert!(Age::new(i64::MAX).is_err());
    }
}
