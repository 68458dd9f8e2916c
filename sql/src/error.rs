//! Bowman's errors and their one mapping to SQLSTATE.
//!
//! Every front end reports failures through [`BowmanError::reported_sqlstate`]: pgwire sends the
//! code in its ErrorResponse with the message, [`BowmanError::detail`] and
//! [`BowmanError::hint`]; Flight SQL maps the code's class to a gRPC status. `XX000` is kept for
//! real internal errors; everything a user can cause has a specific class.

use bowman_catalog::CatalogError;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use thiserror::Error;

pub type Result<T, E = BowmanError> = std::result::Result<T, E>;

/// A PostgreSQL SQLSTATE: five ASCII letters or digits, the first two its class
/// (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SqlState([u8; 5]);

macro_rules! sqlstates {
    ($($name:ident = $code:literal;)*) => {
        impl SqlState {
            $(pub const $name: SqlState = SqlState(*$code);)*
        }
    };
}

sqlstates! {
    DATA_EXCEPTION = b"22000";
    NUMERIC_VALUE_OUT_OF_RANGE = b"22003";
    DIVISION_BY_ZERO = b"22012";
    INVALID_PARAMETER_VALUE = b"22023";
    INVALID_TEXT_REPRESENTATION = b"22P02";
    INVALID_BINARY_REPRESENTATION = b"22P03";
    BAD_COPY_FILE_FORMAT = b"22P04";
    UNABLE_TO_CONNECT = b"08001";
    CONNECTION_FAILURE = b"08006";
    PROTOCOL_VIOLATION = b"08P01";
    FEATURE_NOT_SUPPORTED = b"0A000";
    INVALID_GRANT_OPERATION = b"0LP01";
    INVALID_SQL_STATEMENT_NAME = b"26000";
    INVALID_AUTHORIZATION = b"28000";
    INVALID_PASSWORD = b"28P01";
    DEPENDENT_OBJECTS_STILL_EXIST = b"2BP01";
    INVALID_CURSOR_NAME = b"34000";
    INVALID_SCHEMA_NAME = b"3F000";
    SERIALIZATION_FAILURE = b"40001";
    SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION = b"42000";
    SYNTAX_ERROR = b"42601";
    INSUFFICIENT_PRIVILEGE = b"42501";
    INVALID_NAME = b"42602";
    NAME_TOO_LONG = b"42622";
    DUPLICATE_COLUMN = b"42701";
    AMBIGUOUS_COLUMN = b"42702";
    UNDEFINED_COLUMN = b"42703";
    UNDEFINED_OBJECT = b"42704";
    DUPLICATE_OBJECT = b"42710";
    DUPLICATE_FUNCTION = b"42723";
    DATATYPE_MISMATCH = b"42804";
    WRONG_OBJECT_TYPE = b"42809";
    UNDEFINED_FUNCTION = b"42883";
    RESERVED_NAME = b"42939";
    UNDEFINED_TABLE = b"42P01";
    DUPLICATE_CURSOR = b"42P03";
    DUPLICATE_SCHEMA = b"42P06";
    DUPLICATE_TABLE = b"42P07";
    INVALID_TABLE_DEFINITION = b"42P16";
    PROGRAM_LIMIT_EXCEEDED = b"54000";
    STATEMENT_TOO_COMPLEX = b"54001";
    OUT_OF_MEMORY = b"53200";
    TOO_MANY_CONNECTIONS = b"53300";
    OBJECT_IN_USE = b"55006";
    QUERY_CANCELED = b"57014";
    IO_ERROR = b"58030";
    UNDEFINED_FILE = b"58P01";
    CONFIG_FILE_ERROR = b"F0000";
    INTERNAL_ERROR = b"XX000";
    DATA_CORRUPTED = b"XX001";
}

