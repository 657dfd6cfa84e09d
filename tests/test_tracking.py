"""Tracking: SQLite store and artifact location, the pyfunc model, champion alias, model URIs,
model export checksums, and a real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import free_port, serving

from riskml.io import files as io
from riskml.store import model_store
from riskml.store import registry
from riskml.store import tracking
from riskml.exceptions import ConfigError, ModelError

FEATURES = ["dpd", "score"]


def tiny_model_dir(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(300, 2)), columns=FEATURES)
    y = (X["dpd"] + rng.normal(size=300) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "seed": seed},
                        lgb.Dataset(X, y), num_boost_round=5)
    manifest = {"features": FEATURES, "classes": ["normal", "adverse"], "feature_factors": {"dpd": "overdue",
                "score": "score_decline"}, "categories": {}}
    return model_store.export_model_dir(booster.model_to_string(), manifest, path)


def register_and_promote(run_id: str, name: str, metric: str, greater: bool = True) -> registry.Registration:
    reg = registry.register(run_id, name, metric, greater)
    registry.promote(reg)
    return reg


def log_run(exp_id: str, folder: Path, auc: float) -> str:
    X = pd.DataFrame({"dpd": [0.5, -1.0], "score": [0.1, 0.2]})
    with tracking.start_run(exp_id) as run_id:
        tracking.log_metrics({"roc_auc_adverse": auc, "not_finite": float("nan")})
        tracking.log_model(folder, input_example=X, output_example=pd.DataFrame({"p_normal": [0.5, 0.5],
                                                                                 "p_adverse": [0.5, 0.5]}),
                           checksums=model_store.checksums_sha256(folder))
    return run_id


def test_flatten_and_default_uri(tmp_path, monkeypatch):
    assert tracking.flatten({"model": {"num_leaves": 31, "name": "lightgbm"}, "seed": 0, "w": [3, 6]}) == {
        "model.num_leaves": 31, "model.name": "lightgbm", "seed": 0, "w": [3, 6]}
    monkeypatch.chdir(tmp_path)
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    with pytest.raises(ConfigError, match="tracking.uri"):
        tracking.setup("./mlruns", "x")  # a bare path would mean the deprecated file store


def test_export_checksum_and_load(tmp_path):
    folder = tiny_model_dir(tmp_path / "m")
    booster, manifest = model_store.load_model_dir(folder)
    assert booster.feature_name() == FEATURES
    assert manifest["model_sha256"] == io.sha256_file(folder / "model.txt")
    (folder / "model.txt").write_text((folder / "model.txt").read_text().replace("num_leaves=4", "num_leaves=5"))
    with pytest.raises(ModelError, match="sha256"):
        model_store.load_model_dir(folder)
    with pytest.raises(ModelError, match="lacks model.txt"):
        model_store.load_model_dir(tmp_path)


def test_an_edited_manifest_or_a_truncated_model_is_refused_before_lightgbm_reads_it(tmp_path):
    folder = tiny_model_dir(tmp_path / "m")
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"overdue"', '"maintenance"'))  # a factor map edited
    with pytest.raises(ModelError, match="manifest.json: sha256 does not match checksums.json"):
        model_store.load_model_dir(folder)
    folder = tiny_model_dir(tmp_path / "t")
    text = (folder / "model.txt").read_text()
    cut = text[: text.index("Tree=3")]  # a truncated model whose checksums were recomputed to match
    (folder / "model.txt").write_text(cut)
    for_manifest = io.read_json(folder / "manifest.json")
    io.write_json({**for_manifest, "model_sha256": io.sha256_file(folder / "model.txt")}, folder / "manifest.json")
    io.write_json({f: io.sha256_file(folder / f) for f in ("model.txt", "manifest.json")}, folder / "checksums.json")
    with pytest.raises(ModelError, match="incomplete"):
        model_store.load_model_dir(folder)


def test_sqlite_store_champion_alias_and_model_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp_id = tracking.setup(f"sqlite:///{tmp_path}/mlflow.db", "unit")
    assert (tmp_path / "mlflow.db").is_file()
    exp = mlflow.get_experiment(exp_id)
    assert exp.artifact_location == (tmp_path / "mlartifacts" / "unit").as_uri()  # not MLflow's cwd default
    folder = tiny_model_dir(tmp_path / "export")
    decisions = []
    for auc in (0.70, 0.65, 0.75):
        run_id = log_run(exp_id, folder, auc)
        decisions.append(register_and_promote(run_id, "riskml_unit", "roc_auc_adverse", True))
    assert [d.version for d in decisions] == [1, 2, 3]
    assert [d.promoted for d in decisions] == [True, False, True]
    assert "does not beat" in decisions[1].reason and decisions[1].champion_value == pytest.approx(0.70)
    client = mlflow.tracking.MlflowClient()
    assert str(client.get_model_version_by_alias("riskml_unit", "champion").version) == "3"
    assert client.get_run(run_id).data.tags["riskml.champion"] == "true"
    assert "not_finite" not in client.get_run(run_id).data.metrics

    # a lower-is-better metric flips the comparison
    d = register_and_promote(run_id, "riskml_loss", "roc_auc_adverse", False)
    assert d.promoted  # no holder yet

    cache = tmp_path / "cache"
    for uri in ("models:/riskml_unit@champion", "models:/riskml_unit/2", f"runs:/{run_id}/model", str(folder)):
        local = registry.resolve_model(uri, cache_dir=cache)
        booster, manifest = model_store.load_model_dir(local)
        assert manifest["features"] == FEATURES
    assert len(list(cache.glob("registry/*/riskml_unit/v3"))) == 1  # the alias was resolved to its version first
    local = registry.resolve_model("models:/riskml_unit@champion", cache_dir=cache)
    assert model_store.registered_version(local) == {"model_name": "riskml_unit", "model_version": 3}
    with pytest.raises(ModelError, match="riskml_unit@nobody"):
        registry.resolve_model("models:/riskml_unit@nobody", cache_dir=cache)

    # the MLflow model returns class probabilities (no pickle: model from code)
    pyfunc = mlflow.pyfunc.load_model("models:/riskml_unit@champion")
    out = pyfunc.predict(pd.DataFrame({"dpd": [3.0, -3.0], "score": [0.0, 0.0]}))
    assert list(out.columns) == ["p_normal", "p_adverse"]
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out["p_adverse"].iloc[0] > out["p_adverse"].iloc[1]


@pytest.mark.slow
@pytest.mark.server
def test_logs_a_run_to_a_real_mlflow_server(tmp_path):
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    with serving(cmd, port, what="mlflow server", cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": ""}) as uri:
        exp_id = tracking.setup(uri, "server_test")
        run_id = log_run(exp_id, tiny_model_dir(tmp_path / "export"), 0.71)
        reg = register_and_promote(run_id, "riskml_server", "roc_auc_adverse")
        assert reg.promoted and reg.version == 1
        runs = tracking.search_runs("server_test", uri)
        assert runs["run_id"].tolist() == [run_id]
        assert runs["metrics.roc_auc_adverse"].iloc[0] == pytest.approx(0.71)
        local = registry.resolve_model("models:/riskml_server@champion", cache_dir=tmp_path / "cache")
        assert model_store.load_model_dir(local)[1]["features"] == FEATURES
        assert not (tmp_path / "mlflow.db").exists()  # everything went to the server's store


def test_two_stores_with_the_same_model_version_never_share_a_cache_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache, shas = tmp_path / "cache", []
    for i in (1, 2):
        exp_id = tracking.setup(f"sqlite:///{tmp_path}/store{i}/mlflow.db", "unit")
        run_id = log_run(exp_id, tiny_model_dir(tmp_path / f"export{i}", seed=i), 0.7)
        register_and_promote(run_id, "riskml_unit", "roc_auc_adverse")  # v1 in each store
        local = registry.resolve_model("models:/riskml_unit@champion", cache_dir=cache)
        shas.append(io.sha256_file(local / "model.txt"))
        assert shas[-1] == io.sha256_file(tmp_path / f"export{i}" / "model.txt")
    assert shas[0] != shas[1]


def test_a_model_changed_in_the_artifact_store_after_registration_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp_id = tracking.setup(f"sqlite:///{tmp_path}/mlflow.db", "unit")
    run_id = log_run(exp_id, tiny_model_dir(tmp_path / "export"), 0.7)
    register_and_promote(run_id, "riskml_unit", "roc_auc_adverse")
    stored = [p for p in (tmp_path / "mlartifacts").rglob("manifest.json")]
    assert stored
    for manifest in stored:  # whoever can write the store edits the factor map and its checksums.json to match
        manifest.write_text(manifest.read_text().replace('"overdue"', '"maintenance"'))
        sums = manifest.with_name("checksums.json")
        io.write_json({**io.read_json(sums), "manifest.json": io.sha256_file(manifest)}, sums)
    with pytest.raises(ModelError, match="recorded at registration"):
        registry.resolve_model("models:/riskml_unit@champion", cache_dir=tmp_path / "cache")


def test_an_export_killed_half_way_leaves_the_earlier_folder_whole(tmp_path):
    out = tiny_model_dir(tmp_path / "models" / "m", seed=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def dies(tmp):
        (tmp / "model.txt").parent.mkdir(parents=True, exist_ok=True)
        (tmp / "model.txt").write_text("half a model")
        raise KeyboardInterrupt("killed between model.txt and manifest.json")

    with pytest.raises(KeyboardInterrupt):
        model_store.swap_in(out, dies)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == ["m"]  # no temporary left either
    model_store.load_model_dir(out)


def test_a_logged_data_set_has_the_frames_schema_true_row_count_and_our_digest(tmp_path):
    """The schema comes from dtypes and one null check (not MLflow's value-by-value inference): integers stay
    integers, a column with a missing value is optional, categories are strings; the profile counts every row."""
    n = 2_500
    df = pd.DataFrame({"months": np.arange(n, dtype=np.int64), "flag": np.zeros(n, dtype=np.int8),
                       "score": np.linspace(0, 1, n), "income": np.r_[np.nan, np.ones(n - 1)],
                       "small": np.ones(n, dtype=np.float32), "kind": pd.Categorical(["a", "b"] * (n // 2)),
                       "late": np.zeros(n, dtype=bool)})
    schema = tracking.frame_schema(df)
    assert {c.name: (c.type.name, c.required) for c in schema.inputs} == {
        "months": ("long", True), "flag": ("integer", True), "score": ("double", True), "income": ("double", False),
        "small": ("float", True), "kind": ("string", True), "late": ("boolean", True)}
    tracking.setup(f"sqlite:///{tmp_path}/mlflow.db", "ds")
    with tracking.start_run(mlflow.get_experiment_by_name("ds").experiment_id) as run_id:
        tracking.log_dataset(df, name="snapshots", source=str(tmp_path / "panel"), digest="d" * 64)
    logged = mlflow.get_run(run_id).inputs.dataset_inputs[0].dataset
    assert logged.digest == "d" * 36 and logged.name == "snapshots"
    assert '"num_rows": 2500' in logged.profile and '"income"' in logged.schema


def test_a_tracking_server_that_does_not_answer_fails_the_train_at_once_in_one_line(tmp_path):
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "riskml.train", f"tracking.uri=http://127.0.0.1:{port}",
                           "data.n_borrowers=300"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and time.perf_counter() - started < 60
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("riskml.train: config key 'tracking.uri'") and "did not within" in line
    assert not (tmp_path / "data").exists()  # before any data was made


def test_a_store_that_fails_mid_run_ends_the_entry_point_in_one_line_after_few_retries(monkeypatch):
    from riskml.exceptions import exit_on_error
    from riskml.store.tracking_uri import SERVER_DEFAULTS, check_server

    @exit_on_error("riskml.train")
    def lost():
        raise mlflow.exceptions.MlflowException("API request to http://127.0.0.1:1/api failed with exception "
                                                "Max retries exceeded\n<long traceback text>")

    with pytest.raises(SystemExit) as e:
        lost()
    assert str(e.value.code) == ("riskml.train: MLflow: API request to http://127.0.0.1:1/api failed with exception "
                                 "Max retries exceeded")
    for name in SERVER_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # what the user set is kept
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:  # it answers, if only with an error status: a server that is up
        check_server(f"http://127.0.0.1:{server.server_address[1]}", key="tracking.uri")
    finally:
        server.shutdown()
        server.server_close()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
