//! The scan leaf: SCAN (deduplicated, overlapped with reading) or direct reads of named keys,
//! pipelined in batches, decoded into Arrow columns.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder, RecordBatch, RecordBatchOptions, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::options::{Format, KeyTemplate, RedisOptions};
use crate::table::{KeySource, Role};
use crate::{connect, redis_error};

/// Pipelined reads in flight at once while SCAN goes on.
const READ_AHEAD: usize = 4;
/// Connections that read values (besides the one that SCANs).
const READ_CONNECTIONS: usize = 2;

pub struct RedisScanExec {
    table: String,
    o: RedisOptions,
    roles: Vec<Role>,
    projection: Vec<usize>,
    out: SchemaRef,
    full: SchemaRef,
    source: KeySource,
    id_ranges: Vec<(String, String)>,
    /// The filters on the stream's ids leave nothing to read.
    no_ids: bool,
    limit: Option<usize>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for RedisScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisScanExec({})", self.table)
    }
}

impl RedisScanExec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: String,
        o: RedisOptions,
        schema: SchemaRef,
        roles: Vec<Role>,
        projection: Vec<usize>,
        source: KeySource,
        id_ranges: Vec<(String, String)>,
        no_ids: bool,
        limit: Option<usize>,
    ) -> Result<Self> {
        let out = Arc::new(schema.project(&projection)?);
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(out.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(RedisScanExec { table, o, roles, projection, out, full: schema, source, id_ranges, no_ids, limit, props, metrics: ExecutionPlanMetricsSet::new() })
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }
}

