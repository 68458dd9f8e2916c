"""What the newest releases of the clients send, as their users run them (issue 12): psycopg 3.3's
prepared-statement cache, binary COPY (connectorx, ADBC), polars read_database_uri, SQLAlchemy
2.1 reflection, pandas read_sql_table / to_sql, information_schema types, repeated column
names, ROLLBACK after writes, and ADBC Flight SQL with `?` placeholders."""
import datetime
import struct
from decimal import Decimal

import psycopg
import pytest

sa = pytest.importorskip("sqlalchemy")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")


def uri(bowman):
    host, port = bowman
    return f"postgresql://bowman@{host}:{port}/bowman"


@pytest.fixture(scope="module")
def lake(bowman):
    """A table with one column of each common type, in its own database."""
    host, port = bowman
    with psycopg.connect(f"host={host} port={port} user=bowman dbname=bowman", autocommit=True) as conn:
        conn.execute("CREATE DATABASE IF NOT EXISTS cur_lake")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cur_lake.orders (id INT, big BIGINT, customer STRING, total DECIMAL(12,2), "
            "ratio DOUBLE, ok BOOLEAN, placed TIMESTAMP, raw BINARY, tags ARRAY<STRING>, dt DATE) PARTITIONED BY (dt)"
        )
        if conn.execute("SELECT count(*) FROM cur_lake.orders").fetchone()[0] == 0:
            conn.execute(
                "INSERT INTO cur_lake.orders VALUES "
                "(1, 10000000000, 'acme', 10.50, 0.25, true, TIMESTAMP '2018-03-05 10:00:00.123456', X'00ff', array('a', 'b'), DATE '2018-03-05'), "
                "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, DATE '2018-03-05'), "
                "(3, -5, 'Zürich \"q\"', 0.01, -1.5, false, TIMESTAMP '2018-03-06 00:00:00', X'', array(), DATE '2018-03-06')"
            )
    return "cur_lake.orders"


# --- psycopg 3: the prepared-statement cache turns over ------------------------------------------


def test_psycopg_prepares_more_statements_than_its_cache_holds(dsn):
    # prepare_threshold=0 prepares every query; the cache holds prepared_max (100) statements
    # and deallocates the oldest beyond that.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        assert conn.prepared_max == 100
        for i in range(250):
            assert conn.execute(f"SELECT {i} + %s AS v", (1,)).fetchone() == (i + 1,)
        # The first ones were deallocated and are prepared again, the last ones are reused.
        for i in (0, 1, 249, 150):
            assert conn.execute(f"SELECT {i} + %s AS v", (1,)).fetchone() == (i + 1,)
        names = conn.execute("SELECT 1").fetchone()
        assert names == (1,)


