"""A throw-away PostgreSQL server for tests: initdb in a temp folder, listen on 127.0.0.1 only.

``scripts/setup.sh`` installs Debian's PostgreSQL packages. The server runs as the ``postgres``
system user when the tests run as root (PostgreSQL refuses to run as root), with trust
authentication on loopback, and is stopped at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    return _bin_dir() is not None


class PostgresServer:
    """A throw-away server that a test can stop, start again and cut connections of.

    Create it with :func:`running_server`. ``url`` stays the same across restarts (same port).
    """

    def __init__(self, bindir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bindir, self.root, self.port, self.as_user = bindir, root, port, as_user
        self.data = root / "data"
        self.url = f"postgresql+psycopg://ghostnas@127.0.0.1:{port}/ghostnas"

    def run_tool(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program (as the postgres user when we are root)."""
        return subprocess.run(
            [*self.as_user, *cmd], check=check, capture_output=True, text=True, cwd=self.root
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        sock = self.root / "sock"
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        log = str(self.root / "log")
        self.run_tool(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and close every connection;
        ``immediate``: like a crash, recovery on the next start)."""
        self.run_tool(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def terminate_connections(self) -> int:
        """Drop every other client connection (``pg_terminate_backend``); return how many."""
        out = self.run_tool(
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "ghostnas",
            "-d",
            "ghostnas",
            "-At",
            "-c",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'ghostnas' AND pid <> pg_backend_pid()",
        )
        return int(out.stdout.strip() or 0)


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a server on an empty ``ghostnas`` database; stop it and delete its files at the end."""
    bindir = _bin_dir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed; run scripts/setup.sh")
    root = Path(tempfile.mkdtemp(prefix="ghostnas-pg-"))
    sock = root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bindir, root, _free_port(), as_user)
    server.run_tool(
        str(bindir / "initdb"), "-D", str(server.data), "-U", "ghostnas", "--auth=trust", "-E", "UTF8"
    )
    server.start()
    try:
        server.run_tool(
            str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "ghostnas", "ghostnas"
        )
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield an SQLAlchemy URL (psycopg 3 driver) to an empty database."""
    with running_server() as server:
        yield server.url
