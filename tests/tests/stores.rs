//! Kafka, Cassandra and Redis in one query: a topic of JSON events, a Cassandra table (opened as
//! the data team opens it in Spark, with the contact points from the server's configuration)
//! and a set of Redis hashes, joined and aggregated by Bowman.

use std::time::Duration;

use bowman_tests::{TestServer, config_for, cql_stand_in, kafka_bootstrap, redis_url, text_column, unique_name};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_joins_kafka_cassandra_and_redis() {
    let (Some(bootstrap), Some(cql), Some(redis)) = (kafka_bootstrap(), cql_stand_in(), redis_url()) else { return };
    let ns = unique_name("fed");

    // Kafka: purchase and view events of four users over two partitions, one not JSON.
    let topic = format!("{ns}_events");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for r in admin.create_topics(&[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let events = [
        (0, r#"{"user_id": 1, "action": "buy", "amount": 10.5}"#),
        (1, r#"{"user_id": 1, "action": "buy", "amount": 2.0}"#),
        (0, r#"{"user_id": 2, "action": "view", "amount": null}"#),
        (1, r#"{"user_id": 2, "action": "buy", "amount": 7.25}"#),
        (0, r#"{"user_id": 3, "action": "buy", "amount": 1.0}"#),
        (1, r#"{"user_id": 4, "action": "buy", "amount": 100.0}"#),
        (0, "this is not json"),
    ];
    for (p, v) in events {
        producer.send(FutureRecord::<(), str>::to(&topic).partition(p).payload(v), Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }

    // Cassandra: users 1-3 (user 4 has no row there).
    let session = scylla::client::session_builder::SessionBuilder::new().known_node(&cql).build().await.unwrap();
    session
        .query_unpaged(format!("CREATE KEYSPACE {ns} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"), &[])
        .await
        .unwrap();
    session.query_unpaged(format!("CREATE TABLE {ns}.users (user_id int PRIMARY KEY, name text, country text)"), &[]).await.unwrap();
    let insert = session.prepare(format!("INSERT INTO {ns}.users (user_id, name, country) VALUES (?, ?, ?)")).await.unwrap();
    for (id, name, country) in [(1, "alice", "US"), (2, "bob", "DE"), (3, "carol", "US")] {
        session.execute_unpaged(&insert, (id, name, country)).await.unwrap();
    }

    // Redis: a state hash per user 1, 2 and 4 (user 3 has none).
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    for (id, plan) in [(1, "pro"), (2, "free"), (4, "pro")] {
        let () = redis::cmd("HSET").arg(format!("{ns}:state:{id}")).arg("plan").arg(plan).arg("visits").arg(id * 10).query_async(&mut con).await.unwrap();
    }

    // The server knows where Cassandra is, as Spark's spark.cassandra.connection.host says.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.cassandra.insert("contact_points".into(), cql.clone());
    let server = TestServer::start_with(config).await;
    let c = server.client().await;
    c.batch_execute(&format!(
        r#"CREATE TABLE events (user_id INT, action STRING, amount DOUBLE) USING kafka
             OPTIONS (bootstrap_servers '{bootstrap}', topic '{topic}');
           CREATE TEMPORARY VIEW users USING org.apache.spark.sql.cassandra OPTIONS (table "users", keyspace "{ns}");
           CREATE TABLE state (user_id INT, plan STRING, visits BIGINT) USING redis
             OPTIONS (url '{redis}', key_parts '{ns}:state:{{user_id}}', value_format 'hash');"#
    ))
    .await
    .unwrap();

    let rows = c
        .simple_query(
            "SELECT u.name, u.country, s.plan, s.visits, count(*) AS buys, sum(e.amount) AS spent
               FROM events e
               JOIN users u ON u.user_id = e.user_id
               JOIN state s ON s.user_id = e.user_id
              WHERE e.action = 'buy'
              GROUP BY u.name, u.country, s.plan, s.visits
              ORDER BY u.name",
        )
        .await
        .unwrap();
    let got: Vec<String> = (0..6).map(|i| text_column(&rows, i).join(",")).collect();
    assert_eq!(got, ["alice,bob", "US,DE", "pro,free", "10,20", "2,1", "12.5,7.25"], "{rows:?}");

    // The message that was not JSON is a row with the reason, not a failed query.
    let rows = c.simple_query("SELECT count(*), count(user_id) FROM events WHERE _error IS NOT NULL").await.unwrap();
    assert_eq!((text_column(&rows, 0), text_column(&rows, 1)), (vec!["1".to_string()], vec!["0".to_string()]));
    let rows = c.simple_query("SELECT count(*) FROM events").await.unwrap();
    assert_eq!(text_column(&rows, 0), ["7"]);
    server.stop().await;
}
