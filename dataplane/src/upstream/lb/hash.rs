//! The hash functions Envoy's hashing load balancers use, so a key lands on the same host here
//! as in Envoy: xxHash64 (seed 0, `HashUtil::xxHash64`) and the 64-bit MurmurHash2 of
//! libstdc++'s `std::hash` (`MurmurHash::murmurHash2`, for `hash_function: MURMUR_HASH_2`).

pub fn xx(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

pub fn xx_seeded(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

/// Several values hashed in a chain, each seeded with the previous hash (Envoy's
/// `xxHash64(absl::Span<absl::string_view>)`, used for multi-valued headers).
pub fn xx_chain<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    values.into_iter().fold(0, |seed, v| xx_seeded(v, seed))
}

/// libstdc++'s seed for `std::hash<std::string>`, which Envoy's MURMUR_HASH_2 reproduces.
const MURMUR_SEED: u64 = 0xc70f_6907;

pub fn murmur2(bytes: &[u8]) -> u64 {
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    fn shift_mix(v: u64) -> u64 {
        v ^ (v >> 47)
    }
    let len = bytes.len() as u64;
    let mut hash = MURMUR_SEED ^ len.wrapping_mul(MUL);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let data = shift_mix(u64::from_le_bytes(word).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let data = tail
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    shift_mix(shift_mix(hash).wrapping_mul(MUL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_known_values() {
        // The reference values of xxHash64 with seed 0.
        assert_eq!(xx(b""), 0xef46_db37_51d8_e999);
        assert_eq!(xx(b"a"), 0xd24e_c4f1_a98c_6e5b);
    }

    #[test]
    fn chain_of_one_is_the_plain_hash() {
        assert_eq!(xx_chain([&b"foo"[..]]), xx(b"foo"));
        assert_ne!(
            xx_chain([&b"foo"[..], b"bar"]),
            xx_chain([&b"bar"[..], b"foo"])
        );
    }

    #[test]
    fn murmur2_is_libstdcxx_std_hash() {
        // Printed by g++ 12 (x86_64): std::hash<std::string>{}(s).
        assert_eq!(murmur2(b""), 6142509188972423790);
        assert_eq!(murmur2(b"a"), 4993892634952068459);
        assert_eq!(murmur2(b"127.0.0.1:8080_0"), 16027637164591516499);
        assert_eq!(murmur2(b"abcdefgh"), 8664279048047335611);
        assert_eq!(murmur2(b"abcdefghi"), 13036955925923793583);
    }
}
