"""Start the real bowman binary for the Python client tests."""
import os
import pathlib
import subprocess
import tempfile

import pytest

# An S3 client without credentials asks the cloud's instance-metadata address for some: every
# server a test starts (they inherit this environment) asks loopback instead, so nothing ever
# leaves the machine.
os.environ["AWS_METADATA_ENDPOINT"] = "http://127.0.0.1:9"


def bowman_bin() -> str:
    if os.environ.get("BOWMAN_BIN"):
        return os.environ["BOWMAN_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "target"))
    return str(pathlib.Path(target) / "debug" / "bowman")


flight_addr = {}


@pytest.fixture
def flight_uri(bowman):
    """The Flight SQL URI of the session's bowman server."""
    return flight_addr["uri"]


@pytest.fixture(scope="session")
def bowman():
    """A bowman server on a fresh data directory; yields its pgwire (host, port)."""
    data = tempfile.mkdtemp(prefix="bowman-pytest-")
    proc = subprocess.Popen(
        [bowman_bin(), "serve", "--data-dir", data, "--pg-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    host = port = None
    for line in proc.stdout:
        if line.startswith("pgwire listening on "):
            host, port = line.split()[-1].rsplit(":", 1)
        if line.startswith("flight listening on "):
            flight_addr["uri"] = "grpc://" + line.split()[-1]
            break
    assert port, "bowman did not start"
    os.environ["BOWMAN_TEST_SERVER_PID"] = str(proc.pid)
    try:
        yield host, int(port)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, "bowman should exit 0 on SIGTERM"


@pytest.fixture
def dsn(bowman):
    host, port = bowman
    return f"host={host} port={port} user=bowman dbname=bowman"