impl SqlState {
    /// A code as another database or a client sent it; `None` unless it has SQLSTATE's form.
    pub fn parse(code: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()).then_some(SqlState(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (the constants and `parse`).
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// The class: the first two characters (`42` syntax or access, `22` data, `08` connection).
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

impl PartialEq<str> for SqlState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<SqlState> for String {
    fn from(s: SqlState) -> String {
        s.to_string()
    }
}

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
    /// A value a setting does not take (the message names the setting and the value; the hint
    /// says what it takes).
    #[error("{message}")]
    InvalidParameterValue { message: String, hint: Option<String> },
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
    /// Another error with what helps the user: more on what failed, and what to do.
    #[error("{error}")]
    Explained {
        #[source]
        error: Box<BowmanError>,
        detail: Option<String>,
        hint: Option<String>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl BowmanError {
    #[allow(non_snake_case)]
    pub fn Syntax(message: String) -> Self {
        BowmanError::Syntax { message, position: None }
    }

    /// This error with a hint: what the user can do about it (PostgreSQL's HINT field).
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            BowmanError::Explained { error, detail, .. } => BowmanError::Explained { error, detail, hint: Some(hint.into()) },
            error => BowmanError::Explained { error: Box::new(error), detail: None, hint: Some(hint.into()) },
        }
    }

    /// This error with a detail: more about what failed (PostgreSQL's DETAIL field).
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        match self {
            BowmanError::Explained { error, hint, .. } => BowmanError::Explained { error, detail: Some(detail.into()), hint },
            error => BowmanError::Explained { error: Box::new(error), detail: Some(detail.into()), hint: None },
        }
    }

    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            BowmanError::Syntax { .. } => SqlState::SYNTAX_ERROR,
            BowmanError::Catalog(e) => catalog_sqlstate(e),
            BowmanError::DataFusion(e) => datafusion_sqlstate(e),
            BowmanError::UnknownFormat { .. } => SqlState::UNDEFINED_OBJECT,
            BowmanError::UndefinedType(_) => SqlState::UNDEFINED_OBJECT,
            BowmanError::UndefinedColumn(_) => SqlState::UNDEFINED_COLUMN,
            BowmanError::NotSupported(_) => SqlState::FEATURE_NOT_SUPPORTED,
            BowmanError::InvalidDefinition(_) => SqlState::INVALID_TABLE_DEFINITION,
            BowmanError::InvalidName(_) => SqlState::INVALID_NAME,
            BowmanError::LocationInUse(_) => SqlState::DUPLICATE_TABLE,
            BowmanError::InvalidValue(_) => SqlState::INVALID_PARAMETER_VALUE,
            BowmanError::InvalidParameterValue { .. } => SqlState::INVALID_PARAMETER_VALUE,
            BowmanError::ArityMismatch(_) => SqlState::SYNTAX_ERROR,
            BowmanError::UnknownSetting(_) => SqlState::UNDEFINED_OBJECT,
            BowmanError::Io(_) => SqlState::IO_ERROR,
            BowmanError::Canceled(_) => SqlState::QUERY_CANCELED,
            BowmanError::InvalidCursor(_) => SqlState::INVALID_CURSOR_NAME,
            BowmanError::DuplicateCursor(_) => SqlState::DUPLICATE_CURSOR,
            BowmanError::InvalidStatementName(_) => SqlState::INVALID_SQL_STATEMENT_NAME,
            BowmanError::TooComplex(_) => SqlState::STATEMENT_TOO_COMPLEX,
            BowmanError::ValueTooLarge(_) => SqlState::PROGRAM_LIMIT_EXCEEDED,
            BowmanError::NameTooLong(_) => SqlState::NAME_TOO_LONG,
            BowmanError::TooManyConnections(_) => SqlState::TOO_MANY_CONNECTIONS,
            BowmanError::PermissionDenied(_) => SqlState::INSUFFICIENT_PRIVILEGE,
            BowmanError::ReservedName(_) => SqlState::RESERVED_NAME,
            BowmanError::InvalidGrant(_) => SqlState::INVALID_GRANT_OPERATION,
            BowmanError::ObjectInUse(_) => SqlState::OBJECT_IN_USE,
            BowmanError::Explained { error, .. } => error.sqlstate(),
            BowmanError::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    /// The SQLSTATE sent to clients: a remote database's own code when the failure came from
    /// one (a constraint violation in PostgreSQL stays 23505), else [`BowmanError::sqlstate`].
    pub fn reported_sqlstate(&self) -> SqlState {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if let Some(code) = e.downcast_ref::<ConnectorError>().and_then(|c| c.sqlstate.as_deref()).and_then(SqlState::parse) {
                return code;
            }
            source = e.source();
        }
        self.sqlstate()
    }

    /// [`BowmanError::reported_sqlstate`] as the five characters of the wire protocol.
    pub fn code(&self) -> String {
        self.reported_sqlstate().to_string()
    }

