//! Which hours of a flame graph query the compactor's hourly stack totals (`_rollups`) can
//! answer instead of the raw `samples` rows.
//!
//! An hour `h` is answered from rollups when the selection pins one service and nothing else
//! (the totals have no other labels), `h` lies wholly inside the range, and every `samples`
//! file of that service with rows in `h` carries a rollup ID: the rollup rows of those IDs for
//! `h` then sum exactly those files' rows. Files are judged from their time stats, widened by
//! a second (stats may be rounded), so a doubtful file makes its hours raw, never wrong.

use std::collections::{BTreeMap, BTreeSet};

use stackdrift_storage::DataFile;
use stackdrift_storage::maintenance::{ROLLUP_HOUR_US, TAG_ROLLUP};

const SLACK_US: i64 = 1_000_000;

/// The hours to read from rollups: half-open µs intervals (whole hours, merged), and the
/// rollup IDs whose rows cover them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RollupPlan {
    pub(crate) intervals: Vec<(i64, i64)>,
    pub(crate) ids: BTreeSet<String>,
}

impl RollupPlan {
    /// Hours covered.
    pub(crate) fn hours(&self) -> i64 {
        self.intervals
            .iter()
            .map(|(a, b)| (b - a) / ROLLUP_HOUR_US)
            .sum()
    }
}

/// Plans the rollup hours of `service` in [`start_us`, `end_us`] (inclusive; `None`: no end)
/// from the `samples` files of the version the query reads.
pub(crate) fn plan(
    files: &[DataFile],
    tenant: &str,
    service: &str,
    start_us: i64,
    end_us: Option<i64>,
) -> Option<RollupPlan> {
    let files: Vec<&DataFile> = files
        .iter()
        .filter(|f| {
            f.partition.get("tenant").map(String::as_str) == Some(tenant)
                && f.partition.get("service_name").map(String::as_str) == Some(service)
        })
        .collect();
    let newest = files.iter().filter_map(|f| f.max_time_us).max()?;
    let end_us = end_us.unwrap_or(newest + SLACK_US);
    let first = -((-start_us).div_euclid(ROLLUP_HOUR_US)) * ROLLUP_HOUR_US; // ceil
    let last = (end_us + 1).div_euclid(ROLLUP_HOUR_US) * ROLLUP_HOUR_US; // exclusive
    if last <= first {
        return None;
    }
    // Per hour in [first, last): the rollup IDs of the files with rows in it, or `None` once
    // a file without one has rows in it.
    let mut hours: BTreeMap<i64, Option<BTreeSet<&str>>> = BTreeMap::new();
    for f in files {
        let (Some(lo), Some(hi)) = (f.min_time_us, f.max_time_us) else {
            // No stats: it may have rows anywhere.
            return None;
        };
        let from = ((lo - SLACK_US).div_euclid(ROLLUP_HOUR_US) * ROLLUP_HOUR_US).max(first);
        let to = ((hi + SLACK_US).div_euclid(ROLLUP_HOUR_US) * ROLLUP_HOUR_US).min(last - 1);
        let mut h = from;
        while h <= to {
            let entry = hours.entry(h).or_insert_with(|| Some(BTreeSet::new()));
            match f.tag(TAG_ROLLUP) {
                Some(id) => {
                    if let Some(ids) = entry.as_mut() {
                        ids.insert(id);
                    }
                }
                None => *entry = None,
            }
            h += ROLLUP_HOUR_US;
        }
    }
    let mut plan = RollupPlan::default();
    // Hours no file touches have no rows at all: rollups answer them (with nothing).
    let mut h = first;
    while h < last {
        let covered = match hours.get(&h) {
            None => true,
            Some(Some(ids)) => {
                plan.ids.extend(ids.iter().map(|s| (*s).to_owned()));
                true
            }
            Some(None) => false,
        };
        if covered {
            match plan.intervals.last_mut() {
                Some((_, b)) if *b == h => *b = h + ROLLUP_HOUR_US,
                _ => plan.intervals.push((h, h + ROLLUP_HOUR_US)),
            }
        }
        h += ROLLUP_HOUR_US;
    }
    (!plan.intervals.is_empty() && !plan.ids.is_empty()).then_some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = ROLLUP_HOUR_US;

    fn file(service: &str, lo: i64, hi: i64, rollup: Option<&str>) -> DataFile {
        let tags: Vec<(&str, &str)> = rollup.map(|id| (TAG_ROLLUP, id)).into_iter().collect();
        let mut f = DataFile::described("f", 1, Some((lo, hi)), &tags);
        f.partition.insert("tenant".into(), "t".into());
        f.partition.insert("service_name".into(), service.into());
        f
    }

    #[test]
    fn whole_hours_with_rollups_everywhere_are_covered() {
        let files = vec![
            file("api", 0, H - 1, Some("a")),
            file("api", H, 2 * H - 1, Some("b")),
            file("api", 2 * H + 5 * SLACK_US, 3 * H - 10, None), // raw: hour 2 stays raw
            file("db", 0, 5 * H, None),                          // another service: ignored
        ];
        // Range 00:00:00 .. 02:59:59.999999: hours 0, 1 covered, 2 raw.
        let p = plan(&files, "t", "api", 0, Some(3 * H - 1)).unwrap();
        assert_eq!(p.intervals, vec![(0, 2 * H)]);
        assert_eq!(p.ids, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(p.hours(), 2);
        // A range starting mid-hour leaves that hour to the raw rows.
        let p = plan(&files, "t", "api", 10, Some(3 * H - 1)).unwrap();
        assert_eq!(p.intervals, vec![(H, 2 * H)]);
        // A range ending mid-hour too.
        let p = plan(&files, "t", "api", 0, Some(2 * H - 2)).unwrap();
        assert_eq!(p.intervals, vec![(0, H)]);
    }

    #[test]
    fn a_file_reaching_into_an_hour_makes_it_raw() {
        // The hour-0 merge also holds rows of 01:00:00.5; hour 1's late raw file has none of
        // hour 0 beyond the slack.
        let files = vec![
            file("api", 0, H + 500_000, Some("a")),
            file("api", H + 10 * SLACK_US, 2 * H - 1, None),
        ];
        let p = plan(&files, "t", "api", 0, Some(2 * H - 1)).unwrap();
        assert_eq!(p.intervals, vec![(0, H)]);
        // A raw file whose stats end within the slack of hour 0 makes hour 0 raw as well.
        let files = vec![
            file("api", 0, H - 1, Some("a")),
            file("api", H + SLACK_US / 2, 2 * H - 1, None),
        ];
        assert_eq!(plan(&files, "t", "api", 0, Some(2 * H - 1)), None);
    }

    #[test]
    fn nothing_to_gain_gives_no_plan() {
        let raw = vec![file("api", 0, 5 * H, None)];
        assert_eq!(plan(&raw, "t", "api", 0, None), None);
        let rolled = vec![file("api", 0, H - 1, Some("a"))];
        assert_eq!(plan(&rolled, "t", "api", 0, Some(H / 2)), None);
        assert_eq!(plan(&rolled, "t", "other", 0, None), None);
    }
}
