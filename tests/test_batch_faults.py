"""The batch job under faults and misuse: nothing deleted that riskml did not create,
nothing mixed between jobs, nothing half-written that looks complete, rows in any order."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import kill_on_call
from hydra import compose, initialize_config_module

from riskml import predict
from riskml.batch import job as batch_job
from riskml.batch import stream
from riskml.io import files
from riskml.store import model_store
from riskml.io.files import sha256_file
from riskml.exceptions import ConfigError, InputError, ModelError


@pytest.fixture(scope="module")
def models(small_system) -> Path:
    return small_system


def cfg(models: Path, inp, out, *overrides):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}",
                                             f"model={models / 'models' / 'riskml'}", *overrides])


@pytest.fixture(scope="module")
def panel_file(models) -> Path:
    return models / "data" / "default" / "panel.parquet"


def test_a_run_uri_with_dots_is_refused_and_deletes_nothing(models, panel_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "data"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    for uri in ("runs:/../../../data", "runs:/../data/model", f"runs:/{'a' * 32}/../../../data"):
        with pytest.raises(ModelError, match="run id must be 32 hexadecimal|artifact path plain names"):
            predict.run(cfg(models, panel_file, tmp_path / "o.parquet", f"model={uri}",
                            f"tracking_uri=sqlite:///{models}/mlflow.db"))
    assert (victim / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "o.parquet").exists()


def test_a_second_job_on_the_same_output_is_refused_while_the_first_runs(models, panel_file, tmp_path, monkeypatch):
    out = tmp_path / "p.parquet"
    started, release, errors = threading.Event(), threading.Event(), []
    real = predict.score_histories

    def slow(*args, **kwargs):
        started.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "score_histories", slow)
    first = threading.Thread(target=lambda: predict.run(cfg(models, panel_file, out)))
    first.start()
    assert started.wait(120)
    monkeypatch.setattr(predict, "score_histories", real)
    try:
        with pytest.raises(InputError, match=r"another riskml.predict job \(pid \d+\) is writing it now"):
            predict.run(cfg(models, panel_file, out, "what_if=false"))
    finally:
        release.set()
        first.join(120)
    summary = json.loads(out.with_name("p.summary.json").read_text())
    assert summary["model"]["uri"].endswith("riskml") and summary["top_k"] == 3 and not errors


def killed_at_bucket(monkeypatch, n: int, job_cfg) -> None:
    """Run ``job_cfg`` killed (KeyboardInterrupt) at its ``n``-th bucket; the real scorer is back afterwards."""
    real = predict.score_histories
    kill_on_call(monkeypatch, predict, "score_histories", n)
    with pytest.raises(KeyboardInterrupt):
        predict.run(job_cfg)
    monkeypatch.setattr(predict, "score_histories", real)
    out = Path(job_cfg.output)
    # the output assembled beside the scoring is removed, not left half-written under any name
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_a_resume_with_another_bucket_size_starts_clean_and_never_duplicates(models, panel_file, tmp_path,
                                                                              monkeypatch):
    clean = predict.run(cfg(models, panel_file, tmp_path / "clean.parquet", "bucket_rows=5000"))
    out = tmp_path / "p.parquet"
    killed_at_bucket(monkeypatch, 3, cfg(models, panel_file, out, "bucket_rows=8000"))
    again = predict.run(cfg(models, panel_file, out, "bucket_rows=5000"))  # the natural reaction to an OOM kill
    assert again.summary["resumed_buckets"] == 0  # another plan: nothing reused
    df = pd.read_parquet(out)
    assert df["borrower_id"].is_unique and len(df) == clean.summary["scored_borrowers"]
    assert sha256_file(out) == sha256_file(clean.output)


def test_a_resume_with_another_model_starts_clean(models, panel_file, tmp_path, monkeypatch):
    """A moved alias between kill and resume changes the model's checksum: its parts are not reused."""
    other = tmp_path / "other_model"
    shutil.copytree(models / "models" / "riskml", other)
    (other / "registered.json").write_text('{"model_name": "riskml", "model_version": 2}')  # not a scored file
    manifest = json.loads((other / "system.json").read_text())
    (other / "system.json").write_text(json.dumps({**manifest, "note": "retrained"}))
    _rewrite_checksums(other)
    out = tmp_path / "p.parquet"
    killed_at_bucket(monkeypatch, 2, cfg(models, panel_file, out, "bucket_rows=5000"))
    again = predict.run(cfg(models, panel_file, out, "bucket_rows=5000", f"model={other}"))
    assert again.summary["resumed_buckets"] == 0


