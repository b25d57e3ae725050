//! Short SHA-256 digests in hex: stable names made from text that may not appear in a
//! name itself (a URL, a path, a ticket, an over-long server name).

use sha2::{Digest, Sha256};

/// The first `bytes` bytes (at most 32) of the SHA-256 of `input`, as `2 * bytes`
/// lower-case hex digits.
pub fn sha256_hex(input: &[u8], bytes: usize) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(input);
    let mut hex = String::with_capacity(2 * bytes);
    for byte in digest.iter().take(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_hex_prefixes_of_sha256() {
        assert_eq!(
            super::sha256_hex(b"abc", 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::sha256_hex(b"abc", 4), "ba7816bf");
    }
}
