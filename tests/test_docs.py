"""Every docstring example in riskml runs and gives what it says.

One walk over the package instead of a check per module: a module whose
docstrings hold examples must run at least one of them (an example marked
``+SKIP`` everywhere would otherwise pass without testing anything).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import riskml

MODULES = sorted(m.name for m in pkgutil.walk_packages(riskml.__path__, "riskml.")
                 if not m.name.startswith("riskml.conf"))


def test_the_walk_finds_every_stage():
    for stage in ("riskml.features.snapshots", "riskml.training.models", "riskml.explain.reasons",
                  "riskml.io.files", "riskml.simulate.config"):
        assert stage in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if ">>>" in inspect.getsource(mod):
        assert result.attempted > 0, f"{name} has examples but runs none of them"
