//! The function names of each service's stacks, kept across flame graph queries.
//!
//! A stack never changes once written (its ID is a hash of its frames), so the querier can
//! keep what it has read. A flame graph of one service sums `value` per stack ID and looks the
//! IDs up here instead of joining `stacks` and decoding its frame lists on every query. Each
//! `stacks` data file of a service is read once (only `stack_id` and the frames' function
//! names); each query reads only the files added since the last one.
//!
//! Memory is bounded by a number of frames across services; the least recently used services
//! are dropped first. A service with more frames than the whole bound is not kept, and not
//! read again: its flame graphs take the join.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use stackdrift_storage::{StorageError, Store};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Frames (function references, 4 bytes each plus the stack index) kept by default.
pub const DEFAULT_MAX_FRAMES: usize = 8 << 20;

/// The stacks of one tenant's service: leaf-first function name IDs per stack ID.
#[derive(Debug, Default)]
pub struct ServiceStacks {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
    /// Stack ID → range in `frames`.
    stacks: HashMap<i64, (u32, u32)>,
    frames: Vec<u32>,
    /// The data files read (those still in the table).
    files: HashSet<String>,
}

impl ServiceStacks {
    /// The leaf-first function names of a stack, if known.
    pub fn functions(&self, stack_id: i64) -> Option<impl DoubleEndedIterator<Item = &str>> {
        let &(start, len) = self.stacks.get(&stack_id)?;
        let range = start as usize..(start as usize + len as usize);
        Some(self.frames[range].iter().map(|&n| &*self.names[n as usize]))
    }

    /// Stacks known.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    /// Whether no stack is known.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    fn insert(&mut self, stack_id: i64, functions: &mut dyn Iterator<Item = &str>) {
        if self.stacks.contains_key(&stack_id) {
            return; // a copy (two ingesters wrote it) or a compacted file's rewrite
        }
        let start = self.frames.len();
        for name in functions {
            let id = match self.ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                    let name: Arc<str> = name.into();
                    self.names.push(name.clone());
                    self.ids.insert(name, id);
                    id
                }
            };
            self.frames.push(id);
        }
        let len = self.frames.len() - start;
        self.stacks.insert(
            stack_id,
            (
                u32::try_from(start).unwrap_or(u32::MAX),
                u32::try_from(len).unwrap_or(0),
            ),
        );
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[derive(Debug)]
struct Slot {
    stacks: Arc<AsyncMutex<ServiceStacks>>,
    last_used: u64,
    frames: usize,
}

#[derive(Debug, Default)]
struct Inner {
    services: HashMap<(String, String), Slot>,
    /// Services found bigger than the whole bound. Stacks are never removed, so they stay
    /// too big: their flame graphs go straight to the join instead of reading the stacks
    /// files on every query only to drop them.
    too_big: HashSet<(String, String)>,
    tick: u64,
}

/// Per (tenant, service) [`ServiceStacks`], bounded by a number of frames.
#[derive(Debug)]
pub struct FrameCache {
    max_frames: usize,
    inner: Mutex<Inner>,
}

impl FrameCache {
    /// A cache holding at most `max_frames` frames (0 turns it off).
    pub fn new(max_frames: usize) -> Self {
        Self {
            max_frames,
            inner: Mutex::default(),
        }
    }

    /// The stacks of `service`, brought up to date with the `stacks` table's latest version
    /// (read after the samples a caller looks up, every stack those name is there). `None`
    /// when the cache is off or the service has more frames than it may hold.
    pub async fn get(
        &self,
        store: &Store,
        tenant: &str,
        service: &str,
    ) -> Result<Option<OwnedMutexGuard<ServiceStacks>>, StorageError> {
        if self.max_frames == 0 {
            return Ok(None);
        }
        let key = (tenant.to_owned(), service.to_owned());
        let slot = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.too_big.contains(&key) {
                return Ok(None);
            }
            inner.tick += 1;
            let tick = inner.tick;
            let slot = inner.services.entry(key.clone()).or_insert_with(|| Slot {
                stacks: Arc::default(),
                last_used: tick,
                frames: 0,
            });
            slot.last_used = tick;
            slot.stacks.clone()
        };
        let mut stacks = slot.lock_owned().await;
        let files = store.stack_files(tenant, service).await?;
        for path in &files {
            if stacks.files.contains(path) {
                continue;
            }
            store
                .read_stack_functions(path, |id, functions| stacks.insert(id, functions))
                .await?;
            stacks.files.insert(path.clone());
            if stacks.frames.len() > self.max_frames {
                break;
            }
        }
        let current: HashSet<&String> = files.iter().collect();
        stacks.files.retain(|f| current.contains(f));
        let frames = stacks.frames.len();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if frames > self.max_frames {
            stacks.clear();
            inner.services.remove(&key);
            inner.too_big.insert(key);
            return Ok(None);
        }
        if let Some(s) = inner.services.get_mut(&key) {
            s.frames = frames;
        }
        // Drop the least recently used other services until the bound holds.
        let mut total: usize = inner.services.values().map(|s| s.frames).sum();
        while total > self.max_frames {
            let Some(victim) = inner
                .services
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(s) = inner.services.remove(&victim) {
                total -= s.frames;
            }
        }
        Ok(Some(stacks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_keep_order_and_share_names() {
        let mut s = ServiceStacks::default();
        s.insert(7, &mut ["leaf", "mid", "main"].into_iter());
        s.insert(8, &mut ["mid", "main"].into_iter());
        s.insert(7, &mut ["other"].into_iter()); // a copy: ignored
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.functions(7).map(|f| f.collect::<Vec<_>>()),
            Some(vec!["leaf", "mid", "main"])
        );
        assert_eq!(
            s.functions(8).map(|f| f.rev().collect::<Vec<_>>()),
            Some(vec!["main", "mid"])
        );
        assert!(s.functions(9).is_none());
        assert_eq!(s.names.len(), 3);
        assert_eq!(s.frames.len(), 5);
    }
}
