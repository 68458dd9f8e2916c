//! INSERT INTO a Redis table: rows become keys, one MULTI/EXEC pipeline per batch.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::TryStreamExt;

use crate::options::{Format, RedisOptions};
use crate::table::Role;
use crate::{connect, redis_error};

pub struct RedisSink {
    table: String,
    o: RedisOptions,
    schema: SchemaRef,
    roles: Vec<Role>,
}

impl RedisSink {
    pub fn new(table: String, o: RedisOptions, schema: SchemaRef, roles: Vec<Role>) -> Self {
        RedisSink { table, o, schema, roles }
    }
}

impl fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisSink({})", self.table)
    }
}

impl DisplayAs for RedisSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RedisSink: redis {} table={} format={} batch={} (MULTI/EXEC)", self.o.describe, self.table, self.o.format.name(), self.o.batch_size)?;
        if let Some(t) = self.o.ttl_seconds {
            write!(f, " ttl_seconds={t}")?;
        }
        Ok(())
    }
}

/// A column as bytes: binary columns as they are, the others as text.
enum Col {
    Str(StringArray),
    Bin(BinaryArray),
}

impl Col {
    fn new(a: &ArrayRef) -> Result<Self> {
        Ok(match a.data_type() {
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                let b = cast(a, &DataType::Binary)?;
                Col::Bin(b.as_any().downcast_ref::<BinaryArray>().cloned().unwrap_or_else(|| BinaryArray::from(Vec::<Option<&[u8]>>::new())))
            }
            _ => {
                let s = cast(a, &DataType::Utf8)?;
                Col::Str(s.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new())))
            }
        })
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            Col::Str(a) => a.is_valid(i).then(|| a.value(i).as_bytes()),
            Col::Bin(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

fn bad_row(table: &str, msg: String) -> datafusion::error::DataFusionError {
    ConnectorError::new(ErrorKind::InvalidOption, format!("INSERT into {table}: {msg}")).with_sqlstate("23502").into()
}

impl RedisSink {
    fn key(&self, cols: &[Col], i: usize) -> Result<String> {
        if let Some(j) = self.roles.iter().position(|r| *r == Role::Key)
            && let Some(k) = cols[j].get(i) {
                return Ok(String::from_utf8_lossy(k).into_owned());
            }
        let Some(t) = &self.o.key_parts else {
            return Err(bad_row(&self.table, format!("a row has a NULL {}, so it has no key", self.o.key_column)));
        };
        let mut parts: Vec<String> = vec![String::new(); t.columns().len()];
        for (j, r) in self.roles.iter().enumerate() {
            if let Role::Part(p) = r {
                let v = cols[j]
                    .get(i)
                    .ok_or_else(|| bad_row(&self.table, format!("a row has a NULL {}, a part of its key", self.schema.field(j).name())))?;
                parts[*p] = String::from_utf8_lossy(v).into_owned();
            }
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(t.format(&refs))
    }

    fn json(&self, cols: &[Col], i: usize) -> String {
        let mut map = serde_json::Map::new();
        for (j, r) in self.roles.iter().enumerate() {
            let Role::Field(name) = r else { continue };
            let Some(v) = cols[j].get(i) else { continue };
            let text = String::from_utf8_lossy(v).into_owned();
            let dt = self.schema.field(j).data_type();
            let value = if dt.is_numeric() {
                serde_json::from_str::<serde_json::Number>(&text).map(serde_json::Value::Number).unwrap_or(serde_json::Value::String(text))
            } else if *dt == DataType::Boolean {
                serde_json::Value::Bool(text == "true")
            } else {
                serde_json::Value::String(text)
            };
            map.insert(name.clone(), value);
        }
        serde_json::Value::Object(map).to_string()
    }

    /// Queue the commands that write row `i`.
    fn write_row(&self, pipe: &mut redis::Pipeline, cols: &[Col], i: usize) -> Result<()> {
        let key = self.key(cols, i)?;
        let field = |role: &Role| self.roles.iter().position(|r| r == role).and_then(|j| cols[j].get(i));
        match self.o.format {
            Format::Hash => {
                pipe.cmd("DEL").arg(&key).ignore();
                let mut hset = redis::cmd("HSET");
                hset.arg(&key);
                let mut any = false;
                for (j, r) in self.roles.iter().enumerate() {
                    if let (Role::Field(name), Some(v)) = (r, cols[j].get(i)) {
                        hset.arg(name).arg(v);
                        any = true;
                    }
                }
                if any {
                    pipe.add_command(hset).ignore();
                }
            }
            Format::String => match field(&Role::Value) {
                Some(v) => {
                    pipe.cmd("SET").arg(&key).arg(v).ignore();
                }
                None => {
                    pipe.cmd("DEL").arg(&key).ignore();
                }
            },
            Format::Json => {
                pipe.cmd("SET").arg(&key).arg(self.json(cols, i)).ignore();
            }
            Format::Zset => {
                let member = field(&Role::Member).ok_or_else(|| bad_row(&self.table, "a row has a NULL member".into()))?;
                let score = field(&Role::Score).ok_or_else(|| bad_row(&self.table, "a row has a NULL score".into()))?;
                pipe.cmd("ZADD").arg(&key).arg(score).arg(member).ignore();
            }
            Format::Stream => {
                let mut xadd = redis::cmd("XADD");
                xadd.arg(&key);
                match field(&Role::Id) {
                    Some(id) => xadd.arg(id),
                    None => xadd.arg("*"),
                };
                let mut any = false;
                for (j, r) in self.roles.iter().enumerate() {
                    if let (Role::Field(name), Some(v)) = (r, cols[j].get(i)) {
                        xadd.arg(name).arg(v);
                        any = true;
                    }
                }
                if !any {
                    return Err(bad_row(&self.table, "a stream entry needs at least one non-NULL field".into()));
                }
                pipe.add_command(xadd).ignore();
            }
        }
        if let Some(ttl) = self.o.ttl_seconds {
            let written = !matches!(self.o.format, Format::String) || field(&Role::Value).is_some();
            if written {
                pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DataSink for RedisSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let mut conn = connect(&self.o, &self.table).await?;
        let mut written = 0u64;
        while let Some(batch) = data.try_next().await? {
            let batch: RecordBatch = batch;
            let cols: Vec<Col> = batch.columns().iter().map(Col::new).collect::<Result<_>>()?;
            let mut start = 0;
            while start < batch.num_rows() {
                let end = (start + self.o.batch_size).min(batch.num_rows());
                let mut pipe = redis::pipe();
                pipe.atomic();
                for i in start..end {
                    self.write_row(&mut pipe, &cols, i)?;
                }
                pipe.exec_async(&mut conn).await.map_err(|e| redis_error(e, &self.o, &self.table, true))?;
                written += (end - start) as u64;
                start = end;
            }
        }
        Ok(written)
    }
}
