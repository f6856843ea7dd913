//! Retention and downsampling policies, and the small parsers their configuration needs
//! (durations such as `30d`, globs such as `*-canary`).

use std::time::Duration;

use serde::Deserialize;

/// Parses `90s`, `15m`, `24h`, `30d`, `2w` (or a bare number of seconds). `0`, `off`,
/// `never` and `forever` give `None` (no limit).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if matches!(t, "0" | "off" | "never" | "forever" | "none") {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 15m, 24h, 30d, 2w)"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use s, m, h, d or w)"
            ));
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_secs(n.saturating_mul(secs))))
}

/// Shell-style glob: `*` any run of characters, `?` one character, everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One retention rule: data of every tenant, service and profile type matching the set
/// globs is kept for `keep` (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// Tenant glob (`None`: any).
    pub tenant: Option<String>,
    /// Service glob (`None`: any).
    pub service: Option<String>,
    /// Profile type glob, over the full ID such as `memory:alloc_space:bytes:space:bytes`.
    pub profile_type: Option<String>,
    /// How long to keep matching data.
    pub keep: Option<Duration>,
}

impl RetentionRule {
    fn matches_series(&self, tenant: &str, service: &str) -> bool {
        self.tenant.as_deref().is_none_or(|g| glob_match(g, tenant))
            && self
                .service
                .as_deref()
                .is_none_or(|g| glob_match(g, service))
    }
}

/// Retention rules; the first rule that matches decides, else `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Kept this long when no rule matches (`None`: forever).
    pub default: Option<Duration>,
    /// Rules in priority order.
    pub rules: Vec<RetentionRule>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            default: Some(Duration::from_secs(30 * 86_400)),
            rules: Vec::new(),
        }
    }
}

/// The TOML form of a retention file:
///
/// ```toml
/// default = "30d"
/// [[rule]]
/// tenant = "acme"
/// keep = "90d"
/// [[rule]]
/// service = "*-canary"
/// keep = "3d"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    default: Option<String>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    tenant: Option<String>,
    service: Option<String>,
    profile_type: Option<String>,
    keep: String,
}

impl RetentionPolicy {
    /// Parses a retention file (TOML); `default` is used when the file sets none.
    pub fn from_toml(text: &str, default: Option<Duration>) -> Result<Self, String> {
        let file: RetentionFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let default = match file.default {
            Some(d) => parse_duration(&d)?,
            None => default,
        };
        let rules = file
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.tenant.is_none() && r.service.is_none() && r.profile_type.is_none() {
                    return Err(format!(
                        "rule {} matches everything: set tenant, service or profile_type, or use `default`",
                        i + 1
                    ));
                }
                Ok(RetentionRule {
                    tenant: r.tenant,
                    service: r.service,
                    profile_type: r.profile_type,
                    keep: parse_duration(&r.keep).map_err(|e| format!("rule {}: {e}", i + 1))?,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, rules })
    }

    /// How long data of (`tenant`, `service`, `profile_type`) is kept.
    pub fn keep(&self, tenant: &str, service: &str, profile_type: &str) -> Option<Duration> {
        self.rules
            .iter()
            .find(|r| {
                r.matches_series(tenant, service)
                    && r.profile_type
                        .as_deref()
                        .is_none_or(|g| glob_match(g, profile_type))
            })
            .map_or(self.default, |r| r.keep)
    }

    /// Every retention that can apply to some profile type of (`tenant`, `service`), and
    /// whether the answer depends on the profile type at all.
    pub fn candidates(&self, tenant: &str, service: &str) -> (Vec<Option<Duration>>, bool) {
        let mut out = Vec::new();
        let mut by_type = false;
        for r in self
            .rules
            .iter()
            .filter(|r| r.matches_series(tenant, service))
        {
            out.push(r.keep);
            if r.profile_type.is_none() {
                return (out, by_type);
            }
            by_type = true;
        }
        out.push(self.default);
        (out, by_type)
    }
}

/// The retention example of the docs (also what the tests check): 30 days by default, 90 for
/// tenant `acme`, 3 for `*-canary` services, 7 for memory profiles.
pub const EXAMPLE_RETENTION: &str = r#"
default = "30d"
[[rule]]
tenant = "acme"
keep = "90d"
[[rule]]
service = "*-canary"
keep = "3d"
[[rule]]
profile_type = "memory:*"
keep = "7d"
"#;

/// One downsampling tier: partitions whose whole day is older than `after` hold rows summed
/// into `bucket`-wide time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Age after which the tier applies.
    pub after: Duration,
    /// Bucket width.
    pub bucket: Duration,
}

