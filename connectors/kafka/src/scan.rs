//! Bounded scans of a topic: the snapshot (per-partition offset ranges fixed when the query
//! starts), and the leaf that reads them.
//!
//! A range ends when the consumer has *passed* its end offset: a message at or after the end,
//! a partition EOF at a watermark at or after it, or the consumer's position at or after it.
//! Nothing waits for a message at the last offset, which under `read_committed` can be a
//! transaction marker that is never delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::datatypes::SchemaRef;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SortOrderPushdownResult};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::decode::{BatchDecoder, Layout, Messages, Meta};
use crate::options::{KafkaOptions, OffsetSpec};
use crate::pushdown::Bounds;

/// Messages per decoded batch.
const BATCH_MESSAGES: usize = 8192;
/// A range is not split into pieces smaller than this.
const MIN_PIECE: i64 = 20_000;

/// One partition's offsets `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "p{}:{}..{}", self.partition, self.start, self.end)
    }
}

pub fn kafka_err(o: &KafkaOptions, table: &str, what: &str, e: &KafkaError) -> ConnectorError {
    let code = e.rdkafka_error_code();
    let kind = match code {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic) => ErrorKind::NotFound,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        | Some(RDKafkaErrorCode::SaslAuthenticationFailed)
        | Some(RDKafkaErrorCode::Authentication)
        | Some(RDKafkaErrorCode::ClusterAuthorizationFailed)
        | Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) => ErrorKind::AccessDenied,
        Some(RDKafkaErrorCode::BrokerTransportFailure)
        | Some(RDKafkaErrorCode::AllBrokersDown)
        | Some(RDKafkaErrorCode::OperationTimedOut)
        | Some(RDKafkaErrorCode::RequestTimedOut)
        | Some(RDKafkaErrorCode::Resolve) => ErrorKind::Unreachable,
        _ => ErrorKind::Io,
    };
    let hint = match kind {
        ErrorKind::Unreachable => "; check bootstrap_servers and that the brokers are up",
        ErrorKind::NotFound => "; check the topic option",
        ErrorKind::AccessDenied => "; check the kafka.sasl.* / kafka.ssl.* options",
        _ => "",
    };
    ConnectorError::new(kind, o.redact(&format!("Kafka at {} (table {table}, topic {}): {what}: {e}{hint}", o.bootstrap_servers, o.topic)))
}

/// A consumer that never joins a group or commits: partitions are assigned directly.
pub fn consumer(o: &KafkaOptions, table: &str) -> Result<BaseConsumer, ConnectorError> {
    let mut c = crate::client_config(o);
    // librdkafka wants a group id for its consumer queue; with assign() and no commits nothing
    // is ever created on the cluster under it.
    c.set("group.id", format!("bowman-adhoc-{}", uuid::Uuid::new_v4()));
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "error");
    c.set("isolation.level", if o.read_committed { "read_committed" } else { "read_uncommitted" });
    c.set("fetch.wait.max.ms", "100");
    c.create().map_err(|e| crate::config_error(o, table, &e))
}

/// The partitions of the topic (ids, sorted).
pub fn topic_partitions(c: &BaseConsumer, o: &KafkaOptions, table: &str) -> Result<Vec<i32>, ConnectorError> {
    let md = c.fetch_metadata(Some(&o.topic), o.connect_timeout).map_err(|e| {
        let mut err = kafka_err(o, table, "cannot read the topic's metadata", &e);
        if err.kind == ErrorKind::Io {
            err.kind = ErrorKind::Unreachable;
        }
        err
    })?;
    let t = md.topics().iter().find(|t| t.name() == o.topic).ok_or_else(|| {
        ConnectorError::new(ErrorKind::NotFound, format!("Kafka at {}: topic {} does not exist (table {table})", o.bootstrap_servers, o.topic))
    })?;
    if let Some(e) = t.error() {
        let code: RDKafkaErrorCode = e.into();
        let kind = if matches!(code, RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) {
            ErrorKind::NotFound
        } else if matches!(code, RDKafkaErrorCode::TopicAuthorizationFailed) {
            ErrorKind::AccessDenied
        } else {
            ErrorKind::Io
        };
        return Err(ConnectorError::new(
            kind,
            format!("Kafka at {}: topic {} (table {table}): {code}; check the topic option", o.bootstrap_servers, o.topic),
        ));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(ConnectorError::new(
            ErrorKind::NotFound,
            format!("Kafka at {}: topic {} has no partitions (table {table})", o.bootstrap_servers, o.topic),
        ));
    }
    Ok(ids)
}

