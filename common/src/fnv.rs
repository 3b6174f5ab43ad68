//! FNV-1a, the 64-bit hash behind stable names and advisory lock keys: the same on every machine
//! and every build, unlike the standard library's randomly seeded hashers.

/// The hash of no bytes: where a fresh hash starts.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `hash` continued over `bytes`; start from [`FNV_OFFSET_BASIS`] and chain calls to hash several parts.
///
/// ```
/// use dbops_common::fnv::{FNV_OFFSET_BASIS, fnv1a};
/// assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
/// assert_eq!(fnv1a(fnv1a(FNV_OFFSET_BASIS, b"a"), b"b"), fnv1a(FNV_OFFSET_BASIS, b"ab"));
/// ```
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}
