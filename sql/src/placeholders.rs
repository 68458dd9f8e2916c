//! `?` placeholders, as clients with the qmark paramstyle write them (ADBC's Flight SQL driver,
//! JDBC-style tools), numbered into PostgreSQL's `$1, $2, ...` in the order they appear.
//!
//! The statement is tokenized with sqlparser's tokenizer, so a `?` inside a string literal, a
//! comment or a quoted identifier is left alone; only placeholder tokens are renumbered, and
//! the rest of the text is kept byte for byte.

use std::borrow::Cow;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{BowmanError, Result};

/// `sql` with each `?` placeholder replaced by the next `$n` (and `?n` by `$n`). Statements
/// without `?` placeholders come back unchanged; mixing `?` with `$n` is refused (42601), as
/// the numbering would be ambiguous.
pub fn qmark_to_dollar(sql: &str) -> Result<Cow<'_, str>> {
    if !sql.contains('?') {
        return Ok(Cow::Borrowed(sql));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| BowmanError::Syntax(e.to_string()))?;
    let line_starts: Vec<usize> =
        std::iter::once(0).chain(sql.char_indices().filter(|(_, c)| *c == '\n').map(|(i, _)| i + 1)).collect();
    let offset = |l: Location| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(l.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(l.column).ok()?.checked_sub(1)?;
        sql[start..].char_indices().nth(column).map(|(i, _)| start + i).or_else(|| Some(sql.len()))
    };
    let mut replacements = Vec::new();
    let mut dollar = false;
    let mut next = 0usize;
    for t in &tokens {
        let Token::Placeholder(p) = &t.token else { continue };
        if p.starts_with('$') {
            dollar = true;
            continue;
        }
        let Some(number) = p.strip_prefix('?') else { continue };
        let n = if number.is_empty() {
            next += 1;
            next
        } else {
            number.parse::<usize>().map_err(|_| BowmanError::Syntax(format!("invalid placeholder {p}")))?
        };
        let (Some(start), Some(end)) = (offset(t.span.start), offset(t.span.end)) else {
            return Err(BowmanError::Internal(format!("placeholder {p} at an unknown position")));
        };
        replacements.push((start, end, n));
    }
    if replacements.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    if dollar {
        return Err(BowmanError::Syntax("a statement uses either ? or $n placeholders, not both".into()));
    }
    let mut out = String::with_capacity(sql.len() + replacements.len() * 2);
    let mut at = 0;
    for (start, end, n) in replacements {
        out.push_str(&sql[at..start]);
        out.push_str(&format!("${n}"));
        at = end;
    }
    out.push_str(&sql[at..]);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::qmark_to_dollar;

    #[test]
    fn numbers_placeholders_in_order_outside_literals_comments_and_identifiers() {
        assert_eq!(qmark_to_dollar("SELECT 1").unwrap(), "SELECT 1");
        assert_eq!(qmark_to_dollar("SELECT a FROM t WHERE a > ? AND b = ?").unwrap(), "SELECT a FROM t WHERE a > $1 AND b = $2");
        assert_eq!(
            qmark_to_dollar("SELECT '?', \"wh?\" /* ? */ FROM t -- ?\nWHERE x = ? AND y IN (?, ?)").unwrap(),
            "SELECT '?', \"wh?\" /* ? */ FROM t -- ?\nWHERE x = $1 AND y IN ($2, $3)"
        );
        assert_eq!(qmark_to_dollar("SELECT 'é', ?, 'ü',\n  ?").unwrap(), "SELECT 'é', $1, 'ü',\n  $2");
        assert_eq!(qmark_to_dollar("INSERT INTO t VALUES (?,?)").unwrap(), "INSERT INTO t VALUES ($1,$2)");
        assert_eq!(qmark_to_dollar("SELECT $1, '?'").unwrap(), "SELECT $1, '?'");
        assert_eq!(qmark_to_dollar("SELECT ?, $1").unwrap_err().sqlstate(), "42601");
    }
}
