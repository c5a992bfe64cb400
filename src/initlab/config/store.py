"""The stores a run will write to, probed without creating anything: the MLflow store
(``tracking.tracking_uri``, ``tracking.artifact_root``) and the Optuna study storage
(``hydra.sweeper.storage``).  A folder that cannot be written, a SQLite file that is locked or
is not a database, a server or database host that does not answer, a missing database driver:
each is refused as a ``ConfigError`` naming the key and the value (password masked)."""

from __future__ import annotations

import importlib.util
import os
import socket
import sqlite3
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from initlab.config.schema import show
from initlab.tracking.secrets import mask
from initlab.errors import ConfigError

CONNECT_TIMEOUT_S = 3.0
# How long another process may hold a SQLite write lock before the store counts as locked
# (parallel jobs hold it for milliseconds).
LOCK_TIMEOUT_S = float(os.environ.get("INITLAB_STORE_LOCK_TIMEOUT_S", "5"))
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306,
                 "mssql": 1433, "oracle": 1521, "http": 80, "https": 443}
# SQLAlchemy dialect -> default driver; driver -> the module it needs.
DEFAULT_DRIVERS = {"postgresql": "psycopg2", "postgres": "psycopg2", "mysql": "mysqldb",
                   "mariadb": "mysqldb", "mssql": "pyodbc", "oracle": "cx_oracle"}
DRIVER_MODULES = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000",
                  "mysqldb": "MySQLdb", "pymysql": "pymysql", "mysqlconnector": "mysql.connector",
                  "pyodbc": "pyodbc", "pymssql": "pymssql", "cx_oracle": "cx_Oracle",
                  "oracledb": "oracledb"}
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "mysql.connector": "mysql-connector-python",
                   "cx_Oracle": "cx-Oracle", "psycopg2": "psycopg2-binary"}


def _refuse(key: str, value: str, why: str, allowed: str) -> ConfigError:
    return ConfigError(f"{key} = {show(value)} cannot be used: {why}; {allowed} is expected.",
                       key=key, value=mask(value), allowed=allowed)


# ---- folders and SQLite files --------------------------------------------------------------
def _writable_folder(key: str, value: str, folder: Path) -> None:
    """``folder`` exists and can be written, or can be created (its nearest existing parent
    is a writable folder).  Nothing is created."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise _refuse(key, value, f"{probe} is a file, not a folder", "a path in a writable folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is read-only" if probe == folder else f"cannot be created ({probe} is read-only)"
        raise _refuse(key, value, f"the folder {folder} {what}", "a path in a writable folder")


def _sqlite_file(key: str, value: str, db: Path) -> None:
    if db.is_dir():
        raise _refuse(key, value, f"{db} is a folder", "the path of a SQLite database file")
    _writable_folder(key, value, db.parent)
    if not db.exists():
        return
    if not os.access(db, os.R_OK | os.W_OK):
        raise _refuse(key, value, f"the database file {db} is read-only",
                      "a SQLite file this user can write")
    with open(db, "rb") as fh:
        head = fh.read(16)
    if head and head != b"SQLite format 3\x00":
        raise _refuse(key, value, f"{db} is not a SQLite database", "a SQLite database file")
    try:  # a write transaction, rolled back: is another process holding the lock?
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=LOCK_TIMEOUT_S,
                               isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as err:
        msg = str(err)
        why = (f"the database {db} is locked by another process (waited {LOCK_TIMEOUT_S:g} s)"
               if "locked" in msg or "busy" in msg
               else f"the database {db} cannot be written ({msg})")
        raise _refuse(key, value, why, "a SQLite database no other process holds locked") from None


# ---- servers -------------------------------------------------------------------------------
def _via_proxy(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def _reachable(key: str, value: str, host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise _refuse(key, value, f"the {what} at {host}:{port} does not answer ({reason})",
                      f"a reachable {what}") from None


def _database(key: str, value: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as err:
        raise _refuse(key, value, f"it is not a database URL ({err})",
                      "a URL like postgresql://user@host:5432/db") from None
    dialect = url.get_backend_name()
    if url.host:
        port = url.port or DEFAULT_PORTS.get(dialect)
        if port:
            _reachable(key, value, url.host, int(port), f"{dialect} server")
    driver = url.get_driver_name() or DEFAULT_DRIVERS.get(dialect, "")
    module = DRIVER_MODULES.get(driver)
    if module and importlib.util.find_spec(module.split(".")[0]) is None:
        package = DRIVER_PACKAGES.get(module, module)
        raise _refuse(key, value, f"the database driver {module!r} is not installed "
                      f"(pip install {package})", "a database URL whose driver is installed")


def check_uri(key: str, value: Any, *, kind: str = "mlflow") -> None:
    """One store URL: SQLite, a database server, an MLflow server or a local folder."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse(key, str(value), "it is empty", "a store URL")
    if value.startswith("sqlite:"):
        if value in ("sqlite://", "sqlite:///:memory:") and kind == "optuna":
            return
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise _refuse(key, value, "it names no database file", "sqlite:///path/to/file.db")
        _sqlite_file(key, value, Path(value[len("sqlite:///"):]))
        return
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if kind == "mlflow" and scheme in ("http", "https"):
        if not parts.hostname:
            raise _refuse(key, value, "it names no host", "http://host:port")
        if not _via_proxy(scheme, parts.hostname):
            _reachable(key, value, parts.hostname, parts.port or DEFAULT_PORTS[scheme],
                       "MLflow server")
        return
    if kind == "mlflow" and (scheme == "file" or len(scheme) <= 1):  # a path (or C:\...)
        folder = Path(parts.path if scheme == "file" else value)
        if folder.exists() and not folder.is_dir():
            raise _refuse(key, value, f"{folder} is a file", "a folder for a file store")
        _writable_folder(key, value, folder)
        return
    if "+" in scheme or scheme.split("+")[0] in DEFAULT_DRIVERS:
        _database(key, value)
    # Other schemes (databricks, a plugin's): their own client says what is wrong.


