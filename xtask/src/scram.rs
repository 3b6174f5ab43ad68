//! SCRAM-SHA-256 verifiers, as `CREATE ROLE … PASSWORD` stores them, with the iteration count the
//! cluster calls for (RFC 5802 and RFC 7677; PostgreSQL's `scram_build_secret`).
//!
//! xtask computes the verifier so that the server never sees the password, and chooses its
//! iteration count because every login repeats that many HMAC rounds on both sides: the
//! developer's cluster keeps PostgreSQL's 4096, while the RAM test cluster, where each test opens
//! a connection and the password is the project's public development default, takes a handful
//! (`DEFAULT_ITERATIONS`, `TEST_CLUSTER_ITERATIONS`).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng as _;
use sha2::{Digest, Sha256};

/// PostgreSQL's own default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// For the test cluster: a login there costs a test almost nothing, in debug builds too, where
/// sqlx's unoptimised loop over the rounds took most of a connection's time.
pub const TEST_CLUSTER_ITERATIONS: u32 = 16;
const SALT_LEN: usize = 16;

/// The verifier of `password` with `iterations` rounds and a random salt.
pub fn verifier(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    verifier_with_salt(password, iterations, &salt)
}

fn verifier_with_salt(password: &str, iterations: u32, salt: &[u8]) -> String {
    // SASLprep the password where it applies, as libpq's PQencryptPasswordConn and the server
    // do; a password it rejects is used as its bytes.
    let prepared = stringprep::saslprep(password)
        .map(|p| p.into_owned().into_bytes())
        .unwrap_or_else(|_| password.as_bytes().to_vec());
    let salted = hi(&prepared, salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// `Hi(str, salt, i)` of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut round = {
        let mut mac = new_mac(password);
        mac.update(salt);
        mac.update(&1u32.to_be_bytes());
        <[u8; 32]>::from(mac.finalize().into_bytes())
    };
    let mut result = round;
    for _ in 1..iterations {
        round = hmac(password, &round);
        result.iter_mut().zip(round).for_each(|(r, u)| *r ^= u);
    }
    result
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from an independent implementation: Python's `hashlib.pbkdf2_hmac` and
    /// `hmac`, salt `00 01 … 0f`, password `app`.
    #[test]
    fn verifiers_match_an_independent_implementation() {
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            verifier_with_salt("app", 4096, &salt),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$Ov10FhoJDgyPwFGGVtPcliBKDNfmhAGqDKlPg/G8vNA=:8wmqSjsOogMr3p5iQyagmHRQJNKhgdZqBxdAszv4x1E="
        );
        assert_eq!(
            verifier_with_salt("app", 16, &salt),
            "SCRAM-SHA-256$16:AAECAwQFBgcICQoLDA0ODw==$emGQMgZtDReL41kX4MBtfYq4Bq5JISI5Bab5zoz0p1M=:KX5SZZtXcOB31JJlsgV3WskTl/gmb2XHas63DNoWvsQ="
        );
    }

    #[test]
    fn each_verifier_has_its_own_salt() {
        let (a, b) = (verifier("app", 16), verifier("app", 16));
        assert_ne!(a, b);
        assert!(a.starts_with("SCRAM-SHA-256$16:"), "{a}");
    }
}
