//! The fields of a table created without columns, from a sample of its keys (as spark-redis
//! infers a schema): hash fields and stream entry fields as STRING, JSON members by the JSON
//! types they hold.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use redis::Value;

use crate::options::{Format, RedisOptions};
use crate::{connect, redis_error};

/// Keys read to find the fields.
const SAMPLE_KEYS: usize = 100;
/// SCAN calls spent looking for them.
const SAMPLE_SCANS: usize = 50;

#[derive(Clone, Copy, PartialEq)]
enum Seen {
    Int,
    Float,
    Bool,
    Text,
}

fn merge(a: Option<Seen>, b: Seen) -> Seen {
    match (a, b) {
        (None, b) => b,
        (Some(a), b) if a == b => a,
        (Some(Seen::Int), Seen::Float) | (Some(Seen::Float), Seen::Int) => Seen::Float,
        _ => Seen::Text,
    }
}

/// Field names (sorted) and types found in up to 100 keys of the table.
pub async fn fields(o: &RedisOptions, table: &str) -> Result<Vec<(String, DataType)>, bowman_connector::ConnectorError> {
    let Some(pattern) = &o.key_pattern else { return Ok(vec![]) };
    let mut conn = connect(o, table).await?;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0u64;
    for _ in 0..SAMPLE_SCANS {
        let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(o.scan_count)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, o, table, true))?;
        for k in page {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        cursor = next;
        if cursor == 0 || keys.len() >= SAMPLE_KEYS {
            break;
        }
    }
    keys.truncate(SAMPLE_KEYS);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for k in &keys {
        match o.format {
            Format::Hash => pipe.cmd("HGETALL").arg(k),
            Format::Json => pipe.cmd("GET").arg(k),
            _ => pipe.cmd("XRANGE").arg(k).arg("-").arg("+").arg("COUNT").arg(10),
        };
    }
    let replies: Value = pipe.query_async(&mut conn).await.map_err(|e| redis_error(e, o, table, true))?;
    let Value::Array(replies) = replies else { return Ok(vec![]) };
    let mut found: BTreeMap<String, Seen> = BTreeMap::new();
    let mut note = |name: String, seen: Seen| {
        let prev = found.get(&name).copied();
        found.insert(name, merge(prev, seen));
    };
    for reply in replies {
        match (o.format, reply) {
            (Format::Hash, v) => {
                for (f, _) in crate::scan::pairs(v) {
                    note(String::from_utf8_lossy(&f).into_owned(), Seen::Text);
                }
            }
            (Format::Json, Value::BulkString(b)) => {
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&b) {
                    for (k, v) in map {
                        let seen = match v {
                            serde_json::Value::Number(n) if n.is_i64() => Seen::Int,
                            serde_json::Value::Number(_) => Seen::Float,
                            serde_json::Value::Bool(_) => Seen::Bool,
                            serde_json::Value::Null => continue,
                            _ => Seen::Text,
                        };
                        note(k, seen);
                    }
                }
            }
            (Format::Stream, Value::Array(entries)) => {
                for e in entries {
                    if let Value::Array(mut parts) = e
                        && let Some(fields) = parts.pop()
                    {
                        for (f, _) in crate::scan::pairs(fields) {
                            note(String::from_utf8_lossy(&f).into_owned(), Seen::Text);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, seen)| {
            let ty = match seen {
                Seen::Int => DataType::Int64,
                Seen::Float => DataType::Float64,
                Seen::Bool => DataType::Boolean,
                Seen::Text => DataType::Utf8,
            };
            (name, ty)
        })
        .collect())
}
