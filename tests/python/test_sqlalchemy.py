"""SQLAlchemy's inspector, as BI tools (Superset, Metabase's Python cousins) and pandas use it."""
import psycopg
import pytest

sa = pytest.importorskip("sqlalchemy")


def test_inspect_lists_schemas_tables_and_typed_columns(bowman):
    host, port = bowman
    with psycopg.connect(f"host={host} port={port} user=bowman dbname=bowman", autocommit=True) as conn:
        conn.execute("CREATE DATABASE IF NOT EXISTS sa_lake")
        conn.execute("CREATE TABLE IF NOT EXISTS sa_lake.clicks (user_id BIGINT, url STRING, price DECIMAL(10,2), ts TIMESTAMP, ok BOOLEAN, dt DATE) PARTITIONED BY (dt)")
        conn.execute("INSERT INTO sa_lake.clicks VALUES (1, 'https://x', 9.99, TIMESTAMP '2018-03-05 10:00:00', true, DATE '2018-03-05')")
    engine = sa.create_engine(f"postgresql+psycopg://bowman@{host}:{port}/bowman")
    insp = sa.inspect(engine)
    assert "sa_lake" in insp.get_schema_names()
    # The default database is the schema public, as PostgreSQL tools expect; it has one name there.
    assert "public" in insp.get_schema_names()
    assert "default" not in insp.get_schema_names()
    assert insp.default_schema_name == "public"
    assert insp.get_table_names(schema="sa_lake") == ["clicks"]
    assert "clicks" not in insp.get_table_names()  # the default schema is the current database
    cols = {c["name"]: c for c in insp.get_columns("clicks", schema="sa_lake")}
    assert list(cols) == ["user_id", "url", "price", "ts", "ok", "dt"]
    assert isinstance(cols["user_id"]["type"], sa.BIGINT)
    assert isinstance(cols["url"]["type"], sa.TEXT)
    assert isinstance(cols["price"]["type"], sa.NUMERIC)
    # datafusion-pg-catalog 0.19 reports atttypmod -1 for every column, so NUMERIC comes without
    # its precision and scale (a known gap, see docs/architecture.md).
    assert isinstance(cols["ts"]["type"], sa.TIMESTAMP)
    assert isinstance(cols["ok"]["type"], sa.BOOLEAN)
    assert isinstance(cols["dt"]["type"], sa.DATE)
    # No primary keys or foreign keys: Bowman tables declare none.
    assert insp.get_pk_constraint("clicks", schema="sa_lake")["constrained_columns"] == []
    assert insp.get_foreign_keys("clicks", schema="sa_lake") == []
    assert insp.get_indexes("clicks", schema="sa_lake") == []
    # Full reflection, as pandas.read_sql_table and Superset's dataset sync do.
    table = sa.Table("clicks", sa.MetaData(), schema="sa_lake", autoload_with=engine)
    assert [c.name for c in table.columns] == ["user_id", "url", "price", "ts", "ok", "dt"]
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT user_id, url FROM sa_lake.clicks WHERE dt = :d"), {"d": "2018-03-05"}).all()
    assert rows == [(1, "https://x")]


def test_inspect_lists_views_and_their_definitions(bowman):
    """SQLAlchemy 2.1's view reflection: get_view_names() (in the default schema public and in a
    named one), get_view_definition(), a view's columns; views are not tables."""
    host, port = bowman
    with psycopg.connect(f"host={host} port={port} user=bowman dbname=bowman", autocommit=True) as conn:
        conn.execute("CREATE DATABASE IF NOT EXISTS sa_views")
        conn.execute("CREATE TABLE IF NOT EXISTS sa_views.orders (id BIGINT, amount DECIMAL(10,2), dt DATE)")
        conn.execute("CREATE OR REPLACE VIEW sa_views.big_orders AS SELECT id, amount FROM sa_views.orders WHERE amount > 100")
        conn.execute("CREATE OR REPLACE VIEW public.order_count AS SELECT count(*) AS n FROM sa_views.orders")
    engine = sa.create_engine(f"postgresql+psycopg://bowman@{host}:{port}/bowman")
    insp = sa.inspect(engine)
    assert insp.get_view_names(schema="sa_views") == ["big_orders"]
    assert insp.get_table_names(schema="sa_views") == ["orders"]
    assert "order_count" in insp.get_view_names()
    assert "order_count" not in insp.get_table_names()
    assert insp.get_view_definition("big_orders", schema="sa_views") == "SELECT id, amount FROM sa_views.orders WHERE amount > 100"
    assert insp.get_view_definition("order_count") == "SELECT count(*) AS n FROM sa_views.orders"
    with pytest.raises(sa.exc.NoSuchTableError):
        insp.get_view_definition("orders", schema="sa_views")
    cols = {c["name"]: c for c in insp.get_columns("big_orders", schema="sa_views")}
    assert list(cols) == ["id", "amount"]
    assert isinstance(cols["id"]["type"], sa.BIGINT)
    assert isinstance(cols["amount"]["type"], sa.NUMERIC)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT n FROM public.order_count")).scalar() == 0
