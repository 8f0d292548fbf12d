//! A small deterministic generator for the ids a real cluster would pick at random.
//!
//! Not for secrets: it only has to make names and ids that look like the real ones and do not
//! repeat between pods. A seed fixes every id of a simulated pod, so tests can reproduce a run.

use std::io::Read;

/// SplitMix64: tiny, fast and good enough for ids.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
pub(crate) const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Rng {
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent generator for one purpose, derived from a seed and a label.
    pub(crate) fn derived(seed: u64, label: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = Self(seed ^ h);
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` lower-case hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        self.pick(b"0123456789abcdef", n)
    }

    /// `n` characters drawn from `alphabet`.
    pub(crate) fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        let len = alphabet.len().max(1) as u64;
        (0..n)
            .map(|_| {
                let i = (self.next_u64() % len) as usize;
                alphabet.get(i).map_or('0', |&b| char::from(b))
            })
            .collect()
    }

    /// A random (version 4) UUID in its canonical text form.
    pub(crate) fn uuid(&mut self) -> String {
        let hex = self.hex(32);
        let (a, rest) = hex.split_at(8);
        let (b, rest) = rest.split_at(4);
        let (c, rest) = rest.split_at(4);
        let (d, e) = rest.split_at(4);
        let c = format!("4{}", c.get(1..).unwrap_or("000"));
        let variant = ["8", "9", "a", "b"]
            .get((self.next_u64() % 4) as usize)
            .copied()
            .unwrap_or("8");
        let d = format!("{variant}{}", d.get(1..).unwrap_or("000"));
        format!("{a}-{b}-{c}-{d}-{e}")
    }
}

/// A seed from the operating system (`/dev/urandom`), or from the clock and process id when
/// that is not readable.
pub(crate) fn os_seed() -> u64 {
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn uuid_has_the_canonical_v4_form() {
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let u = rng.uuid();
            let parts: Vec<&str> = u.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'));
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
            assert!(u.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn derived_generators_differ_by_label_and_repeat_by_seed() {
        let a = Rng::derived(1, "a").hex(16);
        let b = Rng::derived(1, "b").hex(16);
        assert_ne!(a, b);
        assert_eq!(a, Rng::derived(1, "a").hex(16));
        assert_ne!(a, Rng::derived(2, "a").hex(16));
    }
}
