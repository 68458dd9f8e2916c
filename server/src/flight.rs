//! Arrow Flight SQL front end, on arrow-flight's `FlightSqlService`.
//!
//! Every request runs through a [`bowman_sql::Session`] exactly as pgwire statements do (same
//! dialect, catalog, commits and SQLSTATEs, carried in the gRPC status message). Results stream
//! batch by batch from DataFusion into Flight data; nothing buffers a whole result.
//!
//! Flight is stateless per request: each statement gets a fresh session. Prepared statements
//! are kept server-side by handle (their SQL and bound parameters) and re-planned per
//! execution, as ADBC prepares every query. With users configured, clients authenticate with
//! basic auth in the handshake and get a bearer token; with `--tls-cert` the Flight port speaks
//! TLS with the same certificate as pgwire.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, Nullable,
    ProstMessageExt, Searchable, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use bowman_sql::{BowmanError, Engine, IngestMode, Output, Session, SqlState};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::UserSource;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The gRPC status for a Bowman error: the SQLSTATE follows the message, as clients show it,
/// then the detail and hint, for which gRPC has no fields.
pub fn status(e: BowmanError) -> Status {
    let code = e.reported_sqlstate();
    let mut message = format!("{} (SQLSTATE {code})", e.message());
    for (label, text) in [("DETAIL", e.detail()), ("HINT", e.hint())] {
        if let Some(text) = text {
            message.push_str(&format!("\n{label}: {text}"));
        }
    }
    match code {
        SqlState::UNDEFINED_TABLE => return Status::not_found(message),
        SqlState::DUPLICATE_TABLE | SqlState::DUPLICATE_SCHEMA => return Status::already_exists(message),
        SqlState::INSUFFICIENT_PRIVILEGE => return Status::permission_denied(message),
        _ => {}
    }
    match code.class() {
        "3F" => Status::not_found(message),
        "42" | "22" | "2B" => Status::invalid_argument(message),
        "28" => Status::unauthenticated(message),
        "0A" => Status::unimplemented(message),
        "57" => Status::cancelled(message),
        "40" => Status::aborted(message),
        "08" => Status::unavailable(message),
        "53" => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

struct PreparedEntry {
    sql: String,
    /// Rows of parameters bound by the last DoPut; each row is one execution.
    params: Option<RecordBatch>,
}

/// What [`BowmanFlight::check`] returns for a caller on a server without users: trusted, as
/// pgwire trusts loopback clients then (no user name is empty).
const TRUSTED: &str = "";

/// The Flight SQL service over one engine.
pub struct BowmanFlight {
    engine: Arc<Engine>,
    users: Arc<UserSource>,
    tokens: Mutex<HashMap<String, String>>,
    prepared: Mutex<HashMap<String, PreparedEntry>>,
}

impl BowmanFlight {
    pub fn new(engine: Arc<Engine>, users: Arc<UserSource>) -> Self {
        BowmanFlight { engine, users, tokens: Mutex::default(), prepared: Mutex::default() }
    }

    pub fn into_service(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    #[allow(clippy::result_large_err)]
    /// The user a request's bearer token stands for (the role its statements run as).
    async fn check<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) {
            if let Some(user) = self.tokens.lock().expect("tokens").get(token) {
                return Ok(user.clone());
            }
        }
        // Whether clients must log in is decided at each call: users made with CREATE USER on a
        // server that started without any are asked for passwords at once.
        if !self.users.any().await {
            return Ok(TRUSTED.to_string());
        }
        let header = header.ok_or_else(|| Status::unauthenticated("log in first: send basic auth in the Flight handshake"))?;
        if header.strip_prefix("Bearer ").is_none() {
            return Err(Status::unauthenticated("expected a bearer token"));
        }
        Err(Status::unauthenticated("unknown or expired token; log in again"))
    }

    /// A session running as `user`, with that role's privileges.
    fn session(&self, user: &str) -> Session {
        let mut session = self.engine.new_session();
        session.set_client(bowman_sql::ClientInfo { protocol: bowman_sql::Protocol::Flight, ..Default::default() });
        if user == TRUSTED {
            // No users: every (loopback) client is trusted, as on pgwire.
            session.set_trusted_user("anonymous");
        } else {
            session.set_user(user);
        }
        session
    }

    fn handle(bytes: &[u8]) -> Result<String, Status> {
        String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument("malformed prepared statement handle"))
    }

    fn entry_sql(&self, handle: &str) -> Result<(String, Option<RecordBatch>), Status> {
        let prepared = self.prepared.lock().expect("prepared");
        let entry = prepared
            .get(handle)
            .ok_or_else(|| Status::not_found(format!("no prepared statement {handle}; it was closed or never created")))?;
        Ok((entry.sql.clone(), entry.params.clone()))
    }

    /// The result schema a statement will have (empty for commands), from planning it.
    async fn plan_schema(&self, user: &str, sql: &str) -> Result<(SchemaRef, Vec<Option<datafusion::arrow::datatypes::DataType>>), Status> {
        let mut session = self.session(user);
        // ADBC and JDBC-style clients write `?` (qmark); Bowman plans PostgreSQL's `$n`.
        let sql = bowman_sql::qmark_to_dollar(sql).map_err(status)?;
        let prepared = session.prepare(&sql).await.map_err(status)?;
        let schema = prepared.output_schema().unwrap_or_else(|| Arc::new(Schema::empty()));
        Ok((schema, prepared.param_types().to_vec()))
    }

    /// Run a statement with one row of parameters.
    async fn run(&self, user: &str, sql: &str, params: Vec<ScalarValue>) -> Result<Output, Status> {
        let mut session = self.session(user);
        let sql = bowman_sql::qmark_to_dollar(sql).map_err(status)?;
        let prepared = session.prepare(&sql).await.map_err(status)?;
        session.execute_prepared(&prepared, &ParamValues::List(params.into_iter().map(Into::into).collect())).await.map_err(status)
    }

    async fn run_update(&self, user: &str, sql: &str, params: Option<RecordBatch>) -> Result<i64, Status> {
        let rows = param_rows(params.as_ref())?;
        let mut total = 0i64;
        for row in rows {
            match self.run(user, sql, row).await? {
                Output::Command { rows, .. } => total += rows.unwrap_or(0) as i64,
                Output::Rows { mut stream, .. } => {
                    // A query sent as an update: run it to completion, count its rows.
                    while let Some(b) = stream.next().await {
                        total += b.map_err(|e| status(e.into()))?.num_rows() as i64;
                    }
                }
                _ => {}
            }
        }
        Ok(total)
    }

    fn rows_stream(output: Output) -> Result<DoGetStream, Status> {
        match output {
            Output::Rows { schema, stream } => {
                let batches = stream.map_err(|e| FlightError::Tonic(Box::new(status(BowmanError::from(e)))));
                Ok(Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from)))
            }
            _ => {
                let schema = Arc::new(Schema::empty());
                Ok(Box::pin(
                    FlightDataEncoderBuilder::new().with_schema(schema).build(futures::stream::empty()).map_err(Status::from),
                ))
            }
        }
    }

    fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket { ticket: ticket.into() });
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn batch_stream<E: Into<FlightError>>(schema: SchemaRef, batch: Result<RecordBatch, E>) -> DoGetStream {
        let batch = batch.map_err(Into::into);
        Box::pin(FlightDataEncoderBuilder::new().with_schema(schema).build(futures::stream::once(async { batch })).map_err(Status::from))
    }

    /// (database, table, Arrow schema) of every table, from the catalog snapshot.
    #[allow(clippy::result_large_err)]
    fn tables(&self) -> Result<Vec<(String, String, Schema)>, Status> {
        let snapshot = self.engine.catalog().snapshot();
        let mut out = Vec::new();
        for (db, entry) in &snapshot.databases {
            for (name, def) in &entry.tables {
                let fields = bowman_sql::types::table_fields(def).map_err(status)?;
                out.push((db.clone(), name.clone(), Schema::new(fields)));
            }
        }
        Ok(out)
    }

    /// (database, view, Arrow schema) of every view, from the catalog snapshot.
    #[allow(clippy::result_large_err)]
    fn views(&self) -> Result<Vec<(String, String, Schema)>, Status> {
        let snapshot = self.engine.catalog().snapshot();
        let mut out = Vec::new();
        for (db, entry) in &snapshot.databases {
            for (name, def) in &entry.views {
                let fields = def
                    .columns
                    .iter()
                    .map(|c| bowman_sql::types::parse_type(&c.data_type).map(|(t, _)| Field::new(&c.name, t, true)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(status)?;
                out.push((db.clone(), name.clone(), Schema::new(fields)));
            }
        }
        Ok(out)
    }
}

/// Each row of a parameter batch as scalars (no batch: one execution without parameters).
#[allow(clippy::result_large_err)]
fn param_rows(batch: Option<&RecordBatch>) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let Some(batch) = batch else { return Ok(vec![vec![]]) };
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c: &ArrayRef| ScalarValue::try_from_array(c, r).map_err(|e| Status::invalid_argument(format!("parameter: {e}"))))
                .collect()
        })
        .collect()
}

