"""Real stores for the store tests: a PostgreSQL server started from the system's binaries and
an ``mlflow server``, each once per test session, on 127.0.0.1 and a free port; plus the jobs
that several test modules look at (a tracked run and a short search into PostgreSQL).

A pytest plugin, not a ``conftest.py``: the suite's modules ``from conftest import ...`` the
root ``tests/conftest.py``, and a second ``conftest`` module would shadow it.  Each test module
here names it in ``pytest_plugins``, so its session fixtures are set up once for all of them.

PostgreSQL refuses to run as root (``initdb`` and ``pg_ctl`` both).  When the tests run as root
the server's commands run as an unprivileged system user (``postgres``, else ``nobody``) through
``setpriv`` (or ``runuser``), in a data directory under /tmp that this user owns (pytest's own
temporary directories are private to root).  The role ``initlab`` logs in over TCP with a
password (``scram-sha-256``); the administrator role connects only through the Unix socket in
that directory (``trust``, socket mode 0700).  No file holds the password: it is generated per
session and handed to the server in ``CREATE ROLE`` only, which PostgreSQL stores hashed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FAST, run_cli
from servers import server_env, stop_group, wait_healthy

# Distinctive, and new each session: it cannot be in any file unless this session wrote it.
PASSWORD = f"Pw-{secrets.token_hex(4)}-NOT-IN-ANY-FILE"
PG_USER = "initlab"
PG_ADMIN = "initlab_admin"   # superuser, Unix socket only
MLFLOW_DB, OPTUNA_DB = "mlflow", "optuna"


# ---- helpers -----------------------------------------------------------------------------
def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bindir() -> Path | None:
    """A directory holding ``initdb``, ``pg_ctl`` and ``pg_dump``: ``$INITLAB_PG_BINDIR``, the
    one ``pg_ctl`` on PATH (or /usr/local/bin/pg_ctl) links to, else the newest
    /usr/lib/postgresql/<version>/bin."""
    candidates = [Path(os.environ["INITLAB_PG_BINDIR"])] if os.environ.get("INITLAB_PG_BINDIR") \
        else []
    for pg_ctl in (shutil.which("pg_ctl"), "/usr/local/bin/pg_ctl"):
        if pg_ctl and Path(pg_ctl).exists():
            candidates.append(Path(pg_ctl).resolve().parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "pg_dump")):
            return folder
    return None


def unprivileged() -> tuple[list[str], int, int] | None:
    """The command prefix that runs the server's commands as a non-root user, with that user's
    uid and gid; ``([], -1, -1)`` when the tests do not run as root, None when no way exists."""
    if os.geteuid() != 0:
        return [], -1, -1
    for name in (os.environ.get("INITLAB_PG_OS_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("setpriv"):
            return (["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                     "--clear-groups"], user.pw_uid, user.pw_gid)
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user.pw_uid, user.pw_gid
    return None


def needles() -> dict[str, bytes]:
    """What a leaked password looks like: itself, and as a basic-auth header's value."""
    basic = base64.b64encode(f"alice:{PASSWORD}".encode())
    return {"password": PASSWORD.encode(), "basic-auth header": basic}


def find_secret(data: bytes) -> list[str]:
    return [name for name, needle in needles().items() if needle in data]


def scan_tree(root: Path) -> list[str]:
    """Every file under ``root`` that holds the password: raw bytes (SQLite files, safetensors
    headers, pickles), and each member of a zip file (torch checkpoints) decompressed."""
    hits = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        hits += [f"{path} ({what})" for what in find_secret(data)]
        if zipfile.is_zipfile(path):
            with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    hits += [f"{path}!{member} ({what})"
                             for what in find_secret(archive.read(member))]
    return hits


# ---- PostgreSQL --------------------------------------------------------------------------
@dataclass
class PostgresServer:
    bindir: Path
    base: Path       # data directory, socket and server log
    port: int
    as_user: list[str]
    host: str = "127.0.0.1"
    user: str = PG_USER
    password: str = field(default=PASSWORD, repr=False)

    def url(self, database: str, password: bool = True) -> str:
        """The SQLAlchemy URL a user passes to MLflow or Optuna, with the password in it or
        (``password=False``) without, for libpq to read from ``PGPASSWORD``."""
        user = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql+psycopg2://{user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """A new database owned by ``initlab`` (as the administrator, over the Unix socket)."""
        import psycopg2

        admin = psycopg2.connect(host=str(self.base), port=self.port, user=PG_ADMIN,
                                 dbname="postgres")
        admin.autocommit = True
        with contextlib.closing(admin), admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} OWNER {self.user}")

    def databases(self) -> list[str]:
        return [name for name, in self.query("postgres", "SELECT datname FROM pg_database "
                                                         "WHERE NOT datistemplate ORDER BY 1")]

    def connect(self, database: str):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=database)

    def query(self, database: str, sql: str, args: tuple = ()) -> list[tuple]:
        with contextlib.closing(self.connect(database)) as con, con.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def dump(self, database: str) -> str:
        """``pg_dump`` of a database as SQL text (schema and every row)."""
        env = {**os.environ, "PGPASSWORD": self.password}
        proc = subprocess.run([str(self.bindir / "pg_dump"), "-h", self.host, "-p", str(self.port),
                               "-U", self.user, "--no-owner", database],
                              capture_output=True, text=True, env=env, timeout=120, check=True)
        return proc.stdout

    @property
    def log(self) -> Path:
        return self.base / "server.log"