def _rewrite_checksums(folder: Path) -> None:
    sums = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("checksums.json", "registered.json") and p.parent == folder}
    old = json.loads((folder / "checksums.json").read_text())
    (folder / "checksums.json").write_text(json.dumps({**old, **sums}))


def test_output_equal_to_or_inside_the_input_is_refused_before_anything_is_written(models, panel_file, tmp_path):
    inp = tmp_path / "in.parquet"
    pd.read_parquet(panel_file).head(500).to_parquet(inp)
    before = sha256_file(inp)
    with pytest.raises(ConfigError, match="config key 'output'.*apart from the input"):
        predict.run(cfg(models, inp, inp))
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.read_parquet(panel_file).head(500).to_parquet(folder / "a.parquet")
    with pytest.raises(ConfigError, match="inside the input folder|apart from the input"):
        predict.run(cfg(models, folder, folder / "scores.parquet"))
    assert sha256_file(inp) == before and sorted(p.name for p in folder.iterdir()) == ["a.parquet"]


def test_an_output_that_reaches_the_input_through_a_link_is_refused(models, panel_file, tmp_path):
    rows = pd.read_parquet(panel_file).head(500)
    data = tmp_path / "data"
    data.mkdir()
    rows.to_parquet(data / "a.parquet")
    before = sha256_file(data / "a.parquet")
    (tmp_path / "out").symlink_to(data)  # an output folder that is a link to the input folder
    (tmp_path / "in.parquet").symlink_to(data / "a.parquet")  # an input that is a link to the output
    os.link(data / "a.parquet", tmp_path / "hard.parquet")  # another name of the same file
    for inp, out in [(data, tmp_path / "out" / "scores.parquet"), (tmp_path / "in.parquet", data / "a.parquet"),
                     (data / "a.parquet", tmp_path / "in.parquet"), (tmp_path / "hard.parquet", data / "a.parquet")]:
        with pytest.raises(ConfigError, match="config key 'output'.*apart from the input"):
            predict.run(cfg(models, inp, out))
    with pytest.raises(ConfigError, match="config key 'output'"):  # the input folder itself, through its link
        predict.run(cfg(models, data, tmp_path / "out"))
    assert sha256_file(data / "a.parquet") == before and sorted(p.name for p in data.iterdir()) == ["a.parquet"]


@pytest.mark.parametrize("case, match", [
    ("is_dir", "it is a folder"),
    ("under_file", "is a file"),
    ("read_only", "not writable"),
    ("bad_ext", "ending in .parquet or .csv"),
    ("format_mismatch", "config key 'format'"),
])
def test_bad_outputs_stop_before_any_work_with_one_line(models, panel_file, tmp_path, case, match, monkeypatch):
    called = []
    monkeypatch.setattr(predict, "score_histories", lambda *a, **k: called.append(1))
    extra = []
    if case == "is_dir":
        out = tmp_path / "dir.parquet"
        out.mkdir()
    elif case == "under_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "o.parquet"
    elif case == "read_only":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "sub" / "o.parquet"
        # root ignores permission bits (CI runs as root): make the check see the folder as others would
        real_access = os.access
        monkeypatch.setattr(files.os, "access", lambda p, m: False if Path(p) == ro else real_access(p, m))
    elif case == "bad_ext":
        out = tmp_path / "o.txt"
    else:
        out, extra = tmp_path / "o.csv", ["format=parquet"]
    with pytest.raises(ConfigError, match=match):
        predict.run(cfg(models, panel_file, out, *extra))
    assert not called and not (tmp_path / "o.csv").exists()


