"""Delta tables Bowman writes on S3 are Delta tables other engines read: the `deltalake`
package (delta-rs's Python bindings) opens the log, sees one version per statement and
reads the same rows."""
import os
import uuid

import psycopg
import pytest

deltalake = pytest.importorskip("deltalake")

S3_ENDPOINT = os.environ.get("BOWMAN_TEST_S3_ENDPOINT")
pytestmark = pytest.mark.skipif(
    not S3_ENDPOINT and not os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"),
    reason="set BOWMAN_TEST_S3_* (scripts/test starts SeaweedFS)",
)


def s3_options():
    return {
        "endpoint": S3_ENDPOINT,
        "access_key_id": os.environ["BOWMAN_TEST_S3_ACCESS_KEY"],
        "secret_access_key": os.environ["BOWMAN_TEST_S3_SECRET_KEY"],
        "region": "us-east-1",
        "allow_http": "true",
    }


def test_delta_on_s3_is_one_version_per_statement_and_readable_by_deltalake(dsn):
    bucket = os.environ["BOWMAN_TEST_S3_BUCKET"]
    location = f"s3://{bucket}/pytest-delta-{uuid.uuid4().hex}/events"
    opts = ", ".join(f"'{k}' = '{v}'" for k, v in s3_options().items())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE py_delta (user_id BIGINT, kind STRING, dt STRING) USING delta "
            f"PARTITIONED BY (dt) LOCATION '{location}' OPTIONS ({opts})"
        )
        conn.execute(
            "INSERT INTO py_delta SELECT value, 'k' || CAST(value % 7 AS STRING), "
            "'2018-03-0' || CAST(value % 3 + 1 AS STRING) FROM generate_series(1, 3000)"
        )
        conn.execute(
            "INSERT OVERWRITE TABLE py_delta PARTITION (dt) "
            "SELECT value, 'new', '2018-03-0' || CAST(value % 2 + 1 AS STRING) FROM generate_series(1, 10)"
        )
        rows = conn.execute("SELECT dt, count(*) FROM py_delta GROUP BY dt ORDER BY dt").fetchall()
    assert rows == [("2018-03-01", 5), ("2018-03-02", 5), ("2018-03-03", 1000)]

    storage = {
        "AWS_ENDPOINT_URL": S3_ENDPOINT,
        "AWS_ACCESS_KEY_ID": os.environ["BOWMAN_TEST_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": os.environ["BOWMAN_TEST_S3_SECRET_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    table = deltalake.DeltaTable(location, storage_options=storage)
    # Version 0 created the table, 1 appended, 2 is the whole partition overwrite.
    assert table.version() == 2
    history = table.history()
    assert [h["operation"] for h in history][:2] == ["WRITE", "WRITE"]
    assert history[0]["operationParameters"]["mode"] == "Overwrite"
    assert table.metadata().partition_columns == ["dt"]

    data = table.to_pyarrow_table()
    counts = {}
    for dt in data.column("dt").to_pylist():
        counts[dt] = counts.get(dt, 0) + 1
    assert counts == {"2018-03-01": 5, "2018-03-02": 5, "2018-03-03": 1000}
    replaced = zip(data.column("kind").to_pylist(), data.column("dt").to_pylist())
    assert {kind for kind, dt in replaced if dt != "2018-03-03"} == {"new"}

    # The version before the overwrite is still there for time travel, from either side.
    table.load_as_version(1)
    assert table.to_pyarrow_table().num_rows == 3000
    with psycopg.connect(dsn, autocommit=True) as conn:
        (n,) = conn.execute("SELECT count(*) FROM py_delta VERSION AS OF 1").fetchone()
        assert n == 3000
        conn.execute("DROP TABLE py_delta")
