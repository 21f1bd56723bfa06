"""A throwaway PostgreSQL cluster from the locally installed server binaries.

Used by the demo and the test suite when no DSN is given and Docker does not
answer. PostgreSQL refuses to run as root, so when we are root the cluster is
initialised and run as an unprivileged system user (``postgres`` if it exists).
The superuser password is random and only ever handed out inside the DSN.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .errors import DatabaseError

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def find_pg_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL server."""
    override = os.environ.get("KIVI_OTRS_PG_BIN")
    if override:
        return Path(override)
    candidates = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise DatabaseError("no PostgreSQL server binaries found; install postgresql-15 (apt-get install postgresql-15)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)

    return demote


class LocalCluster:
    """``with LocalCluster() as cluster: cluster.dsn('dbname')``."""

    def __init__(self, base_dir: str | None = None, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or _free_port()
        self.password = secrets.token_urlsafe(18)
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            name = os.environ.get("KIVI_OTRS_PG_USER", "postgres")
            try:
                self.user = pwd.getpwnam(name)
            except KeyError:
                raise DatabaseError(
                    f"running as root needs an unprivileged system user {name!r} for PostgreSQL; "
                    "create it (useradd --system postgres) or set KIVI_OTRS_PG_USER"
                ) from None
        self.root = Path(tempfile.mkdtemp(prefix="kivi-otrs-pg-", dir=base_dir))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._started = False

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args), preexec_fn=_run_as(self.user), capture_output=True, text=True, cwd=self.root
        )
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DatabaseError(f"{Path(args[0]).name} failed: {tail[0]}; see {self.log}")
        return result

    def start(self) -> LocalCluster:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._cmd(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        pwfile.unlink()
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=256MB"
        )
        self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self._started = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = self._cmd(str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False)
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise DatabaseError(f"the throwaway PostgreSQL did not start; see {self.log}")

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self._started:
            self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