/// Parses `24h=1m,7d=1h` (age=bucket, comma-separated); `off` or empty: no downsampling.
pub fn parse_tiers(text: &str) -> Result<Vec<Tier>, String> {
    let t = text.trim();
    if t.is_empty() || t == "off" || t == "none" {
        return Ok(Vec::new());
    }
    let mut tiers = t
        .split(',')
        .map(|part| {
            let (after, bucket) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected AGE=BUCKET, e.g. 24h=1m"))?;
            let after = parse_duration(after)?.unwrap_or_default();
            let bucket = parse_duration(bucket)?
                .ok_or_else(|| format!("{part:?}: the bucket must be longer than 0"))?;
            if bucket > Duration::from_secs(86_400) || 86_400 % bucket.as_secs().max(1) != 0 {
                return Err(format!(
                    "{part:?}: the bucket must divide a day (e.g. 10s, 1m, 5m, 1h)"
                ));
            }
            Ok(Tier { after, bucket })
        })
        .collect::<Result<Vec<_>, String>>()?;
    tiers.sort_by_key(|t| t.after);
    for pair in tiers.windows(2) {
        if pair[1].bucket <= pair[0].bucket {
            return Err("each later tier needs a wider bucket than the one before".into());
        }
        if pair[1].bucket.as_secs() % pair[0].bucket.as_secs().max(1) != 0 {
            return Err("each bucket must be a multiple of the one before".into());
        }
    }
    Ok(tiers)
}

/// The bucket for data `age` old: the widest tier whose age it has reached.
pub fn bucket_for_age(tiers: &[Tier], age: Duration) -> Option<Duration> {
    tiers
        .iter()
        .filter(|t| age >= t.after)
        .map(|t| t.bucket)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * DAY))
    }

    #[test]
    fn durations_parse_with_units_and_off() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("15m").unwrap(),
            Some(Duration::from_secs(900))
        );
        assert_eq!(parse_duration("30d").unwrap(), days(30));
        assert_eq!(parse_duration("2w").unwrap(), days(14));
        assert_eq!(parse_duration("off").unwrap(), None);
        assert_eq!(parse_duration("0").unwrap(), None);
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*-canary", "checkout-canary"));
        assert!(!glob_match("*-canary", "checkout"));
        assert!(glob_match(
            "memory:*",
            "memory:alloc_space:bytes:space:bytes"
        ));
        assert!(!glob_match(
            "memory:*",
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        ));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxxc"));
        assert!(glob_match("exact", "exact"));
    }

    fn example() -> RetentionPolicy {
        RetentionPolicy::from_toml(EXAMPLE_RETENTION, None).unwrap()
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = example();
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        let mem = "memory:alloc_space:bytes:space:bytes";
        assert_eq!(p.keep("t", "api", cpu), days(30));
        assert_eq!(p.keep("acme", "api", mem), days(90));
        assert_eq!(p.keep("acme", "api-canary", cpu), days(90));
        assert_eq!(p.keep("t", "api-canary", mem), days(3));
        assert_eq!(p.keep("t", "api", mem), days(7));
    }

    #[test]
    fn candidates_stop_at_the_first_rule_without_a_type() {
        let p = example();
        assert_eq!(p.candidates("acme", "x"), (vec![days(90)], false));
        assert_eq!(p.candidates("t", "x-canary"), (vec![days(3)], false));
        assert_eq!(p.candidates("t", "x"), (vec![days(7), days(30)], true));
    }

    #[test]
    fn retention_file_errors_name_the_problem() {
        let e = RetentionPolicy::from_toml("[[rule]]\nkeep = \"3d\"\n", None).unwrap_err();
        assert!(e.contains("matches everything"), "{e}");
        let e = RetentionPolicy::from_toml("[[rule]]\ntenant = \"a\"\nkeep = \"3x\"\n", None)
            .unwrap_err();
        assert!(e.contains("rule 1") && e.contains("unit"), "{e}");
        let e = RetentionPolicy::from_toml("colour = \"red\"\n", None).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let p = RetentionPolicy::from_toml("", days(5)).unwrap();
        assert_eq!(p.default, days(5));
    }

    #[test]
    fn tiers_parse_sort_and_pick_the_widest_reached() {
        let tiers = parse_tiers("7d=1h,24h=1m").unwrap();
        assert_eq!(tiers[0].bucket, Duration::from_secs(60));
        assert_eq!(bucket_for_age(&tiers, Duration::from_secs(3_600)), None);
        assert_eq!(
            bucket_for_age(&tiers, Duration::from_secs(2 * DAY)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            bucket_for_age(&tiers, Duration::from_secs(8 * DAY)),
            Some(Duration::from_secs(3_600))
        );
        assert!(parse_tiers("off").unwrap().is_empty());
        assert!(parse_tiers("24h=7m").is_err());
        assert!(parse_tiers("24h=1h,7d=1m").is_err());
        assert!(parse_tiers("24h").is_err());
    }
}