def _as(prefix: list[str], *cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *cmd], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 with the role ``initlab`` (password auth) owning
    the databases ``mlflow`` and ``optuna``; stopped and deleted at the end of the session."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install -e '.[postgres]'")
    import psycopg2

    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, pg_dump) in "
                    "/usr/lib/postgresql/*/bin or on PATH")
    runas = unprivileged()
    if runas is None:
        pytest.skip("running as root, and no unprivileged user (postgres, nobody) with setpriv or "
                    "runuser to run PostgreSQL as")
    prefix, uid, gid = runas
    # Mode 0700, owned by the server's user; directly in /tmp when that user is not us, so it
    # can reach its directory (and the socket path stays short).
    base = Path(tempfile.mkdtemp(prefix="initlab-pg-", dir="/tmp" if uid >= 0 else None))
    if uid >= 0:
        os.chown(base, uid, gid)
    server = PostgresServer(bindir, base, free_port(), prefix)
    data = base / "data"
    started = False
    try:
        init = _as(prefix, str(bindir / "initdb"), "-D", str(data), "-U", PG_ADMIN,
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--no-locale", "--no-sync", cwd=base)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                       f"unix_socket_directories = '{base}'\nunix_socket_permissions = 0700\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        start = _as(prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(server.log),
                    "-w", "-t", "60", "start", cwd=base)
        if start.returncode != 0:
            log = server.log.read_text() if server.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log}")
        started = True
        admin = psycopg2.connect(host=str(base), port=server.port, user=PG_ADMIN,
                                 dbname="postgres")
        admin.autocommit = True
        with contextlib.closing(admin), admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {PG_USER} LOGIN PASSWORD %s", (PASSWORD,))
        for database in (MLFLOW_DB, OPTUNA_DB):
            server.create_database(database)
        yield server
    finally:
        if started:
            _as(prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop",
                cwd=base)
        shutil.rmtree(base, ignore_errors=True)


# ---- mlflow server -----------------------------------------------------------------------
@dataclass
class MlflowServer:
    url: str
    port: int
    base: Path
    artifacts: Path  # --artifacts-destination
    log: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """``mlflow server`` with a SQLite backend and proxied artifacts under its own folder;
    ready when ``/health`` answers, stopped at the end of the session."""
    base = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = MlflowServer(f"http://127.0.0.1:{port}", port, base, base / "server-artifacts",
                          base / "server.log")
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{base}/mlflow.db",
           "--artifacts-destination", str(server.artifacts)]
    with open(server.log, "w") as log:
        proc = subprocess.Popen(cmd, cwd=base, stdout=log, stderr=subprocess.STDOUT,
                                env=server_env(),
                                start_new_session=True)  # its own group: uvicorn and workers
    try:
        wait_healthy(server.url, proc, server.log, "mlflow server")
        yield server
    finally:
        stop_group(proc)


# ---- jobs into PostgreSQL, shared by test_postgres and test_no_secret_written -----------------
@dataclass
class Job:
    tmp: Path                         # the job's working directory (cwd, outputs/, multirun/)
    proc: subprocess.CompletedProcess
    seconds: float


SEARCH = ["-m", "hparams_search=init_scale", "dataset=digits", "model.hidden=[16]",
          "trainer.max_epochs=2", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"]


@pytest.fixture(scope="session")
def pg_run(postgres_server, tmp_path_factory) -> Job:
    """``python train.py`` tracked into PostgreSQL (experiment ``pg-run``)."""
    tmp = tmp_path_factory.mktemp("pg-run")
    start = time.monotonic()
    proc = run_cli(tmp, postgres_server.url(MLFLOW_DB), *FAST, "tracking.experiment=pg-run")
    return Job(tmp, proc, time.monotonic() - start)


@pytest.fixture(scope="session")
def pg_search(postgres_server, tmp_path_factory) -> Job:
    """A 3-trial Optuna search with its study in PostgreSQL and its runs in PostgreSQL too
    (experiment ``pg-search``)."""
    tmp = tmp_path_factory.mktemp("pg-search")
    start = time.monotonic()
    proc = run_cli(tmp, postgres_server.url(MLFLOW_DB), *SEARCH,
                   f"hydra.sweeper.storage={postgres_server.url(OPTUNA_DB)}",
                   "tracking.experiment=pg-search", timeout=540)
    return Job(tmp, proc, time.monotonic() - start)
