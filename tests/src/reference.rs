//! Reference computations over raw pprof messages, independent of stackdrift's code paths.

use std::collections::{BTreeMap, HashSet};

use stackdrift_proto::pprof::Profile;

/// `function → (self, total)` for the sample type named `sample_type`, computed directly
/// from the pprof: self goes to the innermost frame of the first location, total to every
/// distinct function on the stack once.
pub fn function_totals(p: &Profile, sample_type: &str) -> BTreeMap<String, (i64, i64)> {
    let Some(index) = p
        .sample_type
        .iter()
        .position(|vt| p.string_table[vt.r#type as usize] == sample_type)
    else {
        return BTreeMap::new();
    };
    let functions: BTreeMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string_table[f.name as usize].as_str()))
        .collect();
    let locations: BTreeMap<u64, Vec<&str>> = p
        .location
        .iter()
        .map(|l| {
            let names = if l.line.is_empty() {
                vec![""]
            } else {
                l.line
                    .iter()
                    .map(|line| functions[&line.function_id])
                    .collect()
            };
            (l.id, names)
        })
        .collect();
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in &p.sample {
        let v = s.value[index];
        if v == 0 {
            continue;
        }
        let names: Vec<&str> = s
            .location_id
            .iter()
            .flat_map(|l| locations[l].iter().copied())
            .collect();
        out.entry(names[0].to_owned()).or_default().0 += v;
        let mut seen = HashSet::new();
        for n in names {
            if seen.insert(n) {
                out.entry(n.to_owned()).or_default().1 += v;
            }
        }
    }
    out
}

/// Adds `b` into `a`, function by function.
pub fn add_totals(a: &mut BTreeMap<String, (i64, i64)>, b: &BTreeMap<String, (i64, i64)>) {
    for (k, (s, t)) in b {
        let e = a.entry(k.clone()).or_default();
        e.0 += s;
        e.1 += t;
    }
}
