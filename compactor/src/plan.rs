//! What to do with one partition of `samples`, decided from its files' stats and tags alone
//! (pure, so the rules are unit-tested without a table).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use stackdrift_storage::DataFile;
use stackdrift_storage::maintenance::{TAG_PROFILE_TYPES, TAG_RESOLUTION, TAG_WINDOW};

use crate::policy::{RetentionPolicy, Tier, bucket_for_age};

pub(crate) const DAY_US: i64 = 86_400_000_000;

/// Where a partition of `samples` stands.
#[derive(Debug, Clone)]
pub(crate) struct Partition<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) service: &'a str,
    /// Days since the epoch.
    pub(crate) day: i32,
    pub(crate) files: Vec<&'a DataFile>,
}

/// What the planner needs besides the files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub(crate) now_us: i64,
    pub(crate) window: Duration,
    pub(crate) settle: Duration,
    pub(crate) open_min_files: usize,
    pub(crate) tiers: &'a [Tier],
    pub(crate) retention: &'a RetentionPolicy,
}

/// The decision for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do.
    Keep,
    /// The profile types present are needed to decide (some files are untagged).
    NeedTypes,
    /// Every row has expired: remove every file.
    Expire,
    /// Rewrite every file of the partition, dropping `drop` types and summing rows into
    /// `bucket_us` buckets (0: keep rows).
    Rewrite { drop: Vec<String>, bucket_us: i64 },
    /// Merge files per time window: (window label, file indexes).
    Merge(Vec<(String, Vec<usize>)>),
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn resolution(f: &DataFile) -> i64 {
    f.tag(TAG_RESOLUTION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Profile types of the partition from its tags, if every file is tagged.
pub(crate) fn tagged_types(p: &Partition<'_>) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for f in &p.files {
        let tag = f.tag(TAG_PROFILE_TYPES)?;
        out.extend(tag.split(',').filter(|t| !t.is_empty()).map(str::to_owned));
    }
    Some(out)
}

/// Decides what to do with `p`. `types` are the profile types present when known (from tags
/// or a scan); without them a decision that depends on them returns [`Step::NeedTypes`].
pub(crate) fn plan(p: &Partition<'_>, rules: &Rules<'_>, types: Option<&BTreeSet<String>>) -> Step {
    if p.files.is_empty() {
        return Step::Keep;
    }
    let day_end = (i64::from(p.day) + 1).saturating_mul(DAY_US);
    let age_us = rules.now_us.saturating_sub(day_end);
    // Retention, by whole days: a type's rows go once the whole day is past its retention.
    let expired_by = |keep: Option<Duration>| keep.is_some_and(|k| age_us >= micros(k));
    let (candidates, by_type) = rules.retention.candidates(p.tenant, p.service);
    let mut drop = Vec::new();
    if !by_type {
        if expired_by(candidates[0]) {
            return Step::Expire;
        }
    } else if candidates.iter().any(|k| expired_by(*k)) {
        // Some type may have expired: which ones depends on the types present.
        let owned;
        let types = match types {
            Some(t) => t,
            None => match tagged_types(p) {
                Some(t) => {
                    owned = t;
                    &owned
                }
                None => return Step::NeedTypes,
            },
        };
        drop = types
            .iter()
            .filter(|t| expired_by(rules.retention.keep(p.tenant, p.service, t)))
            .cloned()
            .collect();
        if !types.is_empty() && drop.len() == types.len() {
            return Step::Expire;
        }
    }
    // Downsampling, by whole days too.
    let bucket_us = if age_us >= 0 {
        bucket_for_age(rules.tiers, Duration::from_micros(age_us.unsigned_abs()))
            .map(micros)
            .unwrap_or(0)
    } else {
        0
    };
    let coarser = bucket_us > 0 && p.files.iter().any(|f| resolution(f) < bucket_us);
    if !drop.is_empty() || coarser {
        return Step::Rewrite { drop, bucket_us };
    }
    if bucket_us > 0 {
        // Downsampled already; nothing new arrived.
        return Step::Keep;
    }
    // Compaction by time window: a closed window ends as one sorted set of files; an open one
    // has its new small files merged once there are enough of them.
    let window_us = micros(rules.window).max(1);
    let mut windows: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, f) in p.files.iter().enumerate() {
        let start = f
            .min_time_us
            .unwrap_or(i64::from(p.day) * DAY_US)
            .div_euclid(window_us)
            * window_us;
        windows.entry(start).or_default().push(i);
    }
    let mut merges = Vec::new();
    for (start, files) in windows {
        let label = start.to_string();
        let closed = start + window_us + micros(rules.settle) <= rules.now_us;
        if closed {
            // Done once no file is fresh from ingest and no partial merge is left to join.
            let fresh = files.iter().any(|&i| p.files[i].tag(TAG_WINDOW).is_none());
            let partial = files.len() > 1
                && files
                    .iter()
                    .any(|&i| p.files[i].tag(TAG_WINDOW) == Some("open"));
            if fresh || partial {
                merges.push((label, files));
            }
        } else {
            let fresh: Vec<usize> = files
                .into_iter()
                .filter(|&i| p.files[i].tag(TAG_WINDOW).is_none())
                .collect();
            if fresh.len() >= rules.open_min_files.max(2) {
                merges.push(("open".to_owned(), fresh));
            }
        }
    }
    if merges.is_empty() {
        Step::Keep
    } else {
        Step::Merge(merges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_tiers;

    const H: i64 = 3_600_000_000;
    const DAY: i32 = 20_000;

    fn at(hour: i64) -> i64 {
        i64::from(DAY) * DAY_US + hour * H
    }

    fn file(min_hour: i64, tags: &[(&str, &str)]) -> DataFile {
        DataFile::described("f", 1000, Some((at(min_hour), at(min_hour) + 1)), tags)
    }

    fn rules<'a>(now_us: i64, tiers: &'a [Tier], retention: &'a RetentionPolicy) -> Rules<'a> {
        Rules {
            now_us,
            window: Duration::from_secs(3600),
            settle: Duration::from_secs(300),
            open_min_files: 3,
            tiers,
            retention,
        }
    }

    fn part(files: &[DataFile]) -> Partition<'_> {
        Partition {
            tenant: "t",
            service: "api",
            day: DAY,
            files: files.iter().collect(),
        }
    }

    #[test]
    fn closed_windows_merge_once_and_open_ones_wait_for_enough_files() {
        let retention = RetentionPolicy::default();
        let files = vec![
            file(0, &[]),
            file(0, &[]),
            file(1, &[(TAG_WINDOW, &at(1).to_string())]),
            file(5, &[]),
            file(5, &[]),
        ];
        // 05:10: hour 0 is closed with untagged files, hour 1 is done, hour 5 is open.
        let step = plan(&part(&files), &rules(at(5) + H / 6, &[], &retention), None);
        assert_eq!(step, Step::Merge(vec![(at(0).to_string(), vec![0, 1])]));
        // A third new file in the open hour reaches open_min_files.
        let mut more = files.clone();
        more.push(file(5, &[]));
        let step = plan(&part(&more), &rules(at(5) + H / 6, &[], &retention), None);
        assert_eq!(
            step,
            Step::Merge(vec![
                (at(0).to_string(), vec![0, 1]),
                ("open".to_owned(), vec![3, 4, 5])
            ])
        );
        // Hour 5 closes after the settle time: its files merge, whatever their number.
        let step = plan(&part(&files), &rules(at(6) + H / 6, &[], &retention), None);
        assert_eq!(
            step,
            Step::Merge(vec![
                (at(0).to_string(), vec![0, 1]),
                (at(5).to_string(), vec![3, 4])
            ])
        );
        // Merged files are final: whole-day rewrites, and a window's own output (even when
        // it rolled over into several files).
        let done = vec![
            file(2, &[(TAG_WINDOW, "day")]),
            file(3, &[(TAG_WINDOW, &at(3).to_string())]),
            file(3, &[(TAG_WINDOW, &at(3).to_string())]),
            file(4, &[(TAG_WINDOW, "open")]),
        ];
        assert_eq!(
            plan(&part(&done), &rules(at(6), &[], &retention), None),
            Step::Keep
        );
        // An open-window merge joins the rest of its window once the window closes.
        let joined = vec![file(4, &[(TAG_WINDOW, "open")]), file(4, &[])];
        assert_eq!(
            plan(&part(&joined), &rules(at(6), &[], &retention), None),
            Step::Merge(vec![(at(4).to_string(), vec![0, 1])])
        );
        // Not yet 5 minutes after 06:00.
        let step = plan(&part(&files[3..]), &rules(at(6) + 1, &[], &retention), None);
        assert_eq!(step, Step::Keep);
    }

    #[test]
    fn whole_days_downsample_once() {
        let retention = RetentionPolicy::default();
        let tiers = parse_tiers("24h=1m,7d=1h").unwrap();
        let files = vec![file(0, &[]), file(3, &[])];
        // The day ended 23 h ago: still raw.
        let now = at(24 + 23);
        assert!(matches!(
            plan(&part(&files), &rules(now, &tiers, &retention), None),
            Step::Merge(_)
        ));
        // 24 h after the day ended: 1-minute buckets.
        let now = at(48);
        let step = plan(&part(&files), &rules(now, &tiers, &retention), None);
        assert_eq!(
            step,
            Step::Rewrite {
                drop: vec![],
                bucket_us: 60_000_000
            }
        );
        let done = vec![file(0, &[(TAG_RESOLUTION, "60000000")])];
        assert_eq!(
            plan(&part(&done), &rules(now, &tiers, &retention), None),
            Step::Keep
        );
        // 7 days: 1-hour buckets.
        let now = at(24 * 8);
        let step = plan(&part(&done), &rules(now, &tiers, &retention), None);
        assert_eq!(
            step,
            Step::Rewrite {
                drop: vec![],
                bucket_us: 3_600_000_000
            }
        );
    }

    #[test]
    fn retention_expires_whole_days_and_types_by_rule() {
        let retention = RetentionPolicy::from_toml(
            "default = \"30d\"\n[[rule]]\nprofile_type = \"memory:*\"\nkeep = \"7d\"\n",
            None,
        )
        .unwrap();
        let files = vec![file(0, &[])];
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned();
        let mem = "memory:alloc_space:bytes:space:bytes".to_owned();
        let both: BTreeSet<String> = [cpu.clone(), mem.clone()].into();
        // 6 days after the day ended: nothing expires, and no scan is needed.
        let now = at(24 * 7);
        assert!(matches!(
            plan(&part(&files), &rules(now, &[], &retention), None),
            Step::Merge(_) | Step::Keep
        ));
        // 7 days: memory expires; which types exist must be known first.
        let now = at(24 * 8);
        assert_eq!(
            plan(&part(&files), &rules(now, &[], &retention), None),
            Step::NeedTypes
        );
        assert_eq!(
            plan(&part(&files), &rules(now, &[], &retention), Some(&both)),
            Step::Rewrite {
                drop: vec![mem.clone()],
                bucket_us: 0
            }
        );
        // Tags answer without a scan; only memory present → the whole partition goes.
        let tagged = vec![file(0, &[(TAG_PROFILE_TYPES, &mem)])];
        assert_eq!(
            plan(&part(&tagged), &rules(now, &[], &retention), None),
            Step::Expire
        );
        // 30 days: everything goes.
        let now = at(24 * 31);
        assert_eq!(
            plan(&part(&files), &rules(now, &[], &retention), Some(&both)),
            Step::Expire
        );
    }
}
