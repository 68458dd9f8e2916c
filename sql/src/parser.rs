//! Bowman's SQL dialect: Spark SQL's DDL and utility statements on top of sqlparser.
//!
//! [`parse_sql`] peeks at the leading keywords of each statement. Statements Bowman owns
//! (`CREATE TABLE ... USING`, `CREATE DATABASE`, `USE`, `SHOW TABLES`, `DESCRIBE`, `SET`, ...) are
//! parsed here with sqlparser's token-level API; everything else falls through to sqlparser's own
//! statement parser and becomes [`Statement::Standard`], planned by DataFusion.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, ObjectNamePart};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace, Word};

use crate::error::{BowmanError, Result, position_from_parser_message};

/// A possibly qualified table name, identifiers already case-folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub database: Option<String>,
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.database {
            Some(db) => write!(f, "{db}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    /// The type as written; resolved by [`crate::types::parse_type`].
    pub data_type: String,
    pub nullable: bool,
    pub comment: Option<String>,
}

/// `CREATE [OR REPLACE] [TEMPORARY] [EXTERNAL] TABLE ...` in Spark's and Hive's forms.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: TableName,
    pub if_not_exists: bool,
    pub or_replace: bool,
    pub temporary: bool,
    pub external: bool,
    pub columns: Vec<ColumnSpec>,
    /// `USING x` or `STORED AS x`.
    pub format: Option<String>,
    pub options: BTreeMap<String, String>,
    /// Partition columns; Hive's form may give a type for columns not in the column list.
    pub partitioned_by: Vec<(String, Option<String>)>,
    pub location: Option<String>,
    pub comment: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub query: Option<Box<ast::Query>>,
}

/// `CREATE [OR REPLACE] [TEMPORARY] VIEW [IF NOT EXISTS] v [(col [COMMENT '...'], ...)]
/// [COMMENT '...'] AS query`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: TableName,
    pub or_replace: bool,
    pub temporary: bool,
    pub if_not_exists: bool,
    /// The column list: names (and comments) for the query's columns, in order.
    pub columns: Vec<(String, Option<String>)>,
    pub comment: Option<String>,
    pub query: Box<ast::Query>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Default,
    Value(String),
}

/// One statement of Bowman's dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// Planned and executed by DataFusion (queries, INSERT, EXPLAIN, ...).
    Standard(Box<ast::Statement>),
    CreateDatabase { name: String, if_not_exists: bool, comment: Option<String>, location: Option<String> },
    DropDatabase { name: String, if_exists: bool, cascade: bool },
    Use { database: String },
    CreateTable(Box<CreateTable>),
    DropTable { name: TableName, if_exists: bool },
    CreateView(Box<CreateView>),
    /// `DROP VIEW [IF EXISTS] v [, ...] [CASCADE | RESTRICT]`.
    DropView { names: Vec<TableName>, if_exists: bool },
    /// `CREATE USER|ROLE [IF NOT EXISTS] name [WITH] [SUPERUSER] [LOGIN] [CREATEROLE] [CREATEDB]
    /// [PASSWORD '...']`; `ALTER USER|ROLE name [WITH] ...` (`create: false`). `user`: the USER
    /// spelling, whose roles log in unless NOLOGIN.
    CreateUser { name: String, options: crate::privileges::RoleOptions, if_not_exists: bool, create: bool, user: bool },
    /// `GRANT` / `REVOKE` of privileges or role memberships.
    Grant(Box<crate::privileges::GrantStatement>),
    DropUser { name: String, if_exists: bool },
    /// `CREATE [OR REPLACE] FUNCTION [IF NOT EXISTS] name USING kind OPTIONS (...)`: a function
    /// Bowman builds from data (`USING geodata`).
    CreateFunction { name: String, kind: String, options: BTreeMap<String, String>, or_replace: bool, if_not_exists: bool },
    DropFunction { name: String, if_exists: bool },
    /// `ALTER TABLE [IF EXISTS] t RENAME TO u` (u in t's database unless qualified).
    RenameTable { name: TableName, to: TableName, if_exists: bool },
    ShowDatabases { like: Option<String> },
    ShowTables { database: Option<String>, like: Option<String> },
    ShowCreateTable { name: TableName },
    Describe { name: TableName, extended: bool },
    Set { name: String, value: SetValue },
    Reset { name: Option<String> },
    Show { name: String },
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT`, `RELEASE [SAVEPOINT]`, `ROLLBACK TO [SAVEPOINT]`: accepted inside a
    /// transaction block (which is itself accepted, each statement committing on its own), as
    /// drivers use them to nest transactions.
    Savepoint { tag: String },
    /// `DECLARE name [BINARY] [INSENSITIVE] [[NO] SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
    DeclareCursor { name: String, query: Box<ast::Query>, hold: bool, scroll: bool },
    /// `FETCH [NEXT | FORWARD [n | ALL] | n | ALL] [FROM | IN] name`; `count` None is ALL.
    Fetch { name: String, count: Option<u64> },
    /// `CLOSE name | ALL`.
    CloseCursor { name: Option<String> },
    /// `DEALLOCATE [PREPARE] name | ALL`: forget a prepared statement of the connection (the
    /// front end that keeps them does it); `name` None is ALL.
    Deallocate { name: Option<String> },
    /// `OPTIMIZE t [WHERE partition predicate] [SORT BY (cols) | ZORDER BY (cols)]`: rewrite
    /// each selected partition's files into as few files as possible, in one atomic commit.
    Optimize { name: TableName, predicate: Option<ast::Expr>, sort_by: Vec<ast::Expr>, zorder: bool },
    /// `EXPLAIN [ANALYZE] [VERBOSE]` of one of Bowman's own statements that runs as a plan
    /// (OPTIMIZE); EXPLAIN of anything else is DataFusion's.
    /// `what`: the statement's first words, for messages (`CREATE TABLE`).
    Explain { analyze: bool, verbose: bool, statement: Box<Statement>, what: String },
}

/// The first keyword of a statement, upper-cased, after leading comments and parentheses
/// (`/* dbt */ SELECT` and `(SELECT ...)` are queries): how front ends tell a query from a
/// command before parsing.
pub fn leading_keyword(sql: &str) -> String {
    let mut text = sql.trim_start();
    loop {
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map(|(_, r)| r).unwrap_or("").trim_start();
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map(|(_, r)| r).unwrap_or("").trim_start();
        } else if let Some(rest) = text.strip_prefix('(') {
            text = rest.trim_start();
        } else {
            break;
        }
    }
    text.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase()
}

