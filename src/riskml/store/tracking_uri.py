"""Where the MLflow store is, without importing MLflow (2 s): the launch directory,
the default SQLite file, and the check of a configured tracking URI."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
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


#: MLflow's request settings for a tracking server, unless the environment sets them: its defaults
#: (7 retries with backoff, 120 s a request) kept a run waiting 8 minutes on a server that was gone
SERVER_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def check_server(uri: str, *, key: str, timeout: float = 10.0) -> None:
    """A tracking server (http or https URI) that answers, checked once before any work; any answer
    will do (an auth proxy's 401 too), only no answer at all is an error. Sets :data:`SERVER_DEFAULTS`."""
    if not uri.startswith(("http://", "https://")):
        return
    for name, value in SERVER_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", e)
        raise ConfigError(key, uri, f"a tracking server that answers; {uri} did not within {timeout:g} s ({why})") from None


def check_uri(uri: str | None, *, key: str = "tracking.uri") -> str:
    """The tracking URI a config names (null: the default SQLite file), checked; nothing is opened."""
    uri = uri or default_tracking_uri()
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(key, uri, "null or a URI such as sqlite:///abs/path/mlflow.db or http://host:port")
    return uri
