"""Federated join benchmark: Bowman against DuckDB with its postgres_scanner extension.

The same Parquet files on local disk (events) are joined with the same PostgreSQL table
(users, filtered to one tier) and aggregated, by Bowman over pgwire and by DuckDB in-process
(extension loaded by path from the duckdb-extension-postgres-scanner wheel). Each engine runs
the query once to warm up, then `--repeat` times; the best time counts. Results must match.

Run through scripts/bench-federated, which builds the release binary and the virtualenv.
"""

import argparse
import os
import pathlib
import shutil
import sys

import duckdb
import duckdb_extension_postgres_scanner
import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bowman_server import best_of, bowman_server, libpq_dsn  # noqa: E402

QUERY = """
SELECT u.country, count(*) AS events, round(sum(e.value), 2) AS total
FROM {events} e JOIN {users} u ON e.user_id = u.id
WHERE u.tier = 3 AND e.kind <> 'noise'
GROUP BY u.country ORDER BY u.country
"""


def pg_url(conninfo):
    parts = dict(p.split("=", 1) for p in conninfo.split())
    user = parts.get("user", "postgres")
    return f"postgres://{user}@{parts.get('host', '127.0.0.1')}:{parts.get('port', '5432')}/{parts.get('dbname', 'postgres')}"


def setup(args, parquet_dir):
    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS bowman_bench CASCADE")
        c.execute("CREATE SCHEMA bowman_bench")
        c.execute(
            """CREATE TABLE bowman_bench.users AS
               SELECT g::bigint AS id, 'c' || (g %% 50) AS country, (g %% 5)::int AS tier,
                      DATE '2020-01-01' + (g %% 1000) AS signup
               FROM generate_series(1, %s) g""",
            (args.users,),
        )
        c.execute("ALTER TABLE bowman_bench.users ADD PRIMARY KEY (id)")
        c.execute("ANALYZE bowman_bench.users")
    os.makedirs(parquet_dir, exist_ok=True)
    d = duckdb.connect()
    d.execute(
        f"""COPY (SELECT (hash(i) % {args.users} + 1)::BIGINT AS user_id,
                         CASE WHEN i % 10 = 0 THEN 'noise' ELSE 'kind' || (i % 7) END AS kind,
                         (i % 1000) / 10.0 AS value
                  FROM range({args.events}) t(i))
            TO '{parquet_dir}' (FORMAT parquet, PER_THREAD_OUTPUT true, ROW_GROUP_SIZE 122880)"""
    )
    d.close()


def run_duckdb(args, parquet_dir):
    ext = os.path.join(
        os.path.dirname(duckdb_extension_postgres_scanner.__file__), "extensions", "v1.5.5", "postgres_scanner.duckdb_extension"
    )
    d = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    d.execute(f"LOAD '{ext}'")
    d.execute(f"ATTACH '{args.pg}' AS pg (TYPE postgres, READ_ONLY)")
    q = QUERY.format(events=f"read_parquet('{parquet_dir}/*.parquet')", users="pg.bowman_bench.users")
    t, rows = best_of(lambda: d.execute(q).fetchall(), args.repeat)
    d.close()
    return t, [(r[0], int(r[1]), float(r[2])) for r in rows]


def run_bowman(args, parquet_dir, work):
    with bowman_server(args.bin, os.path.join(work, "bowman-data")) as (_, pg_addr, _):
        c = psycopg.connect(libpq_dsn(pg_addr), autocommit=True)
        c.execute(f"CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{parquet_dir}'")
        c.execute(f"CREATE TABLE users USING postgres OPTIONS (url '{pg_url(args.pg)}', dbtable 'bowman_bench.users')")
        q = QUERY.format(events="events", users="users")
        plan = "\n".join(r[1] for r in c.execute("EXPLAIN " + q).fetchall())
        remote = [line.strip() for line in plan.splitlines() if "RemoteScanExec" in line]
        t, rows = best_of(lambda: c.execute(q).fetchall(), args.repeat)
        c.close()
        return t, [(r[0], int(r[1]), float(r[2])) for r in rows], remote


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    parquet_dir = os.path.join(args.work, "events")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    print(f"setting up: {args.events:,} events in Parquet, {args.users:,} users in PostgreSQL ({args.pg})", flush=True)
    setup(args, parquet_dir)

    dt, drows = run_duckdb(args, parquet_dir)
    bt, brows, remote = run_bowman(args, parquet_dir, args.work)
    if [(a, b) for a, b, _ in drows] != [(a, b) for a, b, _ in brows] or any(
        abs(x - y) > 0.01 for (_, _, x), (_, _, y) in zip(drows, brows)
    ):
        print("RESULTS DIFFER", drows[:3], brows[:3], file=sys.stderr)
        sys.exit(1)
    print(f"groups: {len(brows)}, events joined: {sum(r[1] for r in brows):,}")
    print("Bowman's PostgreSQL query:", *remote, sep="\n  ")
    print(f"{'engine':<32}{'best of ' + str(args.repeat) + ' (s)':>18}")
    build = os.path.basename(os.path.dirname(os.path.abspath(args.bin)))
    print(f"{'Bowman (pgwire, ' + build + ')':<32}{bt:>18.3f}")
    print(f"{'DuckDB 1.5.5 + postgres_scanner':<32}{dt:>18.3f}")
    print(f"ratio Bowman/DuckDB: {bt / dt:.2f}x (below 1 means Bowman is faster)")
    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute("DROP SCHEMA bowman_bench CASCADE")


if __name__ == "__main__":
    main()
