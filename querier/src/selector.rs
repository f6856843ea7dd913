//! Prometheus-style label selectors, as Grafana's Pyroscope datasource sends them.
//!
//! ```text
//!  {service_name="checkout", region!="", pod=~"api-.*", __name__!~"memory"}
//!        │ FromStr                           │ Selector::to_expr(columns)
//!        ▼                                   ▼
//!  Selector { matchers }  ───────────▶  DataFusion filter over `samples`
//! ```
//!
//! Semantics follow Prometheus: a label a row does not have is the empty string, regex matchers
//! are fully anchored (`^(?:re)$`), and all matchers must hold.
//!
//! Label → column mapping in [`Selector::to_expr`]:
//! * `__profile_type__` → `profile_type`; `__name__` → the family, the part of `profile_type`
//!   before the first `:`.
//! * any other label that is a column (e.g. `service_name`, `region`) → that column, NULL read as "".
//! * a label that is not a column, or that names one of the fixed non-label columns (`tenant`,
//!   `day`, `time`, `duration`, `stack_id`, `value`, `profile_type`) → "" for every row, so the
//!   matcher is decided at plan time.

use std::fmt;
use std::str::FromStr;

use datafusion::functions::expr_fn::split_part;
use datafusion::logical_expr::{BinaryExpr, Operator};
use datafusion::prelude::{Expr, ident, lit};
use regex::Regex;
use thiserror::Error;

/// Reserved label: the full profile type (`process_cpu:cpu:nanoseconds:cpu:nanoseconds`).
pub const PROFILE_TYPE_LABEL: &str = "__profile_type__";
/// Reserved label: the profile family, the part of the profile type before the first `:`.
pub const NAME_LABEL: &str = "__name__";

const PROFILE_TYPE_COLUMN: &str = "profile_type";

/// Columns of `samples` that are not labels: a matcher naming one never reads them.
pub const NOT_LABELS: &[&str] = &[
    PROFILE_TYPE_COLUMN,
    "tenant",
    "day",
    "time",
    "duration",
    "stack_id",
    "value",
];

const NAME_RULE: &str = "label names must match [a-zA-Z_][a-zA-Z0-9_]*";

/// A selector that does not parse (or a matcher that cannot be built).
///
/// Displays as one line: `label selector: <problem> at position <byte offset>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("label selector: {message} at position {position}")]
pub struct SelectorError {
    message: String,
    position: usize,
}

impl SelectorError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            position,
        }
    }

    /// The problem, without the prefix and position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte offset in the input where the problem is (0 for [`Matcher::new`]).
    pub fn position(&self) -> usize {
        self.position
    }
}

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

impl MatchOp {
    /// The operator as written in a selector.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, Self::Regex | Self::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `name op "value"` term of a selector.
#[derive(Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value, unescaped; for regex operators the (unanchored) pattern.
    pub value: String,
    /// The anchored pattern, compiled when the matcher was built (regex operators only).
    re: Option<Regex>,
}

impl Matcher {
    /// A matcher, validated like a parsed one: the name must be a Prometheus label name and a
    /// regex value must compile.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, SelectorError> {
        let name = name.into();
        if let Some(problem) = name_problem(&name) {
            return Err(SelectorError::new(0, problem));
        }
        Self::build(name, op, value.into()).map_err(|m| SelectorError::new(0, m))
    }

    fn build(name: String, op: MatchOp, value: String) -> Result<Self, String> {
        let re = if op.is_regex() {
            Some(
                compile_checked(&value)
                    .map_err(|e| format!("invalid regex {value:?} for label {name:?}: {e}"))?,
            )
        } else {
            None
        };
        Ok(Self {
            name,
            op,
            value,
            re,
        })
    }

    /// Whether a label value satisfies the matcher; pass "" for an absent label.
    ///
    /// A regex that does not compile (possible only if `value` was changed after construction)
    /// matches nothing.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex_matches(value),
            MatchOp::NotRegex => !self.regex_matches(value),
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        match &self.re {
            // The cache is used only while it still reflects `value` (the fields are public).
            Some(re) if unanchor(re.as_str()) == Some(self.value.as_str()) => re.is_match(value),
            _ => compile_anchored(&self.value).is_ok_and(|re| re.is_match(value)),
        }
    }

    /// The filter for this matcher, or `Err(constant)` when the label is no column.
    fn to_expr(&self, columns: &[&str]) -> Result<Expr, bool> {
        let Some(e) = label_expr(&self.name, columns) else {
            return Err(self.matches(""));
        };
        // A regex without metacharacters matches exactly itself: compare instead (prunable).
        let literal = self.op.is_regex() && regex::escape(&self.value) == self.value;
        let value = || lit(self.value.clone());
        let regex = |op| {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(e.clone()),
                op,
                Box::new(lit(anchor(&self.value))),
            ))
        };
        let cond = match self.op {
            MatchOp::Equal => e.clone().eq(value()),
            MatchOp::NotEqual => e.clone().not_eq(value()),
            MatchOp::Regex if literal => e.clone().eq(value()),
            MatchOp::NotRegex if literal => e.clone().not_eq(value()),
            MatchOp::Regex => regex(Operator::RegexMatch),
            MatchOp::NotRegex => regex(Operator::RegexNotMatch),
        };
        // `cond` is NULL on NULL rows (excluded); a NULL is "", so add them back when "" matches.
        // This keeps the plain `col = 'v'` form that statistics pruning understands.
        Ok(if self.matches("") {
            e.is_null().or(cond)
        } else {
            cond
        })
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("name", &self.name)
            .field("op", &self.op)
            .field("value", &self.value)
            .finish()
    }
}

