//! Bowman's errors and their one mapping to SQLSTATE.
//!
//! Every front end reports failures through [`BowmanError::sqlstate`]: pgwire sends the code in
//! its ErrorResponse, Flight SQL will map the same classes to gRPC codes. `XX000` is kept for
//! real internal errors; everything a user can cause has a specific class.

use bowman_catalog::CatalogError;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use thiserror::Error;

pub type Result<T, E = BowmanError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum BowmanError {
    /// The statement text does not parse. `position` is the 1-based character offset.
    #[error("syntax error: {message}")]
    Syntax { message: String, position: Option<usize> },
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("unknown table format '{name}'; known formats: {known}")]
    UnknownFormat { name: String, known: String },
    #[error("type '{0}' does not exist")]
    UndefinedType(String),
    #[error("column '{0}' does not exist")]
    UndefinedColumn(String),
    #[error("{0} is not supported")]
    NotSupported(String),
    #[error("invalid table definition: {0}")]
    InvalidDefinition(String),
    /// A name that cannot be used where it would become a directory (`""`, `..`, `a/b`).
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A managed table's directory already holds files Bowman did not write.
    #[error("{0}")]
    LocationInUse(String),
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// An INSERT's query has more or fewer columns than the table takes.
    #[error("{0}")]
    ArityMismatch(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("canceling statement due to {0}")]
    Canceled(String),
    #[error("cursor \"{0}\" does not exist")]
    InvalidCursor(String),
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    #[error("prepared statement \"{0}\" does not exist")]
    InvalidStatementName(String),
    /// Nested deeper or longer than the server plans safely (`max_expression_depth`, the
    /// statement size limit): PostgreSQL's "statement too complex".
    #[error("statement too complex: {0}")]
    TooComplex(String),
    /// A value larger than Bowman builds (a string or array of more than the size limit).
    #[error("{0}")]
    ValueTooLarge(String),
    /// An identifier longer than the limit.
    #[error("{0}")]
    NameTooLong(String),
    /// A connection past `max_connections` or a user's `max_connections_per_user` (53300, as
    /// PostgreSQL's "sorry, too many clients already").
    #[error("{0}")]
    TooManyConnections(String),
    /// Not allowed for this session's role (a missing privilege, ownership or role
    /// attribute).
    #[error("{0}")]
    PermissionDenied(String),
    /// A name Bowman keeps for itself (`pg_*` roles, PUBLIC).
    #[error("{0}")]
    ReservedName(String),
    /// A GRANT or REVOKE that cannot be done (an unknown privilege, a membership loop).
    #[error("{0}")]
    InvalidGrant(String),
    /// An object the statement would remove is in use (DROP ROLE of the current user).
    #[error("{0}")]
    ObjectInUse(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl BowmanError {
    #[allow(non_snake_case)]
    pub fn Syntax(message: String) -> Self {
        BowmanError::Syntax { message, position: None }
    }

    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            BowmanError::Syntax { .. } => "42601",
            BowmanError::Catalog(e) => catalog_sqlstate(e),
            BowmanError::DataFusion(e) => datafusion_sqlstate(e),
            BowmanError::UnknownFormat { .. } => "42704",
            BowmanError::UndefinedType(_) => "42704",
            BowmanError::UndefinedColumn(_) => "42703",
            BowmanError::NotSupported(_) => "0A000",
            BowmanError::InvalidDefinition(_) => "42P16",
            BowmanError::InvalidName(_) => "42602",
            BowmanError::LocationInUse(_) => "42P07",
            BowmanError::InvalidValue(_) => "22023",
            BowmanError::ArityMismatch(_) => "42601",
            BowmanError::UnknownSetting(_) => "42704",
            BowmanError::Io(_) => "58030",
            BowmanError::Canceled(_) => "57014",
            BowmanError::InvalidCursor(_) => "34000",
            BowmanError::DuplicateCursor(_) => "42P03",
            BowmanError::InvalidStatementName(_) => "26000",
            BowmanError::TooComplex(_) => "54001",
            BowmanError::ValueTooLarge(_) => "54000",
            BowmanError::NameTooLong(_) => "42622",
            BowmanError::TooManyConnections(_) => "53300",
            BowmanError::PermissionDenied(_) => "42501",
            BowmanError::ReservedName(_) => "42939",
            BowmanError::InvalidGrant(_) => "0LP01",
            BowmanError::ObjectInUse(_) => "55006",
            BowmanError::Internal(_) => "XX000",
        }
    }

    /// The SQLSTATE sent to clients: a remote database's own code when the failure came from
    /// one (a constraint violation in PostgreSQL stays 23505), else [`BowmanError::sqlstate`].
    pub fn code(&self) -> String {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if let Some(code) = e.downcast_ref::<ConnectorError>().and_then(|c| c.sqlstate.clone()) {
                return code;
            }
            source = e.source();
        }
        self.sqlstate().to_string()
    }

    /// 1-based character position in the statement, where known.
    pub fn position(&self) -> Option<usize> {
        match self {
            BowmanError::Syntax { position, .. } => *position,
            _ => None,
        }
    }

    /// The message shown to the user: DataFusion's layering ("Error during planning: ...") is
    /// peeled off where it adds nothing.
    pub fn message(&self) -> String {
        match self {
            BowmanError::DataFusion(e) => datafusion_message(e),
            BowmanError::Syntax { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

fn catalog_sqlstate(e: &CatalogError) -> &'static str {
    match e {
        CatalogError::DatabaseExists(_) => "42P06",
        CatalogError::DatabaseNotFound(_) => "3F000",
        CatalogError::DatabaseNotEmpty(_) => "2BP01",
        CatalogError::ProtectedDatabase(_) => "42501",
        CatalogError::TableExists(..) => "42P07",
        CatalogError::TableNotFound(..) => "42P01",
        CatalogError::NotATable(..) | CatalogError::NotAView(..) => "42809",
        CatalogError::Conflict(_) => "40001",
        CatalogError::UserExists(_) => "42710",
        CatalogError::UserNotFound(_) => "42704",
        CatalogError::FunctionExists(_) => "42723",
        CatalogError::FunctionNotFound(_) => "42883",
        CatalogError::RoleInUse(..) => "2BP01",
        CatalogError::GrantTargetNotFound(_) => "42704",
        CatalogError::Store(_) => "58030",
        CatalogError::TooNew { .. } => "XX000",
        CatalogError::Corrupt(_) => "XX001",
        CatalogError::SecretKey(_) => "F0000",
    }
}

fn connector_sqlstate(e: &ConnectorError) -> &'static str {
    match e.kind {
        ErrorKind::InvalidOption => "22023",
        ErrorKind::NotFound => "58P01",
        ErrorKind::Unreachable => "08001",
        ErrorKind::ConnectionLost => "08006",
        ErrorKind::AccessDenied => "28000",
        ErrorKind::Corrupt => "XX001",
        ErrorKind::Io => "58030",
        ErrorKind::Unsupported => "0A000",
        ErrorKind::Conflict => "40001",
    }
}

fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::InvalidArgumentError(_) => "22023",
        ArrowError::IoError(_, io) => transport_sqlstate(io).unwrap_or("58030"),
        ArrowError::ParquetError(_) | ArrowError::CsvError(_) | ArrowError::JsonError(_) | ArrowError::IpcError(_) => {
            "22P04"
        }
        ArrowError::MemoryError(_) => "53200",
        ArrowError::NotYetImplemented(_) => "0A000",
        ArrowError::ExternalError(inner) => external_sqlstate(inner.as_ref()).unwrap_or("XX000"),
        _ => "22000",
    }
}