def test_deallocate_statements(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.pgconn.prepare(b"by_name", b"SELECT $1::BIGINT * 2")
        assert conn.pgconn.exec_prepared(b"by_name", [b"21"]).get_value(0, 0) == b"42"
        conn.execute("DEALLOCATE by_name")
        res = conn.pgconn.exec_prepared(b"by_name", [b"21"])
        assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
        conn.pgconn.prepare(b"again", b"SELECT 1")
        conn.pgconn.prepare(b"other", b"SELECT 2")
        conn.execute("DEALLOCATE PREPARE again")
        assert conn.pgconn.exec_prepared(b"other", []).get_value(0, 0) == b"2"
        conn.execute("DEALLOCATE ALL")
        assert conn.pgconn.exec_prepared(b"other", []).status == psycopg.pq.ExecStatus.FATAL_ERROR
        with pytest.raises(psycopg.errors.InvalidSqlStatementName) as err:
            conn.execute("DEALLOCATE never_prepared")
        assert err.value.sqlstate == "26000"
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_psycopg_rollback_deallocates_all_and_goes_on(dsn):
    # After a ROLLBACK psycopg forgets its statements with DEALLOCATE ALL.
    with psycopg.connect(dsn, prepare_threshold=0) as conn:
        for i in range(5):
            conn.execute(f"SELECT {i} + %s", (1,)).fetchone()
        conn.rollback()
        for i in range(5):
            assert conn.execute(f"SELECT {i} + %s", (1,)).fetchone() == (i + 1,)
        conn.commit()


# --- ROLLBACK after writes ------------------------------------------------------------------------


def test_rollback_after_writes_warns_that_they_were_committed(dsn):
    with psycopg.connect(dsn) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
        conn.execute("CREATE TABLE IF NOT EXISTS rb_t (a INT)")
        conn.commit()
        assert notices == []
        conn.execute("SELECT count(*) FROM rb_t").fetchone()
        conn.rollback()
        assert notices == [], "a ROLLBACK without writes says nothing"
        before = conn.execute("SELECT count(*) FROM rb_t").fetchone()[0]
        conn.execute("INSERT INTO rb_t VALUES (1), (2)")
        conn.execute("INSERT INTO rb_t VALUES (3)")
        conn.rollback()
        assert len(notices) == 1, notices
        severity, sqlstate, message = notices[0]
        assert severity == "WARNING" and sqlstate == "01000"
        assert "2 write statements" in message and "committed" in message, message
        # It says the truth: the rows are there.
        assert conn.execute("SELECT count(*) FROM rb_t").fetchone()[0] == before + 3
        conn.rollback()
        assert len(notices) == 1


# --- binary COPY ----------------------------------------------------------------------------------


def test_copy_to_stdout_in_binary_format(dsn, lake):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            data = b""
            with cur.copy(f"COPY (SELECT id, customer FROM {lake} WHERE id = 1) TO STDOUT (FORMAT binary)") as copy:
                for chunk in copy:
                    data += bytes(chunk)
        # Signature, flags, header extension; one tuple of two fields; the trailer.
        assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
        assert struct.unpack("!ii", data[11:19]) == (0, 0)
        assert struct.unpack("!hi", data[19:25]) == (2, 4)
        assert struct.unpack("!i", data[25:29]) == (1,)
        assert struct.unpack("!i", data[29:33]) == (4,) and data[33:37] == b"acme"
        assert data[37:] == b"\xff\xff"

        with conn.cursor() as cur:
            with cur.copy(
                f"COPY (SELECT id, big, customer, total, ratio, ok, placed, raw, dt FROM {lake} ORDER BY id) TO STDOUT WITH (FORMAT binary)"
            ) as copy:
                copy.set_types(["int4", "int8", "text", "numeric", "float8", "bool", "timestamp", "bytea", "date"])
                rows = list(copy.rows())
        assert rows == [
            (1, 10000000000, "acme", Decimal("10.50"), 0.25, True, datetime.datetime(2018, 3, 5, 10, 0, 0, 123456), b"\x00\xff", datetime.date(2018, 3, 5)),
            (2, None, None, None, None, None, None, None, datetime.date(2018, 3, 5)),
            (3, -5, 'Zürich "q"', Decimal("0.01"), -1.5, False, datetime.datetime(2018, 3, 6), b"", datetime.date(2018, 3, 6)),
        ]
        # The old spelling, and no rows at all.
        with conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT id FROM {lake} WHERE id > 100) TO STDOUT WITH BINARY") as copy:
                data = b"".join(bytes(c) for c in copy)
        assert data == b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + b"\xff\xff"
        with pytest.raises(psycopg.errors.SyntaxError):
            with conn.cursor() as cur:
                with cur.copy(f"COPY (SELECT 1) TO STDOUT (FORMAT binary, DELIMITER ',')") as copy:
                    list(copy)
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --- polars: connectorx and ADBC ------------------------------------------------------------------


def test_polars_read_database_uri_with_connectorx(bowman, lake):
    df = pl.read_database_uri(
        f"SELECT id, big, customer, total, ratio, ok, placed, dt FROM {lake} ORDER BY id", uri(bowman), engine="connectorx"
    )
    assert df.shape == (3, 8)
    assert df["id"].to_list() == [1, 2, 3]
    assert df["big"].to_list() == [10000000000, None, -5]
    assert df["customer"].to_list() == ["acme", None, 'Zürich "q"']
    assert df["ratio"].to_list() == [0.25, None, -1.5]
    assert df["ok"].to_list() == [True, None, False]
    assert df["placed"].to_list()[0] == datetime.datetime(2018, 3, 5, 10, 0, 0, 123456)
    assert df["dt"].to_list()[2] == datetime.date(2018, 3, 6)
    assert [float(v) if v is not None else None for v in df["total"].to_list()] == [10.5, None, 0.01]


def test_polars_read_database_uri_with_adbc(bowman, lake):
    df = pl.read_database_uri(
        f"SELECT id, big, customer, total, ratio, ok, placed, dt FROM {lake} ORDER BY id", uri(bowman), engine="adbc"
    )
    assert df.shape == (3, 8)
    assert df["id"].to_list() == [1, 2, 3]
    assert df.schema["id"] == pl.Int32 and df.schema["big"] == pl.Int64
    assert df["customer"].to_list() == ["acme", None, 'Zürich "q"']
    assert df["ok"].to_list() == [True, None, False]
    assert df["placed"].to_list()[0] == datetime.datetime(2018, 3, 5, 10, 0, 0, 123456)
    assert df["dt"].to_list()[2] == datetime.date(2018, 3, 6)
    assert [float(v) if v is not None else None for v in df["total"].to_list()] == [10.5, None, 0.01]


