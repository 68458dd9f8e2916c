"""pandas and polars reading Bowman, as notebooks do: over SQLAlchemy/pgwire and over ADBC."""
import datetime

import pytest

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
sa = pytest.importorskip("sqlalchemy")


@pytest.fixture
def engine(bowman):
    host, port = bowman
    engine = sa.create_engine(f"postgresql+psycopg://bowman@{host}:{port}/bowman")
    with engine.connect() as c:
        c.execute(sa.text("CREATE TABLE IF NOT EXISTS df_events (user_id BIGINT, kind STRING, amount DOUBLE, dt DATE) PARTITIONED BY (dt)"))
        if c.execute(sa.text("SELECT count(*) FROM df_events")).scalar() == 0:
            c.execute(sa.text(
                "INSERT INTO df_events SELECT value, concat('k', CAST(value % 3 AS STRING)), value * 1.5, "
                "CAST(to_timestamp_seconds(1520208000 + (value % 2) * 86400) AS DATE) FROM generate_series(1, 1000)"
            ))
        c.commit()
    return engine


def test_pandas_read_sql_with_parameters(engine):
    df = pd.read_sql(
        sa.text("SELECT kind, count(*) AS n, sum(amount) AS total FROM df_events WHERE dt = :d GROUP BY kind ORDER BY kind"),
        engine,
        params={"d": datetime.date(2018, 3, 5)},
    )
    assert list(df.columns) == ["kind", "n", "total"]
    assert df["n"].sum() == 500
    assert str(df["n"].dtype) == "int64"
    full = pd.read_sql_table("df_events", engine)  # reflects the table (columns, keys, indexes)
    assert len(full) == 1000 and set(full.columns) == {"user_id", "kind", "amount", "dt"}


def test_polars_over_sqlalchemy_and_adbc(engine, flight_uri):
    with engine.connect() as c:
        df = pl.read_database("SELECT user_id, amount FROM df_events WHERE user_id <= 10 ORDER BY user_id", connection=c)
    assert df.shape == (10, 2)
    assert df["amount"].to_list()[:2] == [1.5, 3.0]
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(flight_uri, autocommit=True) as conn:
        df = pl.read_database("SELECT kind, count(*) AS n FROM df_events GROUP BY kind ORDER BY kind", connection=conn)
    assert df["n"].to_list() == [333, 334, 333]
    assert df.schema["n"] == pl.Int64
