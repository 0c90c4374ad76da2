//! What is kept of a secret handed to a client (an API token, a session id): its sha256,
//! so that a copy of the database cannot be turned back into a credential.

use sha2::{Digest, Sha256};

/// The sha256 of `secret`, in hex.
pub(super) fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
