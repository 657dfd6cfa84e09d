"""Shared test helpers: compose a riskml Hydra config the way the entry points do."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def compose() -> Callable:
    """``compose(config_name, overrides)`` -> DictConfig from the packaged ``riskml.conf``."""
    from hydra import compose as _compose, initialize_config_module

    def make(config_name: str, overrides: list[str] | None = None):
        with initialize_config_module("riskml.conf", version_base="1.3"):
            return _compose(config_name=config_name, overrides=list(overrides or []))

    return make


#: The small scoring system the suite shares: 2,000 borrowers, 80 rounds, no oracle, plots, fidelity or what-if.
SMALL_SYSTEM = ["data.n_borrowers=2000", "model.num_boost_round=80", "model.min_data_in_leaf=50",
                "eval.oracle=false", "eval.plots=false", "eval.fidelity=false", "eval.whatif=false"]


def train_small_system(tmp: Path) -> Path:
    """Train and export a small scoring system under ``tmp`` (its store, data and ``models/riskml``); returns ``tmp``."""
    from hydra import compose as _compose, initialize_config_module

    from riskml import train

    store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models", f"data.data_dir={tmp}/data"]
    with initialize_config_module("riskml.conf", version_base="1.3"):
        train.run(_compose("train", overrides=[*store, *SMALL_SYSTEM]))
    return tmp


@pytest.fixture(scope="session")
def small_system(tmp_path_factory) -> Path:
    """One small scoring system for the whole test run, trained once: its folder holds ``mlflow.db``,
    ``data/default`` (the panel it was trained on) and ``models/riskml``. Tests read it and never change
    it; a test that changes a system trains or copies its own."""
    return train_small_system(tmp_path_factory.mktemp("small_system"))


def killed_on_call(fn: Callable, n: int) -> Callable:
    """``fn``, except that its ``n``-th call raises KeyboardInterrupt (a job killed half-way)."""
    calls = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed")
        return fn(*args, **kwargs)

    return wrapped


def kill_on_call(monkeypatch, module, name: str, n: int) -> None:
    """Make ``module.name`` raise KeyboardInterrupt (a kill) on its ``n``-th call; earlier calls run."""
    monkeypatch.setattr(module, name, killed_on_call(getattr(module, name), n))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], port: int, *, what: str, timeout: float = 120, **popen) -> Iterator[str]:
    """Start a server on 127.0.0.1:``port``, wait for its ``/health``, yield its URL; stop it whatever happens."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            **popen)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"{what} exited early"
            assert time.time() < deadline, f"{what} did not answer /health within {timeout:.0f} s"
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
