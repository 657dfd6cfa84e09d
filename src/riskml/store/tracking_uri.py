"""Where the MLflow store is, without importing MLflow (2 s): the launch directory,
the default SQLite file, and the check of a configured tracking URI."""

from __future__ import annotations

import os
from pathlib import Path

from riskml.exceptions import ConfigError


def launch_dir() -> Path:
    """The directory a run was launched from (Hydra 1.3 does not change the cwd)."""
    return Path(os.getcwd()).resolve()


def default_tracking_uri(base: str | os.PathLike | None = None) -> str:
    """``sqlite:///<absolute base or launch dir>/mlflow.db``."""
    return f"sqlite:///{(Path(base) if base else launch_dir()).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_uri(uri: str | None, *, key: str = "tracking.uri") -> str:
    """The tracking URI a config names (null: the default SQLite file), checked; nothing is opened."""
    uri = uri or default_tracking_uri()
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(key, uri, "null or a URI such as sqlite:///abs/path/mlflow.db or http://host:port")
    return uri
