//! The normalized form every input format is turned into before storage.

// Keys here are stack hashes, IDs and short slices: Fx hashing, not SipHash (a profile
// hashes every sample several times, and nothing here is attacker-keyed at scale).
use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;

use crate::error::DecodeError;
use crate::labels::Labels;
use crate::profile_type::ProfileType;
use crate::stack::{Frame, TRUNCATED_FRAME, frame_hash, stack_id_from_hashes};

/// One profile, normalized: per (labels, profile type) series, the summed value of each
/// distinct stack, plus the frames of every stack it references.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormalizedProfile {
    /// Start of the profile, µs since the Unix epoch (UTC).
    pub time_us: i64,
    /// Length of the profile in µs (0 when unknown).
    pub duration_us: i64,
    /// One entry per (labels, profile type).
    pub series: Vec<Series>,
    /// Every stack referenced by `series`, each once.
    pub stacks: Vec<Stack>,
}

impl NormalizedProfile {
    /// Total number of (stack, value) entries over all series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// One series of one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Validated labels, `service_name` included.
    pub labels: Labels,
    /// What the values measure.
    pub profile_type: ProfileType,
    /// `(stack_id, value)`; each stack once, values > 0, in first-seen order.
    pub samples: Vec<(u64, i64)>,
}

/// A distinct stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// [`stack_id`] of `frames`.
    pub id: u64,
    /// Leaf first.
    pub frames: Vec<Frame>,
}

/// Tells a decoder which stacks' frames the caller already has (e.g. stacks committed to the
/// table for this tenant and service): their frames are neither built nor returned, only
/// their IDs.
pub type KnownStacks<'k> = &'k (dyn Fn(u64) -> bool + Sync);

/// Accumulates samples into a [`NormalizedProfile`], merging equal stacks per series.
pub struct ProfileBuilder<'k> {
    series_index: HashMap<(Labels, ProfileType), usize>,
    series: Vec<(Series, HashMap<u64, usize>)>,
    /// Every stack ID seen, with its index in `stack_list` (`None`: known, frames not kept).
    stacks: HashMap<u64, Option<usize>>,
    stack_list: Vec<Stack>,
    max_depth: usize,
    known: Option<KnownStacks<'k>>,
    truncated_hash: u64,
}

