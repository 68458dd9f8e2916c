"""The data team's batch flow on an external S3 table, as they write it: `s3a://`, no OPTIONS,
the endpoint and credentials only in the standard AWS environment (SeaweedFS as S3).

Checks what the issue asks of INSERT OVERWRITE on an external table: other engines' files are
adopted and the other partitions' files stay byte for byte; a reader never sees a mix (and does
see both states); `kill -9` during overwrites always restarts to the old or the new contents.
"""
import io
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import bowman_bin

S3_ENDPOINT = os.environ.get("BOWMAN_TEST_S3_ENDPOINT")
S3_KEY = os.environ.get("BOWMAN_TEST_S3_ACCESS_KEY")
S3_SECRET = os.environ.get("BOWMAN_TEST_S3_SECRET_KEY")

if not S3_ENDPOINT:
    if os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"):
        raise RuntimeError("BOWMAN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test")
    pytest.skip("no S3 server (run through scripts/test)", allow_module_level=True)

CREATE = (
    "CREATE EXTERNAL TABLE IF NOT EXISTS database_name.some_name (user_id STRING, column_b STRING)\n"
    "USING PARQUET PARTITIONED BY (dt STRING) LOCATION 's3a://{bucket}/some_table';"
)
OVERWRITE = (
    "INSERT OVERWRITE TABLE database_name.some_name PARTITION(dt)\n"
    "SELECT user_id, column_b, dt FROM database_name.other_table DISTRIBUTE BY (dt) SORT BY (user_id);"
)


def s3():
    return boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                        region_name="us-east-1")


def aws_env():
    """The server's S3 settings only in the standard AWS environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOWMAN_S3_") and not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT=S3_ENDPOINT, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID=S3_KEY,
               AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_REGION="us-east-1",
               # Never ask a cloud metadata service for credentials from a test.
               AWS_METADATA_ENDPOINT="http://127.0.0.1:9", BOWMAN_LOG="warn")
    return env


class Server:
    """The real bowman binary on `data`, started (and restarted) with the AWS environment."""

    def __init__(self, data, extra_env=None):
        self.data = data
        self.env = dict(aws_env(), **(extra_env or {}))
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [bowman_bin(), "serve", "--data-dir", self.data, "--pg-addr", "127.0.0.1:0", "--flight-addr",
             "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, text=True, env=self.env)
        for line in self.proc.stdout:
            if line.startswith("pgwire listening on "):
                self.host, port = line.split()[-1].rsplit(":", 1)
                self.port = int(port)
                break
        else:
            raise AssertionError(f"bowman did not start (exit {self.proc.wait()})")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def connect(self):
        return psycopg.connect(host=self.host, port=self.port, user="bowman", dbname="bowman", autocommit=True)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=60) == 0


def objects(client, bucket, prefix):
    """Every object under prefix: key -> bytes."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            try:
                out[o["Key"]] = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            except client.exceptions.NoSuchKey:
                pass  # deleted since the listing
    return out


def keys(client, bucket, prefix):
    return {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])}


