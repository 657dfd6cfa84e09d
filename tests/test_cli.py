"""The command line explains itself: each entry point's --help says what it does, its required keys,
and lists the config groups it takes and no other; the thread setting is the entry points' own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {"train": {"data", "model", "target", "tracking", "cluster"}, "generate": {"scenario", "engine", "cluster"},
          "tune": {"tracking"}, "compare": {"tracking"}, "predict": {"cluster"}}
ALL_GROUPS = {"data", "model", "target", "tracking", "scenario", "engine", "cluster"}


def help_text(entry: str) -> str:
    done = subprocess.run([sys.executable, "-m", f"riskml.{entry}", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("entry", sorted(GROUPS))
def test_help_says_what_the_command_does_and_lists_only_its_groups(entry):
    text = help_text(entry)
    assert text.startswith(f"python -m riskml.{entry}") and "Required keys:" in text
    section = text.split("Config groups", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\s{2}(\w+)\s{2,}", section, flags=re.M))
    assert listed == GROUPS[entry]
    for group in listed - {"engine"}:  # every option named is a config file of that group
        options = set(re.findall(r"(\w+)(?: \(default\))?", section.split(f"  {group}", 1)[1].split("\n")[0]))
        folder = CONF / group if (CONF / group).is_dir() else CONF / "groups" / group  # shared groups
        files = {p.stem for p in folder.glob("*.yaml")}
        assert files, group
        assert files <= options, (group, files - options)
    assert "Hydra" not in text.split("The config", 1)[0]  # not Hydra's generic text


def test_entry_points_set_passive_omp_waiting_themselves():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", "import os, riskml.train; print(os.environ['OMP_WAIT_POLICY'])"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "PASSIVE"
    done = subprocess.run([sys.executable, "-c", "import os, riskml; print(os.environ['OMP_WAIT_POLICY'])"],
                          capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, timeout=120)
    assert done.stdout.strip() == "ACTIVE"  # an explicit setting wins