/// The end of each partition's log now, from a fetch: assign at the end, wait for partition
/// EOF, then take the watermark the fetch response carried (not ListOffsets' LATEST, which some
/// Kafka-compatible brokers get wrong).
fn log_ends(c: &BaseConsumer, o: &KafkaOptions, table: &str, parts: &[i32]) -> Result<BTreeMap<i32, i64>, ConnectorError> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(&o.topic, *p, Offset::End).map_err(|e| kafka_err(o, table, "assign", &e))?;
    }
    c.assign(&tpl).map_err(|e| kafka_err(o, table, "cannot assign partitions", &e))?;
    let mut pending: BTreeSet<i32> = parts.iter().copied().collect();
    let mut ends = BTreeMap::new();
    let deadline = Instant::now() + o.connect_timeout.max(Duration::from_secs(2)) * 2;
    // The partition EOF event carries the fetch position it was reached at: the high watermark
    // (read_uncommitted) or the last stable offset (read_committed). rdkafka's poll drops that
    // offset, so the probe reads the consumer queue's events itself.
    use rdkafka::bindings as rd;
    // SAFETY: `c` outlives the queue and every event, each destroyed exactly once below.
    let queue = unsafe { rd::rd_kafka_queue_get_consumer(c.client().native_ptr()) };
    if queue.is_null() {
        return Err(ConnectorError::new(ErrorKind::Io, format!("kafka table {table}: the consumer has no queue")));
    }
    let mut failure = None;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            failure = Some(ConnectorError::new(
                ErrorKind::Unreachable,
                format!(
                    "Kafka at {} (table {table}): no fetch response for partitions {:?} of topic {} within {:?}; check that the partition leaders are up",
                    o.bootstrap_servers, pending, o.topic, o.connect_timeout * 2
                ),
            ));
            break;
        }
        let ev = unsafe { rd::rd_kafka_queue_poll(queue, 100) };
        if ev.is_null() {
            continue;
        }
        unsafe {
            if rd::rd_kafka_event_type(ev) == rd::RD_KAFKA_EVENT_ERROR {
                let err = rd::rd_kafka_event_error(ev);
                if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    let tp = rd::rd_kafka_event_topic_partition(ev);
                    if !tp.is_null() {
                        let (p, off) = ((*tp).partition, (*tp).offset);
                        rd::rd_kafka_topic_partition_destroy(tp);
                        if off >= 0 && pending.remove(&p) {
                            ends.insert(p, off);
                        }
                    }
                } else {
                    let code: RDKafkaErrorCode = err.into();
                    let e = KafkaError::MessageConsumption(code);
                    let ce = kafka_err(o, table, "cannot read the end of the log", &e);
                    if ce.kind != ErrorKind::Unreachable && ce.kind != ErrorKind::Io {
                        failure = Some(ce);
                    }
                }
            }
            rd::rd_kafka_event_destroy(ev);
        }
        if failure.is_some() {
            break;
        }
    }
    unsafe { rd::rd_kafka_queue_destroy(queue) };
    if let Some(f) = failure {
        return Err(f);
    }
    let _ = c.unassign();
    Ok(ends)
}

/// The first offset of each partition's log: one ListOffsets(EARLIEST) per leader (timestamp
/// -2 in offsets-for-times), else per partition.
fn log_starts(c: &BaseConsumer, o: &KafkaOptions, table: &str, parts: &[i32]) -> Result<BTreeMap<i32, i64>, ConnectorError> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(&o.topic, *p, Offset::Beginning).map_err(|e| kafka_err(o, table, "assign", &e))?;
    }
    if let Ok(res) = c.offsets_for_times(tpl, o.connect_timeout) {
        let got: BTreeMap<i32, i64> = res
            .elements()
            .iter()
            .filter(|e| e.error().is_ok())
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) if n >= 0 => Some((e.partition(), n)),
                Offset::Beginning => Some((e.partition(), 0)),
                _ => None,
            })
            .collect();
        if parts.iter().all(|p| got.contains_key(p)) {
            return Ok(got);
        }
    }
    let mut out = BTreeMap::new();
    for &p in parts {
        let (lo, _) = c.fetch_watermarks(&o.topic, p, o.connect_timeout).map_err(|e| kafka_err(o, table, "cannot read the start of the log", &e))?;
        out.insert(p, lo);
    }
    Ok(out)
}

