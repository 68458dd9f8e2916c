"""psycopg 3, as data teams use it: server-side parameters, typed results, errors."""
import datetime
from decimal import Decimal

import psycopg
import pytest


VALUES = [
    ("int", 42),
    ("bigint", 2**40 + 7),
    ("float8", 0.1),
    ("text", "Zürich 'quoted' \"double\" \\ back"),
    ("bool", True),
    ("date", datetime.date(2018, 3, 5)),
    ("timestamp", datetime.datetime(2018, 3, 5, 10, 11, 12, 123456)),
    ("numeric", Decimal("12345.678")),
    ("null", None),
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_server_side_parameters_round_trip_exactly(dsn, binary):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor(binary=binary) as cur:
            placeholders = ", ".join("%s" for _ in VALUES)
            cur.execute(f"SELECT {placeholders}", [v for _, v in VALUES])
            row = cur.fetchone()
    for (name, sent), got in zip(VALUES, row):
        assert got == sent, f"{name}: sent {sent!r}, got {got!r}"
        assert type(got) is type(sent), f"{name}: {type(got)} for {type(sent)}"


def test_parameters_in_where_and_insert(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS py_events (id BIGINT, name STRING, dt DATE) PARTITIONED BY (dt)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO py_events VALUES (%s, %s, %s)",
                [(i, f"n{i}", datetime.date(2020, 1, 1 + i % 2)) for i in range(10)],
            )
            cur.execute("SELECT id, name FROM py_events WHERE dt = %s AND id >= %s ORDER BY id", (datetime.date(2020, 1, 1), 4))
            assert cur.fetchall() == [(4, "n4"), (6, "n6"), (8, "n8")]


def test_syntax_error_has_sqlstate_and_connection_stays_usable(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as err:
            conn.execute("SELEC 1")
        assert err.value.sqlstate == "42601"
        assert conn.execute("SELECT 1 + 1").fetchone() == (2,)


def test_errors_inside_a_transaction_block(dsn):
    # psycopg's default: statements run inside BEGIN ... COMMIT.
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as err:
            conn.execute("SELECT * FROM no_such_table")
        assert err.value.sqlstate == "42P01"
        conn.rollback()
        assert conn.execute("SELECT 'ok'").fetchone() == ("ok",)
        conn.commit()


def test_server_version_and_functions(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.info.server_version >= 160000
        version, db, schema = conn.execute("SELECT version(), current_database(), current_schema()").fetchone()
        assert version.startswith("PostgreSQL 16")
        # Spark's default database is PostgreSQL's schema public.
        assert (db, schema) == ("bowman", "public")


def test_server_side_cursor_streams_a_million_rows(dsn, bowman):
    """psycopg's named cursors (DECLARE / FETCH FORWARD n) stream without the server holding
    the result: the server's memory stays flat while a million rows go by."""
    import os

    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    server_pid = int(os.environ.get("BOWMAN_TEST_SERVER_PID", "0")) or None
    with psycopg.connect(dsn) as conn:  # a transaction: cursors WITHOUT HOLD live in one
        with conn.cursor(name="big") as cur:
            cur.itersize = 10_000
            cur.execute("SELECT value AS id, value * 2 AS twice, concat('row-', CAST(value AS STRING)) AS label "
                        "FROM generate_series(1, 1000000) WHERE value > %s", (0,))
            assert [d.name for d in cur.description] == ["id", "twice", "label"]
            total = count = 0
            first_rss = None
            for row in cur:
                count += 1
                total += row[0]
                if count == 100_000 and server_pid:
                    first_rss = rss_kib(server_pid)
            assert count == 1_000_000
            assert total == 1_000_000 * 1_000_001 // 2
            if server_pid and first_rss:
                assert rss_kib(server_pid) - first_rss < 200 * 1024, "server memory grew with the rows fetched"
        # Fetching in steps, and a closed cursor is an error with SQLSTATE 34000.
        with conn.cursor(name="steps") as cur:
            cur.execute("SELECT value FROM generate_series(1, 25)")
            assert [r[0] for r in cur.fetchmany(10)] == list(range(1, 11))
            assert [r[0] for r in cur.fetchmany(10)] == list(range(11, 21))
            assert [r[0] for r in cur.fetchall()] == list(range(21, 26))
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM steps")
