//! Series labels: validation and the reserved names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::LabelError;

/// The label that names the service; every series must carry it.
pub const SERVICE_NAME: &str = "service_name";
/// The label that carries the profile family (`process_cpu`, `memory`, ...).
pub const METRIC_NAME: &str = "__name__";
/// Reserved by the query API for the profile type ID.
pub const PROFILE_TYPE: &str = "__profile_type__";

/// Column names of the `samples` table that a label may not take.
pub const RESERVED_COLUMNS: &[&str] = &[
    "tenant",
    "service_name",
    "day",
    "profile_type",
    "time",
    "duration",
    "stack_id",
    "value",
];

/// Sample-label keys that identify one request or span: kept out of series labels because
/// each value would be its own series (unbounded cardinality).
pub const DROPPED_SAMPLE_LABELS: &[&str] = &["span_id", "span_name", "profile_id", "trace_id"];

/// Limits on one series' labels (Pyroscope's per-tenant defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelLimits {
    /// Label names per series, `service_name` included.
    pub max_names: usize,
    /// Bytes in a label name.
    pub max_name_len: usize,
    /// Bytes in a label value.
    pub max_value_len: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self {
            max_names: 30,
            max_name_len: 1024,
            max_value_len: 2048,
        }
    }
}

/// A validated, sorted label set: name → value. `service_name` is always present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Validates `pairs` into a label set.
    ///
    /// Empty values are dropped (an empty value means "absent", as in Prometheus). `__name__`
    /// must already have been taken out by the caller: any other `__`-prefixed name is
    /// reserved and rejected.
    pub fn new<I, K, V>(pairs: I, limits: &LabelLimits) -> Result<Self, LabelError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            let (name, value) = (sanitize_name(name.into()), value.into());
            if value.is_empty() {
                continue;
            }
            validate_name(&name, limits)?;
            if value.len() > limits.max_value_len {
                return Err(LabelError::ValueTooLong {
                    name,
                    len: value.len(),
                    max: limits.max_value_len,
                });
            }
            if map.insert(name.clone(), value).is_some() {
                return Err(LabelError::Duplicate(name));
            }
        }
        if map.len() > limits.max_names {
            return Err(LabelError::TooMany {
                count: map.len(),
                max: limits.max_names,
            });
        }
        if !map.contains_key(SERVICE_NAME) {
            return Err(LabelError::MissingServiceName);
        }
        Ok(Self(map))
    }

    /// The service this series belongs to.
    pub fn service_name(&self) -> &str {
        self.0.get(SERVICE_NAME).map(String::as_str).unwrap_or("")
    }

    /// Looks up one label.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Labels in name order, `service_name` included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Labels other than `service_name`: the ones stored as their own columns.
    pub fn extra(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter(|(k, _)| *k != SERVICE_NAME)
    }

    /// Adds labels, validating them; a name already present is overridden by `other`.
    pub fn merged_with(
        &self,
        other: &[(String, String)],
        limits: &LabelLimits,
    ) -> Result<Self, LabelError> {
        if other.is_empty() {
            return Ok(self.clone());
        }
        let mut map = self.0.clone();
        for (name, value) in other {
            if value.is_empty() {
                continue;
            }
            let name = &sanitize_name(name.clone());
            validate_name(name, limits)?;
            if value.len() > limits.max_value_len {
                return Err(LabelError::ValueTooLong {
                    name: name.clone(),
                    len: value.len(),
                    max: limits.max_value_len,
                });
            }
            map.insert(name.clone(), value.clone());
        }
        if map.len() > limits.max_names {
            return Err(LabelError::TooMany {
                count: map.len(),
                max: limits.max_names,
            });
        }
        Ok(Self(map))
    }
}

/// Dotted names, as OpenTelemetry and pyroscope-rs SDKs send (`otel.scope.name`,
/// `process.runtime.name`), are stored with `_` for `.` (`otel_scope_name`), the way
/// Prometheus translates OTel attribute names. Other names are left for [`validate_name`].
pub fn sanitize_name(name: String) -> String {
    if name.contains('.') {
        name.replace('.', "_")
    } else {
        name
    }
}

/// Checks a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved, not too long.
///
/// Names become column names of the `samples` table, so they must be plain identifiers
/// that every Delta reader (Spark, Trino, DuckDB) accepts without quoting tricks.
pub fn validate_name(name: &str, limits: &LabelLimits) -> Result<(), LabelError> {
    if name.len() > limits.max_name_len {
        return Err(LabelError::NameTooLong {
            len: name.len(),
            max: limits.max_name_len,
        });
    }
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if !valid {
        return Err(LabelError::InvalidName(truncate_for_message(name)));
    }
    if name.starts_with("__") {
        return Err(LabelError::ReservedName(name.to_owned()));
    }
    if name != SERVICE_NAME && RESERVED_COLUMNS.contains(&name) {
        return Err(LabelError::ReservedName(name.to_owned()));
    }
    Ok(())
}

/// Shortens untrusted text before it goes into an error message.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Result<Labels, LabelError> {
        Labels::new(pairs.iter().copied(), &LabelLimits::default())
    }

    #[test]
    fn accepts_plain_labels_and_drops_empty_values() {
        let l = labels(&[("service_name", "api"), ("env", "prod"), ("region", "")]).unwrap();
        assert_eq!(l.service_name(), "api");
        assert_eq!(l.get("env"), Some("prod"));
        assert_eq!(l.get("region"), None);
        assert_eq!(l.extra().count(), 1);
        let l = labels(&[("service_name", "api"), ("otel.scope.name", "py")]).unwrap();
        assert_eq!(
            l.get("otel_scope_name"),
            Some("py"),
            "dots become underscores"
        );
        let dup = labels(&[("service_name", "api"), ("a.b", "1"), ("a_b", "2")]);
        assert!(matches!(dup, Err(LabelError::Duplicate(_))));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "1abc", "a-b", "a b", "", "ünï", "__x__", "time", "stack_id", "day",
        ] {
            let err = labels(&[("service_name", "api"), (bad, "v")]).unwrap_err();
            assert!(
                matches!(
                    err,
                    LabelError::InvalidName(_) | LabelError::ReservedName(_)
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn enforces_limits() {
        let limits = LabelLimits {
            max_names: 2,
            max_name_len: 12,
            max_value_len: 3,
        };
        let err = Labels::new([("service_name", "a"), ("x", "1"), ("y", "2")], &limits);
        assert!(matches!(err, Err(LabelError::TooMany { count: 3, max: 2 })));
        let err = Labels::new([("service_name", "a"), ("x_longer_than_12", "1")], &limits);
        assert!(matches!(err, Err(LabelError::NameTooLong { .. })));
        let err = Labels::new([("service_name", "abcd")], &limits);
        assert!(matches!(err, Err(LabelError::ValueTooLong { .. })));
    }

    #[test]
    fn requires_service_name_and_unique_names() {
        assert!(matches!(
            labels(&[("env", "prod")]),
            Err(LabelError::MissingServiceName)
        ));
        assert!(matches!(
            labels(&[("service_name", "a"), ("env", "x"), ("env", "y")]),
            Err(LabelError::Duplicate(_))
        ));
    }
}
