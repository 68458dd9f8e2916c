"""The data team's batch statement, in Bowman and in Apache Spark, on the same generated events.

    INSERT OVERWRITE TABLE events PARTITION (dt)
    SELECT user_id, event_type, product_id, ts, dt FROM raw
    DISTRIBUTE BY dt SORT BY user_id

Both engines read the same JSON lines (written by `bowman-bench gen-events`) and write
partitioned Parquet. Only the INSERT is timed. Prints, per engine, wall time, rows/s, files per
partition, how many cores the engine kept busy during the statement (CPU time / wall time) and
peak RSS, then the Bowman/Spark ratios. This is a benchmark, not a test: it asserts only that
both engines wrote the same rows, and that every file Bowman wrote is sorted by user_id (it
reports how many of Spark's are not).
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bowman_server import bowman_server, libpq_dsn  # noqa: E402

STATEMENT = """
INSERT OVERWRITE TABLE events PARTITION (dt)
SELECT user_id, event_type, product_id, ts, dt FROM raw
DISTRIBUTE BY dt SORT BY user_id
"""


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def unsorted_files(root: pathlib.Path) -> list[str]:
    """Files under root whose user_id column is not in ascending order (SORT BY user_id)."""
    import pyarrow.parquet as pq

    bad = []
    for f in sorted(root.rglob("*.parquet")):
        ids = pq.read_table(f, columns=["user_id"]).column("user_id").to_pylist()
        if any(a > b for a, b in zip(ids, ids[1:])):
            bad.append(str(f.relative_to(root)))
    return bad


def files_per_partition(root: pathlib.Path) -> tuple[float, int, int]:
    counts = []
    for part in sorted(root.glob("dt=*")):
        counts.append(sum(1 for p in part.rglob("*.parquet")))
    return (sum(counts) / len(counts) if counts else 0.0, max(counts, default=0), len(counts))


def run_bowman(bin_dir: pathlib.Path, work: pathlib.Path, input_dir: pathlib.Path):
    import psycopg

    data = work / "bowman"
    shutil.rmtree(data, ignore_errors=True)
    with bowman_server(bin_dir / "bowman", data) as (proc, pg_addr, _):
        with psycopg.connect(libpq_dsn(pg_addr, user="bench"), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE raw_json (event_id STRING, event_type STRING, user_id BIGINT, product_id BIGINT, "
                "timestamp BIGINT, latitude DOUBLE, longitude DOUBLE) USING json "
                f"LOCATION '{input_dir}'"
            )
            conn.execute(
                "CREATE TABLE events (user_id BIGINT, event_type STRING, product_id BIGINT, ts BIGINT, dt DATE) "
                "USING parquet PARTITIONED BY (dt)"
            )
            # The events as the statement sees them: a view would do in Spark; here a CTE-free
            # subquery keeps the statement text identical apart from the source name.
            sql = STATEMENT.replace(
                "FROM raw",
                'FROM (SELECT user_id, event_type, product_id, "timestamp" AS ts, '
                'CAST(to_timestamp_millis("timestamp") AS DATE) AS dt FROM raw_json) raw',
            )
            cpu_before = cpu_seconds(proc.pid)
            started = time.perf_counter()
            cur = conn.execute(sql)
            wall = time.perf_counter() - started
            cores = (cpu_seconds(proc.pid) - cpu_before) / wall
            rows = cur.rowcount
            per_dt = dict(conn.execute("SELECT CAST(dt AS STRING), count(*) FROM events GROUP BY dt").fetchall())
        rss = peak_rss_mib(proc.pid)
        root = data / "warehouse" / "events"
        return wall, rows, files_per_partition(root), rss, cores, per_dt, unsorted_files(root)


def run_spark(work: pathlib.Path, input_dir: pathlib.Path, memory: str):
    from pyspark.sql import SparkSession

    out = work / "spark"
    shutil.rmtree(out, ignore_errors=True)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bowman-batch-benchmark")
        .config("spark.driver.memory", memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.warehouse.dir", str(out / "warehouse"))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    (out / "events").mkdir(parents=True, exist_ok=True)
    try:
        schema = "event_id STRING, event_type STRING, user_id BIGINT, product_id BIGINT, timestamp BIGINT, latitude DOUBLE, longitude DOUBLE"
        spark.read.schema(schema).json(str(input_dir)).createOrReplaceTempView("raw_json")
        spark.sql(
            "CREATE OR REPLACE TEMPORARY VIEW raw AS SELECT user_id, event_type, product_id, timestamp AS ts, "
            "to_date(from_unixtime(timestamp DIV 1000)) AS dt FROM raw_json"
        )
        spark.sql(
            "CREATE TABLE events (user_id BIGINT, event_type STRING, product_id BIGINT, ts BIGINT, dt DATE) "
            f"USING parquet PARTITIONED BY (dt) LOCATION '{out / 'events'}'"
        )
        jvm_pid = spark.sparkContext._gateway.proc.pid
        cpu_before = cpu_seconds(jvm_pid)
        started = time.perf_counter()
        spark.sql(STATEMENT)
        wall = time.perf_counter() - started
        cores = (cpu_seconds(jvm_pid) - cpu_before) / wall
        per_dt = {str(r[0]): r[1] for r in spark.sql("SELECT dt, count(*) FROM events GROUP BY dt").collect()}
        rows = sum(per_dt.values())
        rss = peak_rss_mib(jvm_pid)
        return wall, rows, files_per_partition(out / "events"), rss, cores, per_dt, unsorted_files(out / "events")
    finally:
        spark.stop()


def report(name, wall, rows, files, rss, cores):
    mean, most, parts = files
    print(
        f"{name:7s} wall {wall:8.2f} s  {rows / wall:12,.0f} rows/s  "
        f"files/partition {mean:5.1f} (max {most}, {parts} partitions)  cores busy {cores:4.2f}  peak RSS {rss:8.0f} MiB"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bowman-bench-batch")
    ap.add_argument("--bin-dir", required=True, help="directory with release builds of bowman and bowman-bench")
    ap.add_argument("--spark-memory", default="8g")
    args = ap.parse_args()

    work = pathlib.Path(args.work)
    input_dir = work / f"input-{args.rows}-{args.seed}"
    if not (input_dir / "events.json").exists():
        input_dir.mkdir(parents=True, exist_ok=True)
        print(f"generating {args.rows:,} events (seed {args.seed}) ...", file=sys.stderr)
        subprocess.run(
            [str(pathlib.Path(args.bin_dir) / "bowman-bench"), "gen-events", "--rows", str(args.rows), "--seed", str(args.seed),
             "--out", str(input_dir / "events.json")],
            check=True,
        )

    b = run_bowman(pathlib.Path(args.bin_dir), work, input_dir)
    s = run_spark(work, input_dir, args.spark_memory)
    print(f"{args.rows:,} generated events, {os.cpu_count()} cores")
    report("bowman", *b[:5])
    report("spark", *s[:5])
    print(f"ratio bowman/spark: wall {b[0] / s[0]:.2f}x, rows/s {(b[1] / b[0]) / (s[1] / s[0]):.2f}x, peak RSS {b[3] / s[3]:.2f}x")
    if b[1] != s[1] or b[5] != s[5]:
        print("MISMATCH: the engines wrote different rows", file=sys.stderr)
        sys.exit(1)
    # SORT BY must hold within every file Bowman writes. Spark's writer sorts each task's rows
    # by the partition columns again before writing, and its sort is not stable, so its files
    # may lose the SORT BY order: reported, not fatal.
    if s[6]:
        print(f"note: {len(s[6])} of Spark's files are not sorted by user_id (e.g. {s[6][0]})")
    if b[6]:
        print(f"UNSORTED: Bowman wrote files not sorted by user_id: {b[6][:5]}", file=sys.stderr)
        sys.exit(1)
    print("every Bowman file is sorted by user_id")


if __name__ == "__main__":
    main()
