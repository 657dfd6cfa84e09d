"""Shared test helpers: compose a riskml Hydra config the way the entry points do."""

from __future__ import annotations

import os
from typing import Any, Callable

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


def killed_on_call(fn: Callable, n: int) -> Callable:
    """``fn``, except that its ``n``-th call raises KeyboardInterrupt (a job killed half-way)."""
    calls = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed")
        return fn(*args, **kwargs)

    return wrapped