    /// 1-based character position in the statement, where known.
    pub fn position(&self) -> Option<usize> {
        match self {
            BowmanError::Syntax { position, .. } => *position,
            BowmanError::Explained { error, .. } => error.position(),
            _ => None,
        }
    }

    /// The message shown to the user: DataFusion's layering ("Error during planning: ...") is
    /// peeled off where it adds nothing.
    pub fn message(&self) -> String {
        match self {
            BowmanError::DataFusion(e) => datafusion_message(e),
            BowmanError::Syntax { message, .. } => message.clone(),
            BowmanError::Explained { error, .. } => error.message(),
            other => other.to_string(),
        }
    }

    /// More about what failed, where it helps (PostgreSQL's DETAIL).
    pub fn detail(&self) -> Option<String> {
        match self {
            BowmanError::Explained { error, detail, .. } => detail.clone().or_else(|| error.detail()),
            BowmanError::UnknownSetting(name) => crate::settings::unknown_detail(name),
            _ => None,
        }
    }

    /// What the user can do about it, where Bowman knows (PostgreSQL's HINT).
    pub fn hint(&self) -> Option<String> {
        match self {
            BowmanError::Explained { error, hint, .. } => hint.clone().or_else(|| error.hint()),
            BowmanError::UnknownSetting(name) => Some(crate::settings::unknown_hint(name)),
            BowmanError::InvalidParameterValue { hint, .. } => hint.clone(),
            BowmanError::TooComplex(_) => {
                Some("Bowman's limits on statement size and nesting, and how to stay within them, are in docs/limits.md.".into())
            }
            _ => None,
        }
    }
}

fn catalog_sqlstate(e: &CatalogError) -> SqlState {
    match e {
        CatalogError::DatabaseExists(_) => SqlState::DUPLICATE_SCHEMA,
        CatalogError::DatabaseNotFound(_) => SqlState::INVALID_SCHEMA_NAME,
        CatalogError::DatabaseNotEmpty(_) => SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
        CatalogError::ProtectedDatabase(_) => SqlState::INSUFFICIENT_PRIVILEGE,
        CatalogError::TableExists(..) => SqlState::DUPLICATE_TABLE,
        CatalogError::TableNotFound(..) => SqlState::UNDEFINED_TABLE,
        CatalogError::NotATable(..) | CatalogError::NotAView(..) => SqlState::WRONG_OBJECT_TYPE,
        CatalogError::Conflict(_) => SqlState::SERIALIZATION_FAILURE,
        CatalogError::UserExists(_) => SqlState::DUPLICATE_OBJECT,
        CatalogError::UserNotFound(_) => SqlState::UNDEFINED_OBJECT,
        CatalogError::FunctionExists(_) => SqlState::DUPLICATE_FUNCTION,
        CatalogError::FunctionNotFound(_) => SqlState::UNDEFINED_FUNCTION,
        CatalogError::RoleInUse(..) => SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
        CatalogError::GrantTargetNotFound(_) => SqlState::UNDEFINED_OBJECT,
        CatalogError::Store(_) => SqlState::IO_ERROR,
        CatalogError::TooNew { .. } => SqlState::INTERNAL_ERROR,
        CatalogError::Corrupt(_) => SqlState::DATA_CORRUPTED,
        CatalogError::SecretKey(_) => SqlState::CONFIG_FILE_ERROR,
    }
}

fn connector_sqlstate(e: &ConnectorError) -> SqlState {
    match e.kind {
        ErrorKind::InvalidOption => SqlState::INVALID_PARAMETER_VALUE,
        ErrorKind::NotFound => SqlState::UNDEFINED_FILE,
        ErrorKind::Unreachable => SqlState::UNABLE_TO_CONNECT,
        ErrorKind::ConnectionLost => SqlState::CONNECTION_FAILURE,
        ErrorKind::AccessDenied => SqlState::INVALID_AUTHORIZATION,
        ErrorKind::Corrupt => SqlState::DATA_CORRUPTED,
        ErrorKind::Io => SqlState::IO_ERROR,
        ErrorKind::Unsupported => SqlState::FEATURE_NOT_SUPPORTED,
        ErrorKind::Conflict => SqlState::SERIALIZATION_FAILURE,
    }
}