async fn read_batches(stream: PeekableFlightDataStream) -> Result<Option<RecordBatch>, Status> {
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut all = Vec::new();
    while let Some(b) = batches.next().await {
        all.push(b.map_err(|e| Status::invalid_argument(format!("cannot decode parameters: {e}")))?);
    }
    match all.first() {
        None => Ok(None),
        Some(first) => Ok(Some(
            datafusion::arrow::compute::concat_batches(&first.schema(), &all)
                .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?,
        )),
    }
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Bowman");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().expect("static SQL info")
});

static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, i32, Option<&str>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, 1, None),
        ("TINYINT", XdbcDataType::XdbcTinyint, 3, None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, 5, None),
        ("INT", XdbcDataType::XdbcInteger, 10, None),
        ("BIGINT", XdbcDataType::XdbcBigint, 19, None),
        ("FLOAT", XdbcDataType::XdbcFloat, 7, None),
        ("DOUBLE", XdbcDataType::XdbcDouble, 15, None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, 38, Some("precision,scale")),
        ("STRING", XdbcDataType::XdbcVarchar, i32::MAX, None),
        ("BINARY", XdbcDataType::XdbcBinary, i32::MAX, None),
        ("DATE", XdbcDataType::XdbcDate, 10, None),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp, 26, None),
    ];
    for (name, t, size, params) in types {
        let quoted = matches!(t, XdbcDataType::XdbcVarchar | XdbcDataType::XdbcDate | XdbcDataType::XdbcTimestamp);
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type: *t,
            column_size: Some(*size),
            literal_prefix: quoted.then(|| "'".to_string()),
            literal_suffix: quoted.then(|| "'".to_string()),
            create_params: params.map(|p| p.split(',').map(str::to_string).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(t, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: Some(false),
            fixed_prec_scale: matches!(t, XdbcDataType::XdbcDecimal),
            auto_increment: Some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: matches!(t, XdbcDataType::XdbcDecimal).then_some(38),
            sql_data_type: *t,
            datetime_subcode: None,
            num_prec_radix: Some(10),
            interval_precision: None,
        });
    }
    b.build().expect("static type info")
});