impl std::fmt::Debug for ProfileBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileBuilder")
            .field("series", &self.series.len())
            .field("stacks", &self.stacks.len())
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl<'k> ProfileBuilder<'k> {
    /// A builder that truncates stacks deeper than `max_stack_depth` frames.
    pub fn new(max_stack_depth: usize) -> Self {
        Self {
            series_index: HashMap::default(),
            series: Vec::new(),
            stacks: HashMap::default(),
            stack_list: Vec::new(),
            max_depth: max_stack_depth.max(2),
            known: None,
            truncated_hash: frame_hash(TRUNCATED_FRAME, "", 0),
        }
    }

    /// Makes room for `stacks` distinct stacks without rehashing (a hint: a pprof profile has
    /// about one stack per sample).
    pub fn reserve_stacks(&mut self, stacks: usize) {
        self.stacks.reserve(stacks);
    }

    /// Stacks for which `known` is true keep their ID in the samples but are left out of
    /// [`NormalizedProfile::stacks`], and their frames are never built.
    pub fn with_known_stacks(mut self, known: Option<KnownStacks<'k>>) -> Self {
        self.known = known;
        self
    }

    /// Returns the index of the series for `(labels, profile_type)`, creating it.
    pub fn series(&mut self, labels: &Labels, profile_type: &ProfileType) -> usize {
        let key = (labels.clone(), profile_type.clone());
        let next = self.series.len();
        match self.series_index.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let (labels, profile_type) = e.key().clone();
                self.series.push((
                    Series {
                        labels,
                        profile_type,
                        samples: Vec::new(),
                    },
                    HashMap::default(),
                ));
                e.insert(next);
                next
            }
        }
    }

    /// Makes room in series `series` for `samples` distinct stacks without rehashing (a hint).
    pub fn reserve_samples(&mut self, series: usize, samples: usize) {
        let (s, index) = &mut self.series[series];
        s.samples.reserve(samples);
        index.reserve(samples);
    }

    /// Registers a leaf-first frame list (truncating it past the depth limit) and returns its
    /// stack ID.
    pub fn stack(&mut self, frames: Vec<Frame>) -> u64 {
        let mut hashes: Vec<u64> = frames
            .iter()
            .map(|f| frame_hash(&f.function, &f.file, f.line))
            .collect();
        let mut frames = Some(frames);
        self.stack_hashed(&mut hashes, |keep| {
            let mut frames = frames.take().unwrap_or_default();
            frames.truncate(keep);
            frames
        })
    }

    /// Registers a stack by the [`frame_hash`]es of its frames, leaf first, and returns its ID.
    ///
    /// `hashes` is truncated in place past the depth limit. `frames(keep)` must return the
    /// first `keep` frames (leaf first) of the stack; it is called only for a stack this
    /// builder has not seen and the caller does not already know.
    pub fn stack_hashed(
        &mut self,
        hashes: &mut Vec<u64>,
        frames: impl FnOnce(usize) -> Vec<Frame>,
    ) -> u64 {
        let truncated = hashes.len() > self.max_depth;
        if truncated {
            // Keep the leaf side (self time stays exact); the cut root side becomes one frame.
            hashes.truncate(self.max_depth - 1);
            hashes.push(self.truncated_hash);
        }
        let id = stack_id_from_hashes(hashes);
        if let Entry::Vacant(e) = self.stacks.entry(id) {
            if self.known.is_some_and(|known| known(id)) {
                e.insert(None);
            } else {
                let keep = if truncated {
                    hashes.len() - 1
                } else {
                    hashes.len()
                };
                let mut frames = frames(keep);
                debug_assert_eq!(frames.len(), keep);
                if truncated {
                    frames.push(Frame::named(TRUNCATED_FRAME));
                }
                e.insert(Some(self.stack_list.len()));
                self.stack_list.push(Stack { id, frames });
            }
        }
        id
    }

    /// Adds `value` to `stack` in series `series`. Zero is ignored; negatives are rejected.
    pub fn add(&mut self, series: usize, stack: u64, value: i64) -> Result<(), DecodeError> {
        if value < 0 {
            return Err(DecodeError::NegativeValue(value));
        }
        if value == 0 {
            return Ok(());
        }
        let (s, index) = &mut self.series[series];
        match index.entry(stack) {
            Entry::Occupied(e) => {
                let slot = &mut s.samples[*e.get()].1;
                *slot = slot.checked_add(value).ok_or(DecodeError::ValueOverflow)?;
            }
            Entry::Vacant(e) => {
                e.insert(s.samples.len());
                s.samples.push((stack, value));
            }
        }
        Ok(())
    }

    /// Finishes the profile. Series without samples and stacks no sample uses are dropped.
    pub fn finish(self, time_us: i64, duration_us: i64) -> NormalizedProfile {
        let series: Vec<Series> = self
            .series
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| !s.samples.is_empty())
            .collect();
        if self.stack_list.is_empty() {
            // Every stack was known (a service's steady state): nothing to filter.
            return NormalizedProfile {
                time_us,
                duration_us,
                series,
                stacks: Vec::new(),
            };
        }
        let used: rustc_hash::FxHashSet<u64> = series
            .iter()
            .flat_map(|s| s.samples.iter().map(|(id, _)| *id))
            .collect();
        let stacks = self
            .stack_list
            .into_iter()
            .filter(|s| used.contains(&s.id))
            .collect();
        NormalizedProfile {
            time_us,
            duration_us,
            series,
            stacks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelLimits;

    #[test]
    fn merges_equal_stacks_and_truncates_deep_ones() {
        let labels = Labels::new([("service_name", "s")], &LabelLimits::default()).unwrap();
        let pt: ProfileType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            .parse()
            .unwrap();
        let mut b = ProfileBuilder::new(3);
        let s = b.series(&labels, &pt);
        assert_eq!(b.series(&labels, &pt), s);
        let a = b.stack(vec![Frame::named("leaf"), Frame::named("main")]);
        let a2 = b.stack(vec![Frame::named("leaf"), Frame::named("main")]);
        assert_eq!(a, a2);
        let deep = b.stack((0..10).map(|i| Frame::named(format!("f{i}"))).collect());
        b.add(s, a, 5).unwrap();
        b.add(s, a2, 7).unwrap();
        b.add(s, deep, 1).unwrap();
        b.add(s, deep, 0).unwrap();
        assert_eq!(b.add(s, a, -1), Err(DecodeError::NegativeValue(-1)));
        b.add(s, a, i64::MAX - 12).unwrap();
        assert_eq!(b.add(s, a, 1), Err(DecodeError::ValueOverflow));
        let p = b.finish(1, 2);
        assert_eq!(p.series[0].samples, vec![(a, i64::MAX), (deep, 1)]);
        let deep_frames = &p.stacks.iter().find(|st| st.id == deep).unwrap().frames;
        assert_eq!(deep_frames.len(), 3);
        assert_eq!(&*deep_frames[0].function, "f0");
        assert_eq!(&*deep_frames[2].function, TRUNCATED_FRAME);
        // Truncation happens before hashing: the ID is that of the kept frames.
        assert_eq!(deep, crate::stack::stack_id(deep_frames));
    }

    #[test]
    fn known_stacks_keep_their_ids_but_not_their_frames() {
        let labels = Labels::new([("service_name", "s")], &LabelLimits::default()).unwrap();
        let pt: ProfileType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            .parse()
            .unwrap();
        let known_frames = vec![Frame::named("old"), Frame::named("main")];
        let known_id = crate::stack::stack_id(&known_frames);
        let is_known = move |id: u64| id == known_id;
        let mut b = ProfileBuilder::new(100).with_known_stacks(Some(&is_known));
        let s = b.series(&labels, &pt);
        let built = std::cell::Cell::new(0);
        let mut hashes: Vec<u64> = known_frames
            .iter()
            .map(|f| frame_hash(&f.function, &f.file, f.line))
            .collect();
        let a = b.stack_hashed(&mut hashes, |_| {
            built.set(built.get() + 1);
            known_frames.clone()
        });
        assert_eq!(a, known_id);
        assert_eq!(built.get(), 0, "frames of a known stack are never built");
        let new = b.stack(vec![Frame::named("new"), Frame::named("main")]);
        b.add(s, a, 1).unwrap();
        b.add(s, new, 2).unwrap();
        let p = b.finish(0, 0);
        assert_eq!(p.series[0].samples, vec![(a, 1), (new, 2)]);
        let ids: Vec<u64> = p.stacks.iter().map(|st| st.id).collect();
        assert_eq!(ids, vec![new]);
    }
}
