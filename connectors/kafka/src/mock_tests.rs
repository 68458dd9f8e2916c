//! Scans and INSERTs against librdkafka's in-process mock cluster. It implements transactional
//! producers and writes commit/abort markers, but (like Tansu 0.6) sends no aborted-transaction
//! list in Fetch responses, so read_committed consumers see aborted messages too: these tests
//! check that scans end at trailing markers and what the data path does, not broker filtering.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::SessionContext;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::*;

fn table(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Arc<KafkaTable> {
    let mut o: HashMap<String, String> = HashMap::new();
    o.insert("bootstrap_servers".into(), bootstrap.into());
    o.insert("topic".into(), topic.into());
    for (k, v) in extra {
        o.insert(k.to_string(), v.to_string());
    }
    let o = KafkaOptions::parse(&o).unwrap();
    let declared = Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("action", DataType::Utf8, true)]);
    let layout = Layout::new(&declared, o.value_format, o.key_format, "t").unwrap();
    Arc::new(KafkaTable { name: "t".into(), options: Arc::new(o), layout: Arc::new(layout) })
}

async fn ids(ctx: &SessionContext, sql: &str) -> Vec<i64> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(-1)).collect::<Vec<_>>()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_at_the_end_and_aborted_transactions() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t", 1, 1).unwrap();
    let bs = mock.bootstrap_servers();
    {
        let bs = bs.clone();
        tokio::task::spawn_blocking(move || {
            let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bs).set("transactional.id", "tx-test").create().unwrap();
            p.init_transactions(Duration::from_secs(10)).unwrap();
            for (range, commit) in [(0..10, true), (10..15, true), (15..18, false)] {
                p.begin_transaction().unwrap();
                for i in range {
                    let v = format!(r#"{{"id":{i},"action":"{}"}}"#, if commit { "c" } else { "a" });
                    p.send(BaseRecord::<str, str>::to("t").partition(0).payload(&v)).unwrap();
                }
                p.flush(Duration::from_secs(10)).unwrap();
                if commit {
                    p.commit_transaction(Duration::from_secs(10)).unwrap();
                } else {
                    p.abort_transaction(Duration::from_secs(10)).unwrap();
                }
            }
        })
        .await
        .unwrap();
    }
    let ctx = SessionContext::new();
    ctx.register_table("t", table(&bs, "t", &[])).unwrap();
    ctx.register_table("dirty", table(&bs, "t", &[("isolation_level", "read_uncommitted")])).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), ids(&ctx, "SELECT id FROM t ORDER BY id")).await.expect("no hang at the markers");
    // 0..15 committed; 15..18 aborted, which this broker does not filter
    assert!(got.starts_with(&(0..15).collect::<Vec<_>>()), "{got:?}");
    let dirty = tokio::time::timeout(Duration::from_secs(20), ids(&ctx, "SELECT id FROM dirty ORDER BY id")).await.expect("no hang");
    assert_eq!(dirty, (0..18).collect::<Vec<_>>());
    // newest first across the markers
    let last = tokio::time::timeout(Duration::from_secs(20), ids(&ctx, "SELECT id FROM dirty ORDER BY _offset DESC LIMIT 3")).await.expect("no hang");
    assert_eq!(last, vec![17, 16, 15]);
    let range = tokio::time::timeout(Duration::from_secs(20), ids(&ctx, "SELECT id FROM t WHERE _offset >= 5 AND _offset < 12 ORDER BY id")).await.expect("no hang");
    // the same as filtering a full scan (`_offset + 0` is not pushed down)
    let full = ids(&ctx, "SELECT id FROM (SELECT id, _offset + 0 AS o FROM t) WHERE o >= 5 AND o < 12 ORDER BY id").await;
    assert_eq!(range, full);
    assert!(!range.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_commits_once_and_a_failure_aborts() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("w", 2, 1).unwrap();
    let bs = mock.bootstrap_servers();
    let ctx = SessionContext::new();
    ctx.register_table("w", table(&bs, "w", &[])).unwrap();
    ctx.register_table("w_dirty", table(&bs, "w", &[("isolation_level", "read_uncommitted")])).unwrap();
    let n = ctx
        .sql("INSERT INTO w (id, action) SELECT value, 'x' FROM range(100)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(n[0].column(0).as_primitive::<datafusion::arrow::datatypes::UInt64Type>().value(0), 100);
    assert_eq!(ids(&ctx, "SELECT id FROM w ORDER BY id").await, (0..100).collect::<Vec<_>>());
    let failed = ctx
        .sql("INSERT INTO w (id, action) SELECT CAST(CASE WHEN value = 19000 THEN 'boom' ELSE CAST(value AS STRING) END AS BIGINT), 'y' FROM range(20000)")
        .await
        .unwrap()
        .collect()
        .await;
    assert!(failed.is_err());
    let dirty = ids(&ctx, "SELECT count(*) FROM w_dirty").await[0];
    assert!(dirty > 100, "the failed INSERT sent messages before it failed ({dirty})");
    let committed = tokio::time::timeout(Duration::from_secs(20), ids(&ctx, "SELECT count(*) FROM w WHERE action = 'x'")).await.expect("no hang");
    assert_eq!(committed, vec![100]);
}