fn arrow_sqlstate(e: &ArrowError) -> SqlState {
    match e {
        ArrowError::DivideByZero => SqlState::DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => SqlState::INVALID_TEXT_REPRESENTATION,
        ArrowError::InvalidArgumentError(_) => SqlState::INVALID_PARAMETER_VALUE,
        ArrowError::IoError(_, io) => transport_sqlstate(io).unwrap_or(SqlState::IO_ERROR),
        ArrowError::ParquetError(_) | ArrowError::CsvError(_) | ArrowError::JsonError(_) | ArrowError::IpcError(_) => {
            SqlState::BAD_COPY_FILE_FORMAT
        }
        ArrowError::MemoryError(_) => SqlState::OUT_OF_MEMORY,
        ArrowError::NotYetImplemented(_) => SqlState::FEATURE_NOT_SUPPORTED,
        ArrowError::ExternalError(inner) => external_sqlstate(inner.as_ref()).unwrap_or(SqlState::INTERNAL_ERROR),
        _ => SqlState::DATA_EXCEPTION,
    }
}

fn object_store_sqlstate(e: &object_store::Error) -> SqlState {
    match e {
        object_store::Error::NotFound { .. } => SqlState::UNDEFINED_FILE,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => SqlState::INVALID_AUTHORIZATION,
        _ => transport_sqlstate(e).unwrap_or(SqlState::IO_ERROR),
    }
}

/// Whether a failure was the network's rather than the data's or the disk's: somewhere in
/// `e`'s source chain, a connection that could not be made (08001: refused, no route) or one
/// that was lost or stopped answering (08006: reset, closed mid-answer, timed out). A Parquet
/// or CSV read that fails because S3 went away is reported so, not as corrupt data (XX001) or
/// a local I/O error (58030).
pub fn transport_sqlstate(e: &(dyn std::error::Error + 'static)) -> Option<SqlState> {
    use object_store::client::{HttpError, HttpErrorKind};
    use std::io::ErrorKind as Io;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            match h.kind() {
                HttpErrorKind::Connect => return Some(SqlState::UNABLE_TO_CONNECT),
                HttpErrorKind::Timeout | HttpErrorKind::Interrupted | HttpErrorKind::Request => return Some(SqlState::CONNECTION_FAILURE),
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                Io::ConnectionRefused | Io::AddrNotAvailable | Io::HostUnreachable | Io::NetworkUnreachable => {
                    return Some(SqlState::UNABLE_TO_CONNECT);
                }
                Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::TimedOut | Io::NotConnected => {
                    return Some(SqlState::CONNECTION_FAILURE);
                }
                _ => {}
            }
        }
        source = e.source();
    }
    None
}

fn external_sqlstate(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<SqlState> {
    if let Some(c) = e.downcast_ref::<ConnectorError>() {
        return Some(connector_sqlstate(c));
    }
    if let Some(b) = e.downcast_ref::<BowmanError>() {
        return Some(b.sqlstate());
    }
    if e.downcast_ref::<crate::settings::ValueError>().is_some() {
        return Some(SqlState::INVALID_PARAMETER_VALUE);
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
        return Some(transport_sqlstate(p).unwrap_or(SqlState::DATA_CORRUPTED));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(transport_sqlstate(io).unwrap_or(SqlState::IO_ERROR));
    }
    None
}

/// Classify a DataFusion error. DataFusion reports many user errors as `Plan(String)` or
/// `Execution(String)`, so those are refined by their well-known message shapes.
pub fn datafusion_sqlstate(e: &DataFusionError) -> SqlState {
    match e {
        DataFusionError::SQL(..) => SqlState::SYNTAX_ERROR,
        DataFusionError::NotImplemented(_) => SqlState::FEATURE_NOT_SUPPORTED,
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::ParquetError(p) => transport_sqlstate(p.as_ref()).unwrap_or(SqlState::DATA_CORRUPTED),
        DataFusionError::ObjectStore(o) => object_store_sqlstate(o),
        DataFusionError::IoError(io) => transport_sqlstate(io).unwrap_or(SqlState::IO_ERROR),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlState::UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => SqlState::AMBIGUOUS_COLUMN,
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => SqlState::DUPLICATE_COLUMN,
        },
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::Configuration(_) => SqlState::INVALID_PARAMETER_VALUE,
        DataFusionError::Execution(msg) => execution_sqlstate(msg),
        DataFusionError::ResourcesExhausted(_) => SqlState::OUT_OF_MEMORY,
        DataFusionError::External(inner) => external_sqlstate(inner.as_ref()).unwrap_or(SqlState::INTERNAL_ERROR),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => datafusion_sqlstate(inner),
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errs) => errs.first().map(datafusion_sqlstate).unwrap_or(SqlState::INTERNAL_ERROR),
        _ => SqlState::INTERNAL_ERROR,
    }
}

