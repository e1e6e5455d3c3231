"""A throwaway PostgreSQL server on 127.0.0.1 for benchmarks.

Debian's postgresql package (installed with apt-get when missing and when
root); the cluster lives in a temporary directory owned by the postgres
user, listens on a free port, trusts local connections, and is stopped by
:meth:`PostgresServer.stop`.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile


def _bindir() -> pathlib.Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return pathlib.Path(found[-1]).parent if found else None


def available(install: bool = True) -> bool:
    if _bindir() is None and install and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"],
                       env=env, capture_output=True)
    return _bindir() is not None and shutil.which("runuser") is not None


class PostgresServer:
    def __init__(self) -> None:
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-pg-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.bin = _bindir()

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd],
                       check=True, capture_output=True, cwd="/")

    def start(self, database: str = "placement") -> str:
        """Start; returns an SQLAlchemy URL for ``database``."""
        shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._as_postgres(str(self.bin / "initdb"), "-D", str(data),
                          "--auth=trust", "-U", "postgres")
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(data), "-w", "-l",
            str(self.dir / "server.log"), "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off", "start")
        self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1",
                          "-p", str(self.port), "-U", "postgres", database)
        return (f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/"
                f"{database}")

    def stop(self) -> None:
        try:
            self._as_postgres(str(self.bin / "pg_ctl"), "-D",
                              str(self.dir / "data"), "-m", "fast", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