/// Whether a statement answers with rows (a query) rather than a command tag.
fn returns_rows(sql: &str) -> bool {
    matches!(
        bowman_sql::parser::leading_keyword(sql).as_str(),
        "SELECT" | "WITH" | "VALUES" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "TABLE" | "FROM"
    )
}

/// SQL LIKE (`%`, `_`) for the metadata filters.
fn like(pattern: Option<&str>, value: &str) -> bool {
    fn m(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('%'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some('_'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    match pattern {
        None => true,
        Some(p) => m(&p.chars().collect::<Vec<_>>(), &value.chars().collect::<Vec<_>>()),
    }
}

#[tonic::async_trait]
impl FlightSqlService for BowmanFlight {
    type FlightService = BowmanFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let token = if !self.users.any().await {
            "anonymous".to_string()
        } else {
            let header = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .ok_or_else(|| Status::unauthenticated("send user and password as basic auth"))?;
            let decoded = crate::auth::BASIC_AUTH_BASE64
                .decode(header.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Status::unauthenticated("malformed basic auth"))?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| Status::unauthenticated("malformed basic auth"))?;
            if !self.users.check(user, password).await {
                tracing::warn!(user, "flight sql password authentication failed");
                return Err(Status::unauthenticated("password authentication failed (SQLSTATE 28P01)"));
            }
            let token = uuid::Uuid::new_v4().to_string();
            self.tokens.lock().expect("tokens").insert(token.clone(), user.to_string());
            token
        };
        let output = futures::stream::iter(vec![Ok(HandshakeResponse { protocol_version: 0, payload: token.clone().into() })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(Box::pin(output));
        let bearer = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.check(&request).await?;
        if !returns_rows(&query.query) {
            // DDL and DML sent as queries (ADBC's execute does): run now, answer with no data.
            self.run_update(&user, &query.query, None).await?;
            return Self::info(&Schema::empty(), vec![], request.into_inner()).map(|mut r| {
                r.get_mut().endpoint.clear();
                r
            });
        }
        let (schema, _) = self.plan_schema(&user, &query.query).await?;
        let ticket = TicketStatementQuery { statement_handle: query.query.into_bytes().into() };
        Self::info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        let user = self.check(&request).await?;
        let sql = Self::handle(&ticket.statement_handle)?;
        let output = self.run(&user, &sql, vec![]).await?;
        Ok(Response::new(Self::rows_stream(output)?))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        self.run_update(&user, &command.query, None).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.check(&request).await?;
        let (schema, params) = self.plan_schema(&user, &query.query).await?;
        let param_schema = Schema::new(
            params
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(datafusion::arrow::datatypes::DataType::Null), true))
                .collect::<Vec<_>>(),
        );
        let options = IpcWriteOptions::default();
        let IpcMessage(dataset_schema) =
            SchemaAsIpc::new(&schema, &options).try_into().map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        let IpcMessage(parameter_schema) = SchemaAsIpc::new(&param_schema, &options)
            .try_into()
            .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        let handle = uuid::Uuid::new_v4().to_string();
        self.prepared.lock().expect("prepared").insert(handle.clone(), PreparedEntry { sql: query.query, params: None });
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: handle.into_bytes().into(), dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.check(&request).await?;
        let handle = Self::handle(&query.prepared_statement_handle)?;
        self.prepared.lock().expect("prepared").remove(&handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.check(&request).await?;
        let handle = Self::handle(&query.prepared_statement_handle)?;
        let params = read_batches(request.into_inner()).await?;
        let mut prepared = self.prepared.lock().expect("prepared");
        let entry = prepared.get_mut(&handle).ok_or_else(|| Status::not_found(format!("no prepared statement {handle}")))?;
        entry.params = params;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.into_bytes().into()) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.check(&request).await?;
        let handle = Self::handle(&query.prepared_statement_handle)?;
        let (sql, params) = self.entry_sql(&handle)?;
        if !returns_rows(&sql) {
            self.run_update(&user, &sql, params).await?;
            return Self::info(&Schema::empty(), vec![], request.into_inner()).map(|mut r| {
                r.get_mut().endpoint.clear();
                r
            });
        }
        let (schema, _) = self.plan_schema(&user, &sql).await?;
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let user = self.check(&request).await?;
        let handle = Self::handle(&query.prepared_statement_handle)?;
        let (sql, params) = self.entry_sql(&handle)?;
        let mut rows = param_rows(params.as_ref())?;
        if rows.len() > 1 {
            return Err(Status::invalid_argument("a query takes one row of parameters; bind one row"));
        }
        let output = self.run(&user, &sql, rows.pop().unwrap_or_default()).await?;
        Ok(Response::new(Self::rows_stream(output)?))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        let handle = Self::handle(&query.prepared_statement_handle)?;
        let (sql, bound) = self.entry_sql(&handle)?;
        let sent = read_batches(request.into_inner()).await?;
        self.run_update(&user, &sql, sent.or(bound)).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        let options = command.table_definition_options.unwrap_or_default();
        let not_exist = TableNotExistOption::try_from(options.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
        let exists = TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified);
        let mode = match (not_exist, exists) {
            (_, TableExistsOption::Replace) => IngestMode::Replace,
            (TableNotExistOption::Create, TableExistsOption::Append) => IngestMode::CreateAppend,
            (TableNotExistOption::Create, _) => IngestMode::Create,
            (_, TableExistsOption::Append) => IngestMode::Append,
            _ => IngestMode::Append,
        };
        if command.temporary {
            return Err(Status::unimplemented("temporary tables are not supported; ingest into a table"));
        }
        let mut batches = FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        let first = batches.next().await.transpose().map_err(|e| Status::invalid_argument(format!("cannot decode the data: {e}")))?;
        let Some(first) = first else { return Ok(0) };
        let schema = first.schema();
        let rest = batches.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
        let stream = futures::stream::once(async move { Ok(first) }).chain(rest);
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream));
        let mut session = self.session(&user);
        let rows = session.ingest(command.schema.as_deref(), &command.table, mode, stream).await.map_err(status)?;
        Ok(rows as i64)
    }

    async fn get_flight_info_catalogs(&self, query: CommandGetCatalogs, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let mut builder = query.into_builder();
        builder.append(bowman_sql::CATALOG_NAME);
        Ok(Response::new(Self::batch_stream(builder.schema(), builder.build())))
    }

    async fn get_flight_info_schemas(&self, query: CommandGetDbSchemas, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let snapshot = self.engine.catalog().snapshot();
        let mut builder = query.into_builder();
        for db in snapshot.databases.keys() {
            builder.append(bowman_sql::CATALOG_NAME, db);
        }
        Ok(Response::new(Self::batch_stream(builder.schema(), builder.build())))
    }

    async fn get_flight_info_tables(&self, query: CommandGetTables, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(&self, query: CommandGetTables, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let wants_tables = query.table_types.is_empty() || query.table_types.iter().any(|t| t.eq_ignore_ascii_case("TABLE"));
        let wants_views = query.table_types.is_empty() || query.table_types.iter().any(|t| t.eq_ignore_ascii_case("VIEW"));
        let catalog_ok = query.catalog.as_deref().is_none_or(|c| c == bowman_sql::CATALOG_NAME);
        let (schema_pattern, table_pattern) = (query.db_schema_filter_pattern.clone(), query.table_name_filter_pattern.clone());
        let mut builder = query.into_builder();
        if wants_tables && catalog_ok {
            for (db, table, schema) in self.tables()? {
                if like(schema_pattern.as_deref(), &db) && like(table_pattern.as_deref(), &table) {
                    builder.append(bowman_sql::CATALOG_NAME, &db, &table, "TABLE", &schema).map_err(Status::from)?;
                }
            }
        }
        if wants_views && catalog_ok {
            for (db, view, schema) in self.views()? {
                if like(schema_pattern.as_deref(), &db) && like(table_pattern.as_deref(), &view) {
                    builder.append(bowman_sql::CATALOG_NAME, &db, &view, "VIEW", &schema).map_err(Status::from)?;
                }
            }
        }
        Ok(Response::new(Self::batch_stream(builder.schema(), builder.build())))
    }

    async fn get_flight_info_table_types(&self, query: CommandGetTableTypes, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = Schema::new(vec![Field::new("table_type", datafusion::arrow::datatypes::DataType::Utf8, false)]);
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(&self, _query: CommandGetTableTypes, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let schema = Arc::new(Schema::new(vec![Field::new("table_type", datafusion::arrow::datatypes::DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(datafusion::arrow::array::StringArray::from(vec!["TABLE", "VIEW"]))]);
        Ok(Response::new(Self::batch_stream(schema, batch)))
    }

    async fn get_flight_info_sql_info(&self, query: CommandGetSqlInfo, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(&self, query: CommandGetSqlInfo, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let builder = query.into_builder(&SQL_INFO);
        Ok(Response::new(Self::batch_stream(builder.schema(), builder.build())))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder(&XDBC_TYPES).schema();
        Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(&self, query: CommandGetXdbcTypeInfo, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        let builder = query.into_builder(&XDBC_TYPES);
        Ok(Response::new(Self::batch_stream(builder.schema(), builder.build())))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        Self::info(&primary_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_primary_keys(&self, _query: CommandGetPrimaryKeys, request: Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.check(&request).await?;
        // Bowman tables declare no primary keys: the answer is always empty.
        let schema = Arc::new(primary_keys_schema());
        Ok(Response::new(Self::batch_stream(schema.clone(), Ok::<_, FlightError>(RecordBatch::new_empty(schema)))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}

    async fn do_get_fallback(&self, _request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!("Bowman does not implement {}", message.type_url)))
    }
}

/// The columns of Flight SQL's GetPrimaryKeys answer.
fn primary_keys_schema() -> Schema {
    use datafusion::arrow::datatypes::DataType::{Int32, Utf8};
    Schema::new(vec![
        Field::new("catalog_name", Utf8, true),
        Field::new("db_schema_name", Utf8, true),
        Field::new("table_name", Utf8, false),
        Field::new("column_name", Utf8, false),
        Field::new("key_name", Utf8, true),
        Field::new("key_sequence", Int32, false),
    ])
}

/// Serve Flight SQL on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    users: Arc<UserSource>,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let service = BowmanFlight::new(engine, users).into_service();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        // The same certificate as pgwire: basic auth then travels encrypted.
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = match builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "flight sql TLS configuration failed; not serving Flight SQL");
                return;
            }
        };
    }
    let result = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "flight sql server stopped");
    }
}
