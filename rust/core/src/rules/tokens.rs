//! Fencing tokens: each lease (a workflow task, an activity attempt) gets a fresh one, and only
//! its holder may finish what it leased. The store draws them; the rules only compare them.

/// Where a store draws its tokens from.
pub trait TokenSource {
    /// A token no earlier lease of this store (or of another process sharing its data) holds.
    fn next_token(&mut self) -> i64;
}

/// 1, 2, 3, ...: enough where one process owns all the data (the memory store).
#[derive(Clone, Debug, Default)]
pub struct CountingTokens {
    last: i64,
}

impl TokenSource for CountingTokens {
    fn next_token(&mut self) -> i64 {
        self.last += 1;
        self.last
    }
}

/// Random-looking 62-bit tokens from a seed (SplitMix64), for stores that several processes
/// share: unique across processes without a shared counter, given seeds drawn from the OS.
/// Not cryptographic: tokens fence honest workers, they do not authenticate.
#[derive(Clone, Debug)]
pub struct SplitMixTokens {
    state: u64,
}

impl SplitMixTokens {
    pub fn from_seed(seed: u64) -> Self {
        SplitMixTokens { state: seed }
    }
}

impl TokenSource for SplitMixTokens {
    /// A token in 1..=2^62.
    fn next_token(&mut self) -> i64 {
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
    use super::*;

    #[test]
    fn split_mix_tokens_are_positive_62_bit_and_differ() {
        let mut tokens = SplitMixTokens::from_seed(42);
        let drawn: Vec<i64> = (0..1000).map(|_| tokens.next_token()).collect();
        assert!(drawn.iter().all(|token| (1..=1 << 62).contains(token)));
        let mut unique = drawn.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), drawn.len());
        assert_ne!(
            SplitMixTokens::from_seed(1).next_token(),
            SplitMixTokens::from_seed(2).next_token()
        );
    }
}
