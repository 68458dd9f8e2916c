"""ADBC over Arrow Flight SQL, as data scientists pull Arrow data from Bowman."""
import pyarrow as pa
import pytest

flightsql = pytest.importorskip("adbc_driver_flightsql.dbapi")


def test_query_parameters_and_metadata(flight_uri):
    with flightsql.connect(flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS adbc_lake")
            cur.execute("CREATE TABLE IF NOT EXISTS adbc_lake.trips (id BIGINT, city STRING, fare DOUBLE, dt DATE) PARTITIONED BY (dt)")
            cur.execute("INSERT INTO adbc_lake.trips VALUES (1, 'Detroit', 12.5, DATE '2018-03-05'), (2, 'Ann Arbor', 7.25, DATE '2018-03-05'), (3, 'Detroit', 3.0, DATE '2018-03-06')")
            # ADBC prepares every query and binds parameters over DoPut.
            cur.execute("SELECT id, fare FROM adbc_lake.trips WHERE city = $1 AND fare > $2 ORDER BY id", ("Detroit", 5.0))
            table = cur.fetch_arrow_table()
            assert table.to_pydict() == {"id": [1], "fare": [12.5]}
            assert table.schema.field("id").type == pa.int64()
            cur.execute("SELECT count(*) AS n FROM adbc_lake.trips")
            assert cur.fetchone() == (3,)
            cur.execute("CREATE OR REPLACE VIEW adbc_lake.by_city AS SELECT city, count(*) AS n FROM adbc_lake.trips GROUP BY city")
            cur.execute("SELECT n FROM adbc_lake.by_city WHERE city = 'Detroit'")
            assert cur.fetchone() == (2,)

        objects = conn.adbc_get_objects(depth="all", db_schema_filter="adbc_lake").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        schemas = {s["db_schema_name"]: s for s in catalogs["bowman"]["catalog_db_schemas"]}
        tables = {t["table_name"]: t for t in schemas["adbc_lake"]["db_schema_tables"]}
        assert tables["trips"]["table_type"] == "TABLE"
        assert [c["column_name"] for c in tables["trips"]["table_columns"]] == ["id", "city", "fare", "dt"]
        assert tables["by_city"]["table_type"] == "VIEW"
        assert [c["column_name"] for c in tables["by_city"]["table_columns"]] == ["city", "n"]
        views = conn.adbc_get_objects(depth="tables", db_schema_filter="adbc_lake", table_types_filter=["VIEW"]).read_all().to_pylist()
        assert [t["table_name"] for t in views[0]["catalog_db_schemas"][0]["db_schema_tables"]] == ["by_city"]
        assert conn.adbc_get_table_schema("trips", db_schema_filter="adbc_lake").names == ["id", "city", "fare", "dt"]


def test_bulk_ingest_and_errors(flight_uri):
    data = pa.table({"user_id": pa.array(range(10_000), pa.int64()), "kind": pa.array([f"k{i % 7}" for i in range(10_000)])})
    with flightsql.connect(flight_uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            assert cur.adbc_ingest("ingested", data, mode="create") == 10_000
            assert cur.adbc_ingest("ingested", data.slice(0, 5), mode="append") == 5
            cur.execute("SELECT count(*), count(DISTINCT kind) FROM ingested")
            assert cur.fetchone() == (10_005, 7)
            with pytest.raises(Exception) as err:
                cur.execute("SELECT * FROM no_such_table")
            assert "42P01" in str(err.value)
            # The connection stays usable after an error.
            cur.execute("SELECT 42")
            assert cur.fetchone() == (42,)
