//! The normalized form every input format is turned into before storage.

// Keys here are stack hashes, IDs and short slices: Fx hashing, not SipHash (a profile
// hashes every sample several times, and nothing here is attacker-keyed at scale).
use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;

use crate::error::DecodeError;
use crate::labels::Labels;
use crate::profile_type::ProfileType;
use crate::stack::{Frame, TRUNCATED_FRAME, stack_id};

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

/// Accumulates samples into a [`NormalizedProfile`], merging equal stacks per series.
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    series_index: HashMap<(Labels, ProfileType), usize>,
    series: Vec<(Series, HashMap<u64, usize>)>,
    stacks: HashMap<u64, usize>,
    stack_list: Vec<Stack>,
    max_depth: usize,
}

impl ProfileBuilder {
    /// A builder that truncates stacks deeper than `max_stack_depth` frames.
    pub fn new(max_stack_depth: usize) -> Self {
        Self {
            max_depth: max_stack_depth.max(2),
            ..Default::default()
        }
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

    /// Registers a leaf-first frame list (truncating it past the depth limit) and returns its
    /// stack ID.
    pub fn stack(&mut self, mut frames: Vec<Frame>) -> u64 {
        if frames.len() > self.max_depth {
            // Keep the leaf side (self time stays exact); the cut root side becomes one frame.
            frames.truncate(self.max_depth - 1);
            frames.push(Frame::named(TRUNCATED_FRAME));
        }
        let id = stack_id(&frames);
        if let Entry::Vacant(e) = self.stacks.entry(id) {
            e.insert(self.stack_list.len());
            self.stack_list.push(Stack { id, frames });
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
    }
}
