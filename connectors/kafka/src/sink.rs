//! `INSERT INTO` a kafka table: one message per row, all of a statement's messages in one Kafka
//! transaction (idempotent, transactional producer), committed before the statement returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::decode::{Layout, Meta};
use crate::options::{KafkaOptions, ValueFormat};
use crate::scan::kafka_err;

pub struct KafkaSink {
    table: String,
    options: Arc<KafkaOptions>,
    layout: Arc<Layout>,
}

impl KafkaSink {
    pub fn new(table: String, options: Arc<KafkaOptions>, layout: Arc<Layout>) -> Self {
        KafkaSink { table, options, layout }
    }
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaSink({})", self.table)
    }
}

impl DisplayAs for KafkaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KafkaSink: topic={} transactional=true", self.options.topic)
    }
}

/// One message to produce.
struct Record {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    partition: Option<i32>,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_of(a: &dyn Array, i: usize) -> Result<Option<Vec<u8>>> {
    if a.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes().to_vec(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes().to_vec(),
        DataType::Utf8View => a.as_string_view().value(i).as_bytes().to_vec(),
        DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
        DataType::LargeBinary => a.as_binary::<i64>().value(i).to_vec(),
        DataType::BinaryView => a.as_binary_view().value(i).to_vec(),
        _ => {
            let s = arrow::compute::cast(&a.slice(i, 1), &DataType::Utf8)?;
            s.as_string::<i32>().value(0).as_bytes().to_vec()
        }
    }))
}

impl KafkaSink {
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Record>> {
        let l = &self.layout;
        let n = batch.num_rows();
        let key_col = match &self.options.key_column {
            Some(k) => Some(l.schema.index_of(k)?),
            None => Some(l.index_of(Meta::Key)),
        };
        let value_cols: Vec<usize> = l.value_fields().into_iter().map(|(i, _)| i).filter(|i| Some(*i) != key_col || self.options.key_column.is_none()).collect();
        let values: Vec<Option<Vec<u8>>> = match l.value_format {
            ValueFormat::Json => {
                let proj = batch.project(&value_cols)?;
                let mut buf = Vec::new();
                {
                    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                    w.write(&proj)?;
                    w.finish()?;
                }
                let lines: Vec<Option<Vec<u8>>> = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| Some(l.to_vec())).collect();
                if lines.len() != n {
                    return Err(DataFusionError::Internal(format!("JSON encoding gave {} lines for {n} rows", lines.len())));
                }
                lines
            }
            ValueFormat::Raw => {
                let a = batch.column(value_cols[0]);
                (0..n).map(|i| bytes_of(a.as_ref(), i)).collect::<Result<_>>()?
            }
            ValueFormat::Csv => {
                let proj = batch.project(&value_cols)?;
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let mut buf = Vec::new();
                    {
                        let mut w = arrow::csv::WriterBuilder::new().with_header(false).build(&mut buf);
                        w.write(&proj.slice(i, 1))?;
                    }
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    out.push(Some(buf));
                }
                out
            }
        };
        let part = batch.column(l.index_of(Meta::Partition));
        let ts = batch.column(l.index_of(Meta::Timestamp));
        let ts = arrow::compute::cast(ts, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))?;
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let part = arrow::compute::cast(part, &DataType::Int32)?;
        let part = part.as_primitive::<arrow::datatypes::Int32Type>();
        let headers = batch.column(l.index_of(Meta::Headers));
        let headers = headers.as_list_opt::<i32>();
        let mut out = Vec::with_capacity(n);
        for (i, value) in values.into_iter().enumerate() {
            let key = match key_col {
                Some(k) => bytes_of(batch.column(k).as_ref(), i)?,
                None => None,
            };
            let mut hs = Vec::new();
            if let Some(h) = headers.filter(|h| !h.is_null(i)) {
                let entries = h.value(i);
                let s = entries.as_struct();
                for j in 0..s.len() {
                    let k = bytes_of(s.column(0).as_ref(), j)?.map(|k| String::from_utf8_lossy(&k).into_owned()).unwrap_or_default();
                    hs.push((k, bytes_of(s.column(1).as_ref(), j)?));
                }
            }
            let p = (!part.is_null(i)).then(|| part.value(i));
            if let Some(p) = p {
                if p < 0 {
                    return Err(ConnectorError::new(ErrorKind::InvalidOption, format!("INSERT into {}: _partition {p} is negative", self.table)).into());
                }
            }
            out.push(Record { key, value, partition: p, timestamp_ms: (!ts.is_null(i)).then(|| ts.value(i)), headers: hs });
        }
        Ok(out)
    }
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static) -> impl std::future::Future<Output = Result<T>> {
    async move {
        tokio::task::spawn_blocking(f).await.map_err(|e| DataFusionError::External(Box::new(e)))?.map_err(Into::into)
    }
}