/// Parse a string of `;`-separated statements.
pub fn parse_sql(sql: &str) -> Result<Vec<Statement>> {
    crate::limits::check_statement_size(sql)?;
    if crate::pg_catalog::is_introspection(sql) {
        // Clients' catalog queries, in PostgreSQL's dialect, rewritten for DataFusion.
        static COMPAT: std::sync::LazyLock<datafusion_pg_catalog::sql::PostgresCompatibilityParser> =
            std::sync::LazyLock::new(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new);
        if let Ok(statements) = COMPAT.parse(&crate::pg_catalog::regproc_literals_as_names(sql)) {
            return Ok(statements
                .into_iter()
                .map(|mut s| {
                    crate::pg_catalog::rewrite_visibility(&mut s);
                    crate::limits::check_statement(Statement::Standard(Box::new(s)))
                })
                .collect::<Result<Vec<_>>>()?);
        }
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).with_unescape(true).tokenize_with_location().map_err(|e| syntax(sql, e.into()))?;
    for t in &tokens {
        if let Token::Word(w) = &t.token {
            crate::limits::check_identifier(&w.value)?;
        }
    }
    let tokens = rewrite_time_travel(tokens)?;
    let parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut p = BowmanParser { parser };
    let mut out = Vec::new();
    loop {
        while p.parser.consume_token(&Token::SemiColon) {}
        if p.parser.peek_token().token == Token::EOF {
            break;
        }
        let stmt = p.parse_statement().map_err(|e| syntax(sql, e))?;
        out.push(crate::limits::check_statement(stmt)?);
        if !p.parser.consume_token(&Token::SemiColon) && p.parser.peek_token().token != Token::EOF {
            let t = p.parser.peek_token();
            return Err(BowmanError::Syntax {
                message: format!("syntax error at or near \"{}\"", t.token),
                position: position_of(sql, &t),
            });
        }
    }
    Ok(out)
}

/// `FROM t VERSION AS OF 3` / `FROM t TIMESTAMP AS OF '2024-01-01 00:00:00'` (Delta time
/// travel, as in Spark). sqlparser only parses these for dialects that would change much else,
/// so they are rewritten on tokens: the table name gets the state as a suffix (`"t@v3"`,
/// which the catalog resolves through the table's connector) and keeps its own name as alias.
fn rewrite_time_travel(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let significant = |tokens: &[TokenWithSpan], from: usize| -> Option<usize> {
        (from..tokens.len()).find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
    };
    let is_word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i].token;
        let kind = if is_word(t, "VERSION") { Some(true) } else if is_word(t, "TIMESTAMP") { Some(false) } else { None };
        let (Some(is_version), Some(as_i)) = (kind, significant(&tokens, i + 1)) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let of_i = significant(&tokens, as_i + 1);
        let value_i = of_i.and_then(|o| significant(&tokens, o + 1));
        let prev = out.iter().rposition(|t| !matches!(t.token, Token::Whitespace(_)));
        let table_before = prev.is_some_and(|p| {
            matches!(&out[p].token, Token::Word(w) if w.quote_style.is_some() || !matches!(w.keyword, Keyword::AS | Keyword::CAST | Keyword::SELECT))
        });
        let (Some(of_i), Some(value_i), Some(prev), true) = (of_i, value_i, prev, table_before) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if !is_word(&tokens[as_i].token, "AS") || !is_word(&tokens[of_i].token, "OF") {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let as_of = match (&tokens[value_i].token, is_version) {
            (Token::Number(n, _), true) => n.parse::<i64>().ok().filter(|v| *v >= 0).map(bowman_connector::AsOf::Version).ok_or_else(|| {
                BowmanError::InvalidValue(format!("VERSION AS OF needs a table version (0, 1, 2, ...), not {n}"))
            })?,
            (Token::SingleQuotedString(s), false) => bowman_connector::AsOf::Timestamp(parse_as_of_timestamp(s)?),
            (other, true) => return Err(BowmanError::InvalidValue(format!("VERSION AS OF needs a version number, not {other}"))),
            (other, false) => {
                return Err(BowmanError::InvalidValue(format!(
                    "TIMESTAMP AS OF needs a timestamp literal such as '2024-01-31 12:00:00', not {other}"
                )));
            }
        };
        let Token::Word(table) = out[prev].token.clone() else { unreachable!("checked above") };
        let name = if table.quote_style.is_some() { table.value.clone() } else { table.value.to_lowercase() };
        out[prev].token = Token::Word(Word { value: format!("{name}{}", as_of.suffix()), quote_style: Some('"'), keyword: Keyword::NoKeyword });
        // Keep `t` usable as the qualifier unless the query names an alias itself.
        let next = significant(&tokens, value_i + 1);
        let has_alias = next.is_some_and(|n| match &tokens[n].token {
            Token::Word(w) if w.quote_style.is_some() => true,
            Token::Word(w) => w.keyword == Keyword::AS
                || !datafusion::sql::sqlparser::keywords::RESERVED_FOR_TABLE_ALIAS.contains(&w.keyword),
            _ => false,
        });
        if !has_alias {
            let span = tokens[value_i].span;
            out.push(TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span });
            out.push(TokenWithSpan { token: Token::make_keyword("AS"), span });
            out.push(TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span });
            out.push(TokenWithSpan { token: Token::Word(Word { value: name, quote_style: Some('"'), keyword: Keyword::NoKeyword }), span });
        }
        i = value_i + 1;
    }
    Ok(out)
}

/// A `TIMESTAMP AS OF` literal: RFC 3339, or `YYYY-MM-DD[ HH:MM:SS[.fff]]` in UTC.
fn parse_as_of_timestamp(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    Err(BowmanError::InvalidValue(format!(
        "TIMESTAMP AS OF '{s}' is not a timestamp; write '2024-01-31 12:00:00' (UTC) or RFC 3339"
    )))
}