/// What a scan reads: per-partition ranges, before splitting.
pub fn snapshot(o: &KafkaOptions, table: &str, bounds: &Bounds, log_append_time: bool) -> Result<Vec<Range>, ConnectorError> {
    let c = consumer(o, table)?;
    let all = topic_partitions(&c, o, table)?;
    let parts: Vec<i32> = all.iter().copied().filter(|p| bounds.allows_partition(*p)).collect();
    if let crate::options::Offsets::PerPartition(m) = &o.starting {
        if let Some(p) = m.keys().find(|p| !all.contains(p)) {
            return Err(ConnectorError::new(
                ErrorKind::InvalidOption,
                format!("starting_offsets names partition {p}, but topic {} has partitions {:?} (table {table})", o.topic, all),
            ));
        }
    }
    if parts.is_empty() {
        return Ok(vec![]);
    }
    let ends = log_ends(&c, o, table, &parts)?;
    let starts = log_starts(&c, o, table, &parts)?;
    let mut out = Vec::new();
    for &p in &parts {
        let hi = ends[&p];
        let lo = starts[&p].min(hi);
        let end = match o.ending.for_partition(p, OffsetSpec::Latest) {
            OffsetSpec::At(n) => n.min(hi),
            _ => hi,
        };
        let start = match o.starting.for_partition(p, OffsetSpec::Earliest) {
            OffsetSpec::Earliest => lo,
            OffsetSpec::Latest => hi,
            OffsetSpec::At(n) if n < lo => {
                if o.fail_on_data_loss {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidOption,
                        format!(
                            "kafka table {table}: starting offset {n} of partition {p} is gone (the log of topic {} now starts at {lo}: data was deleted); \
                             start at {lo} or later, or set fail_on_data_loss 'false' to start at the earliest offset still there",
                            o.topic
                        ),
                    ));
                }
                lo
            }
            OffsetSpec::At(n) => n,
        };
        let start = start.max(bounds.offset_lo).max(lo);
        let end = end.min(bounds.offset_hi);
        out.push(Range { partition: p, start, end: end.max(start) });
    }
    // _timestamp bounds through offsets-for-times: a lower bound moves the start; an upper
    // bound (plus slack for CreateTime out of order) moves the end; rows are filtered again.
    if bounds.ts_lo.is_some() || bounds.ts_hi.is_some() {
        let parts_now: Vec<i32> = out.iter().map(|r| r.partition).collect();
        let lookup = |ts: i64| -> Option<BTreeMap<i32, i64>> {
            let mut tpl = TopicPartitionList::new();
            for r in &parts_now {
                tpl.add_partition_offset(&o.topic, *r, Offset::Offset(ts)).ok()?;
            }
            let res = c.offsets_for_times(tpl, o.connect_timeout).ok()?;
            let mut m = BTreeMap::new();
            for e in res.elements() {
                if e.error().is_err() {
                    return None;
                }
                let off = match e.offset() {
                    Offset::Offset(n) => n,
                    Offset::End => i64::MAX,
                    _ => return None,
                };
                m.insert(e.partition(), off);
            }
            Some(m)
        };
        if let Some(lo) = bounds.ts_lo {
            if let Some(m) = lookup(lo) {
                for r in out.iter_mut() {
                    if let Some(s) = m.get(&r.partition) {
                        r.start = r.start.max(*s).min(r.end);
                    }
                }
            }
        }
        if let Some(hi) = bounds.ts_hi {
            let slack = if log_append_time { 0 } else { o.timestamp_slack.as_millis() as i64 };
            if let Some(m) = lookup(hi.saturating_add(slack).saturating_add(1)) {
                for r in out.iter_mut() {
                    if let Some(e) = m.get(&r.partition) {
                        r.end = r.end.min(*e).max(r.start);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Spread ranges over `n` readers, splitting long ones so each reader gets about as many offsets.
pub fn split(ranges: &[Range], n: usize) -> Vec<Vec<Range>> {
    let n = n.max(1);
    let total: i64 = ranges.iter().map(|r| r.end - r.start).sum();
    let live: Vec<Range> = ranges.iter().copied().filter(|r| r.end > r.start).collect();
    if live.is_empty() {
        return vec![vec![]];
    }
    let share = ((total + n as i64 - 1) / n as i64).max(MIN_PIECE);
    let mut out: Vec<Vec<Range>> = vec![vec![]];
    let mut room = share;
    for r in live {
        let mut start = r.start;
        while start < r.end {
            let left = r.end - start;
            // take all of it when what would be left over is small
            let mut take = left.min(room);
            if left - take < MIN_PIECE / 2 || out.len() == n {
                // no tiny tails, and the last reader takes the rest
                take = left;
            }
            out.last_mut().expect("a reader").push(Range { partition: r.partition, start, end: start + take });
            start += take;
            room -= take;
            if room <= 0 && out.len() < n {
                out.push(vec![]);
                room = share;
            }
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Reads offset ranges of one topic.
#[derive(Debug)]
pub struct KafkaScanExec {
    options: Arc<KafkaOptions>,
    layout: Arc<Layout>,
    table: String,
    projection: Vec<usize>,
    schema: SchemaRef,
    /// Per output partition, the ranges it reads.
    readers: Vec<Vec<Range>>,
    limit: Option<usize>,
    /// Each reader reads its (single) partition backwards, newest first.
    reverse: bool,
    /// Rows still filtered on `_timestamp` by DataFusion above (for EXPLAIN).
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl KafkaScanExec {
    pub fn new(
        options: Arc<KafkaOptions>,
        layout: Arc<Layout>,
        table: String,
        projection: Vec<usize>,
        readers: Vec<Vec<Range>>,
        limit: Option<usize>,
        reverse: bool,
    ) -> Self {
        let schema = Arc::new(layout.schema.project(&projection).expect("projection within the table"));
        let mut eq = EquivalenceProperties::new(schema.clone());
        if let Some(sort) = Self::ordering(&schema, &layout, &projection, reverse, &readers) {
            eq.add_orderings([sort]);
        }
        let props = Arc::new(PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(readers.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        KafkaScanExec { options, layout, table, projection, schema, readers, limit, reverse, props, metrics: ExecutionPlanMetricsSet::new() }
    }

    /// `_offset` order within each reader when every reader reads one partition in order.
    fn ordering(schema: &SchemaRef, layout: &Layout, projection: &[usize], reverse: bool, readers: &[Vec<Range>]) -> Option<Vec<PhysicalSortExpr>> {
        let pos = projection.iter().position(|i| layout.meta[*i] == Some(Meta::Offset))?;
        let one_partition_each = readers.iter().all(|r| r.iter().map(|x| x.partition).collect::<BTreeSet<_>>().len() <= 1);
        let sorted_ranges = readers.iter().all(|r| r.windows(2).all(|w| w[0].end <= w[1].start));
        if !one_partition_each || !sorted_ranges {
            return None;
        }
        let col = Arc::new(Column::new(schema.field(pos).name(), pos)) as Arc<dyn PhysicalExpr>;
        Some(vec![PhysicalSortExpr {
            expr: col,
            options: arrow::compute::SortOptions { descending: reverse, nulls_first: reverse },
        }])
    }

    pub fn readers(&self) -> &[Vec<Range>] {
        &self.readers
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "KafkaScanExec: topic={} isolation={}",
            self.options.topic,
            if self.options.read_committed { "read_committed" } else { "read_uncommitted" }
        )?;
        if self.reverse {
            write!(f, " order=_offset DESC")?;
        }
        if let Some(l) = self.limit {
            write!(f, " limit={l}")?;
        }
        let n: i64 = self.readers.iter().flatten().map(|r| r.end - r.start).sum();
        write!(f, " offsets={n} ranges=[")?;
        for (i, rs) in self.readers.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            let parts: Vec<String> = rs.iter().map(|r| r.to_string()).collect();
            write!(f, "{}", parts.join(", "))?;
        }
        write!(f, "]")
    }
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &str {
        "KafkaScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() { Ok(self) } else { Err(DataFusionError::Internal("KafkaScanExec has no children".into())) }
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        let limit = match (limit, self.limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(Arc::new(KafkaScanExec::new(
            self.options.clone(),
            self.layout.clone(),
            self.table.clone(),
            self.projection.clone(),
            self.readers.clone(),
            limit,
            self.reverse,
        )))
    }

    fn fetch(&self) -> Option<usize> {
        self.limit
    }

    /// `ORDER BY _offset [DESC]`: one reader per partition, reading in that order (backwards for
    /// DESC, in growing chunks from the end), merged; so `ORDER BY _offset DESC LIMIT n` reads
    /// about n messages per partition instead of the whole topic.
    fn try_pushdown_sort(&self, order: &[PhysicalSortExpr]) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        let Some(first) = order.first() else { return Ok(SortOrderPushdownResult::Unsupported) };
        let Some(c) = first.expr.downcast_ref::<Column>() else { return Ok(SortOrderPushdownResult::Unsupported) };
        let is_offset = self.projection.get(c.index()).is_some_and(|i| self.layout.meta[*i] == Some(Meta::Offset))
            && self.schema.field(c.index()).name() == c.name();
        if order.len() != 1 || !is_offset {
            return Ok(SortOrderPushdownResult::Unsupported);
        }
        let reverse = first.options.descending;
        // Whole partitions again, one reader each.
        let mut by_part: BTreeMap<i32, Range> = BTreeMap::new();
        for r in self.readers.iter().flatten() {
            by_part
                .entry(r.partition)
                .and_modify(|x| {
                    x.start = x.start.min(r.start);
                    x.end = x.end.max(r.end);
                })
                .or_insert(*r);
        }
        let readers: Vec<Vec<Range>> = if by_part.is_empty() { vec![vec![]] } else { by_part.into_values().map(|r| vec![r]).collect() };
        let scan: Arc<dyn ExecutionPlan> = Arc::new(KafkaScanExec::new(
            self.options.clone(),
            self.layout.clone(),
            self.table.clone(),
            self.projection.clone(),
            readers.clone(),
            self.limit,
            reverse,
        ));
        if readers.len() <= 1 {
            return Ok(SortOrderPushdownResult::Exact { inner: scan });
        }
        let lex = LexOrdering::new(order.to_vec()).ok_or_else(|| DataFusionError::Internal("empty ordering".into()))?;
        Ok(SortOrderPushdownResult::Exact { inner: Arc::new(SortPreservingMergeExec::new(lex, scan)) })
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let ranges = self.readers.get(partition).cloned().unwrap_or_default();
        let decoder = BatchDecoder::new(self.layout.clone(), self.projection.clone(), self.options.strict, self.table.clone());
        let fetched = MetricBuilder::new(&self.metrics).counter("messages_fetched", partition);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        // Reading backwards, read no chunk ahead of the one waiting to be taken.
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), if self.reverse { 1 } else { 2 });
        let tx = builder.tx();
        let options = self.options.clone();
        let (limit, reverse, table) = (self.limit, self.reverse, self.table.clone());
        builder.spawn_blocking(move || {
            let reader = Reader { o: &options, table: &table, decoder: &decoder, fetched: &fetched, baseline: &baseline, tx: &tx };
            let r = if reverse { reader.read_reverse(&ranges, limit) } else { reader.read(&ranges, limit) };
            match r {
                Ok(()) | Err(Stop::Closed) => Ok(()),
                Err(Stop::Failed(e)) => Err(e),
            }
        });
        Ok(builder.build())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

enum Stop {
    /// The query no longer wants rows.
    Closed,
    Failed(DataFusionError),
}

impl From<ConnectorError> for Stop {
    fn from(e: ConnectorError) -> Self {
        Stop::Failed(e.into())
    }
}

impl From<arrow::error::ArrowError> for Stop {
    fn from(e: arrow::error::ArrowError) -> Self {
        Stop::Failed(e.into())
    }
}

impl From<DataFusionError> for Stop {
    fn from(e: DataFusionError) -> Self {
        Stop::Failed(e)
    }
}

struct Reader<'a> {
    o: &'a KafkaOptions,
    table: &'a str,
    decoder: &'a BatchDecoder,
    fetched: &'a Count,
    baseline: &'a BaselineMetrics,
    tx: &'a tokio::sync::mpsc::Sender<Result<RecordBatch>>,
}

impl Reader<'_> {
    fn send(&self, batch: RecordBatch) -> Result<(), Stop> {
        self.baseline.record_output(batch.num_rows());
        self.tx.blocking_send(Ok(batch)).map_err(|_| Stop::Closed)
    }

    /// Read `ranges` (distinct partitions) in offset order, at most `limit` rows.
    fn read(&self, ranges: &[Range], limit: Option<usize>) -> Result<(), Stop> {
        let ranges: Vec<Range> = ranges.iter().copied().filter(|r| r.end > r.start).collect();
        if ranges.is_empty() || limit == Some(0) {
            return Ok(());
        }
        let c = consumer(self.o, self.table)?;
        let mut buf = Messages::default();
        self.consume(&c, &ranges, &mut buf, limit, &mut |this, buf| {
            let batch = this.decoder.decode(buf)?;
            buf.clear();
            this.send(batch)
        })
    }

    /// Read one partition's range newest first: chunks from the end, growing.
    fn read_reverse(&self, ranges: &[Range], limit: Option<usize>) -> Result<(), Stop> {
        let Some(r) = ranges.first().copied().filter(|r| r.end > r.start) else { return Ok(()) };
        if limit == Some(0) {
            return Ok(());
        }
        let c = consumer(self.o, self.table)?;
        let mut left = limit.unwrap_or(usize::MAX);
        // Small first: under a merge with a LIMIT (which this reader is not told) the first chunks
        // are all that is read; the chunks double, so a whole-topic DESC scan costs ~log n more.
        let mut chunk: i64 = limit.map(|l| (l as i64).clamp(16, 4096)).unwrap_or(16);
        let mut end = r.end;
        while end > r.start && left > 0 {
            let start = (end - chunk).max(r.start);
            let mut all = Messages::default();
            let piece = [Range { partition: r.partition, start, end }];
            self.consume(&c, &piece, &mut all, None, &mut |_, _| Ok(()))?;
            let batch = self.decoder.decode(&all)?;
            let n = batch.num_rows();
            let take = n.min(left);
            let idx = UInt32Array::from_iter_values((0..n as u32).rev().take(take));
            let cols = batch.columns().iter().map(|a| arrow::compute::take(a, &idx, None)).collect::<std::result::Result<Vec<_>, _>>()?;
            let out = RecordBatch::try_new_with_options(batch.schema(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(take)))?;
            left -= take;
            if take > 0 {
                self.send(out)?;
            }
            end = start;
            chunk = (chunk * 2).min(65_536);
        }
        Ok(())
    }

    /// Consume `ranges` (distinct partitions) into `buf`, at most `limit` messages, calling
    /// `flush` every batch and at the end. With `flush` a no-op, `buf` collects everything.
    fn consume(
        &self,
        c: &BaseConsumer,
        ranges: &[Range],
        buf: &mut Messages,
        limit: Option<usize>,
        flush: &mut dyn FnMut(&Self, &mut Messages) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let mut left = limit.unwrap_or(usize::MAX);
        if left == 0 {
            return Ok(());
        }
        let o = self.o;
        let mut tpl = TopicPartitionList::new();
        let mut todo: BTreeMap<i32, Range> = BTreeMap::new();
        for r in ranges.iter().filter(|r| r.end > r.start) {
            tpl.add_partition_offset(&o.topic, r.partition, Offset::Offset(r.start))
                .map_err(|e| kafka_err(o, self.table, "assign", &e))?;
            todo.insert(r.partition, *r);
        }
        if todo.is_empty() {
            flush(self, buf)?;
            return Ok(());
        }
        c.assign(&tpl).map_err(|e| kafka_err(o, self.table, "cannot assign partitions", &e))?;
        let want_headers = self.decoder.needs_headers();
        let want_values = self.decoder.needs_values();
        let want_keys = self.decoder.needs_keys();
        let mut last_progress = Instant::now();
        let mut fetched_since = 0u64;
        let finish = |p: i32, todo: &mut BTreeMap<i32, Range>| {
            if todo.remove(&p).is_some() {
                let mut t = TopicPartitionList::new();
                let _ = t.add_partition(&o.topic, p);
                let _ = c.pause(&t);
            }
        };
        while !todo.is_empty() {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    fetched_since += 1;
                    let p = m.partition();
                    let Some(r) = todo.get(&p).copied() else { continue };
                    let off = m.offset();
                    if off < r.start {
                        continue;
                    }
                    if off >= r.end {
                        finish(p, &mut todo);
                        continue;
                    }
                    buf.partition.push(p);
                    buf.offset.push(off);
                    buf.timestamp_ms.push(m.timestamp().to_millis());
                    if want_keys {
                        match m.key() {
                            Some(k) => {
                                buf.keys.extend_from_slice(k);
                                buf.key_ends.push(Some(buf.keys.len()));
                            }
                            None => buf.key_ends.push(None),
                        }
                    } else {
                        buf.key_ends.push(None);
                    }
                    if want_values {
                        match m.payload() {
                            Some(v) => {
                                buf.values.extend_from_slice(v);
                                buf.value_ends.push(Some(buf.values.len()));
                            }
                            None => buf.value_ends.push(None),
                        }
                    } else {
                        buf.value_ends.push(None);
                    }
                    if want_headers {
                        let hs = m
                            .headers()
                            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec()))).collect())
                            .unwrap_or_default();
                        buf.headers.push(hs);
                    }
                    if off + 1 >= r.end {
                        finish(p, &mut todo);
                    }
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                    if buf.len() >= BATCH_MESSAGES {
                        self.fetched.add(fetched_since as usize);
                        fetched_since = 0;
                        flush(self, buf)?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // The fetcher reached the end of the log as it is now (the last stable
                    // offset under read_committed), which only grows: at or past the range's
                    // end, and every message before it has been delivered.
                    last_progress = Instant::now();
                    finish(p, &mut todo);
                }
                Some(Err(e)) => {
                    if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::OffsetOutOfRange)) {
                        return Err(ConnectorError::new(
                            ErrorKind::Corrupt,
                            format!(
                                "kafka table {}: offsets of topic {} were deleted while the scan read them (retention); run the query again",
                                self.table, o.topic
                            ),
                        )
                        .into());
                    }
                    let err = kafka_err(o, self.table, "fetch failed", &e);
                    if err.kind != ErrorKind::Unreachable {
                        return Err(err.into());
                    }
                    tracing::debug!(table = self.table, error = %err, "kafka fetch error, retrying");
                }
                None => {
                    // No message: the position may already be past the end (markers, aborted
                    // transactions), which no message will ever say.
                    if let Ok(pos) = c.position() {
                        for e in pos.elements() {
                            if let (Some(r), Offset::Offset(at)) = (todo.get(&e.partition()).copied(), e.offset()) {
                                if at >= r.end {
                                    finish(e.partition(), &mut todo);
                                }
                            }
                        }
                    }
                    if !todo.is_empty() && last_progress.elapsed() > o.read_timeout {
                        let left: Vec<String> = todo.values().map(|r| r.to_string()).collect();
                        return Err(ConnectorError::new(
                            ErrorKind::ConnectionLost,
                            format!(
                                "Kafka at {} (table {}): nothing fetched from topic {} for {:?} while offsets {} remain; check that the brokers are up (read_timeout_ms sets this wait)",
                                o.bootstrap_servers,
                                self.table,
                                o.topic,
                                o.read_timeout,
                                left.join(", ")
                            ),
                        )
                        .into());
                    }
                }
            }
        }
        self.fetched.add(fetched_since as usize);
        flush(self, buf)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_balances() {
        let rs = vec![Range { partition: 0, start: 0, end: 333_334 }, Range { partition: 1, start: 0, end: 333_333 }, Range { partition: 2, start: 0, end: 333_333 }];
        let out = split(&rs, 2);
        assert_eq!(out.len(), 2);
        let sizes: Vec<i64> = out.iter().map(|v| v.iter().map(|r| r.end - r.start).sum()).collect();
        assert_eq!(sizes.iter().sum::<i64>(), 1_000_000);
        assert!((sizes[0] - sizes[1]).abs() < 50_000, "{sizes:?}");
        // every offset exactly once
        for p in 0..3 {
            let mut v: Vec<(i64, i64)> = out.iter().flatten().filter(|r| r.partition == p).map(|r| (r.start, r.end)).collect();
            v.sort();
            assert_eq!(v.first().unwrap().0, 0);
            assert!(v.windows(2).all(|w| w[0].1 == w[1].0));
        }
        assert_eq!(split(&[Range { partition: 0, start: 5, end: 10 }], 4), vec![vec![Range { partition: 0, start: 5, end: 10 }]]);
        assert_eq!(split(&[], 4), vec![Vec::<Range>::new()]);
    }
}