#[async_trait]
impl DataSink for KafkaSink {
    fn schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let o = self.options.clone();
        let table = self.table.clone();
        let producer: Arc<BaseProducer> = {
            let mut c = crate::client_config(&o);
            c.set("transactional.id", format!("bowman-insert-{}", uuid::Uuid::new_v4()));
            c.set("enable.idempotence", "true");
            c.set("acks", "all");
            c.set("linger.ms", "5");
            c.set("transaction.timeout.ms", "120000");
            Arc::new(c.create().map_err(|e| crate::config_error(&o, &table, &e))?)
        };
        let timeout = (o.connect_timeout * 2).max(Duration::from_secs(5));
        {
            let (p, o, t) = (producer.clone(), o.clone(), table.clone());
            blocking(move || {
                p.init_transactions(timeout).map_err(|e| {
                    let mut err = kafka_err(&o, &t, "cannot start a transaction (InitProducerId with a transactional.id)", &e);
                    if err.kind == ErrorKind::Io {
                        err.kind = ErrorKind::Unreachable;
                    }
                    err
                })?;
                p.begin_transaction().map_err(|e| kafka_err(&o, &t, "cannot begin a transaction", &e))
            })
            .await?;
        }
        let abort = |p: Arc<BaseProducer>| async move {
            let _ = tokio::task::spawn_blocking(move || p.abort_transaction(timeout)).await;
        };
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    abort(producer.clone()).await;
                    return Err(e);
                }
            };
            let records = match self.encode(&batch) {
                Ok(r) => r,
                Err(e) => {
                    abort(producer.clone()).await;
                    return Err(e);
                }
            };
            rows += records.len() as u64;
            let (p, o2, t) = (producer.clone(), o.clone(), table.clone());
            let sent = blocking(move || {
                for r in &records {
                    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&o2.topic);
                    if let Some(k) = &r.key {
                        rec = rec.key(k.as_slice());
                    }
                    if let Some(v) = &r.value {
                        rec = rec.payload(v.as_slice());
                    }
                    if let Some(part) = r.partition {
                        rec = rec.partition(part);
                    }
                    if let Some(ts) = r.timestamp_ms {
                        rec = rec.timestamp(ts);
                    }
                    if !r.headers.is_empty() {
                        let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                        for (k, v) in &r.headers {
                            h = h.insert(Header { key: k.as_str(), value: v.as_deref() });
                        }
                        rec = rec.headers(h);
                    }
                    loop {
                        match p.send(rec) {
                            Ok(()) => break,
                            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                                p.poll(Duration::from_millis(20));
                                rec = back;
                            }
                            Err((e, _)) => return Err(kafka_err(&o2, &t, "cannot produce a message", &e)),
                        }
                    }
                    p.poll(Duration::ZERO);
                }
                Ok(())
            })
            .await;
            if let Err(e) = sent {
                abort(producer.clone()).await;
                return Err(e);
            }
        }
        let (p, o2, t) = (producer.clone(), o.clone(), table.clone());
        let committed = blocking(move || {
            p.commit_transaction(Duration::from_secs(120)).map_err(|e| kafka_err(&o2, &t, "cannot commit the INSERT's transaction (nothing was written)", &e))
        })
        .await;
        if let Err(e) = committed {
            abort(producer.clone()).await;
            return Err(e);
        }
        Ok(rows)
    }
}
