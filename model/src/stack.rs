//! Frames and stacks, and the stable 64-bit stack hash.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

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

/// Hashes a leaf-first frame list into the stack ID.
///
/// The hash is XXH3-64 over, for each frame leaf first: the function name, a 0 byte, the file,
/// a 0 byte, the line as 8 little-endian bytes. It is part of the storage format: changing it
/// would split every stored stack in two, so it is pinned by a test.
pub fn stack_id<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> u64 {
    let mut h = Xxh3::new();
    for f in frames {
        h.update(f.function.as_bytes());
        h.update(&[0]);
        h.update(f.file.as_bytes());
        h.update(&[0]);
        h.update(&f.line.to_le_bytes());
    }
    h.digest()
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
        assert_eq!(stack_id(&frames), 0x471c_c100_dd8d_b7a8_u64);
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