impl fmt::Display for Matcher {
    /// `name op "value"`, escaped so that it parses back to the same matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op)?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// A parsed selector: all matchers must hold. No matchers matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The matchers, in input order.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Whether a label set satisfies every matcher. `get` returns a label's value (`None` for
    /// absent, read as ""); it is asked for the names as written, reserved ones included.
    pub fn matches<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(get(&m.name).unwrap_or("")))
    }

    /// The filter over the `samples` table. `columns` lists the table's column names.
    ///
    /// `None` when there are no matchers. Matchers on labels that are no column are decided
    /// here: a selector that can match no row yields `lit(false)`, one whose matchers all hold
    /// for every row yields `lit(true)`.
    pub fn to_expr(&self, columns: &[&str]) -> Option<Expr> {
        if self.matchers.is_empty() {
            return None;
        }
        let mut parts = Vec::with_capacity(self.matchers.len());
        for m in &self.matchers {
            match m.to_expr(columns) {
                Ok(e) => parts.push(e),
                Err(true) => {}
                Err(false) => return Some(lit(false)),
            }
        }
        Some(parts.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
    }

    /// The value an `=` matcher pins for `name`, if any (the first such matcher).
    pub fn equal_value(&self, name: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.op == MatchOp::Equal && m.name == name)
            .map(|m| m.value.as_str())
    }

    /// Whether the selector has no matchers (matches everything).
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// Parses `{name="v", name!="v", name=~"re", name!~"re"}`, `{}` or "" (match everything).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser { src: s, pos: 0 }.selector()
    }
}

/// The expression a label reads, or `None` when no column holds it (value "" everywhere).
pub fn label_expr(name: &str, columns: &[&str]) -> Option<Expr> {
    let has = |c: &str| columns.contains(&c);
    match name {
        PROFILE_TYPE_LABEL => has(PROFILE_TYPE_COLUMN).then(|| ident(PROFILE_TYPE_COLUMN)),
        NAME_LABEL => has(PROFILE_TYPE_COLUMN)
            .then(|| split_part(ident(PROFILE_TYPE_COLUMN), lit(":"), lit(1))),
        n if NOT_LABELS.contains(&n) => None,
        n => has(n).then(|| ident(n)),
    }
}

fn anchor(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn unanchor(anchored: &str) -> Option<&str> {
    anchored.strip_prefix("^(?:")?.strip_suffix(")$")
}

fn compile_anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&anchor(pattern))
}

/// Compiles the anchored pattern after checking the pattern on its own, so that a value like
/// `a)|(b` cannot escape the anchoring group and errors point into the user's pattern.
fn compile_checked(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| regex_error_line(&e))?;
    compile_anchored(pattern).map_err(|e| regex_error_line(&e))
}

