//! Parsing tenant SQL with a bounded amount of work.
//!
//! sqlparser (0.62, under DataFusion 55) backtracks: where an expression may be one of
//! several things it tries one, and on failure rewinds and tries the next. Nested, those
//! retries multiply, so some short statements take exponential time to be refused: a dotted
//! name of 24 parts ending in an unclosed `[` (`SELECT a.a.…a[b`) parses for 11 s, each two
//! more parts take 4× longer, and nested `CAST(` does the same. Found by the `sql_guard` fuzz
//! target (a 259-byte statement ran 66 s). A runaway parse would hold a query slot and a
//! runtime worker thread, which no timeout can interrupt.
//!
//! So tenant SQL is parsed with DataFusion's own parser front end and the dialect it uses by
//! default (generic), wrapped to count prefix-expression parses, the step that every retry
//! repeats. Past a budget proportional to the statement's length, every further prefix parse
//! fails with the parser's "recursion limit" error, which sqlparser's retry logic passes
//! straight up instead of trying alternatives, so the parse ends at once; the statement is
//! refused as too complex.

use std::any::TypeId;
use std::cell::Cell;

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::error::QueryError;

/// Prefix-expression parses allowed for any statement. Ordinary queries use about one per
/// 5–10 bytes of SQL (the tests check a 20× margin).
const BASE_BUDGET: u64 = 10_000;
/// Further prefix parses allowed per byte of SQL.
const BUDGET_PER_BYTE: u64 = 16;

/// The prefix-parse budget for a statement of `len` bytes.
fn budget(len: usize) -> u64 {
    BASE_BUDGET.saturating_add(BUDGET_PER_BYTE.saturating_mul(len as u64))
}

/// Parses one statement of `sql` as DataFusion's `create_logical_plan` does (generic
/// dialect, `recursion_limit` nesting), but with a bounded number of parse steps.
pub(crate) fn parse_statement(sql: &str, recursion_limit: usize) -> Result<Statement, QueryError> {
    parse_counting(sql, recursion_limit).0
}

/// [`parse_statement`], and the number of prefix parses it took.
fn parse_counting(sql: &str, recursion_limit: usize) -> (Result<Statement, QueryError>, u64) {
    let dialect = Budgeted::new(budget(sql.len()));
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(recursion_limit)
        .build()
        .and_then(|mut p| p.parse_statements());
    let used = dialect.budget - dialect.left.get();
    (check(parsed, &dialect), used)
}

fn check(
    parsed: Result<std::collections::VecDeque<Statement>, DataFusionError>,
    dialect: &Budgeted,
) -> Result<Statement, QueryError> {
    if dialect.exhausted.get() {
        return Err(QueryError::InvalidQuery(format!(
            "query too complex to parse: gave up after {} expression parses (deeply nested or \
             long dotted expressions make the SQL parser retry exponentially); simplify it",
            dialect.budget
        )));
    }
    let mut statements = parsed.map_err(|e| {
        QueryError::InvalidQuery(match e.find_root() {
            // The parser's own words ("sql parser error: Expected: …, found: …").
            DataFusionError::SQL(p, _) => p.to_string(),
            other => other.to_string(),
        })
    })?;
    if statements.len() > 1 {
        return Err(QueryError::InvalidQuery(
            "one statement per request: found several".into(),
        ));
    }
    statements
        .pop_front()
        .ok_or_else(|| QueryError::BadRequest("empty query".into()))
}

/// The generic dialect, counting prefix-expression parses against a budget.
#[derive(Debug)]
struct Budgeted {
    inner: GenericDialect,
    budget: u64,
    left: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Budgeted {
    fn new(budget: u64) -> Self {
        Self {
            inner: GenericDialect {},
            budget,
            left: Cell::new(budget),
            exhausted: Cell::new(false),
        }
    }
}

/// Forwards `fn name(&self) -> bool` to the generic dialect.
macro_rules! forward_bool {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool { self.inner.$name() })*
    };
}

impl Dialect for Budgeted {
    /// Parsing code that asks "is this the generic dialect?" gets yes.
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn parse_prefix(&self, _parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        match self.left.get() {
            0 => {
                self.exhausted.set(true);
                Some(Err(ParserError::RecursionLimitExceeded))
            }
            n => {
                self.left.set(n - 1);
                // Let the parser go on as the generic dialect would.
                None
            }
        }
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }

    // Every other method GenericDialect overrides (sqlparser 0.62, dialect/generic.rs).
    forward_bool!(
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const LIMIT: usize = 50;

    #[test]
    fn ordinary_queries_parse_as_datafusion_parses_them() {
        for sql in [
            "SELECT 1",
            "SELECT service_name, sum(value) AS v FROM samples WHERE time > 0 \
             GROUP BY 1 ORDER BY v DESC LIMIT 10",
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
             SELECT round(abs(ln(greatest(coalesce(nullif(n, 0), 1), 1)) * 2), 3) FROM r",
            "SELECT s.a.b.c[1], CAST(CAST(x AS BIGINT) AS DOUBLE), `q`.\"r\" FROM t s",
            "SELECT * EXCLUDE (a) FROM t",
            "SELECT service_name, date_trunc('hour', to_timestamp_micros(time)) AS hour, \
             round(sum(CASE WHEN profile_type LIKE 'process_cpu%' THEN value ELSE 0 END) / 1e9, 2) \
             FROM samples s JOIN (SELECT stack_id, service_name FROM stacks \
             WHERE array_length(frames) > 3 AND (service_name = 'a' OR (service_name = 'b' \
             AND stack_id IN (SELECT stack_id FROM stacks WHERE service_name = 'c')))) st \
             ON s.stack_id = st.stack_id WHERE time > (SELECT max(time) - 3600 FROM samples) \
             AND coalesce(cast(s.value AS DOUBLE), 0.0) > 0 GROUP BY 1, 2 \
             HAVING sum(value) > 0 ORDER BY hour DESC LIMIT 10",
            "EXPLAIN SELECT 1",
        ] {
            let (ours, used) = parse_counting(sql, LIMIT);
            let ours = ours.unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(
                used * 20 <= budget(sql.len()),
                "{sql}: {used} prefix parses, budget {}",
                budget(sql.len())
            );
            let theirs = DFParserBuilder::new(sql)
                .with_dialect(&GenericDialect {})
                .with_recursion_limit(LIMIT)
                .build()
                .unwrap()
                .parse_statements()
                .unwrap()
                .pop_front()
                .unwrap();
            assert_eq!(ours, theirs, "{sql}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_statement("SELEC 1", LIMIT).unwrap_err().to_string();
        assert!(e.contains("SELEC"), "{e}");
        let e = parse_statement("SELECT 1; SELECT 2", LIMIT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one statement"), "{e}");
        let e = parse_statement("  ", LIMIT).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn exponential_statements_are_refused_quickly() {
        // Each would take sqlparser minutes to hours (measured: 24 parts, 11 s; the time
        // grows 4× per two parts).
        let dotted = format!("SELECT {}[b", vec!["a"; 30].join("."));
        let casts = format!("SELECT {}a", "CAST(".repeat(20));
        let fuzzed = "SELECT s.stservic$_st$f._st.fram3S=~E$$$_st.f$_st.frs.stservicevice$SEKE$$$\
            _st.f$_st.framt$f._f._st.fr3SEKE$$$c$_st$f._st.frs.stservicevice$SEKE$$$_st.f$_st.\
            framt$f._f._st.fr3SEKE$$$c$_st$f._st.fram3S_s.f$_st.am3S_s.f$_st.fram3e$s.em[y_3es.\
            f$_st.frs.stservisS";
        // Refused by the budget, not by the parse running to its end.
        for sql in [dotted.as_str(), casts.as_str(), fuzzed] {
            let started = Instant::now();
            let e = parse_statement(sql, LIMIT).unwrap_err().to_string();
            assert!(e.contains("too complex"), "{sql}: {e}");
            eprintln!("refused in {:?}: {sql}", started.elapsed());
        }
    }

    #[test]
    fn the_budget_grows_with_the_statement() {
        // A long but flat statement: many columns, each a short dotted name.
        let cols: Vec<String> = (0..5_000).map(|i| format!("t.c{i}")).collect();
        let sql = format!("SELECT {} FROM t", cols.join(", "));
        let (parsed, used) = parse_counting(&sql, LIMIT);
        parsed.expect("a long flat query parses");
        assert!(
            used * 20 <= budget(sql.len()),
            "{used} of {}",
            budget(sql.len())
        );
    }
}
