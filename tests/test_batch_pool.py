"""Buckets scored in worker processes: the same bytes as one process, nothing left running
or half-written when the job is killed, clear errors."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module

from riskml import predict
from riskml.batch import stream as batch
from riskml.batch import pool as batch_pool
from riskml.io.files import sha256_file
from riskml.exceptions import ConfigError


@pytest.fixture(scope="module")
def models(small_system) -> Path:
    return small_system


@pytest.fixture(scope="module")
def panel(models, tmp_path_factory) -> Path:
    """The training panel with a bad row and a row without an id, in row groups of 50 whole borrowers
    (as riskml.generate writes its blocks: histories of every length, a group never cut inside one)."""
    df = pd.read_parquet(models / "data" / "default" / "panel.parquet")
    df.loc[5, "days_past_due"] = -3
    group = (df["borrower_id"] // 50).to_numpy()
    df["borrower_id"] = df["borrower_id"].astype("float64")
    df.loc[len(df) // 2 + 7, "borrower_id"] = np.nan  # a row without an id, inside a borrower's months
    path = tmp_path_factory.mktemp("pool") / "panel_groups.parquet"
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as w:
        for g in np.unique(group):
            w.write_table(table.filter(pa.array(group == g)))
    return path


def cfg(models: Path, inp, out, *overrides):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}",
                                             f"model={models / 'models' / 'riskml'}", "bucket_rows=5000", *overrides])


def test_workers_write_the_bytes_of_one_process(models, panel, tmp_path):
    one = predict.run(cfg(models, panel, tmp_path / "one.parquet", "workers=1"))
    two = predict.run(cfg(models, panel, tmp_path / "two.parquet", "workers=2"))
    assert two.summary["buckets"] == len(batch_pool.pieces(batch.plan(panel, bucket_rows=5000))) > 2
    assert sha256_file(one.output) == sha256_file(two.output)
    assert sha256_file(one.rejects) == sha256_file(two.rejects)  # rejects in input order for every engine
    rej = pd.read_parquet(two.rejects)
    assert rej["row"].is_monotonic_increasing and rej["borrower_id"].isna().sum() == 1
    n = pd.read_parquet(models / "data" / "default" / "panel.parquet", columns=["borrower_id"])["borrower_id"].nunique()
    assert one.summary["scored_borrowers"] == two.summary["scored_borrowers"] == n - two.summary[
        "rejected_borrowers"] and two.summary["rejected_borrowers"] >= 1


def test_input_that_does_not_cut_into_whole_borrower_pieces_is_scored_in_one_process(models, panel, tmp_path):
    df = pd.read_parquet(panel)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "one_group.parquet")
    big = batch.plan(tmp_path / "one_group.parquet", bucket_rows=5000)
    assert batch_pool.pieces(big) is None  # a row group of 36,000 rows: more than a bucket's memory
    shuffled = df.sample(frac=1.0, random_state=0)
    pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), tmp_path / "shuffled.parquet",
                   row_group_size=2400)
    assert batch_pool.pieces(batch.plan(tmp_path / "shuffled.parquet", bucket_rows=5000)) is None
    folder = tmp_path / "split"
    folder.mkdir()
    cut = 2400 * 3 + 5  # borrower 300 goes on from the first file into the second
    pq.write_table(pa.Table.from_pandas(df.iloc[:cut], preserve_index=False), folder / "a.parquet", row_group_size=2400)
    pq.write_table(pa.Table.from_pandas(df.iloc[cut:], preserve_index=False), folder / "b.parquet", row_group_size=2400)
    assert batch_pool.pieces(batch.plan(folder, bucket_rows=5000)) is None
    one = predict.run(cfg(models, folder, tmp_path / "one.parquet", "workers=1"))
    two = predict.run(cfg(models, folder, tmp_path / "two.parquet", "workers=2"))
    assert sha256_file(one.output) == sha256_file(two.output)


def test_auto_uses_the_cores_only_where_workers_pay_off():
    assert batch_pool.resolve_workers("auto", rows=batch_pool.AUTO_MIN_ROWS - 1, buckets=50) == 1
    assert batch_pool.resolve_workers("auto", rows=batch_pool.AUTO_MIN_ROWS, buckets=50) == max(
        1, batch_pool._cores() // batch_pool.CORES_PER_WORKER)
    assert batch_pool.resolve_workers(8, rows=10, buckets=3) == 3  # never more processes than buckets


@pytest.mark.parametrize("value", [0, -2, "many", 1.5, True])
def test_a_bad_workers_value_is_a_one_line_config_error(models, panel, tmp_path, value):
    with pytest.raises(ConfigError, match="config key 'workers'.*expected 'auto'"):
        predict.run(cfg(models, panel, tmp_path / "p.parquet", f"workers={value}"))
    assert not list(tmp_path.iterdir())


def test_a_config_error_raised_in_a_worker_reaches_the_job_whole():
    e = pickle.loads(pickle.dumps(ConfigError("workers", 0, "a whole number >= 1")))
    assert (e.key, e.value, str(e)) == ("workers", 0, "config key 'workers': got 0; expected a whole number >= 1")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_job_leaves_no_worker_running_and_resumes_to_the_same_bytes(models, panel, tmp_path):
    clean = predict.run(cfg(models, panel, tmp_path / "clean.parquet", "workers=1"))
    out = tmp_path / "p.parquet"
    code = ("import sys\nfrom riskml.predict import main\nif __name__ == '__main__':\n"
            "    sys.argv = ['riskml.predict', *sys.argv[1:]]\n    main()\n")
    args = [f"input={panel}", f"output={out}", f"model={models / 'models' / 'riskml'}", "bucket_rows=1200",
            "workers=2", "hydra.run.dir=.", "hydra.output_subdir=null"]
    job = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    parts = tmp_path / ".p.parquet.work" / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("scored-*")) if parts.exists() else []) < 2:
        time.sleep(0.05)
    workers = _children(job.pid)
    assert len(workers) >= 2 and job.poll() is None
    os.kill(job.pid, signal.SIGKILL)
    job.wait(30)
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    assert not out.exists() and not out.with_name("p.summary.json").exists()
    again = predict.run(cfg(models, panel, out, "bucket_rows=1200", "workers=2"))
    assert 2 <= again.summary["resumed_buckets"] < again.summary["buckets"]
    assert sha256_file(again.output) == sha256_file(clean.output)
    assert not (tmp_path / ".p.parquet.work").exists()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_busy_when_its_job_is_killed_dies_with_it(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import time, multiprocessing as mp\nfrom riskml.batch.pool import _die_with_parent\n\n"
                      "def busy():\n    _die_with_parent()\n    time.sleep(300)  # a long piece\n\n"
                      "if __name__ == '__main__':\n    p = mp.get_context('spawn').Process(target=busy)\n"
                      "    p.start()\n    time.sleep(1.0)\n    print(p.pid, flush=True)\n    time.sleep(300)\n")
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(job.stdout.readline())
    assert _alive(worker)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(30)
    deadline = time.time() + 20
    while time.time() < deadline and _alive(worker):
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive  # nothing of a killed job goes on writing into its work folder


def test_two_scoring_threads_write_the_bytes_of_one(models, panel, tmp_path, monkeypatch):
    """One process scores two buckets at once (``batch_threads``); parts are handed on in bucket order."""
    from riskml.batch import threads as batch_threads

    assert batch_threads.scoring_threads() == 2  # numba's omp layer here: kernels from two threads at once
    two = predict.run(cfg(models, panel, tmp_path / "two.parquet", "workers=1", "bucket_rows=1000"))
    monkeypatch.setattr(batch_threads, "SCORING_THREADS", 1)
    one = predict.run(cfg(models, panel, tmp_path / "one.parquet", "workers=1", "bucket_rows=1000"))
    assert one.summary["buckets"] == two.summary["buckets"] > 10
    assert sha256_file(one.output) == sha256_file(two.output) and sha256_file(one.rejects) == sha256_file(two.rejects)


def test_one_scoring_thread_where_numba_cannot_take_kernels_from_two():
    """numba's ``workqueue`` layer aborts the process when two threads launch parallel kernels at once."""
    code = "from riskml.batch.threads import scoring_threads; print(scoring_threads())"
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0 and got.stdout.strip() == "1", got.stderr[-2000:]


