//! Fencing tokens: random 62-bit numbers, unique across processes without a shared counter.

use std::hash::{BuildHasher, Hasher};

/// SplitMix64 over a seed drawn once per store: tokens need to be unpredictable to other
/// processes' draws, not cryptographic.
pub struct Tokens {
    state: u64,
}

impl Tokens {
    #[allow(clippy::disallowed_methods)] // Not the core: the clock only adds entropy here.
    pub fn seeded() -> Self {
        // std's RandomState keys come from the OS; the process id and the time keep a forked
        // child, which inherits those keys, from drawing its parent's sequence.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        hasher.write_u128(nanos);
        Tokens {
            state: hasher.finish(),
        }
    }

    /// A token in 1..=2^62, as the Python operations draw them.
    pub fn next(&mut self) -> i64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        (mixed >> 2) as i64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::Tokens;

    #[test]
    fn tokens_are_positive_62_bit_and_differ() {
        let mut tokens = Tokens::seeded();
        let drawn: Vec<i64> = (0..1000).map(|_| tokens.next()).collect();
        assert!(drawn.iter().all(|token| (1..=1 << 62).contains(token)));
        let mut unique = drawn.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), drawn.len());
        assert_ne!(Tokens::seeded().next(), Tokens::seeded().next());
    }
}
