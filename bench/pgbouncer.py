"""PgBouncer in transaction pooling mode on a loopback port, for the pooler test group
(tests/pooler) and the pooler benchmark (`python -m bench pooler`).

PgBouncer refuses to run as root, so it runs as an unprivileged user, from a directory of
its own outside any root-only temporary tree."""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import free_port


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run pgbouncer as")


@contextmanager
def running_pgbouncer(
    *, host: str, port: int, users: list[str], server_connections: int
) -> Iterator[int]:
    """PgBouncer in front of the PostgreSQL at host:port, trusting `users`, with at most
    `server_connections` connections to it; yields the port it listens on."""
    binary = shutil.which("pgbouncer")
    if binary is None:
        raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer")
    workdir = Path(tempfile.mkdtemp(prefix="stockyard-pgbouncer-"))
    workdir.chmod(0o777)
    listen = free_port()
    (workdir / "users.txt").write_text("".join(f'"{user}" ""\n' for user in users))
    (workdir / "pgbouncer.ini").write_text(
        f"""
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = {server_connections}
max_db_connections = {server_connections}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
"""
    )
    for path in workdir.iterdir():
        path.chmod(0o666)
    process = subprocess.Popen(
        [binary, "-u", _unprivileged_user(), str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), 0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "pgbouncer.log"
                    said = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {said}") from None
                time.sleep(0.1)
        yield listen
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)
