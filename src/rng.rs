//! The caller-owned PRNG behind the `shuffled` visiting order.

/// A small, fast PRNG (SplitMix64) whose whole state is one `u64` the caller
/// owns: keep it on the stack, in a struct, or in static memory; copy it to
/// replay a run. Every sequential-shuffled call draws fresh permutations from
/// it and advances it, so successive training steps visit tasks in different
/// orders (the paper's random order) while a saved state reproduces a run
/// exactly.
///
/// The layout is `#[repr(C)]` and identical to the C header's `pcgrad_rng`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rng {
    /// The generator state. Any value is valid, including zero.
    pub state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (unbiased, Lemire's multiply-and-reject).
    /// Returns 0 when `n` is 0 or 1.
    pub fn below(&mut self, n: u32) -> u32 {
        if n <= 1 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = (self.next_u64() >> 32) as u32;
            let m = u64::from(x) * u64::from(n);
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers_all_values() {
        let mut r = Rng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let v = r.below(5);
            assert!(v < 5);
            seen[v as usize] += 1;
        }
        for &s in &seen {
            assert!((800..1200).contains(&s), "{seen:?}");
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn state_is_reproducible() {
        let mut a = Rng::new(42);
        let mut b = a;
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.next_u64(), Rng::new(42).next_u64());
    }
}