def test_adbc_postgresql_driver(bowman, lake):
    import adbc_driver_postgresql.dbapi as pgdbapi

    with pgdbapi.connect(uri(bowman)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, customer FROM {lake} WHERE id = $1", (3,))
        assert cur.fetchall() == [(3, 'Zürich "q"')]
        assert conn.adbc_get_table_schema("orders", db_schema_filter="cur_lake").names[:3] == ["id", "big", "customer"]


# --- SQLAlchemy 2.1 and pandas --------------------------------------------------------------------


def test_sqlalchemy_reflection(bowman, lake):
    engine = sa.create_engine(f"postgresql+psycopg://bowman@{bowman[0]}:{bowman[1]}/bowman")
    insp = sa.inspect(engine)
    assert insp.has_table("orders", schema="cur_lake")
    assert not insp.has_table("no_such_table", schema="cur_lake")
    assert "cur_lake" in insp.get_schema_names()
    cols = {c["name"]: c for c in insp.get_columns("orders", schema="cur_lake")}
    assert list(cols) == ["id", "big", "customer", "total", "ratio", "ok", "placed", "raw", "tags", "dt"]
    assert isinstance(cols["id"]["type"], sa.INTEGER)
    assert isinstance(cols["big"]["type"], sa.BIGINT)
    assert isinstance(cols["customer"]["type"], sa.TEXT)
    assert isinstance(cols["total"]["type"], sa.NUMERIC)
    assert isinstance(cols["ratio"]["type"], sa.DOUBLE_PRECISION)
    assert isinstance(cols["placed"]["type"], sa.TIMESTAMP)
    assert isinstance(cols["tags"]["type"], sa.ARRAY)
    assert all(c["nullable"] for c in cols.values())
    pk = insp.get_pk_constraint("orders", schema="cur_lake")
    assert pk["constrained_columns"] == [] and pk["name"] is None
    assert insp.get_table_comment("orders", schema="cur_lake") == {"text": None}


def test_pandas_read_sql_table_and_to_sql(bowman, lake):
    engine = sa.create_engine(f"postgresql+psycopg://bowman@{bowman[0]}:{bowman[1]}/bowman")
    df = pd.read_sql_table("orders", engine, schema="cur_lake").sort_values("id").reset_index(drop=True)
    assert list(df.columns) == ["id", "big", "customer", "total", "ratio", "ok", "placed", "raw", "tags", "dt"]
    assert df["id"].tolist() == [1, 2, 3]
    assert df["customer"][0] == "acme"

    frame = pd.DataFrame({"user_id": [1, 2, 3], "name": ["a", "b", None], "score": [0.5, 1.5, 2.5],
                          "seen": pd.to_datetime(["2018-03-05 10:00:00", "2018-03-05 11:00:00", "2018-03-06 00:00:00"])})
    frame.to_sql("pd_scores", engine, schema="cur_lake", if_exists="replace", index=False)
    assert len(pd.read_sql_table("pd_scores", engine, schema="cur_lake")) == 3
    frame.to_sql("pd_scores", engine, schema="cur_lake", if_exists="append", index=False)
    back = pd.read_sql_table("pd_scores", engine, schema="cur_lake")
    assert len(back) == 6
    assert sorted(back["user_id"].tolist()) == [1, 1, 2, 2, 3, 3]
    assert back["seen"].min() == pd.Timestamp("2018-03-05 10:00:00")
    frame.to_sql("pd_scores", engine, schema="cur_lake", if_exists="replace", index=False)
    assert len(pd.read_sql_table("pd_scores", engine, schema="cur_lake")) == 3


# --- catalog functions and information_schema -----------------------------------------------------


def test_catalog_functions_drivers_call(dsn, lake):
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_get_serial_sequence('cur_lake.orders', 'id'), obj_description(c.oid, 'pg_class'), "
            "col_description(c.oid, 1), shobj_description(c.oid, 'pg_database') "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'cur_lake' AND c.relname = 'orders'"
        ).fetchall()
        assert row == [(None, None, None, None)]
        # LIKE with an escape character other than backslash, as SQLAlchemy writes startswith().
        names = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg/_%' ESCAPE '/' ORDER BY nspname"
        ).fetchall()]
        assert "cur_lake" in names and "pg_catalog" not in names
        assert conn.execute("SELECT 'a_c' LIKE 'a#_c' ESCAPE '#', 'abc' LIKE 'a#_c' ESCAPE '#'").fetchone() == (True, False)
        # adbc-driver-postgresql reads the type table this way when it connects.
        types = conn.execute(
            "SELECT oid, typname, typreceive, typbasetype, typarray, typrelid FROM pg_catalog.pg_type "
            "WHERE (typreceive != 0 OR typsend != 0) AND typtype != 'r' AND typreceive::TEXT != 'array_recv'"
        ).fetchall()
        by_name = {t[1]: t for t in types}
        assert by_name["int4"][2] == "int4recv" and by_name["text"][2] == "textrecv"
        assert "_int4" not in by_name