fn syntax(sql: &str, e: ParserError) -> BowmanError {
    if matches!(e, ParserError::RecursionLimitExceeded) {
        return BowmanError::TooComplex(
            "parentheses, subqueries or prefix operators nested too deeply for the parser".into(),
        );
    }
    let message = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        other => other.to_string(),
    };
    let mut position = position_from_parser_message(sql, &message);
    if position.is_none() && message.contains("EOF") {
        // "at end of input": PostgreSQL points just past the last character.
        position = Some(sql.trim_end().chars().count() + 1);
    }
    BowmanError::Syntax { message, position }
}

fn position_of(sql: &str, t: &TokenWithSpan) -> Option<usize> {
    position_from_parser_message(sql, &format!("Line: {}, Column: {}", t.span.start.line, t.span.start.column))
}

/// Case-fold an identifier as PostgreSQL and DataFusion do: unquoted names are lower-cased.
pub fn ident_value(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

pub fn table_name_from(name: &ObjectName) -> std::result::Result<TableName, ParserError> {
    let parts = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(ident_value(i)),
            other => Err(ParserError::ParserError(format!("unexpected name part {other}"))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match parts.as_slice() {
        [name] => Ok(TableName { database: None, name: name.clone() }),
        [db, name] => Ok(TableName { database: Some(db.clone()), name: name.clone() }),
        // catalog.database.table: the catalog is always Bowman's.
        [_, db, name] => Ok(TableName { database: Some(db.clone()), name: name.clone() }),
        _ => Err(ParserError::ParserError(format!("invalid table name {name}"))),
    }
    .map(|mut t| {
        // `public` is PostgreSQL's name for the default database.
        if let Some(db) = &mut t.database {
            *db = bowman_catalog::canonical_database(db).to_string();
        }
        t
    })
}


struct BowmanParser<'a> {
    parser: Parser<'a>,
}

type PResult<T> = std::result::Result<T, ParserError>;

fn word_is(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

impl BowmanParser<'_> {
    /// `CREATE [OR REPLACE] FUNCTION [IF NOT EXISTS] name USING`: Bowman's data-built functions
    /// (other CREATE FUNCTION forms stay DataFusion's).
    fn function_using_ahead(&self) -> bool {
        let mut n = 1;
        if self.peek_is(1, "OR") && self.peek_is(2, "REPLACE") {
            n = 3;
        }
        if !self.peek_is(n, "FUNCTION") {
            return false;
        }
        n += 1;
        if self.peek_is(n, "IF") && self.peek_is(n + 1, "NOT") && self.peek_is(n + 2, "EXISTS") {
            n += 3;
        }
        self.peek_is(n + 1, "USING")
    }

    fn peek_is(&self, n: usize, kw: &str) -> bool {
        word_is(&self.parser.peek_nth_token(n).token, kw)
    }

    /// Consume a (non-reserved) word such as DATABASES, whatever sqlparser thinks of it.
    fn eat_word(&mut self, kw: &str) -> bool {
        if self.peek_is(0, kw) {
            self.parser.next_token();
            true
        } else {
            false
        }
    }

    /// Whether `EXPLAIN [ANALYZE] [VERBOSE]` is followed by a statement of Bowman's own.
    fn explains_bowman_statement(&self) -> bool {
        let mut at = 1;
        for word in ["ANALYZE", "VERBOSE"] {
            if self.peek_is(at, word) {
                at += 1;
            }
        }
        // Statements Bowman runs itself; EXPLAIN of a query, INSERT, UPDATE or DELETE stays
        // DataFusion's.
        const OWN: &[&str] = &[
            "OPTIMIZE", "CREATE", "DROP", "ALTER", "GRANT", "REVOKE", "SHOW", "DESCRIBE", "DESC", "USE", "SET", "RESET", "COPY",
            "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "DECLARE", "FETCH", "CLOSE", "DEALLOCATE",
        ];
        OWN.iter().any(|w| self.peek_is(at, w)) && !(self.peek_is(at, "DESCRIBE") || self.peek_is(at, "DESC")) || self.describes_a_table(at)
    }

    /// `DESCRIBE t` (Bowman's) rather than `DESCRIBE SELECT ...` (DataFusion's) at token `at`.
    fn describes_a_table(&self, at: usize) -> bool {
        (self.peek_is(at, "DESCRIBE") || self.peek_is(at, "DESC"))
            && !self.peek_is(at + 1, "SELECT")
            && !self.peek_is(at + 1, "QUERY")
            && !self.peek_is(at + 1, "WITH")
    }

    fn expected<T>(&mut self, what: &str) -> PResult<T> {
        let t = self.parser.peek_token();
        Err(ParserError::ParserError(format!(
            "Expected: {what}, found: {} at Line: {}, Column: {}",
            t.token, t.span.start.line, t.span.start.column
        )))
    }

    fn parse_statement(&mut self) -> PResult<Statement> {
        let first = self.parser.peek_token().token;
        let kw = match &first {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        };
        match kw.as_str() {
            "CREATE" | "ALTER" if self.peek_is(1, "USER") || self.peek_is(1, "ROLE") => {
                let create = kw == "CREATE";
                self.parser.next_token();
                let user = self.eat_word("USER");
                if !user {
                    self.parser.next_token();
                }
                let if_not_exists = create && self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
                let name = ident_value(&self.parser.parse_identifier()?);
                let options = crate::privileges::RoleOptions::parse(&mut self.parser)?;
                return Ok(Statement::CreateUser { name, options, if_not_exists, create, user });
            }
            "GRANT" | "REVOKE" => {
                return Ok(Statement::Grant(Box::new(crate::privileges::parse_grant(&mut self.parser)?)));
            }
            "CREATE" if self.function_using_ahead() => {
                self.parser.next_token();
                let or_replace = self.parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
                self.parser.next_token(); // FUNCTION
                let if_not_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
                let name = ident_value(&self.parser.parse_identifier()?);
                self.eat_word("USING");
                let kind = self.parse_format_name()?;
                let options = if self.eat_word("OPTIONS") { self.parse_options()? } else { BTreeMap::new() };
                return Ok(Statement::CreateFunction { name, kind, options, or_replace, if_not_exists });
            }
            "DROP" if self.peek_is(1, "FUNCTION") => {
                self.parser.next_token();
                self.parser.next_token();
                let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let name = ident_value(&self.parser.parse_identifier()?);
                return Ok(Statement::DropFunction { name, if_exists });
            }
            "CREATE" => {
                if let Some(stmt) = self.try_create()? {
                    return Ok(stmt);
                }
            }
            "DROP" if self.peek_is(1, "USER") || self.peek_is(1, "ROLE") => {
                self.parser.next_token();
                self.parser.next_token();
                let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let name = ident_value(&self.parser.parse_identifier()?);
                return Ok(Statement::DropUser { name, if_exists });
            }
            "DROP" => {
                if let Some(stmt) = self.try_drop()? {
                    return Ok(stmt);
                }
            }
            "USE" => {
                self.parser.next_token();
                self.eat_word("DATABASE");
                self.eat_word("SCHEMA");
                let name = self.parser.parse_identifier()?;
                return Ok(Statement::Use { database: ident_value(&name) });
            }
            "SHOW" => return self.parse_show(),
            "DESCRIBE" | "DESC" => {
                if !self.peek_is(1, "SELECT") && !self.peek_is(1, "QUERY") && !self.peek_is(1, "WITH") {
                    self.parser.next_token();
                    let extended = self.eat_word("EXTENDED") || self.eat_word("FORMATTED");
                    self.eat_word("TABLE");
                    let name = table_name_from(&self.parser.parse_object_name(false)?)?;
                    return Ok(Statement::Describe { name, extended });
                }
            }
            "SET" => return self.parse_set(),
            "EXPLAIN" if self.explains_bowman_statement() => {
                self.parser.next_token();
                let analyze = self.eat_word("ANALYZE");
                let verbose = self.eat_word("VERBOSE");
                let what = (0..2)
                    .map_while(|n| match self.parser.peek_nth_token(n).token {
                        Token::Word(w) if w.quote_style.is_none() && w.value.chars().all(|c| c.is_ascii_alphabetic()) => Some(w.value.to_ascii_uppercase()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                let statement = Box::new(self.parse_statement()?);
                return Ok(Statement::Explain { analyze, verbose, statement, what });
            }
            "OPTIMIZE" => {
                self.parser.next_token();
                self.eat_word("TABLE");
                let name = table_name_from(&self.parser.parse_object_name(false)?)?;
                let predicate = if self.parser.parse_keyword(Keyword::WHERE) { Some(self.parser.parse_expr()?) } else { None };
                let zorder = self.peek_is(0, "ZORDER");
                let mut sort_by = Vec::new();
                if (zorder || self.peek_is(0, "SORT")) && self.peek_is(1, "BY") {
                    self.parser.next_token();
                    self.parser.next_token();
                    let parens = self.parser.consume_token(&Token::LParen);
                    sort_by = self.parser.parse_comma_separated(Parser::parse_expr)?;
                    if parens {
                        self.parser.expect_token(&Token::RParen)?;
                    }
                }
                return Ok(Statement::Optimize { name, predicate, sort_by, zorder });
            }
            "RESET" => {
                self.parser.next_token();
                if self.eat_word("ALL") {
                    return Ok(Statement::Reset { name: None });
                }
                let name = self.setting_name()?;
                return Ok(Statement::Reset { name: Some(name) });
            }
            "BEGIN" | "START" => {
                self.parser.next_token();
                if kw == "START" && !self.eat_word("TRANSACTION") {
                    return self.expected("TRANSACTION");
                }
                self.skip_to_end();
                return Ok(Statement::Begin);
            }
            "COMMIT" | "END" => {
                self.parser.next_token();
                self.skip_to_end();
                return Ok(Statement::Commit);
            }
            "ROLLBACK" | "ABORT" => {
                self.parser.next_token();
                self.eat_word("WORK");
                self.eat_word("TRANSACTION");
                if self.eat_word("TO") {
                    // ROLLBACK TO [SAVEPOINT] name: the transaction goes on.
                    self.skip_to_end();
                    return Ok(Statement::Savepoint { tag: "ROLLBACK".into() });
                }
                self.skip_to_end();
                return Ok(Statement::Rollback);
            }
            "ALTER" if self.peek_is(1, "TABLE") || self.peek_is(1, "VIEW") => {
                self.parser.next_token();
                self.parser.next_token();
                let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let name = table_name_from(&self.parser.parse_object_name(false)?)?;
                if self.eat_word("RENAME") && self.eat_word("TO") {
                    let to = table_name_from(&self.parser.parse_object_name(false)?)?;
                    return Ok(Statement::RenameTable { name, to, if_exists });
                }
                return Err(ParserError::ParserError(
                    "ALTER TABLE supports RENAME TO only; recreate the table to change its columns".into(),
                ));
            }
            "DECLARE" => {
                self.parser.next_token();
                let name = ident_value(&self.parser.parse_identifier()?);
                for w in ["BINARY", "ASENSITIVE", "INSENSITIVE"] {
                    self.eat_word(w);
                }
                let mut scroll = false;
                if self.eat_word("NO") {
                    if !self.eat_word("SCROLL") {
                        return self.expected("SCROLL");
                    }
                } else if self.eat_word("SCROLL") {
                    scroll = true;
                }
                if !self.eat_word("CURSOR") {
                    return self.expected("CURSOR");
                }
                let mut hold = false;
                if self.parser.parse_keyword(Keyword::WITH) {
                    if !self.eat_word("HOLD") {
                        return self.expected("HOLD");
                    }
                    hold = true;
                } else if self.eat_word("WITHOUT") && !self.eat_word("HOLD") {
                    return self.expected("HOLD");
                }
                self.parser.expect_keyword(Keyword::FOR)?;
                let query = self.parser.parse_query()?;
                return Ok(Statement::DeclareCursor { name, query, hold, scroll });
            }
            "FETCH" => {
                self.parser.next_token();
                let mut count = Some(1);
                if self.eat_word("NEXT") {
                } else if self.eat_word("FORWARD") {
                    if self.eat_word("ALL") {
                        count = None;
                    } else if let Token::Number(n, _) = self.parser.peek_token().token {
                        self.parser.next_token();
                        count = Some(n.parse().map_err(|_| ParserError::ParserError(format!("invalid FETCH count {n}")))?);
                    }
                } else if self.eat_word("ALL") {
                    count = None;
                } else if let Token::Number(n, _) = self.parser.peek_token().token {
                    self.parser.next_token();
                    count = Some(n.parse().map_err(|_| ParserError::ParserError(format!("invalid FETCH count {n}")))?);
                } else if ["PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "BACKWARD"].iter().any(|w| self.peek_is(0, w)) {
                    return Err(ParserError::ParserError("cursors move forward only: use FETCH [FORWARD] n".into()));
                }
                if !self.eat_word("FROM") {
                    self.eat_word("IN");
                }
                let name = ident_value(&self.parser.parse_identifier()?);
                return Ok(Statement::Fetch { name, count });
            }
            "CLOSE" => {
                self.parser.next_token();
                if self.eat_word("ALL") {
                    return Ok(Statement::CloseCursor { name: None });
                }
                let name = ident_value(&self.parser.parse_identifier()?);
                return Ok(Statement::CloseCursor { name: Some(name) });
            }
            "DEALLOCATE" => {
                self.parser.next_token();
                self.eat_word("PREPARE");
                if self.eat_word("ALL") {
                    return Ok(Statement::Deallocate { name: None });
                }
                let name = ident_value(&self.parser.parse_identifier()?);
                return Ok(Statement::Deallocate { name: Some(name) });
            }
            "SAVEPOINT" | "RELEASE" => {
                self.parser.next_token();
                self.skip_to_end();
                return Ok(Statement::Savepoint { tag: kw.clone() });
            }
            _ => {}
        }
        let stmt = self.parser.parse_statement()?;
        Ok(Statement::Standard(Box::new(stmt)))
    }

    /// Skip the rest of a statement whose details Bowman accepts and ignores
    /// (`BEGIN ISOLATION LEVEL ...`, `COMMIT WORK`).
    fn skip_to_end(&mut self) {
        loop {
            match self.parser.peek_token().token {
                Token::SemiColon | Token::EOF => break,
                _ => {
                    self.parser.next_token();
                }
            }
        }
    }

    /// The text of the remaining tokens of this statement.
    fn rest_text(&mut self) -> String {
        let mut parts = Vec::new();
        loop {
            let t = self.parser.peek_token().token;
            match t {
                Token::SemiColon | Token::EOF => break,
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => parts.push(s),
                other => parts.push(other.to_string()),
            }
            self.parser.next_token();
        }
        let mut out = String::new();
        for p in parts {
            if !out.is_empty() && p != "," && !out.ends_with('.') && p != "." {
                out.push(' ');
            }
            out.push_str(&p);
        }
        out
    }

    /// A dotted name of words (`spark.sql.shuffle.partitions`, `org.apache.spark.sql.parquet`).
    fn dotted_name(&mut self, what: &str) -> PResult<String> {
        let mut name = String::new();
        loop {
            match self.parser.next_token().token {
                Token::Word(w) => name.push_str(&w.value),
                _ => {
                    self.parser.prev_token();
                    return self.expected(what);
                }
            }
            if !self.parser.consume_token(&Token::Period) {
                return Ok(name);
            }
            name.push('.');
        }
    }

    fn setting_name(&mut self) -> PResult<String> {
        self.dotted_name("a setting name")
    }

    fn parse_set(&mut self) -> PResult<Statement> {
        self.parser.next_token();
        if self.eat_word("SESSION") {
            if self.peek_is(0, "CHARACTERISTICS") || self.peek_is(0, "AUTHORIZATION") {
                self.skip_to_end();
                return Ok(Statement::Set { name: "session_characteristics".into(), value: SetValue::Default });
            }
        } else {
            self.eat_word("LOCAL");
        }
        if self.peek_is(0, "TIME") && self.peek_is(1, "ZONE") {
            self.parser.next_token();
            self.parser.next_token();
            let value = self.rest_text();
            let value = if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") {
                SetValue::Default
            } else {
                SetValue::Value(value)
            };
            return Ok(Statement::Set { name: "timezone".into(), value });
        }
        if self.peek_is(0, "TRANSACTION") || self.peek_is(0, "NAMES") {
            let name = if self.eat_word("NAMES") { "client_encoding" } else { "transaction" };
            if name == "transaction" {
                self.parser.next_token();
            }
            let value = self.rest_text();
            return Ok(Statement::Set { name: name.into(), value: SetValue::Value(value) });
        }
        let name = self.setting_name()?;
        if !self.parser.consume_token(&Token::Eq) && !self.eat_word("TO") {
            return self.expected("= or TO");
        }
        if self.peek_is(0, "DEFAULT") && matches!(self.parser.peek_nth_token(1).token, Token::SemiColon | Token::EOF) {
            self.parser.next_token();
            return Ok(Statement::Set { name, value: SetValue::Default });
        }
        let value = self.rest_text();
        Ok(Statement::Set { name, value: SetValue::Value(value) })
    }

    fn parse_show(&mut self) -> PResult<Statement> {
        self.parser.next_token();
        if self.eat_word("DATABASES") || self.eat_word("SCHEMAS") || self.eat_word("NAMESPACES") {
            let like = self.parse_like()?;
            return Ok(Statement::ShowDatabases { like });
        }
        if self.eat_word("TABLES") {
            let database = if self.eat_word("IN") || self.eat_word("FROM") {
                Some(ident_value(&self.parser.parse_identifier()?))
            } else {
                None
            };
            let like = self.parse_like()?;
            return Ok(Statement::ShowTables { database, like });
        }
        if self.peek_is(0, "CREATE") && (self.peek_is(1, "TABLE") || self.peek_is(1, "VIEW")) {
            self.parser.next_token();
            self.parser.next_token();
            let name = table_name_from(&self.parser.parse_object_name(false)?)?;
            return Ok(Statement::ShowCreateTable { name });
        }
        if self.eat_word("ALL") {
            return Ok(Statement::Show { name: "all".into() });
        }
        let name = self.rest_text().to_lowercase();
        if name.is_empty() {
            return self.expected("what to show");
        }
        Ok(Statement::Show { name })
    }

    fn parse_like(&mut self) -> PResult<Option<String>> {
        if self.eat_word("LIKE") {
            return Ok(Some(self.parser.parse_literal_string()?));
        }
        if let Token::SingleQuotedString(s) = self.parser.peek_token().token {
            self.parser.next_token();
            return Ok(Some(s));
        }
        Ok(None)
    }

    fn parse_if_not_exists(&mut self) -> bool {
        self.parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS])
    }

    fn try_create(&mut self) -> PResult<Option<Statement>> {
        // CREATE [OR REPLACE] [TEMPORARY|TEMP] [EXTERNAL] TABLE | CREATE DATABASE|SCHEMA
        let mut n = 1;
        let mut or_replace = false;
        if self.peek_is(1, "OR") && self.peek_is(2, "REPLACE") {
            or_replace = true;
            n = 3;
        }
        let temporary = self.peek_is(n, "TEMPORARY") || self.peek_is(n, "TEMP");
        if temporary {
            n += 1;
        }
        let external = self.peek_is(n, "EXTERNAL");
        if external {
            n += 1;
        }
        if self.peek_is(n, "DATABASE") || self.peek_is(n, "SCHEMA") {
            for _ in 0..=n {
                self.parser.next_token();
            }
            let if_not_exists = self.parse_if_not_exists();
            let name = ident_value(&self.parser.parse_identifier()?);
            let mut comment = None;
            let mut location = None;
            loop {
                if self.eat_word("COMMENT") {
                    comment = Some(self.parser.parse_literal_string()?);
                } else if self.eat_word("LOCATION") {
                    location = Some(self.parser.parse_literal_string()?);
                } else if self.eat_word("WITH") {
                    // WITH DBPROPERTIES (...) is accepted and ignored.
                    self.eat_word("DBPROPERTIES");
                    self.parse_options()?;
                } else {
                    break;
                }
            }
            return Ok(Some(Statement::CreateDatabase { name, if_not_exists, comment, location }));
        }
        // Spark's session-scoped source: CREATE TEMPORARY VIEW v USING postgres OPTIONS (...).
        let temp_view = temporary
            && self.peek_is(n, "VIEW")
            && (1..8).any(|k| self.peek_is(n + k, "USING"))
            && !(1..8).any(|k| self.peek_is(n + k, "AS"));
        if self.peek_is(n, "VIEW") && !temp_view && !external {
            for _ in 0..=n {
                self.parser.next_token();
            }
            return self.parse_create_view(or_replace, temporary).map(Some);
        }
        if !self.peek_is(n, "TABLE") && !temp_view {
            return Ok(None);
        }
        for _ in 0..=n {
            self.parser.next_token();
        }
        let if_not_exists = self.parse_if_not_exists();
        let name = table_name_from(&self.parser.parse_object_name(false)?)?;
        let mut ct = CreateTable {
            name,
            if_not_exists,
            or_replace,
            temporary,
            external,
            columns: Vec::new(),
            format: None,
            options: BTreeMap::new(),
            partitioned_by: Vec::new(),
            location: None,
            comment: None,
            properties: BTreeMap::new(),
            query: None,
        };
        if self.parser.peek_token().token == Token::LParen {
            ct.columns = self.parse_columns()?;
        }
        // Spark accepts the clauses in any order.
        loop {
            if self.eat_word("USING") {
                ct.format = Some(self.parse_format_name()?);
            } else if self.eat_word("STORED") {
                if !self.parser.parse_keyword(Keyword::AS) {
                    return self.expected("AS after STORED");
                }
                ct.format = Some(self.parse_format_name()?);
            } else if self.eat_word("OPTIONS") {
                ct.options.extend(self.parse_options()?);
            } else if self.eat_word("TBLPROPERTIES") {
                ct.properties.extend(self.parse_options()?);
            } else if self.peek_is(0, "PARTITIONED") && self.peek_is(1, "BY") {
                self.parser.next_token();
                self.parser.next_token();
                ct.partitioned_by = self.parse_partition_columns()?;
            } else if self.eat_word("LOCATION") {
                ct.location = Some(self.parser.parse_literal_string()?);
            } else if self.eat_word("COMMENT") {
                ct.comment = Some(self.parser.parse_literal_string()?);
            } else if self.parser.parse_keyword(Keyword::AS) {
                ct.query = Some(self.parser.parse_query()?);
                break;
            } else if self.peek_is(0, "SELECT") || self.peek_is(0, "WITH") {
                return self.expected("AS before the query");
            } else {
                break;
            }
        }
        Ok(Some(Statement::CreateTable(Box::new(ct))))
    }

    /// The rest of `CREATE ... VIEW`, after the VIEW keyword.
    fn parse_create_view(&mut self, or_replace: bool, temporary: bool) -> PResult<Statement> {
        let if_not_exists = self.parse_if_not_exists();
        let name = table_name_from(&self.parser.parse_object_name(false)?)?;
        let mut columns = Vec::new();
        if self.parser.consume_token(&Token::LParen) {
            loop {
                let column = ident_value(&self.parser.parse_identifier()?);
                let comment = if self.eat_word("COMMENT") { Some(self.parser.parse_literal_string()?) } else { None };
                columns.push((column, comment));
                if self.parser.consume_token(&Token::Comma) {
                    continue;
                }
                self.parser.expect_token(&Token::RParen)?;
                break;
            }
        }
        let mut comment = None;
        loop {
            if self.eat_word("COMMENT") {
                comment = Some(self.parser.parse_literal_string()?);
            } else if self.eat_word("TBLPROPERTIES") {
                // Accepted and ignored, as Spark's own views keep no properties Bowman reads.
                self.parse_options()?;
            } else {
                break;
            }
        }
        if !self.parser.parse_keyword(Keyword::AS) {
            return self.expected("AS before the view's query");
        }
        let query = self.parser.parse_query()?;
        Ok(Statement::CreateView(Box::new(CreateView { name, or_replace, temporary, if_not_exists, columns, comment, query })))
    }

    fn parse_format_name(&mut self) -> PResult<String> {
        Ok(self.dotted_name("a format name")?.to_lowercase())
    }

    /// `(key [=] value, ...)`; keys may be dotted identifiers or strings, values strings,
    /// numbers or booleans.
    fn parse_options(&mut self) -> PResult<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        self.parser.expect_token(&Token::LParen)?;
        if self.parser.consume_token(&Token::RParen) {
            return Ok(out);
        }
        loop {
            let key = match self.parser.next_token().token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                Token::Word(w) => {
                    let mut k = w.value;
                    while self.parser.consume_token(&Token::Period) {
                        match self.parser.next_token().token {
                            Token::Word(w) => {
                                k.push('.');
                                k.push_str(&w.value);
                            }
                            _ => return self.expected("an option name"),
                        }
                    }
                    k
                }
                _ => {
                    self.parser.prev_token();
                    return self.expected("an option name");
                }
            };
            let _ = self.parser.consume_token(&Token::Eq);
            let value = match self.parser.next_token().token {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
                Token::Number(n, _) => n,
                Token::Minus => match self.parser.next_token().token {
                    Token::Number(n, _) => format!("-{n}"),
                    _ => return self.expected("a number"),
                },
                Token::Word(w) => w.value,
                _ => {
                    self.parser.prev_token();
                    return self.expected("an option value");
                }
            };
            out.insert(key.to_lowercase(), value);
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.parser.expect_token(&Token::RParen)?;
            break;
        }
        Ok(out)
    }

    fn parse_partition_columns(&mut self) -> PResult<Vec<(String, Option<String>)>> {
        self.parser.expect_token(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = ident_value(&self.parser.parse_identifier()?);
            let t = self.parser.peek_token().token;
            let data_type = if matches!(t, Token::Comma | Token::RParen) { None } else { Some(self.type_text()?) };
            out.push((name, data_type));
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.parser.expect_token(&Token::RParen)?;
            break;
        }
        Ok(out)
    }

    fn parse_columns(&mut self) -> PResult<Vec<ColumnSpec>> {
        self.parser.expect_token(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = ident_value(&self.parser.parse_identifier()?);
            let data_type = self.type_text()?;
            let mut nullable = true;
            let mut comment = None;
            loop {
                if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                    nullable = false;
                } else if self.parser.parse_keyword(Keyword::NULL) {
                    nullable = true;
                } else if self.eat_word("COMMENT") {
                    comment = Some(self.parser.parse_literal_string()?);
                } else if self.parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                    // Accepted for tools that send it; file tables do not enforce keys.
                    nullable = false;
                } else {
                    break;
                }
            }
            out.push(ColumnSpec { name, data_type, nullable, comment });
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.parser.expect_token(&Token::RParen)?;
            break;
        }
        Ok(out)
    }

    /// The raw text of a column type, up to the next top-level `,`, `)` or column attribute.
    fn type_text(&mut self) -> PResult<String> {
        let mut depth: i32 = 0;
        let mut text = String::new();
        loop {
            let t = self.parser.peek_token().token;
            if depth == 0 {
                let stop = matches!(t, Token::Comma | Token::RParen | Token::SemiColon | Token::EOF)
                    || word_is(&t, "NOT")
                    || word_is(&t, "NULL")
                    || word_is(&t, "COMMENT")
                    || word_is(&t, "PRIMARY");
                if stop {
                    break;
                }
            }
            match &t {
                Token::Lt | Token::LParen | Token::LBracket => depth += 1,
                Token::Gt | Token::RParen | Token::RBracket => depth -= 1,
                Token::ShiftRight => depth -= 2,
                Token::EOF => break,
                _ => {}
            }
            let piece = match &t {
                Token::Word(w) if w.quote_style.is_some() => format!("`{}`", w.value.replace('`', "``")),
                other => other.to_string(),
            };
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&piece);
            self.parser.next_token();
        }
        if text.is_empty() {
            return self.expected("a column type");
        }
        Ok(text)
    }

    fn try_drop(&mut self) -> PResult<Option<Statement>> {
        if self.peek_is(1, "DATABASE") || self.peek_is(1, "SCHEMA") {
            self.parser.next_token();
            self.parser.next_token();
            let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = ident_value(&self.parser.parse_identifier()?);
            let cascade = if self.eat_word("CASCADE") {
                true
            } else {
                self.eat_word("RESTRICT");
                false
            };
            return Ok(Some(Statement::DropDatabase { name, if_exists, cascade }));
        }
        if self.peek_is(1, "VIEW") {
            self.parser.next_token();
            self.parser.next_token();
            let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let mut names = vec![table_name_from(&self.parser.parse_object_name(false)?)?];
            while self.parser.consume_token(&Token::Comma) {
                names.push(table_name_from(&self.parser.parse_object_name(false)?)?);
            }
            // CASCADE / RESTRICT: views are planned when read, so nothing depends on one.
            if !self.eat_word("CASCADE") {
                self.eat_word("RESTRICT");
            }
            return Ok(Some(Statement::DropView { names, if_exists }));
        }
        if self.peek_is(1, "TABLE") {
            self.parser.next_token();
            self.parser.next_token();
            let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = table_name_from(&self.parser.parse_object_name(false)?)?;
            // CASCADE / RESTRICT: nothing depends on a Bowman table (no views, no keys).
            if !self.eat_word("PURGE") && !self.eat_word("CASCADE") {
                self.eat_word("RESTRICT");
            }
            return Ok(Some(Statement::DropTable { name, if_exists }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut v = parse_sql(sql).unwrap();
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    fn standard(sql: &str) -> String {
        match one(sql) {
            Statement::Standard(s) => s.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_travel_becomes_a_suffixed_table_name_keeping_its_alias() {
        assert_eq!(standard("SELECT * FROM ev VERSION AS OF 3"), r#"SELECT * FROM "ev@v3" AS "ev""#);
        assert_eq!(
            standard("SELECT * FROM db.Ev VERSION AS OF 0 AS old JOIN ev ON old.a = ev.a"),
            r#"SELECT * FROM db."ev@v0" AS old JOIN ev ON old.a = ev.a"#
        );
        assert_eq!(
            standard("SELECT * FROM ev TIMESTAMP AS OF '2018-03-05 12:00:00' WHERE x = 1"),
            r#"SELECT * FROM "ev@t2018-03-05T12:00:00Z" AS "ev" WHERE x = 1"#
        );
        // Not time travel: casts and column aliases named like the keywords.
        assert_eq!(standard("SELECT CAST(a AS TIMESTAMP) AS of FROM t"), "SELECT CAST(a AS TIMESTAMP) AS of FROM t");
        assert!(parse_sql("SELECT * FROM ev TIMESTAMP AS OF 'soon'").is_err());
        assert!(parse_sql("SELECT * FROM ev VERSION AS OF 'x'").is_err());
    }

    #[test]
    fn create_table_spark_form() {
        let Statement::CreateTable(ct) = one(
            "CREATE TABLE IF NOT EXISTS Events.Raw (user_id STRING, n INT NOT NULL COMMENT 'count', tags ARRAY<ARRAY<STRING>>, dt DATE)
             USING parquet OPTIONS (compression 'zstd', 'fs.s3a.endpoint' = 'http://x', header true)
             PARTITIONED BY (dt) LOCATION 's3://lake/raw' COMMENT 'raw events'",
        ) else {
            panic!()
        };
        assert_eq!(ct.name, TableName { database: Some("events".into()), name: "raw".into() });
        assert!(ct.if_not_exists);
        assert_eq!(ct.columns.len(), 4);
        assert_eq!(ct.columns[2].data_type, "ARRAY < ARRAY < STRING >>");
        assert!(!ct.columns[1].nullable);
        assert_eq!(ct.format.as_deref(), Some("parquet"));
        assert_eq!(ct.options.get("fs.s3a.endpoint").map(String::as_str), Some("http://x"));
        assert_eq!(ct.options.get("header").map(String::as_str), Some("true"));
        assert_eq!(ct.partitioned_by, vec![("dt".to_string(), None)]);
        assert_eq!(ct.location.as_deref(), Some("s3://lake/raw"));
    }

    #[test]
    fn create_table_hive_form_and_ctas() {
        let Statement::CreateTable(ct) = one(
            "CREATE EXTERNAL TABLE t (a INT) PARTITIONED BY (dt STRING) STORED AS PARQUET LOCATION '/tmp/x'",
        ) else {
            panic!()
        };
        assert!(ct.external);
        assert_eq!(ct.format.as_deref(), Some("parquet"));
        assert_eq!(ct.partitioned_by, vec![("dt".to_string(), Some("STRING".to_string()))]);
        let Statement::CreateTable(ct) = one("create table t2 using json as select 1 as a") else { panic!() };
        assert!(ct.query.is_some());
        assert!(ct.columns.is_empty());
    }

    #[test]
    fn utility_statements() {
        assert_eq!(one("show databases"), Statement::ShowDatabases { like: None });
        assert_eq!(one("SHOW TABLES IN ev LIKE 'r*'"), Statement::ShowTables { database: Some("ev".into()), like: Some("r*".into()) });
        assert_eq!(one("use Ev"), Statement::Use { database: "ev".into() });
        assert_eq!(one("DROP DATABASE IF EXISTS ev CASCADE"), Statement::DropDatabase { name: "ev".into(), if_exists: true, cascade: true });
        assert!(matches!(one("describe extended ev.t"), Statement::Describe { extended: true, .. }));
        assert_eq!(one("SET extra_float_digits = 3"), Statement::Set { name: "extra_float_digits".into(), value: SetValue::Value("3".into()) });
        assert_eq!(one("SET search_path TO 'ev', public"), Statement::Set { name: "search_path".into(), value: SetValue::Value("ev, public".into()) });
        assert_eq!(one("set datafusion.execution.batch_size = 1024"), Statement::Set { name: "datafusion.execution.batch_size".into(), value: SetValue::Value("1024".into()) });
        assert_eq!(one("SHOW transaction isolation level"), Statement::Show { name: "transaction isolation level".into() });
        assert_eq!(one("BEGIN ISOLATION LEVEL READ COMMITTED"), Statement::Begin);
        assert!(matches!(one("select 1"), Statement::Standard(_)));
        assert_eq!(one("DEALLOCATE _pg3_0"), Statement::Deallocate { name: Some("_pg3_0".into()) });
        assert_eq!(one("deallocate prepare S_1"), Statement::Deallocate { name: Some("s_1".into()) });
        assert_eq!(one("DEALLOCATE ALL"), Statement::Deallocate { name: None });
        assert_eq!(one("DEALLOCATE PREPARE ALL"), Statement::Deallocate { name: None });
        let Statement::Optimize { name, predicate, sort_by, zorder } = one("OPTIMIZE ev.t WHERE dt >= '2018-03-05' SORT BY (user_id, ts)") else {
            panic!()
        };
        assert_eq!(name.to_string(), "ev.t");
        assert_eq!(predicate.unwrap().to_string(), "dt >= '2018-03-05'");
        assert_eq!(sort_by.len(), 2);
        assert!(!zorder);
        assert_eq!(parse_sql("select 1; ; select 2;").unwrap().len(), 2);
    }

    #[test]
    fn views_and_the_public_schema() {
        let Statement::CreateView(cv) = one("CREATE OR REPLACE VIEW public.V (a COMMENT 'x', b) COMMENT 'v' AS SELECT 1, 2") else {
            panic!()
        };
        assert_eq!(cv.name, TableName { database: Some("default".into()), name: "v".into() });
        assert!(cv.or_replace && !cv.temporary && !cv.if_not_exists);
        assert_eq!(cv.columns, vec![("a".to_string(), Some("x".to_string())), ("b".to_string(), None)]);
        assert_eq!(cv.comment.as_deref(), Some("v"));
        assert_eq!(cv.query.to_string(), "SELECT 1, 2");
        // dbt's form: three-part name, parenthesised query.
        let Statement::CreateView(cv) = one(r#"create view "bowman"."public"."m__dbt_tmp" as (select 1 as a)"#) else { panic!() };
        assert_eq!(cv.name.to_string(), "default.m__dbt_tmp");
        let Statement::CreateView(cv) = one("CREATE TEMP VIEW IF NOT EXISTS t AS SELECT * FROM a JOIN b USING (id)") else { panic!() };
        assert!(cv.temporary && cv.if_not_exists);
        // The Spark source form stays a table definition.
        assert!(matches!(one("CREATE TEMPORARY VIEW r USING postgres OPTIONS (url 'x')"), Statement::CreateTable(_)));
        assert_eq!(
            one("DROP VIEW IF EXISTS a, ev.b CASCADE"),
            Statement::DropView {
                names: vec![TableName { database: None, name: "a".into() }, TableName { database: Some("ev".into()), name: "b".into() }],
                if_exists: true
            }
        );
        assert!(matches!(one("ALTER VIEW v RENAME TO w"), Statement::RenameTable { .. }));
        assert!(matches!(one("SHOW CREATE VIEW v"), Statement::ShowCreateTable { .. }));
        assert!(parse_sql("CREATE VIEW v SELECT 1").is_err());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse_sql("SELECT 1 FROM").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        let e = parse_sql("CREATE TABLE t (a INT) USING").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        assert!(e.position().is_some());
    }
}