fn plan_sqlstate(msg: &str) -> SqlState {
    let m = msg.to_ascii_lowercase();
    if (m.contains("table '") && m.contains("not found")) || m.contains("no table named") {
        SqlState::UNDEFINED_TABLE
    } else if m.contains("invalid function") || m.contains("function '") && m.contains("not found") {
        SqlState::UNDEFINED_FUNCTION
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        SqlState::UNDEFINED_COLUMN
    } else if m.contains("cannot coerce")
        || m.contains("no function matches")
        || m.contains("cannot infer common")
        || m.contains("does not support")
        || m.contains("unsupported cast")
        || m.contains("cannot cast")
        || m.contains("type mismatch")
    {
        SqlState::DATATYPE_MISMATCH
    } else if m.contains("schema '") && m.contains("not found") {
        SqlState::INVALID_SCHEMA_NAME
    } else if m.contains("inserting query must have the same schema")
        || m.contains("column count")
        || m.contains("number of columns")
        || m.contains("inconsistent data length")
    {
        SqlState::SYNTAX_ERROR
    } else {
        SqlState::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    }
}

fn execution_sqlstate(msg: &str) -> SqlState {
    let m = msg.to_ascii_lowercase();
    if m.contains("divide by zero") || m.contains("division by zero") {
        SqlState::DIVISION_BY_ZERO
    } else if m.contains("overflow") {
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    } else if m.contains("cast error") || m.contains("cannot cast") || m.contains("failed to parse") {
        SqlState::INVALID_TEXT_REPRESENTATION
    } else if m.contains("parquet") && (m.contains("invalid") || m.contains("corrupt") || m.contains("eof")) {
        SqlState::DATA_CORRUPTED
    } else {
        SqlState::DATA_EXCEPTION
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
        DataFusionError::Context(_, inner) if datafusion_sqlstate(inner) == SqlState::INSUFFICIENT_PRIVILEGE => datafusion_message(inner),
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
    fn sqlstate_type() {
        assert_eq!(SqlState::UNDEFINED_OBJECT.as_str(), "42704");
        assert_eq!(SqlState::UNDEFINED_OBJECT.class(), "42");
        assert_eq!(SqlState::parse("23505").map(|s| s.to_string()).as_deref(), Some("23505"));
        assert_eq!(SqlState::parse("2350"), None);
        assert_eq!(SqlState::parse("23 05"), None);
        assert_eq!(SqlState::parse("éé5"), None);
        // A remote database's own code is what clients get; a malformed one falls back.
        let remote = |code: &str| {
            let mut c = ConnectorError::new(ErrorKind::Conflict, "duplicate key");
            c.sqlstate = Some(code.into());
            BowmanError::DataFusion(DataFusionError::External(Box::new(c)))
        };
        assert_eq!(remote("23505").code(), "23505");
        assert_eq!(remote("nope").code(), "40001");
    }

    #[test]
    fn detail_and_hint_travel_with_the_error() {
        let e = BowmanError::NotSupported("INSERT OVERWRITE into t".into()).with_detail("d").with_hint("h");
        assert_eq!((e.sqlstate(), e.message().as_str()), (SqlState::FEATURE_NOT_SUPPORTED, "INSERT OVERWRITE into t is not supported"));
        assert_eq!((e.detail().as_deref(), e.hint().as_deref()), (Some("d"), Some("h")));
        let e = BowmanError::Syntax { message: "x".into(), position: Some(3) }.with_hint("h");
        assert_eq!((e.position(), e.code().as_str()), (Some(3), "42601"));
        assert!(BowmanError::UnknownSetting("file_retension".into()).hint().unwrap().contains("\"file_retention\""));
        assert!(BowmanError::TooComplex("deep".into()).hint().is_some());
        assert_eq!(BowmanError::Internal("x".into()).hint(), None);
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