/// The informative line of a regex error (syntax errors span several lines).
fn regex_error_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .or_else(|| text.lines().next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Why `name` is not a valid label name, if it is not.
fn name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("empty label name".to_owned()),
        Some(c) if !(c == '_' || c.is_ascii_alphabetic()) => Some(format!(
            "invalid label name {name:?}: must start with a letter or '_' ({NAME_RULE})"
        )),
        Some(_) => chars
            .find(|c| !(*c == '_' || c.is_ascii_alphanumeric()))
            .map(|c| format!("invalid character {c:?} in label name {name:?} ({NAME_RULE})")),
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// What is at the current position, for messages.
    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_owned(),
        }
    }

    fn err<T>(&self, position: usize, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError::new(position, message))
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        match self.peek() {
            None => return Ok(Selector::default()),
            Some('{') => {
                self.bump();
            }
            Some(_) => {
                return self.err(self.pos, format!("expected '{{', found {}", self.found()));
            }
        }
        let mut matchers = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.bump();
                    break;
                }
                None => return self.err(self.pos, "unexpected end of input: missing '}'"),
                Some(_) => {}
            }
            let m = self.matcher()?;
            let name = m.name.clone();
            matchers.push(m);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {
                    self.bump();
                    break;
                }
                None => return self.err(self.pos, "unexpected end of input: missing '}'"),
                Some(c) => {
                    return self.err(
                        self.pos,
                        format!("expected ',' or '}}' after the matcher on {name:?}, found {c:?}"),
                    );
                }
            }
        }
        self.skip_ws();
        if let Some(c) = self.peek() {
            return self.err(self.pos, format!("unexpected {c:?} after the closing '}}'"));
        }
        Ok(Selector { matchers })
    }

    fn matcher(&mut self) -> Result<Matcher, SelectorError> {
        let name = self.label_name()?;
        self.skip_ws();
        let op = self.op(name)?;
        self.skip_ws();
        let value_pos = self.pos;
        let value = self.quoted(name, op)?;
        Matcher::build(name.to_owned(), op, value).map_err(|m| SelectorError::new(value_pos, m))
    }

    fn label_name(&mut self) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {}
            Some(c) if c.is_ascii_digit() => {
                return self.err(
                    start,
                    format!("invalid label name: must start with a letter or '_', found {c:?}"),
                );
            }
            Some('"' | '\'' | '`') => {
                return self.err(start, "quoted label names are not supported");
            }
            Some(c) => return self.err(start, format!("expected a label name, found {c:?}")),
            None => return self.err(start, "unexpected end of input: expected a label name"),
        }
        while self
            .peek()
            .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            self.bump();
        }
        let name = &self.src[start..self.pos];
        match self.peek() {
            Some(c)
                if !c.is_whitespace() && !matches!(c, '=' | '!' | ',' | '}' | '"' | '\'' | '`') =>
            {
                self.err(
                    self.pos,
                    format!("invalid character {c:?} in label name {name:?} ({NAME_RULE})"),
                )
            }
            _ => Ok(name),
        }
    }

    fn op(&mut self, name: &str) -> Result<MatchOp, SelectorError> {
        let rest = &self.src[self.pos..];
        let op = if rest.starts_with("==") {
            return self.err(
                self.pos,
                format!("invalid operator '==' after {name:?} (use '=' for equality)"),
            );
        } else if rest.starts_with("=~") {
            MatchOp::Regex
        } else if rest.starts_with("!~") {
            MatchOp::NotRegex
        } else if rest.starts_with("!=") {
            MatchOp::NotEqual
        } else if rest.starts_with('=') {
            MatchOp::Equal
        } else {
            return self.err(
                self.pos,
                format!(
                    "expected '=', '!=', '=~' or '!~' after {name:?}, found {}",
                    self.found()
                ),
            );
        };
        self.pos += op.as_str().len();
        Ok(op)
    }

    /// A `"…"` or `'…'` value (escapes `\" \' \\ \n \t \r`) or a raw `` `…` `` value.
    fn quoted(&mut self, name: &str, op: MatchOp) -> Result<String, SelectorError> {
        let open = self.pos;
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => {
                return self.err(
                    open,
                    format!(
                        "expected a quoted value after {name:?}{op}, found {}",
                        self.found()
                    ),
                );
            }
        };
        self.bump();
        let unterminated = |p: &Self| {
            p.err(
                open,
                format!("unterminated quoted value for {name:?}: missing closing {quote}"),
            )
        };
        let mut out = String::new();
        loop {
            let at = self.pos;
            let c = match self.bump() {
                None => return unterminated(self),
                Some(c) if c == quote => return Ok(out),
                Some(c) if quote == '`' => c,
                Some('\n') => {
                    return self.err(
                        at,
                        format!(
                            "newline in quoted value for {name:?} (write \\n, or close the quote)"
                        ),
                    );
                }
                Some('\\') => match self.bump() {
                    Some('"') => '"',
                    Some('\'') => '\'',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(e) => {
                        return self.err(
                            at,
                            format!(
                                "unknown escape sequence \"\\{e}\" in value for {name:?} (write \\\\ for a literal backslash, or use a `raw` value)"
                            ),
                        );
                    }
                    None => return unterminated(self),
                },
                Some(c) => c,
            };
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn parse(s: &str) -> Selector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn triples(s: &str) -> Vec<(String, MatchOp, String)> {
        parse(s)
            .matchers
            .into_iter()
            .map(|m| (m.name, m.op, m.value))
            .collect()
    }

    fn t(name: &str, op: MatchOp, value: &str) -> (String, MatchOp, String) {
        (name.to_owned(), op, value.to_owned())
    }

    fn matcher(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).expect("valid matcher")
    }

    #[test]
    fn parses_all_four_operators() {
        assert_eq!(
            triples(r#"{a="1",b!="2",c=~"3.*",d!~"4|5"}"#),
            vec![
                t("a", MatchOp::Equal, "1"),
                t("b", MatchOp::NotEqual, "2"),
                t("c", MatchOp::Regex, "3.*"),
                t("d", MatchOp::NotRegex, "4|5"),
            ]
        );
    }

    #[test]
    fn parses_whitespace_between_tokens() {
        assert_eq!(
            triples(" \t{ service_name = \"x\" ,\n region !~ \"eu-.*\"\t} \n"),
            vec![
                t("service_name", MatchOp::Equal, "x"),
                t("region", MatchOp::NotRegex, "eu-.*"),
            ]
        );
    }

    #[test]
    fn parses_escapes_in_double_quotes() {
        assert_eq!(
            triples(r#"{a="q\"b\\s\nl\tt\'x"}"#),
            vec![t("a", MatchOp::Equal, "q\"b\\s\nl\tt'x")]
        );
        // a regex needing a literal dot
        let s = parse(r#"{host=~"a\\.b"}"#);
        assert_eq!(s.matchers[0].value, r"a\.b");
        assert!(s.matchers[0].matches("a.b"));
        assert!(!s.matchers[0].matches("axb"));
    }

    #[test]
    fn parses_single_quoted_and_backtick_values() {
        assert_eq!(
            triples(r#"{a='it\'s "x"', b=`raw\d+\n"'`}"#),
            vec![
                t("a", MatchOp::Equal, "it's \"x\""),
                t("b", MatchOp::Equal, "raw\\d+\\n\"'"),
            ]
        );
        // backticks may span lines
        assert_eq!(triples("{a=`x\ny`}"), vec![t("a", MatchOp::Equal, "x\ny")]);
    }

    #[test]
    fn parses_trailing_comma_and_empty_selectors() {
        assert_eq!(triples(r#"{a="1", }"#), vec![t("a", MatchOp::Equal, "1")]);
        assert!(parse("{}").matchers.is_empty());
        assert!(parse("  {  }  ").matchers.is_empty());
        assert!(parse("").matchers.is_empty());
        assert!(parse("   ").is_empty());
    }

    #[test]
    fn rejects_bad_inputs_with_a_named_problem() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{a="1""#, &["missing '}'", "position 6"]),
            (r#"{a="1" b="2"}"#, &["expected ',' or '}'", "position 7"]),
            (
                r#"{a="1}"#,
                &["unterminated", "missing closing \"", "position 3"],
            ),
            (r#"{a=1}"#, &["expected a quoted value", "found '1'"]),
            (r#"{1a="x"}"#, &["invalid label name", "'1'", "position 1"]),
            (
                r#"{service.name="x"}"#,
                &["invalid character '.'", "\"service\"", "position 8"],
            ),
            (r#"{"a"="x"}"#, &["quoted label names"]),
            (r#"{env=="x"}"#, &["invalid operator '=='", "position 4"]),
            (
                r#"{env > "x"}"#,
                &[
                    "expected '=', '!=', '=~' or '!~' after \"env\"",
                    "position 5",
                ],
            ),
            (r#"{env}"#, &["expected '='", "after \"env\"", "found '}'"]),
            (
                r#"{a=~"("}"#,
                &["invalid regex \"(\"", "unclosed group", "position 4"],
            ),
            (r#"{a!~"x)|(y"}"#, &["invalid regex", "unopened group"]),
            (
                r#"{a="1"} x"#,
                &["unexpected 'x' after the closing '}'", "position 8"],
            ),
            (r#"{a="1"}}"#, &["after the closing '}'"]),
            (r#"a="1""#, &["expected '{'", "position 0"]),
            (r#"{a="x\qy"}"#, &["unknown escape sequence \"\\q\""]),
            ("{a=\"x\ny\"}", &["newline in quoted value"]),
            (r#"{,}"#, &["expected a label name, found ','"]),
            ("{", &["missing '}'"]),
            ("{a", &["expected '='", "found end of input"]),
        ];
        for (input, needles) in cases {
            let err = input
                .parse::<Selector>()
                .expect_err(&format!("{input:?} should not parse"));
            let msg = err.to_string();
            assert!(msg.starts_with("label selector: "), "{input:?}: {msg}");
            assert!(!msg.contains('\n'), "{input:?}: multi-line message {msg:?}");
            for needle in *needles {
                assert!(msg.contains(needle), "{input:?}: {msg:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn error_display_has_problem_and_position() {
        let err = "{env".parse::<Selector>().unwrap_err();
        assert_eq!(err.position(), 4);
        assert_eq!(
            err.to_string(),
            "label selector: expected '=', '!=', '=~' or '!~' after \"env\", found end of input at position 4"
        );
    }

    #[test]
    fn display_round_trips() {
        let s = parse(r#"{a="q\"b\\\n", b!~`x.*`, c='y'}"#);
        let shown = s.to_string();
        assert_eq!(shown, r#"{a="q\"b\\\n", b!~"x.*", c="y"}"#);
        assert_eq!(parse(&shown), s);
    }

    #[test]
    fn matcher_semantics() {
        let eq = matcher("service_name", MatchOp::Equal, "pay");
        assert!(eq.matches("pay"));
        assert!(!eq.matches("payments"));
        let ne = matcher("service_name", MatchOp::NotEqual, "pay");
        assert!(ne.matches("payments") && ne.matches("") && !ne.matches("pay"));

        // fully anchored
        let re = matcher("service_name", MatchOp::Regex, "pay");
        assert!(re.matches("pay"));
        assert!(!re.matches("payments"));
        assert!(!re.matches("repay"));
        let re = matcher("service_name", MatchOp::Regex, "pay.*");
        assert!(re.matches("payments") && re.matches("pay"));
        assert!(!re.matches("repay"));
        // alternation stays inside the anchors
        let re = matcher("service_name", MatchOp::Regex, "a|b");
        assert!(re.matches("a") && re.matches("b"));
        assert!(!re.matches("ab") && !re.matches("xa"));

        let nre = matcher("service_name", MatchOp::NotRegex, "pay");
        assert!(nre.matches("payments"));
        assert!(!nre.matches("pay"));

        // absent label is ""
        assert!(matcher("x", MatchOp::Equal, "").matches(""));
        assert!(!matcher("x", MatchOp::NotEqual, "").matches(""));
        assert!(matcher("x", MatchOp::Regex, ".*").matches(""));
        assert!(!matcher("x", MatchOp::Regex, ".+").matches(""));
        assert!(matcher("x", MatchOp::NotRegex, ".+").matches(""));
    }

    #[test]
    fn matcher_follows_changed_value() {
        let mut m = matcher("a", MatchOp::Regex, "x.*");
        assert!(m.matches("xyz"));
        m.value = "y.*".to_owned();
        assert!(!m.matches("xyz"));
        assert!(m.matches("yes"));
    }

    #[test]
    fn matcher_new_validates() {
        assert!(Matcher::new("1a", MatchOp::Equal, "x").is_err());
        assert!(Matcher::new("a.b", MatchOp::Equal, "x").is_err());
        assert!(Matcher::new("", MatchOp::Equal, "x").is_err());
        let err = Matcher::new("a", MatchOp::Regex, "[").unwrap_err();
        assert!(err.to_string().contains("invalid regex"), "{err}");
        assert!(Matcher::new("a", MatchOp::Equal, "[").is_ok());
    }

    #[test]
    fn selector_matches_label_sets() {
        let labels: HashMap<String, String> = [("service_name", "payments"), ("region", "eu")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let get = |n: &str| labels.get(n).map(String::as_str);
        assert!(parse(r#"{service_name=~"pay.*", region="eu", pod=""}"#).matches(get));
        assert!(!parse(r#"{service_name=~"pay.*", region="us"}"#).matches(get));
        assert!(!parse(r#"{pod!=""}"#).matches(get));
        assert!(parse("{}").matches(get));
    }

    #[test]
    fn equal_value_finds_pinned_values() {
        let s = parse(r#"{service_name!="a", service_name="pay", region=~"eu", service_name="b"}"#);
        assert_eq!(s.equal_value("service_name"), Some("pay"));
        assert_eq!(s.equal_value("region"), None);
        assert_eq!(s.equal_value("pod"), None);
        assert_eq!(parse(r#"{a=""}"#).equal_value("a"), Some(""));
    }

    #[test]
    fn to_expr_none_without_matchers_and_constants_for_missing_labels() {
        let cols = ["profile_type", "region"];
        assert!(parse("{}").to_expr(&cols).is_none());
        assert_eq!(parse(r#"{pod=""}"#).to_expr(&cols), Some(lit(true)));
        assert_eq!(
            parse(r#"{pod="x", region="eu"}"#).to_expr(&cols),
            Some(lit(false))
        );
        assert_eq!(
            parse(r#"{tenant="acme"}"#).to_expr(&["tenant"]),
            Some(lit(false))
        );
    }

    // ---- evaluated by DataFusion ----

    const PROFILE_TYPES: [&str; 5] = [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "memory:alloc_space:bytes:space:bytes",
        "process_cpu:samples:count:cpu:milliseconds",
        "memory:inuse_space:bytes:space:bytes",
        "wall",
    ];

    /// Rows: id 0..5. `region` has a NULL (row 1) and an empty string (row 3).
    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("profile_type", DataType::Utf8, false),
            Field::new("service_name", DataType::Utf8, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("Region", DataType::Utf8, true),
            Field::new("tenant", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![0, 1, 2, 3, 4])),
                Arc::new(StringArray::from(PROFILE_TYPES.to_vec())),
                Arc::new(StringArray::from(vec![
                    "payments",
                    "payments-api",
                    "checkout",
                    "payments",
                    "repay",
                ])),
                Arc::new(StringArray::from(vec![
                    Some("eu-west"),
                    None,
                    Some("us-east"),
                    Some(""),
                    Some("eu-north"),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("A"),
                    Some("B"),
                    None,
                    Some("A"),
                    Some("C"),
                ])),
                Arc::new(StringArray::from(vec!["acme"; 5])),
            ],
        )
        .expect("batch")
    }

    const COLUMNS: [&str; 6] = [
        "id",
        "profile_type",
        "service_name",
        "region",
        "Region",
        "tenant",
    ];

    /// The ids of the rows `selector` keeps, and check `Selector::matches` agrees on each row.
    async fn select(ctx: &SessionContext, selector: &str) -> Vec<i64> {
        let sel = parse(selector);
        let df = ctx.table("t").await.expect("table");
        let df = match sel.to_expr(&COLUMNS) {
            Some(e) => df.filter(e).expect("filter plans"),
            None => df,
        };
        let mut ids = Vec::new();
        for b in df.collect().await.expect("query runs") {
            let col = b
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .expect("id column");
            ids.extend(col.values().iter().copied());
        }
        ids.sort_unstable();

        // the in-memory evaluation selects the same rows
        let b = batch();
        let text = |name: &str, row: usize| -> Option<String> {
            let a = b
                .column_by_name(name)?
                .as_any()
                .downcast_ref::<StringArray>()?;
            a.is_valid(row).then(|| a.value(row).to_owned())
        };
        let expected: Vec<i64> = (0..b.num_rows())
            .filter(|&row| {
                let mut labels: HashMap<&str, String> = HashMap::new();
                let pt = text("profile_type", row).unwrap_or_default();
                labels.insert(NAME_LABEL, pt.split(':').next().unwrap_or("").to_owned());
                labels.insert(PROFILE_TYPE_LABEL, pt);
                for name in ["service_name", "region", "Region"] {
                    if let Some(v) = text(name, row) {
                        labels.insert(name, v);
                    }
                }
                sel.matches(|n| labels.get(n).map(String::as_str))
            })
            .map(|row| row as i64)
            .collect();
        assert_eq!(ids, expected, "{selector}: DataFusion vs Selector::matches");
        ids
    }

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch()).expect("register");
        ctx
    }

    #[tokio::test]
    async fn to_expr_operators() {
        let ctx = context().await;
        assert_eq!(select(&ctx, r#"{service_name="payments"}"#).await, [0, 3]);
        assert_eq!(
            select(&ctx, r#"{service_name!="payments"}"#).await,
            [1, 2, 4]
        );
        assert_eq!(
            select(&ctx, r#"{service_name=~"pay"}"#).await,
            Vec::<i64>::new()
        );
        assert_eq!(select(&ctx, r#"{service_name=~"pay.*"}"#).await, [0, 1, 3]);
        assert_eq!(
            select(&ctx, r#"{service_name=~"payments|checkout"}"#).await,
            [0, 2, 3]
        );
        assert_eq!(select(&ctx, r#"{service_name!~"pay.*"}"#).await, [2, 4]);
        assert_eq!(
            select(&ctx, r#"{service_name!~"payments"}"#).await,
            [1, 2, 4]
        );
        assert_eq!(
            select(&ctx, r#"{service_name=~"pay.*", region=~"eu-.*"}"#).await,
            [0]
        );
        assert_eq!(select(&ctx, "{}").await, [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn to_expr_reserved_labels() {
        let ctx = context().await;
        assert_eq!(select(&ctx, r#"{__name__="process_cpu"}"#).await, [0, 2]);
        assert_eq!(select(&ctx, r#"{__name__!="memory"}"#).await, [0, 2, 4]);
        assert_eq!(select(&ctx, r#"{__name__=~"mem.*"}"#).await, [1, 3]);
        assert_eq!(select(&ctx, r#"{__name__="wall"}"#).await, [4]);
        assert_eq!(
            select(
                &ctx,
                r#"{__profile_type__="memory:alloc_space:bytes:space:bytes"}"#
            )
            .await,
            [1]
        );
        assert_eq!(
            select(
                &ctx,
                r#"{__profile_type__=~"process_cpu:.*:cpu:nanoseconds"}"#
            )
            .await,
            [0]
        );
        // `process_cpu` alone is not a whole profile type
        assert_eq!(
            select(&ctx, r#"{__profile_type__="process_cpu"}"#).await,
            Vec::<i64>::new()
        );
    }

    #[tokio::test]
    async fn to_expr_null_is_empty_string() {
        let ctx = context().await;
        // row 1 is NULL, row 3 is ""
        assert_eq!(select(&ctx, r#"{region=""}"#).await, [1, 3]);
        assert_eq!(select(&ctx, r#"{region!=""}"#).await, [0, 2, 4]);
        assert_eq!(select(&ctx, r#"{region!="eu-west"}"#).await, [1, 2, 3, 4]);
        assert_eq!(select(&ctx, r#"{region=~"eu-.*|"}"#).await, [0, 1, 3, 4]);
        assert_eq!(select(&ctx, r#"{region=~".+"}"#).await, [0, 2, 4]);
        assert_eq!(select(&ctx, r#"{region!~"eu-.*"}"#).await, [1, 2, 3]);
        assert_eq!(select(&ctx, r#"{region!~".*"}"#).await, Vec::<i64>::new());
    }

    #[tokio::test]
    async fn to_expr_labels_not_in_columns() {
        let ctx = context().await;
        assert_eq!(select(&ctx, r#"{pod=""}"#).await, [0, 1, 2, 3, 4]);
        assert_eq!(select(&ctx, r#"{pod="x"}"#).await, Vec::<i64>::new());
        assert_eq!(select(&ctx, r#"{pod!~"x"}"#).await, [0, 1, 2, 3, 4]);
        assert_eq!(
            select(&ctx, r#"{pod="", service_name="checkout"}"#).await,
            [2]
        );
        // `tenant` is a column but no label: it reads as "" and is never consulted
        assert_eq!(select(&ctx, r#"{tenant="acme"}"#).await, Vec::<i64>::new());
        assert_eq!(select(&ctx, r#"{tenant=""}"#).await, [0, 1, 2, 3, 4]);
        assert_eq!(
            select(&ctx, r#"{profile_type=~"memory.*"}"#).await,
            Vec::<i64>::new()
        );
    }

    #[tokio::test]
    async fn to_expr_quotes_column_names() {
        let ctx = context().await;
        // `Region` and `region` are different columns
        assert_eq!(select(&ctx, r#"{Region="A"}"#).await, [0, 3]);
        assert_eq!(select(&ctx, r#"{Region=""}"#).await, [2]);
        assert_eq!(select(&ctx, r#"{Region=~"B|C", region!=""}"#).await, [4]);
    }
}
