//! Lock name → lock file name.
//!
//! The mapping must be injective (two names never share a file) and must never produce
//! a path component that leaves the lock directory. It works on the name's UTF-8 bytes:
//!
//! * `a`–`z`, `0`–`9` and `-` are kept as they are;
//! * every other byte — upper-case letters included, so that case-insensitive file
//!   systems cannot merge `A` and `a` — becomes `_` followed by two lower-case hex
//!   digits (`/` → `_2f`, `_` → `_5f`, `.` → `_2e`).
//!
//! The escaped form only contains `[a-z0-9_-]`: no `/`, no `.`, never empty, so it can
//! be neither `.`, `..` nor a path. Escaping is injective because `_` always starts a
//! three-byte escape and never stands for itself. The file name is the escaped form
//! plus `.lock`.
//!
//! A 256-byte name may escape to 768 bytes, beyond `NAME_MAX` (255). Escaped forms
//! longer than [`SHORT_MAX`] bytes use the long form instead: the first bytes of the
//! escaped form (for humans), `~`, the SHA-256 of the full name in hex, and `.lock`.
//! `~` never occurs in an escaped form, so short and long forms cannot collide; long
//! forms are distinct unless SHA-256 collides. The holder record stores the full name,
//! and records whose name differs are ignored.

/// Longest escaped form that is used as is (plus `.lock`).
pub(crate) const SHORT_MAX: usize = 200;
/// How much of the escaped form a long file name keeps in front of the digest.
const LONG_PREFIX: usize = 96;

fn is_plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The file name (one path component) for a valid lock name.
pub(crate) fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for &b in name.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('_');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    if out.len() > SHORT_MAX {
        let mut cut = LONG_PREFIX;
        // Do not end the readable prefix in the middle of an escape.
        while let Some(pos) = out[..cut].rfind('_') {
            if cut - pos >= 3 {
                break;
            }
            cut = pos;
        }
        out.truncate(cut);
        out.push('~');
        for b in sha256(name.as_bytes()) {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out.push_str(".lock");
    out
}

/// SHA-256 (FIPS 180-4). Only used to shorten very long names, so a plain, portable
/// implementation is plenty.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // Crosses a block boundary with the padding.
        assert_eq!(
            hex(&sha256(&[b'a'; 1000])),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(file_name("db"), "db.lock");
        assert_eq!(file_name("account-42"), "account-42.lock");
        assert_eq!(file_name("a/b"), "a_2fb.lock");
        assert_eq!(file_name("a_b"), "a_5fb.lock");
        assert_eq!(file_name("A"), "_41.lock");
        assert_eq!(file_name("."), "_2e.lock");
        assert_eq!(file_name(".."), "_2e_2e.lock");
        assert_eq!(file_name("é"), "_c3_a9.lock");
    }

    fn check_component(f: &str) {
        assert!(!f.is_empty() && f.len() <= 255, "{f}");
        assert!(
            !f.contains('/') && !f.contains('\\') && !f.contains('\0'),
            "{f}"
        );
        assert!(f != "." && f != "..");
        assert!(f.ends_with(".lock"));
        let stem = &f[..f.len() - 5];
        assert!(!stem.contains('.'), "{f}");
    }

    #[test]
    fn every_shape_is_one_component_and_distinct() {
        let long_x = "x".repeat(256);
        let long_slash = "/".repeat(256);
        let long_uni = "é".repeat(128);
        let mut long_y = "/".repeat(255);
        long_y.push('a');
        let names = [
            "../x",
            "/abs",
            "/etc/passwd",
            "a/b",
            "a_b",
            "a_2fb",
            ".",
            "..",
            "...",
            "a\\b",
            "A",
            "a",
            "~",
            "x~y",
            "日本語",
            "con",
            "nul",
            " ",
            "_",
            "__",
            long_x.as_str(),
            long_slash.as_str(),
            long_uni.as_str(),
            long_y.as_str(),
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let f = file_name(n);
            check_component(&f);
            assert!(seen.insert(f.clone()), "{n:?} collides: {f}");
        }
    }

    #[test]
    fn long_names_use_the_digest_form() {
        let n = "/".repeat(256);
        let f = file_name(&n);
        assert!(f.contains('~'));
        assert!(f.len() < 200, "{}", f.len());
        // The readable prefix ends on a whole escape.
        let prefix = f.split('~').next().unwrap();
        assert_eq!(prefix.len() % 3, 0);
        // Names just below and above the threshold.
        let short = "/".repeat(SHORT_MAX / 3);
        assert!(!file_name(&short).contains('~'));
        let longer = "/".repeat(SHORT_MAX / 3 + 1);
        assert!(file_name(&longer).contains('~'));
    }

    #[test]
    fn escaping_is_injective_on_random_byte_strings() {
        // Deterministic pseudo-random names over a tiny alphabet that is rich in
        // escapes, so that accidental merges would show up quickly.
        let alphabet = ["a", "_", "/", "5", "f", "2", "A", ".", "é"];
        let mut seed = 0x2545_f491_u64;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let mut n = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 1 + (seed % 6) as usize;
            let mut s = seed;
            for _ in 0..len {
                n.push_str(alphabet[(s % alphabet.len() as u64) as usize]);
                s /= alphabet.len() as u64;
            }
            let f = file_name(&n);
            if let Some(prev) = seen.insert(f.clone(), n.clone()) {
                assert_eq!(prev, n, "{prev:?} and {n:?} share {f}");
            }
        }
    }
}