def spark_file(rows):
    """A Parquet file as another engine (Spark) would leave it in a partition directory."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"user_id": [r[0] for r in rows], "column_b": [r[1] for r in rows]}), buf)
    return buf.getvalue()


@pytest.fixture
def lake():
    bucket = f"example-{uuid.uuid4().hex[:8]}"
    client = s3()
    client.create_bucket(Bucket=bucket)
    data = tempfile.mkdtemp(prefix="bowman-external-")
    server = Server(data)
    try:
        yield server, client, bucket
    finally:
        server.stop()


def totals(conn):
    return conn.execute("SELECT count(*), coalesce(sum(length(column_b)), 0) FROM database_name.some_name").fetchone()


def test_the_data_teams_batch_flow_verbatim(lake):
    server, client, bucket = lake
    # A partition another engine wrote before the table existed, and one it writes later.
    client.put_object(Bucket=bucket, Key="some_table/dt=2018-03-04/part-00000-spark.c000.snappy.parquet",
                      Body=spark_file([("s1", "spark"), ("s2", "spark")]))
    client.put_object(Bucket=bucket, Key="some_table/dt=2018-03-05/part-00000-spark.c000.snappy.parquet",
                      Body=spark_file([("old", "replaced")]))
    client.put_object(Bucket=bucket, Key="some_table/_SUCCESS", Body=b"")
    with server.connect() as conn:
        conn.execute("CREATE DATABASE database_name")
        conn.execute("CREATE TABLE database_name.other_table (user_id STRING, column_b STRING, dt STRING)")
        conn.execute("INSERT INTO database_name.other_table VALUES ('u2', 'b', '2018-03-05'), ('u1', 'a', '2018-03-05'),"
                     " ('u3', 'c', '2018-03-06')")
        conn.execute(CREATE.format(bucket=bucket))
        assert conn.execute("SELECT count(*) FROM database_name.some_name").fetchone() == (3,)
        before = objects(client, bucket, "some_table/dt=2018-03-04/")
        conn.execute(OVERWRITE)
        rows = conn.execute("SELECT user_id, column_b, dt FROM database_name.some_name ORDER BY dt, user_id").fetchall()
        assert rows == [("s1", "spark", "2018-03-04"), ("s2", "spark", "2018-03-04"), ("u1", "a", "2018-03-05"),
                        ("u2", "b", "2018-03-05"), ("u3", "c", "2018-03-06")]
        # The partition the query did not write is untouched, byte for byte.
        assert objects(client, bucket, "some_table/dt=2018-03-04/") == before
        # One sorted file per written partition, next to where Spark puts its own.
        new = [k for k in objects(client, bucket, "some_table/dt=2018-03-05/") if ".bowman-" in k]
        assert len(new) == 1, new
        # A file another engine adds after the overwrite is read too.
        client.put_object(Bucket=bucket, Key="some_table/dt=2018-03-07/part-00000-later.parquet",
                          Body=spark_file([("late", "x")]))
        assert conn.execute("SELECT count(*) FROM database_name.some_name").fetchone() == (6,)
        # Running the job again gives the same table.
        conn.execute(CREATE.format(bucket=bucket))
        conn.execute(OVERWRITE)
        assert conn.execute("SELECT count(*) FROM database_name.some_name").fetchone() == (6,)
        # The replaced Spark file is deleted once no statement can read it.
        deadline = time.time() + 30
        while "some_table/dt=2018-03-05/part-00000-spark.c000.snappy.parquet" in keys(client, bucket, "some_table/"):
            assert time.time() < deadline, "the replaced file was never deleted"
            time.sleep(0.2)
        # Static partition and OPTIMIZE work on the external table too.
        conn.execute("INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt = '2018-03-06') VALUES ('z', 'zz')")
        conn.execute("INSERT INTO database_name.some_name PARTITION (dt = '2018-03-06') VALUES ('y', 'yy')")
        conn.execute("OPTIMIZE database_name.some_name WHERE dt = '2018-03-06'")
        assert conn.execute("SELECT user_id FROM database_name.some_name WHERE dt = '2018-03-06' ORDER BY 1").fetchall() \
            == [("y",), ("z",)]
        # Dropped and created again, the table shows what Bowman wrote there.
        conn.execute("DROP TABLE database_name.some_name")
        conn.execute(CREATE.format(bucket=bucket))
        assert conn.execute("SELECT count(*) FROM database_name.some_name").fetchone() == (7,)


def test_overwrite_of_one_partition_leaves_the_others_byte_for_byte(lake):
    server, client, bucket = lake
    with server.connect() as conn:
        conn.execute("CREATE DATABASE database_name")
        conn.execute(CREATE.format(bucket=bucket))
        for dt in ("2018-03-01", "2018-03-02", "2018-03-03"):
            conn.execute(f"INSERT INTO database_name.some_name PARTITION (dt = '{dt}') VALUES ('a', 'x'), ('b', 'y')")
        keep = {k: v for k, v in objects(client, bucket, "some_table/").items() if "dt=2018-03-02" not in k}
        conn.execute("INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt = '2018-03-02') VALUES ('c', 'z')")
        after = objects(client, bucket, "some_table/")
        assert {k: v for k, v in after.items() if k in keep} == keep
        assert conn.execute("SELECT count(*) FROM database_name.some_name").fetchone() == (5,)


def test_a_reader_sees_old_or_new_during_twenty_overwrites(lake):
    server, client, bucket = lake
    with server.connect() as conn:
        conn.execute("CREATE DATABASE database_name")
        conn.execute(CREATE.format(bucket=bucket))
        conn.execute("CREATE TABLE database_name.small (user_id STRING, column_b STRING, dt STRING)")
        conn.execute("CREATE TABLE database_name.large (user_id STRING, column_b STRING, dt STRING)")
        conn.execute("INSERT INTO database_name.small SELECT CAST(v AS STRING), 'aa', CAST(v % 3 AS STRING) "
                     "FROM generate_series(1, 300) AS t(v)")
        conn.execute("INSERT INTO database_name.large SELECT CAST(v AS STRING), 'bbbb', CAST(v % 3 AS STRING) "
                     "FROM generate_series(1, 3000) AS t(v)")
        conn.execute("INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt) SELECT * FROM database_name.small")
        small, large = (300, 600), (3000, 12000)
        assert totals(conn) == small
    seen, stop, errors = set(), threading.Event(), []

    def read():
        with server.connect() as reader:
            while not stop.is_set():
                try:
                    seen.add(totals(reader))
                except Exception as e:  # noqa: BLE001 - any failure fails the test below
                    errors.append(repr(e))

    t = threading.Thread(target=read)
    t.start()
    try:
        with server.connect() as writer:
            for i in range(20):
                src = "large" if i % 2 == 0 else "small"
                writer.execute(f"INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt) "
                               f"SELECT * FROM database_name.{src} DISTRIBUTE BY dt")
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert seen <= {small, large}, f"a reader saw a mix: {seen}"
    assert seen == {small, large}, f"the reader should have seen both states, saw {seen}"


def test_kill_9_during_overwrites_restarts_to_old_or_new(lake):
    server, client, bucket = lake
    with server.connect() as conn:
        conn.execute("CREATE DATABASE database_name")
        conn.execute(CREATE.format(bucket=bucket))
        conn.execute("CREATE TABLE database_name.small (user_id STRING, column_b STRING, dt STRING)")
        conn.execute("CREATE TABLE database_name.large (user_id STRING, column_b STRING, dt STRING)")
        conn.execute("INSERT INTO database_name.small SELECT CAST(v AS STRING), 'aa', CAST(v % 4 AS STRING) "
                     "FROM generate_series(1, 400) AS t(v)")
        conn.execute("INSERT INTO database_name.large SELECT CAST(v AS STRING), 'bbbb', CAST(v % 4 AS STRING) "
                     "FROM generate_series(1, 20000) AS t(v)")
        conn.execute("INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt) SELECT * FROM database_name.small")
    small, large = (400, 800), (20000, 80000)
    outcomes = []
    rng = random.Random(12)
    current = small
    for i in range(20):
        src, target = ("large", large) if current == small else ("small", small)
        done = threading.Event()

        def overwrite():
            try:
                with server.connect() as w:
                    w.execute(f"INSERT OVERWRITE TABLE database_name.some_name PARTITION (dt) "
                              f"SELECT * FROM database_name.{src} DISTRIBUTE BY dt")
            except Exception:  # noqa: BLE001 - the kill ends the connection
                pass
            done.set()

        t = threading.Thread(target=overwrite)
        t.start()
        time.sleep(rng.uniform(0.0, 0.4))
        server.kill9()
        t.join()
        server.start()
        with server.connect() as conn:
            got = totals(conn)
        assert got in (current, target), f"round {i}: after kill -9 the table shows {got}"
        outcomes.append("new" if got == target else "old")
        current = got
    assert "old" in outcomes and "new" in outcomes, f"both outcomes should occur across the rounds: {outcomes}"


def test_a_location_naming_one_file_reads_that_file(lake):
    server, client, bucket = lake
    client.put_object(Bucket=bucket, Key="exports/day.parquet", Body=spark_file([("a", "x"), ("b", "y")]))
    client.put_object(Bucket=bucket, Key="exports/other.parquet", Body=spark_file([("c", "z")]))
    with server.connect() as conn:
        conn.execute(f"CREATE EXTERNAL TABLE day STORED AS PARQUET LOCATION 's3a://{bucket}/exports/day.parquet'")
        assert conn.execute("SELECT count(*) FROM day").fetchone() == (2,)
        with pytest.raises(psycopg.Error):
            conn.execute("INSERT INTO day VALUES ('d', 'w')")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # A prefix that does not exist yet is a table to be written.
        conn.execute(f"CREATE TABLE fresh (a INT) USING parquet LOCATION 's3://{bucket}/not/yet/there'")
        conn.execute("INSERT INTO fresh VALUES (1)")
        assert conn.execute("SELECT a FROM fresh").fetchall() == [(1,)]


def test_s3_settings_layers_options_over_server_over_aws_environment():
    """OPTIONS > server settings (BOWMAN_S3_*) > AWS_*: a wrong secret in a lower layer is
    overridden by a right one above it, and a missing allow_http is named in the error."""
    bucket = f"layers-{uuid.uuid4().hex[:8]}"
    client = s3()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="t/part.parquet", Body=spark_file([("a", "x")]))
    data = tempfile.mkdtemp(prefix="bowman-layers-")
    server = Server(data, {"AWS_SECRET_ACCESS_KEY": "wrong-secret", "BOWMAN_S3_SECRET_ACCESS_KEY": S3_SECRET})
    try:
        with server.connect() as conn:
            # Server settings beat the environment.
            conn.execute(f"CREATE EXTERNAL TABLE a STORED AS PARQUET LOCATION 's3://{bucket}/t'")
            assert conn.execute("SELECT count(*) FROM a").fetchone() == (1,)
            # Table OPTIONS beat the server: a wrong secret there is refused (without showing
            # it), and the right one works.
            with pytest.raises(psycopg.Error) as denied:
                conn.execute(f"CREATE EXTERNAL TABLE b STORED AS PARQUET LOCATION 's3://{bucket}/t' "
                             f"OPTIONS (secret_access_key 'not-it')")
            assert "not-it" not in str(denied.value)
            conn.execute(f"CREATE EXTERNAL TABLE c STORED AS PARQUET LOCATION 's3://{bucket}/t' "
                         f"OPTIONS (secret_access_key '{S3_SECRET}')")
            assert conn.execute("SELECT count(*) FROM c").fetchone() == (1,)
    finally:
        server.stop()


def test_an_http_endpoint_without_allow_http_says_what_to_set():
    data = tempfile.mkdtemp(prefix="bowman-http-")
    server = Server(data, {"AWS_ALLOW_HTTP": "false"})
    try:
        with server.connect() as conn:
            with pytest.raises(psycopg.Error) as e:
                conn.execute("CREATE EXTERNAL TABLE a STORED AS PARQUET LOCATION 's3://bowman-test/x'")
            assert "allow_http" in str(e.value) and "AWS_ALLOW_HTTP" in str(e.value), str(e.value)
            assert e.value.sqlstate and e.value.sqlstate.startswith("08"), e.value.sqlstate
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
