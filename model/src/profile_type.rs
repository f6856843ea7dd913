//! Profile types: `name:sample_type:sample_unit:period_type:period_unit`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// One kind of profile, as Pyroscope and Grafana identify it, e.g.
/// `process_cpu:cpu:nanoseconds:cpu:nanoseconds` or `memory:alloc_space:bytes:space:bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProfileType {
    /// Profile family (`__name__`): `process_cpu`, `memory`, `wall`, ...
    pub name: String,
    /// pprof sample type, e.g. `cpu`, `alloc_space`.
    pub sample_type: String,
    /// pprof sample unit, e.g. `nanoseconds`, `bytes`.
    pub sample_unit: String,
    /// pprof period type, e.g. `cpu`, `space`.
    pub period_type: String,
    /// pprof period unit.
    pub period_unit: String,
}

impl ProfileType {
    /// The ID string used in the API and stored in the `profile_type` column.
    pub fn id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

impl FromStr for ProfileType {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 5 || parts[0].is_empty() || parts[1].is_empty() {
            return Err(DecodeError::ProfileType(format!(
                "{s:?} is not name:sample_type:sample_unit:period_type:period_unit"
            )));
        }
        Ok(Self {
            name: parts[0].to_owned(),
            sample_type: parts[1].to_owned(),
            sample_unit: parts[2].to_owned(),
            period_type: parts[3].to_owned(),
            period_unit: parts[4].to_owned(),
        })
    }
}

/// The profile family to use when a push names none: memory for allocation and in-use
/// sample types, `process_cpu` otherwise (what Pyroscope's SDKs send for CPU).
pub fn default_family(sample_type: &str) -> &'static str {
    if sample_type.starts_with("alloc_") || sample_type.starts_with("inuse_") {
        "memory"
    } else if sample_type == "contentions" || sample_type == "delay" {
        "mutex"
    } else if sample_type == "goroutine" || sample_type == "goroutines" {
        "goroutine"
    } else {
        "process_cpu"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips() {
        let id = "memory:alloc_space:bytes:space:bytes";
        let pt: ProfileType = id.parse().unwrap();
        assert_eq!(pt.name, "memory");
        assert_eq!(pt.sample_unit, "bytes");
        assert_eq!(pt.id(), id);
        assert!("a:b:c".parse::<ProfileType>().is_err());
        assert!(":b:c:d:e".parse::<ProfileType>().is_err());
    }
}
