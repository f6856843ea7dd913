//! Frames and stacks, and the stable 64-bit stack hash.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// One frame of a stack: a function, where it is, and the line being executed.
///
/// Names are shared (`Arc<str>`): a profile's stacks repeat the same few hundred functions
/// thousands of times, and cloning a frame must not copy its strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Frame {
    /// Function name (demangled as the profiler gave it).
    pub function: Arc<str>,
    /// Source file, empty when unknown.
    pub file: Arc<str>,
    /// Line number, 0 when unknown.
    pub line: i64,
}

impl Frame {
    /// A frame with only a function name.
    pub fn named(function: impl Into<Arc<str>>) -> Self {
        Self {
            function: function.into(),
            file: Arc::from(""),
            line: 0,
        }
    }
}

/// Name of the synthetic root-side frame that replaces frames cut by the depth limit.
pub const TRUNCATED_FRAME: &str = "[truncated]";

/// Hashes one frame: XXH3-64 over the function name, a 0 byte, the file, a 0 byte and the
/// line as 8 little-endian bytes.
pub fn frame_hash(function: &str, file: &str, line: i64) -> u64 {
    let len = function.len() + file.len() + 10;
    if len <= 128 {
        // Short names (nearly all): one-shot hash of a small stack buffer.
        frame_hash_buffered::<128>(function, file, line)
    } else if len <= 256 {
        frame_hash_buffered::<256>(function, file, line)
    } else {
        let mut h = Xxh3::new();
        h.update(function.as_bytes());
        h.update(&[0]);
        h.update(file.as_bytes());
        h.update(&[0]);
        h.update(&line.to_le_bytes());
        h.digest()
    }
}

/// [`frame_hash`] of a frame whose bytes fit in `N` (a stack buffer: no allocation).
#[inline]
fn frame_hash_buffered<const N: usize>(function: &str, file: &str, line: i64) -> u64 {
    let mut buf = [0u8; N];
    let len = function.len() + file.len() + 10;
    let (f, rest) = buf.split_at_mut(function.len());
    f.copy_from_slice(function.as_bytes());
    let (g, rest) = rest[1..].split_at_mut(file.len());
    g.copy_from_slice(file.as_bytes());
    rest[1..9].copy_from_slice(&line.to_le_bytes());
    xxh3_64(&buf[..len])
}

/// Combines the [`frame_hash`]es of a leaf-first stack into its stack ID: XXH3-64 over the
/// frame hashes as 8 little-endian bytes each.
///
/// Hashing frames first lets a decoder hash each location once per profile and a stack from
/// a few dozen integers. This is part of the storage format: changing it would split every
/// stored stack in two, so it is pinned by a test.
pub fn stack_id_from_hashes(frame_hashes: &[u64]) -> u64 {
    if frame_hashes.len() <= 32 {
        stack_id_buffered::<{ 8 * 32 }>(frame_hashes)
    } else if frame_hashes.len() <= 64 {
        stack_id_buffered::<{ 8 * 64 }>(frame_hashes)
    } else {
        let mut h = Xxh3::new();
        for fh in frame_hashes {
            h.update(&fh.to_le_bytes());
        }
        h.digest()
    }
}

/// [`stack_id_from_hashes`] of a stack whose hashes fit in `N` bytes (a stack buffer).
#[inline]
fn stack_id_buffered<const N: usize>(frame_hashes: &[u64]) -> u64 {
    let mut buf = [0u8; N];
    for (chunk, h) in buf.chunks_exact_mut(8).zip(frame_hashes) {
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    xxh3_64(&buf[..8 * frame_hashes.len()])
}

/// Hashes a leaf-first frame list into the stack ID (see [`stack_id_from_hashes`]).
pub fn stack_id<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> u64 {
    let hashes: Vec<u64> = frames
        .into_iter()
        .map(|f| frame_hash(&f.function, &f.file, f.line))
        .collect();
    stack_id_from_hashes(&hashes)
}

/// Bit-casts a stack hash into the `i64` stored in Delta tables (Delta has no unsigned types).
pub fn stack_id_to_i64(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

/// Inverse of [`stack_id_to_i64`].
pub fn stack_id_from_i64(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_hash_is_pinned() {
        let frames = [
            Frame {
                function: "leaf".into(),
                file: "a.rs".into(),
                line: 7,
            },
            Frame::named("main"),
        ];
        // Pinned: a change here changes the storage format.
        assert_eq!(stack_id(&frames), 0x5e35_d959_7dd3_39a0_u64);
    }

    /// The definition, written the slow way: streaming XXH3 over the documented bytes.
    fn reference_frame_hash(function: &str, file: &str, line: i64) -> u64 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(function.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(file.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&line.to_le_bytes());
        let mut h = Xxh3::new();
        h.update(&bytes);
        h.digest()
    }

    #[test]
    fn fast_paths_match_the_definition() {
        // Names around the 128- and 256-byte stack buffers, stacks around 32 and 64 frames.
        for len in [0, 1, 100, 113, 114, 115, 245, 246, 247, 300, 5000] {
            let name = "x".repeat(len);
            assert_eq!(
                frame_hash(&name, "f.go", -3),
                reference_frame_hash(&name, "f.go", -3),
                "name length {len}"
            );
        }
        for depth in [0, 1, 31, 32, 33, 63, 64, 65, 1000] {
            let hashes: Vec<u64> = (0..depth).map(|i| i * 0x9e37_79b9).collect();
            let mut h = Xxh3::new();
            for x in &hashes {
                h.update(&x.to_le_bytes());
            }
            assert_eq!(stack_id_from_hashes(&hashes), h.digest(), "depth {depth}");
        }
    }

    #[test]
    fn order_and_fields_matter() {
        let a = Frame::named("a");
        let b = Frame::named("b");
        assert_ne!(stack_id([&a, &b]), stack_id([&b, &a]));
        let mut a2 = a.clone();
        a2.line = 1;
        assert_ne!(stack_id([&a]), stack_id([&a2]));
        // The separators keep ("ab","") and ("a","b") apart.
        let x = Frame {
            function: "ab".into(),
            file: Arc::from(""),
            line: 0,
        };
        let y = Frame {
            function: "a".into(),
            file: "b".into(),
            line: 0,
        };
        assert_ne!(stack_id([&x]), stack_id([&y]));
    }

    #[test]
    fn i64_cast_round_trips() {
        for id in [0u64, 1, u64::MAX, 1 << 63, 0x8000_0000_0000_0001] {
            assert_eq!(stack_id_from_i64(stack_id_to_i64(id)), id);
        }
        assert!(stack_id_to_i64(u64::MAX) < 0);
    }
}