fn object_store_sqlstate(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => "58P01",
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => "28000",
        _ => transport_sqlstate(e).unwrap_or("58030"),
    }
}

/// Whether a failure was the network's rather than the data's or the disk's: somewhere in
/// `e`'s source chain, a connection that could not be made (08001: refused, no route) or one
/// that was lost or stopped answering (08006: reset, closed mid-answer, timed out). A Parquet
/// or CSV read that fails because S3 went away is reported so, not as corrupt data (XX001) or
/// a local I/O error (58030).
pub fn transport_sqlstate(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind as Io;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            match h.kind() {
                HttpErrorKind::Connect => return Some("08001"),
                HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Request => return Some("08006"),
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                Io::ConnectionRefused | Io::AddrNotAvailable | Io::HostUnreachable | Io::NetworkUnreachable => {
                    return Some("08001");
                }
                Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::TimedOut | Io::NotConnected => {
                    return Some("08006");
                }
                _ => {}
            }
        }
        source = e.source();
    }
    None
}

fn external_sqlstate(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<&'static str> {
    if let Some(c) = e.downcast_ref::<ConnectorError>() {
        return Some(connector_sqlstate(c));
    }
    if let Some(b) = e.downcast_ref::<BowmanError>() {
        return Some(b.sqlstate());
    }
    if let Some(c) = e.downcast_ref::<CatalogError>() {
        return Some(catalog_sqlstate(c));
    }
    if let Some(d) = e.downcast_ref::<DataFusionError>() {
        return Some(datafusion_sqlstate(d));
    }
    if let Some(a) = e.downcast_ref::<ArrowError>() {
        return Some(arrow_sqlstate(a));
    }
    if let Some(o) = e.downcast_ref::<object_store::Error>() {
        return Some(object_store_sqlstate(o));
    }
    if let Some(p) = e.downcast_ref::<datafusion::parquet::errors::ParquetError>() {
        return Some(transport_sqlstate(p).unwrap_or("XX001"));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(transport_sqlstate(io).unwrap_or("58030"));
    }
    None
}

