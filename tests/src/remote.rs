//! Seeding the remote databases the connector tests read: the same rows in PostgreSQL and MySQL.

use mysql_async::prelude::Queryable;

/// The rows of `people`: names with quotes, backslashes, comment markers and Unicode, and a
/// column whose name holds all of those too.
const PEOPLE_ROWS: &str = "(1, 'alice', 12.50, '2001-02-03', TRUE, 10, 0.5, 'x''; DROP TABLE people; --'),
 (2, 'bob', NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 'o''hara \\ -- /* x', 3.25, '1999-12-31', FALSE, 30, 1.25, 'y'),
 (4, 'Zoë ☃', 100.00, '2020-06-01', TRUE, 40, -2, 'z'),
 (5, 'back\\slash', 0.01, '2024-01-01', TRUE, 50, 3.5, 'w')";

/// Create schema `schema` in PostgreSQL with `people` and an empty `sink`.
pub async fn seed_postgres(url: &str, schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.people (id INT PRIMARY KEY, name VARCHAR(100), score NUMERIC(10,2), born DATE,
               active BOOLEAN, visits BIGINT, ratio DOUBLE PRECISION, \"we\"\"ird -- col/*\" VARCHAR(50));
             INSERT INTO {schema}.people VALUES {PEOPLE_ROWS};
             CREATE TABLE {schema}.sink (id INT PRIMARY KEY, name VARCHAR(100), score NUMERIC(10,2), born DATE);"
        ))
        .await
        .expect("seed PostgreSQL");
    client
}

/// Create database `db` in MySQL with `people` and an empty `sink`.
pub async fn seed_mysql(url: &str, db: &str) -> mysql_async::Conn {
    let mut conn = mysql_async::Conn::from_url(url).await.expect("connect to MySQL");
    // Backslashes in the seed literals are characters, as in PostgreSQL.
    conn.query_drop("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')").await.unwrap();
    for stmt in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"),
        format!(
            "CREATE TABLE {db}.people (id INT PRIMARY KEY, name VARCHAR(100), score DECIMAL(10,2), born DATE,
               active BOOLEAN, visits BIGINT, ratio DOUBLE, `we\"ird -- col/*` VARCHAR(50))"
        ),
        format!("INSERT INTO {db}.people VALUES {PEOPLE_ROWS}"),
        format!("CREATE TABLE {db}.sink (id INT PRIMARY KEY, name VARCHAR(100), score DECIMAL(10,2), born DATE)"),
    ] {
        conn.query_drop(stmt).await.expect("seed MySQL");
    }
    conn
}
