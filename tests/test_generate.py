"""``python -m riskml.generate`` end to end: files, manifest, determinism, fast failures."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from riskml.exceptions import ConfigError, InputError
from riskml.io.datasets import load_dataset
from riskml.generate import run
from riskml.io.files import sha256_file
from riskml.schema import PANEL, TRUTH, row_problems
from riskml.simulate import SimConfig, oracle
from riskml.simulate.book import start_months

SMALL = ["n_borrowers=600", "n_months=12", "block_size=64"]


def generate(compose, tmp_path, *overrides):
    return run(compose("generate", [f"data_dir={tmp_path}", *SMALL, *overrides]))


def test_run_writes_a_complete_data_set(compose, tmp_path, capsys):
    out = generate(compose, tmp_path, "name=demo", "scenario=tightening", "scenario.tighten_month=8")
    assert out == tmp_path / "demo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temp folder left behind
    panel, truth, manifest = load_dataset(out)
    assert row_problems(panel).isna().all()
    assert list(panel.columns) == list(PANEL.names)
    assert list(truth.columns[:2]) == list(TRUTH.names)
    rows = int((12 - start_months(SimConfig(n_borrowers=600, n_months=12))).sum())  # a row a month once open
    assert len(panel) == rows and len(truth) == 600
    assert manifest["row_counts"] == {"panel.parquet": rows, "truth.parquet": 600}
    assert manifest["seed"] == 0 and manifest["scenario"] == "tightening"
    assert manifest["package_version"]
    assert manifest["status_counts"] == panel["status"].value_counts().to_dict()
    assert sum(manifest["cause_counts"].values()) == panel["cause"].notna().sum()
    for f, meta in manifest["files"].items():
        assert meta["sha256"] == sha256_file(out / f)
    printed = capsys.readouterr().out
    assert "suspended at least once" in printed and str(out) in printed
    # the oracle runs later from the stored manifest
    sim = SimConfig.from_manifest(manifest)
    assert sim.tighten_month == 8
    o = oracle(sim, panel.loc[panel["month"] == 6, ["borrower_id", "month"]].tail(20), horizon=3, n_paths=10)
    assert len(o) == 20


def test_load_dataset_detects_a_changed_file(compose, tmp_path):
    out = generate(compose, tmp_path, "name=x")
    with open(out / "truth.parquet", "ab") as f:
        f.write(b"junk")
    with pytest.raises(InputError, match="truth.parquet: sha256 does not match"):
        load_dataset(out)


def test_bytes_do_not_depend_on_chunks_or_workers_but_on_the_seed(compose, tmp_path):
    runs = {
        "one_block": generate(compose, tmp_path, "name=a", "chunk_borrowers=64"),
        "three_blocks": generate(compose, tmp_path, "name=b", "chunk_borrowers=192"),
        "two_workers": generate(compose, tmp_path, "name=c", "chunk_borrowers=64", "workers=2"),
    }
    digests = {k: (sha256_file(p / "panel.parquet"), sha256_file(p / "truth.parquet")) for k, p in runs.items()}
    assert len(set(digests.values())) == 1, digests
    s1 = generate(compose, tmp_path, "name=s1", "seed=1")
    s2 = generate(compose, tmp_path, "name=s2", "seed=2")
    assert sha256_file(s1 / "panel.parquet") != sha256_file(s2 / "panel.parquet")
    p1, p2 = pd.read_parquet(s1 / "panel.parquet"), pd.read_parquet(s2 / "panel.parquet")
    assert not p1["income"].equals(p2["income"])


def test_a_failure_while_writing_leaves_no_data_set_and_no_temp_folder(compose, tmp_path, monkeypatch):
    """The writer thread's error stops the job at the next chunk; nothing that looks complete remains."""
    from riskml.io import datasets

    calls = []

    def failing(cols, schema):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real(cols, schema)

    real = datasets.panel_table
    earlier = generate(compose, tmp_path, "name=full", "seed=5")
    sums = {p.name: sha256_file(p) for p in earlier.iterdir()}
    monkeypatch.setattr(datasets, "panel_table", failing)
    with pytest.raises(OSError, match="No space left"):
        generate(compose, tmp_path, "name=full", "chunk_borrowers=64")
    assert len(calls) == 3 and list(tmp_path.iterdir()) == [earlier]  # the earlier data set, whole
    assert {p.name: sha256_file(p) for p in earlier.iterdir()} == sums
    load_dataset(earlier)  # its manifest still vouches for its files


def test_generate_checks_where_it_writes_before_simulating(compose, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's own file")
    with pytest.raises(ConfigError, match=r"config key 'name'.*holds other files, which riskml will not delete"):
        generate(compose, tmp_path, "name=mine")
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"config key 'name'.*it is a file"):
        generate(compose, tmp_path, "name=afile")
    assert (mine / "notes.txt").read_text() == "a user's own file"


def cli(tmp_path, *args):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "riskml.generate", f"data_dir={tmp_path}", *args],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)


def test_cli_runs_a_scenario(tmp_path):
    r = cli(tmp_path, "n_borrowers=2000", "seed=7", "scenario=tightening")
    assert r.returncode == 0, r.stderr
    assert "adverse events" in r.stdout
    assert (tmp_path / "default" / "manifest.json").exists()


@pytest.mark.parametrize("args, words", [
    (["n_borrowers=-1"], ["n_borrowers", "-1", "whole number >= 1"]),
    (["n_months=5"], ["n_months", "horizon", "min_history"]),
    (["scenario=xyz"], ["scenario/xyz", "baseline", "maintenance", "tightening"]),
])
def test_cli_fails_fast_with_a_clear_message(tmp_path, args, words):
    r = cli(tmp_path, *args)
    assert r.returncode != 0
    for w in words:
        assert w in r.stderr, r.stderr
    assert not (tmp_path / "default").exists()



def test_engine_rates_take_overrides_and_refuse_misspelt_keys(compose):
    """conf/generate.yaml takes the engine's rates from riskml.simulate.EngineParams (one source)."""
    from riskml.simulate import SimConfig

    assert SimConfig.from_cfg(compose("generate", overrides=["engine.policy_rate=0.01"])).engine.policy_rate == 0.01
    with pytest.raises(Exception, match="policy_rat"):
        compose("generate", overrides=["engine.policy_rat=0.01"])
