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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield an SQLAlchemy URL (psycopg 3 driver) to an empty database."""
    bindir = _bin_dir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed; run scripts/setup.sh")
    root = Path(tempfile.mkdtemp(prefix="ghostnas-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, cwd=root)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "ghostnas", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ghostnas", "ghostnas")
        yield f"postgresql+psycopg://ghostnas@127.0.0.1:{port}/ghostnas"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)
