"""Soak benchmark: many concurrent clients for N minutes against one Bowman server.

Each client loops until the time is up, picking at random (by weight) one of:

- point:     SELECT v FROM soak_points WHERE id = <random id>
- insert:    INSERT INTO soak_acks VALUES (<client>, <seq>, ...) -- one row, acknowledged or not
- copy:      COPY soak_acks FROM STDIN, 50 rows                  -- acknowledged as a whole
- overwrite: INSERT OVERWRITE TABLE soak_over SELECT ...          -- replaces a small table
- cancel:    a long query cancelled 50-250 ms after it starts (expects 57014)

It reports statements per second, p50/p99 latency per kind and overall, errors by SQLSTATE, the
server's peak RSS against --memory-limit, and checks at the end that every acknowledged row of
soak_acks is there exactly once (and that no row is there that no client tried to write).
Exits 1 when that check fails or the server died.
"""
import argparse
import collections
import os
import pathlib
import random
import sys
import tempfile
import threading
import time

import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bowman_server import bowman_server, libpq_dsn  # noqa: E402

WEIGHTS = {"point": 55, "insert": 20, "copy": 8, "overwrite": 7, "cancel": 10}
POINT_ROWS = 100_000


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def rss_bytes(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = collections.defaultdict(list)
        self.errors = collections.Counter()
        self.samples = collections.defaultdict(str)

    def ok(self, kind, seconds):
        with self.lock:
            self.latency[kind].append(seconds)

    def error(self, kind, e):
        state = getattr(e, "sqlstate", None) or type(e).__name__
        with self.lock:
            self.errors[(kind, state)] += 1
            self.samples.setdefault((kind, state), str(e).splitlines()[0][:200] if str(e) else "")


def client(n, dsn, deadline, stats, acked, attempted, rng):
    kinds, weights = zip(*WEIGHTS.items())
    seq = 0
    conn = psycopg.connect(dsn, autocommit=True)
    # A backstop: no statement of the mix should take this long.
    conn.execute("SET statement_timeout = '60s'")
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        t = time.perf_counter()
        try:
            if conn.closed:
                conn = psycopg.connect(dsn, autocommit=True)
                conn.execute("SET statement_timeout = '60s'")
            if kind == "point":
                i = rng.randrange(POINT_ROWS)
                row = conn.execute("SELECT v FROM soak_points WHERE id = %s", (i,)).fetchone()
                assert row == (i * 7,), f"point {i}: {row}"
            elif kind == "insert":
                seq += 1
                attempted.add((n, seq))
                conn.execute("INSERT INTO soak_acks VALUES (%s, %s, 'one row')", (n, seq))
                acked.append((n, seq))
            elif kind == "copy":
                rows = [(n, seq + k + 1) for k in range(50)]
                seq += 50
                attempted.update(rows)
                with conn.cursor().copy("COPY soak_acks (client, seq, payload) FROM STDIN") as cp:
                    for c, s in rows:
                        cp.write_row((c, s, "copied"))
                acked.extend(rows)
            elif kind == "overwrite":
                k = rng.randrange(1000)
                conn.execute("INSERT OVERWRITE TABLE soak_over SELECT value AS k, value * %s AS v "
                             "FROM generate_series(1, 200)", (k,))
            elif kind == "cancel":
                # Cancel 50-250 ms in, and again every 100 ms: a cancel that arrives before the
                # statement does is a no-op, as in PostgreSQL.
                done = threading.Event()

                def cancel(first=rng.uniform(0.05, 0.25)):
                    if not done.wait(first):
                        while not done.is_set():
                            conn.cancel_safe()
                            done.wait(0.1)

                canceller = threading.Thread(target=cancel, daemon=True)
                canceller.start()
                try:
                    conn.execute("SELECT count(*) FROM generate_series(1, 2000000000)").fetchone()
                    raise AssertionError("the cancelled query finished")
                except psycopg.errors.QueryCanceled:
                    pass
                finally:
                    done.set()
                    canceller.join()
            stats.ok(kind, time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - every failure is counted by SQLSTATE
            stats.error(kind, e)
            if isinstance(e, psycopg.OperationalError) and conn.closed:
                time.sleep(0.1)
    conn.close()


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the bowman binary")
    ap.add_argument("--work", help="data directory (default: a new temporary one)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--memory-limit", default="1G", help="passed to bowman serve --memory-limit")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bowman-soak-")
    limit = parse_size(args.memory_limit)
    with bowman_server(args.bin, work, ["--memory-limit", args.memory_limit]) as (proc, pg_addr, _flight):
        dsn = libpq_dsn(pg_addr)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE TABLE soak_points (id BIGINT, v BIGINT) USING parquet")
            c.execute(f"INSERT INTO soak_points SELECT value, value * 7 FROM generate_series(0, {POINT_ROWS - 1})")
            c.execute("CREATE TABLE soak_acks (client INT, seq BIGINT, payload STRING) USING parquet")
            c.execute("CREATE TABLE soak_over (k BIGINT, v BIGINT) USING parquet")
        stats, acked, attempted = Stats(), [], set()
        peak, stop = [rss_bytes(proc.pid)], threading.Event()
        baseline = peak[0]

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_bytes(proc.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        threads = [threading.Thread(target=client, args=(n, dsn, deadline, stats, acked, attempted,
                                                         random.Random(args.seed * 1000 + n)))
                   for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        alive = proc.poll() is None

        with psycopg.connect(dsn, autocommit=True) as c:
            rows = c.execute("SELECT client, seq FROM soak_acks").fetchall()
        counts = collections.Counter(rows)
        missing = [r for r in acked if counts[r] == 0]
        duplicated = [r for r, k in counts.items() if k > 1]
        phantom = [r for r in counts if r not in attempted]

    total_ok = sum(len(v) for v in stats.latency.values())
    total_err = sum(stats.errors.values())
    print(f"\nsoak: {args.clients} clients, {elapsed / 60:.1f} min, bowman {args.bin}")
    print(f"statements: {total_ok} ok, {total_err} failed; {(total_ok + total_err) / elapsed:.1f} per second")
    print(f"{'kind':<10} {'ok':>8} {'p50 ms':>9} {'p99 ms':>9}")
    all_lat = []
    for kind in WEIGHTS:
        lat = stats.latency.get(kind, [])
        all_lat += lat
        print(f"{kind:<10} {len(lat):>8} {percentile(lat, 0.5) * 1000:>9.1f} {percentile(lat, 0.99) * 1000:>9.1f}")
    print(f"{'all':<10} {len(all_lat):>8} {percentile(all_lat, 0.5) * 1000:>9.1f} {percentile(all_lat, 0.99) * 1000:>9.1f}")
    print("errors by SQLSTATE:" + ("" if stats.errors else " none"))
    for (kind, state), k in sorted(stats.errors.items()):
        print(f"  {kind:<10} {state:<8} {k:>6}  e.g. {stats.samples[(kind, state)]}")
    print(f"server RSS: {baseline / 2**20:.0f} MiB at start, peak {peak[0] / 2**20:.0f} MiB; "
          f"--memory-limit {args.memory_limit} ({peak[0] / limit:.0%} of it)")
    print(f"acknowledged rows: {len(acked)}; in the table: {len(rows)}; missing {len(missing)}, "
          f"duplicated {len(duplicated)}, never written {len(phantom)}")
    ok = alive and not missing and not duplicated and not phantom
    print("exactly once: " + ("yes" if ok else f"NO (server alive: {alive}; missing e.g. {missing[:5]}, "
                                                 f"duplicated e.g. {duplicated[:5]}, phantom e.g. {phantom[:5]})"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