/// Classify a DataFusion error. DataFusion reports many user errors as `Plan(String)` or
/// `Execution(String)`, so those are refined by their well-known message shapes.
pub fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::ParquetError(p) => transport_sqlstate(p.as_ref()).unwrap_or("XX001"),
        DataFusionError::ObjectStore(o) => object_store_sqlstate(o),
        DataFusionError::IoError(io) => transport_sqlstate(io).unwrap_or("58030"),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::Execution(msg) => execution_sqlstate(msg),
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::External(inner) => external_sqlstate(inner.as_ref()).unwrap_or("XX000"),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => datafusion_sqlstate(inner),
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errs) => errs.first().map(datafusion_sqlstate).unwrap_or("XX000"),
        _ => "XX000",
    }
}

fn plan_sqlstate(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if (m.contains("table '") && m.contains("not found")) || m.contains("no table named") {
        "42P01"
    } else if m.contains("invalid function") || m.contains("function '") && m.contains("not found") {
        "42883"
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703"
    } else if m.contains("cannot coerce")
        || m.contains("no function matches")
        || m.contains("cannot infer common")
        || m.contains("does not support")
        || m.contains("unsupported cast")
        || m.contains("cannot cast")
        || m.contains("type mismatch")
    {
        "42804"
    } else if m.contains("schema '") && m.contains("not found") {
        "3F000"
    } else if m.contains("inserting query must have the same schema")
        || m.contains("column count")
        || m.contains("number of columns")
        || m.contains("inconsistent data length")
    {
        "42601"
    } else {
        "42000"
    }
}

fn execution_sqlstate(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("divide by zero") || m.contains("division by zero") {
        "22012"
    } else if m.contains("overflow") {
        "22003"
    } else if m.contains("cast error") || m.contains("cannot cast") || m.contains("failed to parse") {
        "22P02"
    } else if m.contains("parquet") && (m.contains("invalid") || m.contains("corrupt") || m.contains("eof")) {
        "XX001"
    } else {
        "22000"
    }
}

/// The innermost useful message of a DataFusion error.
fn datafusion_message(e: &DataFusionError) -> String {
    match e {
        DataFusionError::External(inner) => {
            if let Some(d) = inner.downcast_ref::<DataFusionError>() {
                return datafusion_message(d);
            }
            inner.to_string()
        }
        // A refusal reads as PostgreSQL's, without the planning step that found it.
        DataFusionError::Context(_, inner) if datafusion_sqlstate(inner) == "42501" => datafusion_message(inner),
        DataFusionError::Context(ctx, inner) => format!("{ctx}: {}", datafusion_message(inner)),
        DataFusionError::Diagnostic(_, inner) => datafusion_message(inner),
        DataFusionError::Shared(inner) => datafusion_message(inner),
        DataFusionError::Plan(m) | DataFusionError::Execution(m) | DataFusionError::NotImplemented(m) => {
            strip_backtrace(m)
        }
        DataFusionError::SQL(p, _) => p.to_string(),
        DataFusionError::ParquetError(p) if transport_sqlstate(p.as_ref()).is_some() => {
            format!("lost the connection to storage while reading Parquet data: {p}")
        }
        DataFusionError::ParquetError(p) => format!("cannot read Parquet data: {p}"),
        DataFusionError::ObjectStore(o) => format!("storage error: {o}"),
        other => strip_backtrace(&other.to_string()),
    }
}

fn strip_backtrace(m: &str) -> String {
    m.split("\n\nbacktrace").next().unwrap_or(m).trim().to_string()
}

/// Where in `sql` a sqlparser error message ("... at Line: 2, Column: 5") points, as a
/// 1-based character offset.
pub fn position_from_parser_message(sql: &str, message: &str) -> Option<usize> {
    let idx = message.rfind("Line: ")?;
    let rest = &message[idx + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    let mut offset = 0usize;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return Some(offset + column.max(1));
        }
        offset += l.chars().count() + 1;
    }
    None
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for BowmanError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        let message = match e {
            datafusion::sql::sqlparser::parser::ParserError::ParserError(m)
            | datafusion::sql::sqlparser::parser::ParserError::TokenizerError(m) => m,
            other => other.to_string(),
        };
        BowmanError::Syntax { message, position: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions() {
        assert_eq!(position_from_parser_message("SELEC 1", "Expected: an SQL statement, found: SELEC at Line: 1, Column: 1"), Some(1));
        assert_eq!(position_from_parser_message("SELECT 1\nFROM x y z", "found: z at Line: 2, Column: 10"), Some(19));
    }

    #[test]
    fn classes() {
        assert_eq!(datafusion_sqlstate(&DataFusionError::Plan("table 'bowman.default.nope' not found".into())), "42P01");
        assert_eq!(datafusion_sqlstate(&DataFusionError::NotImplemented("x".into())), "0A000");
        let wrapped = DataFusionError::Context("ctx".into(), Box::new(DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None)));
        assert_eq!(datafusion_sqlstate(&wrapped), "22012");
        let conn = DataFusionError::External(Box::new(ConnectorError::new(ErrorKind::NotFound, "gone")));
        assert_eq!(datafusion_sqlstate(&conn), "58P01");
    }
}
