//! Password hashes: argon2id with the crate's default cost, in the PHC string format (the
//! parameters travel with each hash, so the cost can be raised later).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::domain::user::Password;

/// The hash to store for `password`. Slow on purpose (tens of milliseconds): call it off
/// the async threads.
pub fn hash(password: &Password) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches `stored`; an unreadable hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash that matches no password, verified when the user does not exist so that a
/// failed login takes as long either way (no user enumeration by timing).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&Password::parse("no such user's password").expect("valid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let stored = hash(&Password::parse("Juniper-ochre tidal 42 lantern").unwrap());
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("Juniper-ochre tidal 42 lantern", &stored));
        assert!(!verify("Juniper-ochre tidal 42 lanterN", &stored));
        assert!(!verify("Juniper-ochre tidal 42 lantern", "not a hash"));
    }
}