def test_information_schema_columns_use_postgres_type_names(dsn, lake):
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale, character_maximum_length, "
            "is_nullable, ordinal_position FROM information_schema.columns "
            "WHERE table_schema = 'cur_lake' AND table_name = 'orders' ORDER BY ordinal_position"
        ).fetchall()
    assert rows == [
        ("id", "integer", "int4", 32, 0, None, "YES", 1),
        ("big", "bigint", "int8", 64, 0, None, "YES", 2),
        ("customer", "text", "text", None, None, None, "YES", 3),
        ("total", "numeric", "numeric", 12, 2, None, "YES", 4),
        ("ratio", "double precision", "float8", 53, None, None, "YES", 5),
        ("ok", "boolean", "bool", None, None, None, "YES", 6),
        ("placed", "timestamp without time zone", "timestamp", None, None, None, "YES", 7),
        ("raw", "bytea", "bytea", None, None, None, "YES", 8),
        ("tags", "ARRAY", "_text", None, None, None, "YES", 9),
        ("dt", "date", "date", None, None, None, "YES", 10),
    ]


def test_repeated_unaliased_expressions(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute("SELECT version(), version()")
        assert [d.name for d in cur.description] == ["version", "version"]
        a, b = cur.fetchone()
        assert a == b and a
        cur = conn.execute("SELECT 1, 1, 2 AS two")
        assert cur.fetchone() == (1, 1, 2)


# --- ADBC Flight SQL: qmark placeholders ----------------------------------------------------------


def test_flight_sql_qmark_placeholders(flight_uri, lake):
    import adbc_driver_flightsql.dbapi as flightsql

    assert flightsql.paramstyle == "qmark"
    with flightsql.connect(flight_uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, customer, '?' AS q FROM {lake} WHERE id >= ? AND customer <> ? ORDER BY id", (1, "acme"))
        assert cur.fetchall() == [(3, 'Zürich "q"', "?")]
        cur.execute("CREATE TABLE IF NOT EXISTS cur_lake.qmarks (a BIGINT, b STRING)")
        cur.executemany("INSERT INTO cur_lake.qmarks VALUES (?, ?)", [(1, "x"), (2, "y?")])
        cur.execute("SELECT a, b FROM cur_lake.qmarks WHERE b = ? ORDER BY a", ("y?",))
        assert cur.fetchall() == [(2, "y?")]
        with pytest.raises(Exception) as err:
            cur.execute("SELECT ?, $1", (1,))
        assert "42601" in str(err.value)


# --- psycopg2 (Airflow's PostgresHook, older tools) -----------------------------------------------


def test_psycopg2_transactions_copy_and_warnings(bowman, lake):
    psycopg2 = pytest.importorskip("psycopg2")
    import io

    host, port = bowman
    conn = psycopg2.connect(host=host, port=port, user="bowman", dbname="bowman")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, customer FROM {lake} WHERE id = %s", (1,))
            assert cur.fetchall() == [(1, "acme")]
            cur.execute("SELECT version(), version()")
            assert [d.name for d in cur.description] == ["version", "version"]
        conn.rollback()
        assert not any("WARNING" in n for n in conn.notices), conn.notices
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS cur_lake.pg2 (a INT)")
            cur.execute("INSERT INTO cur_lake.pg2 VALUES (1)")
        conn.rollback()
        assert any(n.startswith("WARNING:") and "committed" in n for n in conn.notices), conn.notices
        with conn.cursor() as cur:
            buf = io.BytesIO()
            cur.copy_expert(f"COPY (SELECT id FROM {lake} ORDER BY id) TO STDOUT (FORMAT binary)", buf)
            data = buf.getvalue()
            assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
            assert len(data) == 19 + 3 * (2 + 4 + 4) + 2  # header, three one-int4 tuples, trailer
            text = io.StringIO()
            cur.copy_expert(f"COPY (SELECT id FROM {lake} ORDER BY id) TO STDOUT", text)
            assert text.getvalue() == "1\n2\n3\n"
        conn.commit()
    finally:
        conn.close()
