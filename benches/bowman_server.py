"""What the Python benchmarks need of Bowman: a server on a fresh data directory, and best-of timing.

Each benchmark script puts this folder on `sys.path` and imports from here, so the way a
benchmark starts and stops Bowman is the same everywhere.
"""
import contextlib
import os
import subprocess
import threading
import time


@contextlib.contextmanager
def bowman_server(bin_path, data_dir, extra_args=()):
    """Run `bowman serve` on `data_dir` with ports the system picks; yields (process, pgwire
    "host:port", Flight SQL "host:port"), read from the lines the server prints once it listens.
    `extra_args` go to `bowman serve` too. Logs go to stderr at warn level; the server is
    stopped on exit."""
    proc = subprocess.Popen(
        [str(bin_path), "serve", "--data-dir", str(data_dir), "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, BOWMAN_LOG=os.environ.get("BOWMAN_LOG", "warn")),
    )
    try:
        addrs = {}
        for line in proc.stdout:
            for name in ("pgwire", "flight", "http"):
                if line.startswith(f"{name} listening on "):
                    addrs[name] = line.split()[-1]
            if len(addrs) == 3:
                break
        else:
            raise SystemExit(f"bowman did not start (exit {proc.wait()})")
        # Keep reading what the server prints, so it never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, addrs["pgwire"], addrs["flight"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def libpq_dsn(pg_addr, user="bowman"):
    """A libpq connection string for a pgwire "host:port"."""
    host, port = pg_addr.rsplit(":", 1)
    return f"host={host} port={port} user={user} dbname=bowman"


def best_of(fn, repeat):
    """Run `fn` once to warm up, then `repeat` times; returns (the fastest time in seconds, the
    last result)."""
    fn()
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result