@pytest.mark.parametrize("chunks", [
    [[1, 1, 2], [2, 2, 3], [], [3, 4]],   # sorted; borrowers 2 and 3 go on across chunk boundaries
    [[1, 2], [3, 3], [4]],                # sorted, a new borrower at every boundary
    [[5], [5], [5]],                      # one borrower in every chunk
    [[3, 1, 2], [2, 4]],                  # unsorted inside a chunk
    [[1, 2, 3], [2, 4]],                  # sorted chunks, unsorted across a boundary
    [[], []],
])
def test_borrower_count_of_a_bucket_is_its_distinct_ids_however_it_is_chunked(chunks):
    from riskml.batch.bucket import borrower_count

    col = pa.chunked_array([pa.array(c, pa.int64()) for c in chunks], pa.int64())
    assert borrower_count(pa.table({"borrower_id": col})) == len({i for c in chunks for i in c})


def test_sorted_input_streams_into_buckets_of_whole_borrowers_with_missing_ids_apart(tmp_path):
    # 60 borrowers of 1-5 months; a few rows without an id; small row groups, so buckets span many batches
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(60), rng.integers(1, 6, 60)).astype("float64")
    ids[[4, 40, 41, len(ids) - 1]] = np.nan
    df = pd.DataFrame({"borrower_id": ids, "month": np.arange(len(ids)) % 7})
    path = tmp_path / "panel.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=7)
    plan = batch.plan(path, bucket_rows=25)
    assert plan.grouped and plan.n_buckets > 3
    got = dict(batch._stream_grouped(plan, ["borrower_id", "month"], lambda t: t))
    assert np.isnan(got.pop(-1).column("borrower_id").to_numpy()).sum() == 4
    seen = [got[k].column("borrower_id").to_numpy() for k in sorted(got)]
    whole = np.concatenate(seen)
    assert np.array_equal(whole, ids[~np.isnan(ids)])  # every row with an id, once, in order
    firsts, lasts = [s[0] for s in seen], [s[-1] for s in seen]
    assert all(a < b for a, b in zip(lasts, firsts[1:]))  # no borrower cut between two buckets
    assert all(len(s) >= 25 for s in seen[:-1])


def test_rows_are_found_in_key_order_exactly_when_they_are():
    from riskml.schema import in_key_order

    rng = np.random.default_rng(5)
    for _ in range(400):
        n, k = int(rng.integers(0, 9)), int(rng.integers(1, 4))
        keys = [rng.integers(0, 3, n).astype(rng.choice(["int64", "int32", "float64"])) for _ in range(k)]
        if rng.random() < 0.6:  # sorted input, with ties in the first keys
            order = np.lexsort(keys[::-1])
            keys = [key[order] for key in keys]
        # a stable sort leaves rows in key order where they are: the order is the identity exactly then
        assert in_key_order(*keys) == bool(np.array_equal(np.lexsort(keys[::-1]), np.arange(n))), keys
    assert not in_key_order(np.array([1.0, np.nan]), np.array([0, 1]))  # a missing key is never in order
    assert not in_key_order(np.array([1, 1]), np.array([0.0, np.nan]))
