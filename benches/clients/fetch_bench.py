"""Fetching a large result: Bowman over pgwire (psycopg) and over Arrow Flight SQL (ADBC), against
PostgreSQL itself over pgwire (psycopg), on the same 4-column data.

The same N rows (id BIGINT, x DOUBLE, s TEXT, d DATE) are created in Bowman (a Parquet table)
and in PostgreSQL (an unlogged table); then each client reads `SELECT id, x, s, d FROM t` to the
end. psycopg uses a client-side cursor and fetchmany (Python row tuples, as applications use
it); ADBC reads Arrow record batches. Best of `--repeat` runs. Prints rows/s per path and the
ratios against PostgreSQL. A benchmark, not a test: it only checks that every path read N rows.
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bowman_server import bowman_server, libpq_dsn  # noqa: E402


def time_psycopg(dsn: str, query: str) -> tuple[int, float]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        n = 0
        with conn.cursor() as cur:
            cur.execute(query)
            while rows := cur.fetchmany(100_000):
                n += len(rows)
        return n, time.perf_counter() - started


def time_adbc(uri: str, query: str) -> tuple[int, float]:
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(query)
        n = sum(batch.num_rows for batch in cur.fetch_record_batch())
        return n, time.perf_counter() - started


def best(fn, repeat: int, *args) -> tuple[int, float]:
    runs = [fn(*args) for _ in range(repeat)]
    return min(runs, key=lambda r: r[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the bowman binary (release build)")
    ap.add_argument("--work", required=True, help="scratch directory for Bowman's data")
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres", help="PostgreSQL DSN")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import psycopg

    n = args.rows
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bowman_fetch_bench")
        conn.execute(
            "CREATE UNLOGGED TABLE bowman_fetch_bench AS SELECT g::bigint AS id, g * 0.5::float8 AS x, "
            f"'user-' || (g % 100000) AS s, DATE '2018-03-01' + (g % 31)::int AS d FROM generate_series(1, {n}) g"
        )
        conn.execute("VACUUM ANALYZE bowman_fetch_bench")
    with bowman_server(args.bin, args.work) as (_, pg_addr, flight_addr):
        bowman_dsn = libpq_dsn(pg_addr, user="bench")
        with psycopg.connect(bowman_dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bowman_fetch_bench USING parquet AS SELECT value AS id, value * 0.5 AS x, "
                "concat('user-', CAST(value % 100000 AS STRING)) AS s, "
                "CAST(to_timestamp_seconds(1519862400 + (value % 31) * 86400) AS DATE) AS d "
                f"FROM generate_series(1, {n})"
            )
        query = "SELECT id, x, s, d FROM bowman_fetch_bench"
        results = {
            "postgresql pgwire (psycopg)": best(time_psycopg, args.repeat, args.pg, query),
            "bowman pgwire (psycopg)": best(time_psycopg, args.repeat, bowman_dsn, query),
            "bowman flight sql (adbc)": best(time_adbc, args.repeat, f"grpc://{flight_addr}", query),
        }
    print(f"{'path':<30} {'rows':>11} {'seconds':>8} {'rows/s':>12}")
    for name, (rows, secs) in results.items():
        assert rows == n, f"{name} read {rows} rows, expected {n}"
        print(f"{name:<30} {rows:>11} {secs:>8.2f} {rows / secs:>12,.0f}")
    pg_rate = n / results["postgresql pgwire (psycopg)"][1]
    for name in ("bowman pgwire (psycopg)", "bowman flight sql (adbc)"):
        print(f"ratio {name} / postgresql pgwire: {n / results[name][1] / pg_rate:.2f}x rows/s")


if __name__ == "__main__":
    main()
