//! What a write replaces: one description for every table that commits its writes (Bowman's
//! tracked file tables and Delta tables alike), with Spark's INSERT OVERWRITE semantics.

/// What a write replaces when it commits, besides adding what it wrote. Partition values are
/// given as text, unescaped (`("dt", "2018-03-05")`); each table format turns them into its own
/// terms (directory paths for tracked tables, partition values for Delta's log).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Replace {
    /// Nothing: an append.
    #[default]
    Nothing,
    /// Everything live: an unpartitioned overwrite, or static mode without partition values.
    All,
    /// Every partition whose values match all of these (static mode with a partial
    /// `PARTITION` spec).
    Matching(Vec<(String, String)>),
    /// The partitions the write produced (dynamic overwrite); a fully static `PARTITION` spec
    /// (`exact`) also replaces its own partition when the query returns no rows.
    Produced { exact: Option<Vec<(String, String)>> },
    /// The partitions the write produced from their own rows (OPTIMIZE): the commit fails
    /// rather than replace them if another write changed the table after they were read.
    Rewrite,
}

impl Replace {
    /// Whether committing removes anything.
    pub fn replaces(&self) -> bool {
        !matches!(self, Replace::Nothing)
    }

    /// How EXPLAIN names what a write replaces.
    pub fn describe(&self) -> String {
        let pairs = |p: &[(String, String)]| p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("/");
        match self {
            Replace::Nothing => "nothing (append)".into(),
            Replace::All => "everything (overwrite)".into(),
            Replace::Matching(p) => format!("every partition matching [{}] (static overwrite)", pairs(p)),
            Replace::Produced { exact: None } => "the partitions written (dynamic overwrite)".into(),
            Replace::Produced { exact: Some(p) } => format!("the partitions written and [{}] (overwrite)", pairs(p)),
            Replace::Rewrite => "the partitions rewritten, if unchanged since read (OPTIMIZE)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_each_mode() {
        let dt = vec![("dt".to_string(), "2018-03-05".to_string())];
        assert_eq!(Replace::Nothing.describe(), "nothing (append)");
        assert_eq!(Replace::Produced { exact: None }.describe(), "the partitions written (dynamic overwrite)");
        assert_eq!(Replace::Produced { exact: Some(dt.clone()) }.describe(), "the partitions written and [dt=2018-03-05] (overwrite)");
        assert_eq!(Replace::Matching(dt).describe(), "every partition matching [dt=2018-03-05] (static overwrite)");
        assert!(!Replace::Nothing.replaces() && Replace::Rewrite.replaces() && Replace::All.replaces());
    }
}
