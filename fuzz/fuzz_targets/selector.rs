//! The Prometheus-style label selector of `stackdrift_querier::selector`: parsing, the
//! DataFusion filter built from a parsed selector, and matching label sets.
//!
//! Never panics. Invariants: an error points inside the input; a parsed selector prints as
//! text that parses back to the same selector; its filter exists exactly when it has
//! matchers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stackdrift_querier::selector::Selector;

/// Columns of a `samples` table with two label columns.
const COLUMNS: &[&str] = &[
    "tenant",
    "day",
    "time",
    "duration",
    "profile_type",
    "stack_id",
    "value",
    "service_name",
    "env",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The selector is the first line; the rest are label values to match against.
    let (src, values) = text.split_once('\n').unwrap_or((text, ""));
    let selector: Selector = match src.parse() {
        Ok(s) => s,
        Err(e) => {
            assert!(e.position() <= src.len(), "error position {e} past the end");
            return;
        }
    };
    let shown = selector.to_string();
    let again: Selector = shown
        .parse()
        .unwrap_or_else(|e| panic!("{src:?} printed as {shown:?}, which does not parse: {e}"));
    assert_eq!(again, selector, "{src:?} printed as {shown:?}");

    let expr = selector.to_expr(COLUMNS);
    assert_eq!(expr.is_some(), !selector.is_empty());
    if let Some(e) = expr {
        let _ = e.to_string();
    }
    let _ = selector.to_expr(&[]);

    let mut lines = values.lines();
    let service = lines.next();
    let env = lines.next();
    let get = |name: &str| match name {
        "service_name" => service,
        "env" => env,
        _ => None,
    };
    let _ = selector.matches(get);
    for m in &selector.matchers {
        let _ = selector.equal_value(&m.name);
    }
});
