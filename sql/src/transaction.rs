//! Transaction blocks as Bowman has them today: `BEGIN` ... `COMMIT` | `ROLLBACK` are accepted,
//! and every statement inside commits on its own when it runs. A `ROLLBACK` therefore cannot
//! undo the writes of its block; instead of pretending, it warns the client which writes stay.

use crate::parser::Statement;
use datafusion::sql::sqlparser::ast;

/// The open transaction block of a session, if any: which of its statements wrote.
#[derive(Debug, Default)]
pub(crate) struct TransactionBlock {
    /// `None` outside a block; inside one, the command tags of the writes so far.
    writes: Option<Vec<String>>,
}

impl TransactionBlock {
    pub(crate) fn begin(&mut self) {
        // PostgreSQL keeps the open block on a second BEGIN (with a warning); so does Bowman.
        self.writes.get_or_insert_with(Vec::new);
    }

    /// Remember that `tag` wrote, if a block is open.
    pub(crate) fn wrote(&mut self, tag: &str) {
        if let Some(writes) = &mut self.writes {
            writes.push(tag.to_string());
        }
    }

    /// End the block. For a ROLLBACK after writes, the warning to send the client.
    pub(crate) fn end(&mut self, rollback: bool) -> Option<String> {
        let writes = self.writes.take()?;
        if !rollback || writes.is_empty() {
            return None;
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for w in writes.iter() {
            match counts.iter_mut().find(|(t, _)| t == w) {
                Some((_, n)) => *n += 1,
                None => counts.push((w.clone(), 1)),
            }
        }
        let list = counts.iter().map(|(t, n)| if *n == 1 { t.clone() } else { format!("{t} x{n}") }).collect::<Vec<_>>().join(", ");
        let statements = if writes.len() == 1 { "statement" } else { "statements" };
        Some(format!(
            "ROLLBACK did not undo {} write {statements} of this transaction ({list}): Bowman has no \
             multi-statement transactions yet and committed each statement when it ran",
            writes.len()
        ))
    }
}

/// Whether running `stmt` changes data or the catalog (and so cannot be rolled back).
/// Statements Bowman adds later count as writes unless listed here as reads.
pub(crate) fn writes(stmt: &Statement) -> bool {
    match stmt {
        Statement::Standard(s) => !matches!(
            s.as_ref(),
            ast::Statement::Query(_)
                | ast::Statement::Explain { .. }
                | ast::Statement::ExplainTable { .. }
                // COPY TO only reads; COPY FROM writes when its data has arrived (Session::copy_in).
                | ast::Statement::Copy { .. }
        ),
        Statement::Set { .. }
        | Statement::Reset { .. }
        | Statement::Show { .. }
        | Statement::Begin
        | Statement::Commit
        | Statement::Rollback
        | Statement::Savepoint { .. }
        | Statement::DeclareCursor { .. }
        | Statement::Fetch { .. }
        | Statement::CloseCursor { .. }
        | Statement::Deallocate { .. }
        | Statement::Use { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowCreateTable { .. }
        | Statement::Describe { .. } => false,
        Statement::Explain { analyze, .. } => *analyze,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_warns_only_after_writes() {
        let mut block = TransactionBlock::default();
        block.begin();
        assert_eq!(block.end(true), None);
        block.begin();
        block.wrote("INSERT");
        block.wrote("INSERT");
        block.wrote("CREATE TABLE");
        let warning = block.end(true).unwrap();
        assert!(warning.contains("3 write statements") && warning.contains("INSERT x2, CREATE TABLE"), "{warning}");
        assert_eq!(block.end(true), None, "the block ended");
        block.wrote("INSERT");
        block.begin();
        assert_eq!(block.end(true), None, "writes outside a block are not counted");
        block.begin();
        block.wrote("INSERT");
        assert_eq!(block.end(false), None, "COMMIT keeps what was written, silently");
    }

    #[test]
    fn reads_and_writes() {
        let one = |sql: &str| crate::parser::parse_sql(sql).unwrap().pop().unwrap();
        assert!(!writes(&one("SELECT 1")));
        assert!(!writes(&one("SHOW TABLES")));
        assert!(!writes(&one("COPY (SELECT 1) TO STDOUT")));
        assert!(writes(&one("INSERT INTO t VALUES (1)")));
        assert!(writes(&one("CREATE TABLE t (a INT)")));
        assert!(writes(&one("DROP TABLE t")));
    }
}