def check_tracking_store(tracking: Mapping[str, Any]) -> None:
    if not tracking.get("enabled", True):
        return
    uri = tracking.get("tracking_uri")
    check_uri("tracking.tracking_uri", uri, kind="mlflow")
    root = tracking.get("artifact_root")
    if root and isinstance(uri, str) and uri.startswith("sqlite:///"):
        path = Path(root[len("file://"):] if root.startswith("file://") else root)
        if path.exists() and not path.is_dir():
            raise _refuse("tracking.artifact_root", root, f"{path} is a file",
                          "a folder for artifacts")
        _writable_folder("tracking.artifact_root", root, path)


def default_optuna_url(tracking_uri: Any) -> str:
    """The sweeper's ``storage: auto``: SQLite beside the MLflow store."""
    folder = (Path(tracking_uri[len("sqlite:///"):]).parent
              if isinstance(tracking_uri, str) and tracking_uri.startswith("sqlite:///")
              else Path("mlruns"))
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def check_optuna_storage(storage: Any, tracking_uri: Any) -> None:
    key = "hydra.sweeper.storage"
    if storage is None or storage in ("memory", "inmemory"):
        return
    if isinstance(storage, str):
        check_uri(key, default_optuna_url(tracking_uri) if storage == "auto" else storage,
                  kind="optuna")
        return
    if isinstance(storage, Mapping):  # a _target_ node, e.g. a journal file
        for name, value in _leaves(storage):
            if "path" in name and isinstance(value, str):
                _writable_folder(f"{key}.{name}", value, Path(value).parent)


def _leaves(node: Mapping[str, Any], prefix: str = ""):
    for k, v in node.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def check_store(cfg: DictConfig | Mapping[str, Any]) -> None:
    """The MLflow store of a job config (and, given a config with a ``hydra`` node of the
    Optuna sweeper, its study storage)."""
    tracking = cfg.get("tracking") or {}
    if isinstance(tracking, DictConfig):
        tracking = OmegaConf.to_container(tracking, resolve=True)
    check_tracking_store(tracking)
    sweeper = OmegaConf.select(cfg, "hydra.sweeper", default=None) \
        if isinstance(cfg, DictConfig) else None
    if sweeper is not None and "n_trials" in sweeper:
        storage = OmegaConf.to_container(sweeper, resolve=True).get("storage")
        check_optuna_storage(storage, tracking.get("tracking_uri"))