def test_a_stale_summary_never_stands_beside_new_predictions(models, panel_file, tmp_path, monkeypatch):
    out = tmp_path / "p.parquet"
    predict.run(cfg(models, panel_file, out))
    summary = out.with_name("p.summary.json")
    assert summary.exists()
    monkeypatch.setattr(batch_job, "write_json", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed after the output's rename, before its summary
        predict.run(cfg(models, panel_file, out, "what_if=false"))
    assert out.exists() and not summary.exists()  # no summary claims the new output complete


def test_rows_in_any_order_score_the_same_as_sorted_rows(models, panel_file, tmp_path):
    panel = pd.read_parquet(panel_file)
    shuffled = tmp_path / "shuffled.parquet"
    panel.sample(frac=1.0, random_state=7).to_parquet(shuffled)  # months out of order within borrowers too
    a = predict.run(cfg(models, panel_file, tmp_path / "a.parquet"))
    b = predict.run(cfg(models, shuffled, tmp_path / "b.parquet"))
    assert b.summary["rejected_borrowers"] == 0 and b.summary["scored_borrowers"] == a.summary["scored_borrowers"]
    assert sha256_file(a.output) == sha256_file(b.output)


def test_temporaries_of_killed_processes_are_cleaned_and_live_ones_kept(tmp_path):
    target = tmp_path / "out.parquet"
    dead = tmp_path / ".out.parquet.tmp-999999999"
    dead.write_text("half")
    dead_dir = tmp_path / ".out.parquet.tmp-999999998"
    dead_dir.mkdir()
    live = tmp_path / f".out.parquet.tmp-{os.getppid()}"
    live.write_text("a running job's")
    other = tmp_path / ".other.tmp-999999999"
    other.write_text("not this file's")
    with files.atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert not dead.exists() and not dead_dir.exists() and live.exists() and other.exists()


def test_the_job_allocates_from_a_pool_that_keeps_memory_and_gives_the_process_its_own_back(
        models, panel_file, tmp_path, monkeypatch):
    import pyarrow as pa

    pa.jemalloc_memory_pool()  # the wheels from PyPI are built with it
    seen, real = [], predict.score_histories

    def spy(*args, **kwargs):
        seen.append(pa.default_memory_pool().backend_name)
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "score_histories", spy)
    before = pa.default_memory_pool().backend_name
    assert before != "jemalloc"  # the test would prove nothing otherwise
    predict.run(cfg(models, panel_file, tmp_path / "p.parquet", "bucket_rows=5000"))
    assert seen and set(seen) == {"jemalloc"}
    assert pa.default_memory_pool().backend_name == before

    def boom(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(predict, "score_histories", boom)
    with pytest.raises(RuntimeError, match="scoring failed"):
        predict.run(cfg(models, panel_file, tmp_path / "q.parquet"))
    assert pa.default_memory_pool().backend_name == before  # a failed job gives it back too


def test_the_read_ahead_is_bounded_whatever_the_batches_hold():
    made = []

    def items():  # batches without rows (a header-only file), then rows, never ending on its own
        for i in itertools.count():
            made.append(i)
            yield pa.table({"x": pa.array([], pa.int64()) if i < 5 else pa.array([i], pa.int64())})

    it = stream._ahead(items(), rows=10**12)  # a huge bucket: it must not read the whole input ahead
    assert next(it).num_rows == 0
    time.sleep(0.2)
    assert len(made) <= stream.MAX_AHEAD + 2


@pytest.mark.parametrize("kind", ["parquet", "csv", "folder"])
def test_an_input_without_rows_ends_at_once_with_one_line(models, panel_file, tmp_path, kind):
    empty = pd.read_parquet(panel_file).head(0)
    inp = tmp_path / ("in" if kind == "folder" else f"in.{kind}")
    if kind == "folder":
        inp.mkdir()
        empty.to_parquet(inp / "a.parquet")
        empty.to_parquet(inp / "b.parquet")
    else:
        empty.to_csv(inp, index=False) if kind == "csv" else empty.to_parquet(inp)
    with pytest.raises(InputError, match=r"in(\.parquet|\.csv)?: no rows; expected borrower-month rows"):
        predict.run(cfg(models, inp, tmp_path / "o.parquet"))
    assert not (tmp_path / "o.parquet").exists()


def test_a_folder_whose_first_part_is_empty_scores_the_rest(models, panel_file, tmp_path):
    rows = pd.read_parquet(panel_file)
    rows = rows[rows["borrower_id"] < 20]
    inp = tmp_path / "in"
    inp.mkdir()
    rows.head(0).to_parquet(inp / "a.parquet")
    rows.to_parquet(inp / "b.parquet")
    out = pd.read_parquet(predict.run(cfg(models, inp, tmp_path / "o.parquet")).output)
    assert sorted(out["borrower_id"]) == list(range(20))


def _crafted(models: Path, tmp_path: Path, edit) -> Path:
    """A copy of the system folder changed by ``edit(folder)``, its checksums and manifests made to match
    again: what a hostile folder looks like (checksums vouch for integrity, not intent)."""
    folder = tmp_path / "crafted"
    shutil.copytree(models / "models" / "riskml", folder)
    edit(folder)
    for role in ("adverse", "status", "recovery"):
        manifest = json.loads((folder / role / "manifest.json").read_text())
        manifest["model_sha256"] = sha256_file(folder / role / "model.txt")
        (folder / role / "manifest.json").write_text(json.dumps(manifest))
        model_store._write_checksums(folder / role)
    model_store._write_checksums(folder)
    return folder


def test_a_role_that_is_a_path_is_refused_before_any_model_is_read(models, tmp_path):
    shutil.copytree(models / "models" / "riskml" / "adverse", tmp_path / "x")  # a model outside the folder

    def edit(folder):
        system = json.loads((folder / "system.json").read_text())
        system["roles"] = {"../x": "../x", **system["roles"]}
        (folder / "system.json").write_text(json.dumps(system))

    with pytest.raises(ModelError, match=r"role '\.\./x'.*expected roles named"):
        model_store.load_system_dir(_crafted(models, tmp_path, edit))


def test_a_checksum_entry_outside_the_folder_is_refused_unread(models, tmp_path):
    (tmp_path / "outside.txt").write_text("not the model's")

    folder = _crafted(models, tmp_path, lambda folder: None)
    sums = json.loads((folder / "checksums.json").read_text())
    (folder / "checksums.json").write_text(json.dumps({**sums, "../outside.txt": sha256_file(tmp_path / "outside.txt")}))
    with pytest.raises(ModelError, match=r"entry '\.\./outside\.txt' lies outside the model folder"):
        model_store.verify_checksums(folder)


@pytest.mark.parametrize("change, match", [
    (("left_child=1 ", "left_child=999 "), r"tree 0: left_child\[0\]=999; expected"),
    (("tree_sizes=", "tree_sizes=1"), r"tree_sizes\[0\]=1\d+; expected"),
    (("max_feature_idx=", "max_feature_idx=9"), r"feature_names for max_feature_idx"),
])
def test_a_crafted_model_text_is_refused_before_lightgbm_reads_it(models, tmp_path, change, match):
    def edit(folder):
        text = (folder / "adverse" / "model.txt").read_text()
        assert change[0] in text
        if "tree_sizes" not in change[0]:  # LightGBM reads a model without tree_sizes too: no length to give it away
            text = re.sub(r"^tree_sizes=.*\n", "", text, count=1, flags=re.M)
        (folder / "adverse" / "model.txt").write_text(text.replace(change[0], change[1], 1))

    folder = _crafted(models, tmp_path, edit)
    # in a process of its own: were the text handed to LightGBM, it could crash the process, not raise
    code = f"from riskml.store.model_store import open_system; open_system({str(folder)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and re.search(match, done.stderr.strip().splitlines()[-1]), done.stderr[-800:]
    assert done.stderr.strip().splitlines()[-1].startswith("riskml.exceptions.ModelError")
