//! Byte mutations of corpus inputs: bit flips, random bytes, splices of two inputs, inserts of a
//! target's grammar tokens and of interesting numbers, repeats and truncations. Deterministic
//! for a seed, so a run can be repeated with `--seed`.

/// SplitMix64: small, fast, and the same on every platform and toolchain.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

/// Tokens every target gets on top of its own dictionary: numbers at type edges, odd Unicode,
/// JSON and CSV punctuation.
const COMMON: &[&[u8]] = &[
    b"0",
    b"-1",
    b"-0",
    b"1e308",
    b"-1e309",
    b"1.7976931348623157e308",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"4294967296",
    b"0.1",
    b"NaN",
    b"inf",
    b"\"",
    b"\\",
    b"\\\"",
    b"\\u0000",
    b"\\ud800",
    b"\0",
    b"\r\n",
    b"\n",
    b"\t",
    b" ",
    b",",
    b":",
    b"|",
    b"{",
    b"}",
    b"[",
    b"]",
    "\u{00e9}".as_bytes(),
    "\u{0130}".as_bytes(),
    "\u{00df}".as_bytes(),
    "\u{01c6}".as_bytes(),
    "\u{1f600}".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{fffd}".as_bytes(),
    b"\xff",
    b"\xc3",
];

/// Applies one to eight stacked mutations to `input`, keeping it at most `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    others: &[Vec<u8>],
    dictionary: &[&[u8]],
    max_len: usize,
) -> Vec<u8> {
    let mut data = input.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        mutate_once(rng, &mut data, others, dictionary, max_len);
    }
    data.truncate(max_len);
    data
}

fn token<'a>(rng: &mut Rng, dictionary: &[&'a [u8]]) -> &'a [u8] {
    if !dictionary.is_empty() && !rng.one_in(4) {
        dictionary[rng.below(dictionary.len())]
    } else {
        COMMON[rng.below(COMMON.len())]
    }
}

fn mutate_once(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    others: &[Vec<u8>],
    dictionary: &[&[u8]],
    max_len: usize,
) {
    let len = data.len();
    match rng.below(12) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with a random or an ASCII one.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = if rng.one_in(2) {
                rng.next_u64() as u8
            } else {
                b' ' + rng.below(95) as u8
            };
        }
        // Insert a random byte.
        2 => {
            let i = rng.below(len + 1);
            data.insert(i, rng.next_u64() as u8);
        }
        // Delete a range.
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16.min(len - start))).min(len);
            data.drain(start..end);
        }
        // Insert a grammar token (the most useful mutation: it keeps inputs near valid).
        4..=6 => {
            let t = token(rng, dictionary);
            let i = rng.below(len + 1);
            data.splice(i..i, t.iter().copied());
        }
        // Replace a range with a token.
        7 if len > 0 => {
            let t = token(rng, dictionary);
            let start = rng.below(len);
            let end = (start + rng.below(8)).min(len);
            data.splice(start..end, t.iter().copied());
        }
        // Splice: our head with another input's tail.
        8 => {
            if let Some(other) = rng.pick(others) {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        // Duplicate a chunk, sometimes many times (size and nesting blow-ups).
        9 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let chunk = data[start..end].to_vec();
            let times = if rng.one_in(8) {
                1 + rng.below(256)
            } else {
                1 + rng.below(3)
            };
            let at = rng.below(data.len() + 1);
            let mut insert = Vec::with_capacity(chunk.len() * times);
            for _ in 0..times {
                insert.extend_from_slice(&chunk);
                if insert.len() > max_len {
                    break;
                }
            }
            data.splice(at..at, insert);
        }
        // Truncate.
        10 if len > 0 => {
            data.truncate(rng.below(len));
        }
        // Swap two bytes.
        11 if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        _ => {
            let t = token(rng, dictionary);
            data.extend_from_slice(t);
        }
    }
    if data.len() > max_len {
        data.truncate(max_len);
    }
}

/// FNV-1a, for signatures and finding names.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_bounded() {
        let others = vec![b"other input".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| mutate(&mut rng, b"city = \"Berlin\"", &others, &[b"and"], 64))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|m| m.len() <= 64));
    }
}