impl DisplayAs for RedisScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RedisScanExec: redis {} table={} format={}", self.o.describe, self.table, self.o.format.name())?;
        match &self.source {
            KeySource::Scan(p) => write!(f, " SCAN MATCH {p} COUNT {}", self.o.scan_count)?,
            KeySource::Keys(keys) => {
                let shown: Vec<&str> = keys.iter().take(10).map(String::as_str).collect();
                write!(f, " direct reads, no SCAN: keys={} [{}{}]", keys.len(), shown.join(", "), if keys.len() > 10 { ", ..." } else { "" })?
            }
        }
        write!(f, " read={} batch={}", self.o.format.read_command(), self.o.batch_size)?;
        if self.o.format == Format::Stream {
            if self.no_ids {
                write!(f, " xrange=none")?;
            } else {
                let r: Vec<String> = self.id_ranges.iter().take(10).map(|(a, b)| format!("[{a}, {b}]")).collect();
                write!(f, " xrange={}", r.join(" "))?;
            }
        }
        if let Some(l) = self.limit {
            write!(f, " limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for RedisScanExec {
    fn name(&self) -> &str {
        "RedisScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("RedisScanExec has no children".into()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("RedisScanExec has no partition {partition}")));
        }
        let m = Metrics {
            scan_calls: MetricBuilder::new(&self.metrics).counter("scan_calls", partition),
            keys_scanned: MetricBuilder::new(&self.metrics).counter("keys_scanned", partition),
            duplicate_keys: MetricBuilder::new(&self.metrics).counter("duplicate_keys", partition),
            direct_keys: MetricBuilder::new(&self.metrics).counter("direct_keys", partition),
            read_pipelines: MetricBuilder::new(&self.metrics).counter("read_pipelines", partition),
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
        };
        let decoder = Arc::new(Decoder::new(&self.table, &self.o, &self.roles, &self.projection, &self.full)?);
        let job = Job {
            table: self.table.clone(),
            o: self.o.clone(),
            source: self.source.clone(),
            id_ranges: self.id_ranges.clone(),
            no_ids: self.no_ids,
            limit: self.limit,
            decoder,
            m,
        };
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.out.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let result = job.run(&tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[derive(Clone)]
struct Metrics {
    scan_calls: Count,
    keys_scanned: Count,
    duplicate_keys: Count,
    direct_keys: Count,
    read_pipelines: Count,
    output_rows: Count,
}

struct Job {
    table: String,
    o: RedisOptions,
    source: KeySource,
    id_ranges: Vec<(String, String)>,
    no_ids: bool,
    limit: Option<usize>,
    decoder: Arc<Decoder>,
    m: Metrics,
}

type Tx = tokio::sync::mpsc::Sender<Result<RecordBatch>>;

impl Job {
    async fn run(self, tx: &Tx) -> Result<()> {
        if self.no_ids {
            return Ok(());
        }
        let conn = connect(&self.o, &self.table).await?;
        let batch = self.o.batch_size;
        let keys: futures::stream::BoxStream<'static, Result<Vec<Vec<u8>>>> = match &self.source {
            KeySource::Keys(keys) => {
                self.m.direct_keys.add(keys.len());
                let chunks: Vec<Vec<Vec<u8>>> = keys.chunks(batch).map(|c| c.iter().map(|k| k.as_bytes().to_vec()).collect()).collect();
                futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
            }
            KeySource::Scan(pattern) => scan_keys(
                conn.clone(),
                pattern.clone(),
                self.o.scan_count,
                batch,
                self.o.scan_dedup,
                self.m.clone(),
                self.o.clone(),
                self.table.clone(),
            )
            .boxed(),
        };
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        if self.o.format == Format::Stream {
            let mut keys = keys;
            while let Some(chunk) = keys.try_next().await? {
                for key in chunk {
                    for (start, end) in &self.id_ranges {
                        let mut start = start.clone();
                        loop {
                            if remaining == 0 {
                                return Ok(());
                            }
                            let mut c = redis::cmd("XRANGE");
                            c.arg(&key).arg(&start).arg(end).arg("COUNT").arg(batch);
                            self.m.read_pipelines.add(1);
                            let v: Value = c.query_async(&mut conn.clone()).await.map_err(|e| redis_error(e, &self.o, &self.table, true))?;
                            let (b, last, n) = self.decoder.stream_page(&key, v)?;
                            if b.num_rows() > 0 && tx.send(Ok(clip(b, &mut remaining, &self.m.output_rows))).await.is_err() {
                                return Ok(());
                            }
                            match last {
                                Some(id) if n >= batch && start != *end => start = format!("({id}"),
                                _ => break,
                            }
                        }
                    }
                }
            }
            return Ok(());
        }
        let needs_values = self.decoder.needs_values() || matches!(self.source, KeySource::Keys(_));
        let format = self.o.format;
        let decoder = self.decoder.clone();
        let m = self.m.clone();
        let o = self.o.clone();
        let table = self.table.clone();
        // Reads go over connections of their own (SCAN keeps the first), so replies are parsed
        // on more than one connection task while the SCAN goes on.
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        if needs_values {
            for _ in 0..READ_CONNECTIONS {
                readers.push(connect(&self.o, &self.table).await?);
            }
        }
        let mut next_reader = 0usize;
        let mut batches = keys
            .map(move |chunk| {
                let decoder = decoder.clone();
                next_reader += 1;
                let mut conn = readers.get(next_reader % READ_CONNECTIONS.max(1)).cloned().unwrap_or_else(|| conn.clone());
                let m = m.clone();
                let o = o.clone();
                let table = table.clone();
                async move {
                    let chunk = chunk?;
                    if !needs_values {
                        return decoder.keys_only(&chunk);
                    }
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for k in &chunk {
                        match format {
                            Format::Hash => pipe.cmd("HGETALL").arg(k),
                            Format::String | Format::Json => pipe.cmd("GET").arg(k),
                            Format::Zset => pipe.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
                            Format::Stream => unreachable!("streams are read page by page"),
                        };
                    }
                    m.read_pipelines.add(1);
                    let v: Value = pipe.query_async(&mut conn).await.map_err(|e| redis_error(e, &o, &table, true))?;
                    let values = match v {
                        Value::Array(v) => v,
                        other => return Err(unexpected(&table, &other)),
                    };
                    // Decoding runs as a task of its own, in parallel with the next reads.
                    tokio::task::spawn_blocking(move || decoder.values(&chunk, values))
                        .await
                        .map_err(|e| DataFusionError::Internal(format!("redis decode task: {e}")))?
                }
            })
            .buffered(READ_AHEAD);
        while let Some(b) = batches.try_next().await? {
            if remaining == 0 {
                break;
            }
            if b.num_rows() > 0 && tx.send(Ok(clip(b, &mut remaining, &self.m.output_rows))).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// The batch cut to the rows a LIMIT still wants.
fn clip(b: RecordBatch, remaining: &mut usize, rows: &Count) -> RecordBatch {
    let n = b.num_rows().min(*remaining);
    *remaining -= n;
    rows.add(n);
    if n < b.num_rows() { b.slice(0, n) } else { b }
}

fn unexpected(table: &str, v: &Value) -> DataFusionError {
    ConnectorError::new(ErrorKind::Corrupt, format!("table {table}: Redis answered with an unexpected reply ({v:?})")).into()
}

/// Keys from `SCAN cursor MATCH pattern COUNT n`, each once (SCAN may return a key twice),
/// in chunks of `batch`.
#[allow(clippy::too_many_arguments)]
fn scan_keys(
    conn: MultiplexedConnection,
    pattern: String,
    count: usize,
    batch: usize,
    dedup: bool,
    m: Metrics,
    o: RedisOptions,
    table: String,
) -> impl futures::Stream<Item = Result<Vec<Vec<u8>>>> + Send + 'static {
    struct State {
        conn: MultiplexedConnection,
        cursor: u64,
        done: bool,
        keys: ScannedKeys,
    }
    let state = State { conn, cursor: 0, done: false, keys: ScannedKeys::new(dedup) };
    futures::stream::try_unfold(state, move |mut s| {
        let pattern = pattern.clone();
        let m = m.clone();
        let o = o.clone();
        let table = table.clone();
        async move {
            while s.keys.pending.len() < batch && !s.done {
                let mut c = redis::cmd("SCAN");
                c.arg(s.cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(count);
                m.scan_calls.add(1);
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    c.query_async(&mut s.conn).await.map_err(|e| redis_error(e, &o, &table, true))?;
                m.keys_scanned.add(keys.len());
                m.duplicate_keys.add(s.keys.add(keys));
                s.cursor = next;
                if next == 0 {
                    s.done = true;
                }
            }
            match s.keys.take(batch) {
                Some(chunk) => Ok(Some((chunk, s))),
                None => Ok(None),
            }
        }
    })
}

/// The keys SCAN returned, each once: SCAN may return a key more than once (while Redis
/// resizes its tables), so with `dedup` the keys already seen are remembered and skipped.
pub struct ScannedKeys {
    dedup: bool,
    seen: HashSet<Vec<u8>>,
    pending: Vec<Vec<u8>>,
}

impl ScannedKeys {
    pub fn new(dedup: bool) -> Self {
        ScannedKeys { dedup, seen: HashSet::new(), pending: Vec::new() }
    }

    /// Add one SCAN page; returns how many of its keys were seen before.
    pub fn add(&mut self, keys: Vec<Vec<u8>>) -> usize {
        let mut duplicates = 0;
        for k in keys {
            if self.dedup {
                if self.seen.contains(&k) {
                    duplicates += 1;
                    continue;
                }
                self.seen.insert(k.clone());
            }
            self.pending.push(k);
        }
        duplicates
    }

    /// Up to `n` keys not yet handed out, or `None` when there are none.
    pub fn take(&mut self, n: usize) -> Option<Vec<Vec<u8>>> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(n);
        Some(self.pending.drain(..n).collect())
    }
}

/// Decodes replies into the scan's projected columns.
struct Decoder {
    table: String,
    format: Format,
    /// The decoded columns, and which of them the scan returns (`None`: all).
    out: SchemaRef,
    keep: Option<Vec<usize>>,
    roles: Vec<Role>,
    /// Field name -> projected column.
    fields: HashMap<Vec<u8>, usize>,
    template: Option<KeyTemplate>,
    /// Values that do not decode become NULL with a reason in `_error` (the table has one and
    /// is not strict); otherwise they fail the statement.
    lenient: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Problem {
    WrongType,
    Decode,
}

struct Rows {
    bufs: Vec<Buf>,
    errors: Vec<Option<String>>,
    first: Option<(Problem, String)>,
    n: usize,
}

enum Buf {
    Str(StringBuilder),
    Bin(BinaryBuilder),
    None,
}

type Slots<'a> = Vec<Option<Cow<'a, [u8]>>>;

impl Decoder {
    fn new(table: &str, o: &RedisOptions, all_roles: &[Role], projection: &[usize], full: &SchemaRef) -> Result<Self> {
        // `_error` tells about the whole row, so a query that reads it decodes every column
        // (and then keeps the ones it asked for).
        // A strict table fails on a bad value in any column, read or not.
        let whole_row = o.strict || projection.iter().any(|&i| all_roles[i] == Role::Error);
        let decoded: Vec<usize> = if whole_row { (0..all_roles.len()).collect() } else { projection.to_vec() };
        let keep: Option<Vec<usize>> =
            whole_row.then(|| projection.iter().map(|i| decoded.iter().position(|d| d == i).unwrap_or(0)).collect());
        let out = Arc::new(full.project(&decoded)?);
        let roles: Vec<Role> = decoded.iter().map(|&i| all_roles[i].clone()).collect();
        let fields = roles
            .iter()
            .enumerate()
            .filter_map(|(j, r)| match r {
                Role::Field(name) => Some((name.as_bytes().to_vec(), j)),
                _ => None,
            })
            .collect();
        // A table that declares `_error` (read by this query or not) reads values that do not
        // decode as NULLs, unless it is strict.
        let lenient = all_roles.contains(&Role::Error) && !o.strict;
        Ok(Decoder {
            table: table.to_string(),
            format: o.format,
            out,
            keep,
            roles,
            fields,
            template: o.key_parts.clone(),
            lenient,
        })
    }

    /// Whether the query reads anything beyond the key.
    fn needs_values(&self) -> bool {
        self.roles.iter().any(|r| !matches!(r, Role::Key | Role::Part(_)))
    }

    fn rows(&self, capacity: usize) -> Rows {
        let bufs = self
            .roles
            .iter()
            .enumerate()
            .map(|(j, r)| match r {
                Role::Error => Buf::None,
                _ if matches!(self.out.field(j).data_type(), DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => {
                    Buf::Bin(BinaryBuilder::with_capacity(capacity, capacity * 16))
                }
                _ => Buf::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
            })
            .collect();
        Rows { bufs, errors: Vec::with_capacity(capacity), first: None, n: 0 }
    }

    fn slots<'a>(&self, key: &'a [u8]) -> (Slots<'a>, Option<String>) {
        let mut slots: Slots<'a> = vec![None; self.roles.len()];
        let mut error = None;
        let mut parts: Option<Vec<&'a str>> = None;
        if self.roles.iter().any(|r| matches!(r, Role::Part(_))) {
            match (std::str::from_utf8(key), &self.template) {
                (Ok(k), Some(t)) => match t.split(k) {
                    Some(p) => parts = Some(p),
                    None => error = Some(format!("key {k} does not fit key_parts")),
                },
                _ => error = Some(format!("key {} is not UTF-8", String::from_utf8_lossy(key))),
            }
        }
        for (j, r) in self.roles.iter().enumerate() {
            match r {
                Role::Key => slots[j] = Some(Cow::Borrowed(key)),
                Role::Part(p) => slots[j] = parts.as_ref().and_then(|v| v.get(*p)).map(|s| Cow::Borrowed(s.as_bytes())),
                _ => {}
            }
        }
        (slots, error)
    }

    fn push(&self, rows: &mut Rows, slots: Slots<'_>, error: Option<(Problem, String)>) {
        for (j, buf) in rows.bufs.iter_mut().enumerate() {
            let v = slots[j].as_deref();
            match buf {
                Buf::Str(b) => match v.map(std::str::from_utf8) {
                    Some(Ok(s)) => b.append_value(s),
                    Some(Err(_)) => {
                        b.append_null();
                        let msg = format!("{}: the value is not UTF-8", self.out.field(j).name());
                        rows.first.get_or_insert((Problem::Decode, msg.clone()));
                        add_error(&mut rows.errors, rows.n, msg);
                    }
                    None => b.append_null(),
                },
                Buf::Bin(b) => match v {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                },
                Buf::None => {}
            }
        }
        rows.errors.push(None);
        if let Some((problem, msg)) = error {
            rows.first.get_or_insert((problem, msg.clone()));
            add_error(&mut rows.errors, rows.n, msg);
        }
        rows.n += 1;
    }

    fn keys_only(&self, keys: &[Vec<u8>]) -> Result<RecordBatch> {
        let mut rows = self.rows(keys.len());
        for k in keys {
            let (slots, err) = self.slots(k);
            self.push(&mut rows, slots, err.map(|e| (Problem::Decode, e)));
        }
        self.finish(rows)
    }

    /// One reply per key, as the format's read command gave it.
    fn values(&self, keys: &[Vec<u8>], values: Vec<Value>) -> Result<RecordBatch> {
        let mut rows = self.rows(keys.len());
        for (k, v) in keys.iter().zip(values) {
            let (mut slots, mut err) = self.slots(k);
            let wrong = |e: &redis::ServerError| {
                Some((
                    Problem::WrongType,
                    format!(
                        "key {} is not a {} ({})",
                        String::from_utf8_lossy(k),
                        match self.format {
                            Format::Hash => "hash",
                            Format::String | Format::Json => "string",
                            Format::Zset => "sorted set",
                            Format::Stream => "stream",
                        },
                        e.details().map(|d| format!("{} {d}", e.code())).unwrap_or_else(|| e.code().to_string())
                    ),
                ))
            };
            let base_err = err.take().map(|e| (Problem::Decode, e));
            match (self.format, v) {
                (_, Value::ServerError(e)) => {
                    let e = wrong(&e);
                    self.push(&mut rows, slots, base_err.or(e));
                }
                (_, Value::Nil) => {}
                (Format::Hash, v) => {
                    let pairs = pairs(v);
                    if pairs.is_empty() {
                        continue;
                    }
                    for (f, val) in pairs {
                        if let Some(&j) = self.fields.get(f.as_ref()) {
                            slots[j] = Some(val);
                        }
                    }
                    self.push(&mut rows, slots, base_err);
                }
                (Format::String, v) => {
                    let Some(bytes) = bytes(v) else { continue };
                    for (j, r) in self.roles.iter().enumerate() {
                        if *r == Role::Value {
                            slots[j] = Some(bytes.clone());
                        }
                    }
                    self.push(&mut rows, slots, base_err);
                }
                (Format::Json, v) => {
                    let Some(bytes) = bytes(v) else { continue };
                    let mut e = base_err;
                    match serde_json::from_slice::<serde_json::Value>(&bytes) {
                        Ok(serde_json::Value::Object(map)) => {
                            for (j, r) in self.roles.iter().enumerate() {
                                if let Role::Field(name) = r {
                                    slots[j] = match map.get(name) {
                                        None | Some(serde_json::Value::Null) => None,
                                        Some(serde_json::Value::String(s)) => Some(Cow::Owned(s.clone().into_bytes())),
                                        Some(other) => Some(Cow::Owned(other.to_string().into_bytes())),
                                    };
                                }
                            }
                        }
                        Ok(_) => {
                            e = e.or(Some((Problem::Decode, format!("key {} holds JSON that is not an object", String::from_utf8_lossy(k)))))
                        }
                        Err(je) => {
                            e = e.or(Some((Problem::Decode, format!("key {} does not hold JSON ({je})", String::from_utf8_lossy(k)))))
                        }
                    }
                    self.push(&mut rows, slots, e);
                }
                (Format::Zset, v) => {
                    for (member, score) in pairs(v) {
                        let mut s = slots.clone();
                        for (j, r) in self.roles.iter().enumerate() {
                            match r {
                                Role::Member => s[j] = Some(member.clone()),
                                Role::Score => s[j] = Some(score.clone()),
                                _ => {}
                            }
                        }
                        self.push(&mut rows, s, base_err.clone());
                    }
                }
                (Format::Stream, _) => unreachable!("streams are read page by page"),
            }
        }
        self.finish(rows)
    }

    /// One XRANGE page of `key`: the rows, the last entry id and how many entries came.
    fn stream_page(&self, key: &[u8], v: Value) -> Result<(RecordBatch, Option<String>, usize)> {
        let entries = match v {
            Value::Array(e) => e,
            Value::ServerError(e) => {
                let (slots, _) = self.slots(key);
                let mut rows = self.rows(1);
                let msg = format!("key {} is not a stream ({})", String::from_utf8_lossy(key), e.code());
                self.push(&mut rows, slots, Some((Problem::WrongType, msg)));
                return Ok((self.finish(rows)?, None, 0));
            }
            Value::Nil => vec![],
            other => return Err(unexpected(&self.table, &other)),
        };
        let n = entries.len();
        let mut rows = self.rows(n);
        let mut last = None;
        for e in entries {
            let Value::Array(mut parts) = e else { return Err(unexpected(&self.table, &e)) };
            if parts.len() != 2 {
                return Err(unexpected(&self.table, &Value::Array(parts)));
            }
            let fields = parts.pop().unwrap_or(Value::Nil);
            let id = bytes(parts.pop().unwrap_or(Value::Nil)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let (mut slots, err) = self.slots(key);
            let (ms, seq) = id.split_once('-').unwrap_or((id.as_str(), "0"));
            for (j, r) in self.roles.iter().enumerate() {
                match r {
                    Role::Id => slots[j] = Some(Cow::Owned(id.clone().into_bytes())),
                    Role::Ms => slots[j] = Some(Cow::Owned(ms.as_bytes().to_vec())),
                    Role::Seq => slots[j] = Some(Cow::Owned(seq.as_bytes().to_vec())),
                    _ => {}
                }
            }
            for (f, val) in pairs(fields) {
                if let Some(&j) = self.fields.get(f.as_ref()) {
                    slots[j] = Some(val);
                }
            }
            self.push(&mut rows, slots, err.map(|e| (Problem::Decode, e)));
            last = Some(id);
        }
        Ok((self.finish(rows)?, last, n))
    }

    /// Cast the text columns to their declared types; a value that does not cast is NULL and
    /// says why in `_error` (or fails the statement).
    fn finish(&self, mut rows: Rows) -> Result<RecordBatch> {
        let n = rows.n;
        let opts = CastOptions { safe: true, format_options: FormatOptions::default() };
        let mut columns: Vec<Option<ArrayRef>> = Vec::with_capacity(self.roles.len());
        for (j, buf) in rows.bufs.iter_mut().enumerate() {
            let field = self.out.field(j);
            let raw: ArrayRef = match buf {
                Buf::Str(b) => Arc::new(b.finish()),
                Buf::Bin(b) => Arc::new(b.finish()),
                Buf::None => {
                    columns.push(None);
                    continue;
                }
            };
            if raw.data_type() == field.data_type() {
                columns.push(Some(raw));
                continue;
            }
            let cast = cast_with_options(&raw, field.data_type(), &opts)?;
            if cast.null_count() != raw.null_count() {
                let text = raw.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
                for i in 0..n {
                    if raw.is_valid(i) && cast.is_null(i) {
                        let shown = text.map(|t| t.value(i)).unwrap_or("?");
                        let shown: String = shown.chars().take(60).collect();
                        let msg = format!("{}: '{}' is not a valid {}", field.name(), shown, field.data_type());
                        rows.first.get_or_insert((Problem::Decode, msg.clone()));
                        add_error(&mut rows.errors, i, msg);
                    }
                }
            }
            columns.push(Some(cast));
        }
        if let Some((problem, msg)) = &rows.first
            && !self.lenient {
                let (code, hint) = match problem {
                    Problem::WrongType => ("42809", ""),
                    Problem::Decode => ("22P02", ""),
                };
                return Err(ConnectorError::new(
                    ErrorKind::Corrupt,
                    format!(
                        "table {}: {msg}{hint}; declare a {} STRING column to read such rows with NULLs and the reason instead",
                        self.table,
                        crate::table::ERROR_COLUMN
                    ),
                )
                .with_sqlstate(code)
                .into());
            }
        let errors: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(std::mem::take(&mut rows.errors)));
        let columns: Vec<ArrayRef> = columns
            .into_iter()
            .enumerate()
            .map(|(j, c)| match c {
                Some(c) => Ok(c),
                None => cast_with_options(&errors, self.out.field(j).data_type(), &opts),
            })
            .collect::<std::result::Result<_, _>>()?;
        let batch = RecordBatch::try_new_with_options(self.out.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(n)))?;
        Ok(match &self.keep {
            Some(keep) => batch.project(keep)?,
            None => batch,
        })
    }
}

fn add_error(errors: &mut [Option<String>], i: usize, msg: String) {
    if let Some(slot) = errors.get_mut(i) {
        match slot {
            Some(s) => {
                s.push_str("; ");
                s.push_str(&msg);
            }
            None => *slot = Some(msg),
        }
    }
}

fn bytes(v: Value) -> Option<Cow<'static, [u8]>> {
    match v {
        Value::BulkString(b) => Some(Cow::Owned(b)),
        Value::SimpleString(s) => Some(Cow::Owned(s.into_bytes())),
        Value::Int(i) => Some(Cow::Owned(i.to_string().into_bytes())),
        Value::Double(d) => Some(Cow::Owned(d.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => Some(Cow::Owned(text.into_bytes())),
        Value::Okay => Some(Cow::Borrowed(b"OK")),
        _ => None,
    }
}

pub(crate) type Pair = (Cow<'static, [u8]>, Cow<'static, [u8]>);

/// A flat `[k, v, k, v]` array, a RESP3 map, or an array of `[k, v]` pairs.
pub(crate) fn pairs(v: Value) -> Vec<Pair> {
    match v {
        Value::Map(m) => m.into_iter().filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?))).collect(),
        Value::Array(items) => {
            if items.iter().all(|i| matches!(i, Value::Array(p) if p.len() == 2)) && !items.is_empty() {
                items
                    .into_iter()
                    .filter_map(|i| match i {
                        Value::Array(mut p) => {
                            let v = p.pop()?;
                            let k = p.pop()?;
                            Some((bytes(k)?, bytes(v)?))
                        }
                        _ => None,
                    })
                    .collect()
            } else {
                let mut out = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
                        out.push((k, v));
                    }
                }
                out
            }
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<Vec<u8>> {
        k.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    #[test]
    fn scanned_keys_come_once() {
        let mut s = ScannedKeys::new(true);
        assert_eq!(s.add(keys(&["a", "b", "c"])), 0);
        assert_eq!(s.take(2), Some(keys(&["a", "b"])));
        // A later page repeats a key already handed out and one still pending.
        assert_eq!(s.add(keys(&["b", "d", "c", "d"])), 3);
        assert_eq!(s.take(10), Some(keys(&["c", "d"])));
        assert_eq!(s.take(10), None);
        let mut s = ScannedKeys::new(false);
        assert_eq!(s.add(keys(&["a", "a"])), 0);
        assert_eq!(s.take(10), Some(keys(&["a", "a"])));
    }

    #[test]
    fn pairs_read_resp2_and_resp3_shapes() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = pairs(Value::Array(vec![b("f"), b("1"), b("g"), b("2")]));
        assert_eq!(flat.len(), 2);
        assert_eq!(flat[1].0.as_ref(), b"g");
        let nested = pairs(Value::Array(vec![Value::Array(vec![b("m"), Value::Double(1.5)])]));
        assert_eq!(nested[0].1.as_ref(), b"1.5");
        let map = pairs(Value::Map(vec![(b("k"), b("v"))]));
        assert_eq!(map[0].0.as_ref(), b"k");
    }
}
