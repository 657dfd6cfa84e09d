"""The scoring system as one registered model: one train, one URI, pyfunc = batch, a served
model answering REST, fail-first ordering, and the registry mended after kills."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import free_port, serving
from hydra import compose, initialize_config_module

from riskml import predict, train
from riskml.store import model_store
from riskml.store import registry
from riskml.store import tracking
from riskml.store.pyfunc_system import request_options
from riskml.store.ship import request_rows
from riskml.exceptions import ConfigError, InputError

# the system's mechanics (registration, export, serving) on small data; the evaluation has its own tests
SMALL = ["data.n_borrowers=1500", "model.num_boost_round=40", "model.min_data_in_leaf=50", "eval.oracle=false",
         "eval.plots=false", "eval.fidelity=false", "eval.whatif=false"]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"}


def train_cfg(tmp: Path, *overrides: str):
    store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"export.dir={tmp}/models", f"data.data_dir={tmp}/data"]
    with initialize_config_module("riskml.conf", version_base="1.3"):
        return compose("train", overrides=[*store, *SMALL, *overrides])


def predict_cfg(inp, out, *overrides: str):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}", *overrides])


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("system")
    return tmp, train.run(train_cfg(tmp))


def test_one_train_registers_one_version_of_one_model_with_a_nested_run_per_role(system):
    tmp, result = system
    assert isinstance(result, train.SystemResult) and set(result.parts) == {"adverse", "status", "recovery"}
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='riskml'")
    assert [int(v.version) for v in versions] == [1] and result.registration.promoted
    assert int(client.get_model_version_by_alias("riskml", "champion").version) == 1
    assert not client.search_registered_models("name='riskml_adverse'")  # no model registered on its own
    for role, part in result.parts.items():
        run = client.get_run(part.run_id)
        assert run.data.tags["mlflow.parentRunId"] == result.run_id
        assert run.data.tags["riskml.target"] == model_store.ROLES[role]
        curve = client.get_metric_history(part.run_id, "valid_log_loss")
        assert len(curve) >= part.model.best_iteration and [m.step for m in curve[:3]] == [0, 1, 2]
        assert run.inputs.dataset_inputs[0].dataset.profile  # the data set logged whole
        assert json.loads(run.inputs.dataset_inputs[0].dataset.profile)["num_rows"] == len(part.dataset.X)
    parent = client.get_run(result.run_id).data.metrics
    assert parent["roc_auc_adverse"] == result.parts["adverse"].metrics["roc_auc_adverse"]
    assert parent["recovery/roc_auc_adverse"] == result.parts["recovery"].metrics["roc_auc_adverse"]
    folder = tmp / "models" / "riskml"
    assert model_store.is_system_dir(folder) and model_store.registered_version(folder)["model_version"] == 1
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {"adverse", "status", "recovery"}


def test_the_registered_model_takes_histories_and_returns_what_batch_prediction_writes(system, tmp_path,
                                                                                        monkeypatch):
    tmp, result = system
    monkeypatch.chdir(tmp_path)  # the download cache goes under the launch directory
    panel = pd.read_parquet(tmp / "data" / "default" / "panel.parquet")
    out = tmp_path / "batch.parquet"
    predict.run(predict_cfg(tmp / "data" / "default" / "panel.parquet", out, f"model=models:/riskml@champion",
                            f"tracking_uri=sqlite:///{tmp}/mlflow.db"))
    few_ids = sorted(panel["borrower_id"].unique())[::37][:40]
    rows = panel[panel["borrower_id"].isin(few_ids)].sample(frac=1.0, random_state=0)  # in any order
    model = mlflow.pyfunc.load_model("models:/riskml@champion")
    got = model.predict(request_rows(rows))
    assert got["p_recovery_6m"].dtype == "Float64"  # missing numbers as nulls: valid JSON when served
    want = pd.read_parquet(out)
    want = want[want["borrower_id"].isin(few_ids)].reset_index(drop=True)
    assert len(got) == len(few_ids) and (got["status"] != "normal").any()  # both sides of the account
    pd.testing.assert_frame_equal(plain(got), plain(want), check_dtype=False)
    # the file riskml.generate writes, as it is (int8..int64 and float32 columns): the signature takes it
    pd.testing.assert_frame_equal(plain(model.predict(rows.reset_index(drop=True))), plain(want),
                                  check_dtype=False)
    # params are declared and honoured: a month of the past is scored as the batch job scores it
    t = int(panel["month"].max()) - 2  # a month of the past, scored for the borrowers on book then
    then = rows[rows["borrower_id"].isin(panel.loc[panel["month"] == t, "borrower_id"])]
    assert then["borrower_id"].nunique() >= 10
    earlier = model.predict(request_rows(then), params={"as_of": t, "what_if": False})
    batch = predict.run(predict_cfg(tmp / "data" / "default" / "panel.parquet", tmp_path / "bt.parquet",
                                    "model=models:/riskml@champion", f"tracking_uri=sqlite:///{tmp}/mlflow.db",
                                    f"as_of={t}", "what_if=false"))
    want_t = pd.read_parquet(batch.output).pipe(lambda f: f[f["borrower_id"].isin(then["borrower_id"])])
    assert (earlier["as_of_month"] == t).all()
    pd.testing.assert_frame_equal(plain(earlier), plain(want_t.reset_index(drop=True)), check_dtype=False)
    with pytest.raises(ConfigError, match="params"):  # a key riskml does not know is refused, not ignored
        request_options({"as_off": 8})
    reqs = (Path(mlflow.artifacts.download_artifacts("models:/riskml/1")) / "requirements.txt").read_text()
    assert "riskml==" in reqs and f"mlflow=={mlflow.__version__}" in reqs  # pinned, not 'mlflow'


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable floats as float64 (NaN for missing), text columns (the served model's nullable strings, the
    batch file's categoricals) as objects: the values compared, not their storage."""
    out = frame.astype({c: "float64" if t == "Float64" else object for c, t in frame.dtypes.items()
                        if t == "Float64" or t == "string" or isinstance(t, pd.CategoricalDtype)})
    return out.mask(out.isna(), np.nan)


def strict_json(constant: str):
    raise AssertionError(f"the response holds a bare {constant}: not JSON")


@pytest.mark.slow
@pytest.mark.server
def test_mlflow_models_serve_answers_a_rest_request_of_borrower_months(system, tmp_path):
    tmp, _ = system
    port, venv_bin = free_port(), str(Path(sys.executable).parent)
    env = {**ENV, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
    cmd = [f"{venv_bin}/mlflow", "models", "serve", "-m", "models:/riskml@champion", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with serving(cmd, port, what="mlflow models serve", cwd=tmp_path, env=env) as url:
        panel = pd.read_parquet(tmp / "data" / "default" / "panel.parquet")
        rows = request_rows(panel[panel["borrower_id"] < 6])
        big = rows[rows["borrower_id"] == 5].assign(borrower_id=2**53 + 1)  # no double of its own
        rows = pd.concat([rows[rows["borrower_id"] < 5], big], ignore_index=True)
        def ask(**params):
            body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False)), "params": params}
            req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                return pd.DataFrame(json.loads(r.read(), parse_constant=strict_json)["predictions"])

        served = ask()
        local = mlflow.pyfunc.load_model("models:/riskml@champion").predict(rows)
        assert served["borrower_id"].tolist() == local["borrower_id"].tolist() == [*range(5), 2**53 + 1]
        np.testing.assert_allclose(served["p_adverse"].astype(float), local["p_adverse"].astype(float), rtol=1e-12)
        assert served["reason_1"].astype(object).fillna("").tolist() == local["reason_1"].astype(object).fillna("").tolist()
        last = int(rows["month"].max())
        on_book = rows.groupby("borrower_id")["month"].transform("max") == last
        rows = rows[on_book].reset_index(drop=True)  # borrowers with a row at the month asked for
        assert (ask(as_of=last - 1)["as_of_month"] == last - 1).all()  # the request's params are honoured
        rows.loc[0, "status"] = "bogus"  # a bad row: a bad request, riskml's line, no server paths
        with pytest.raises(urllib.error.HTTPError) as refused:
            ask()
        body = refused.value.read().decode()
        assert refused.value.code == 400 and "status not one of" in json.loads(body)["message"]
        assert "stack_trace" not in body and "Traceback" not in body and "site-packages" not in body


@pytest.mark.slow
def test_from_an_empty_folder_train_then_predict_work_with_their_defaults(tmp_path):
    steps = [[sys.executable, "-m", "riskml.train", *SMALL],
             [sys.executable, "-m", "riskml.predict", "input=data/synthetic/default/panel.parquet",
              "output=out.parquet"]]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 1500 and (out["model_name"] == "riskml").all() and (out["model_version"] == "1").all()
    assert out.loc[out["status"] != "normal", "p_recovery_6m"].notna().all()


def test_predict_reports_a_missing_input_before_a_missing_model_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="missing.parquet: file not found"):
        predict.run(predict_cfg(tmp_path / "missing.parquet", tmp_path / "o.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_read_only_command_never_creates_a_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inp = tmp_path / "in.csv"
    pd.DataFrame({c: [0] for c in ("borrower_id", "month")}).to_csv(inp, index=False)
    panel = tmp_path / "panel.parquet"
    from riskml.simulate import SimConfig, simulate
    simulate(SimConfig(n_borrowers=20, n_months=12)).panel.to_parquet(panel)
    with pytest.raises(ConfigError, match=r"config key 'tracking_uri'.*does not exist"):
        predict.run(predict_cfg(panel, tmp_path / "o.parquet"))  # models:/riskml@champion, no store here
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "o.parquet").exists()


def test_a_train_killed_before_the_alias_moved_is_mended_and_its_run_marked_killed(tmp_path, monkeypatch):
    first = train.run(train_cfg(tmp_path, "data.n_borrowers=800"))
    folder = tmp_path / "models" / "riskml"
    assert model_store.registered_version(folder)["model_version"] == 1

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("kill -9 after the export, before the alias moved")

    monkeypatch.setattr(registry, "promote", killed)
    # a run that wins (judged on n_train: more borrowers) exports v2, then dies before moving the alias
    with pytest.raises(KeyboardInterrupt):
        train.run(train_cfg(tmp_path, "data.n_borrowers=900", "register.metric=n_train"))
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("riskml", "champion").version) == 1
    assert model_store.registered_version(folder)["model_version"] == 2  # the export is ahead of the alias
    # the killed process's run stays RUNNING in the store (a real kill -9 runs no cleanup)
    exp = client.get_experiment_by_name("riskml")
    dead = client.create_run(exp.experiment_id, tags={tracking.HOST_TAG: socket.gethostname(),
                                                      tracking.PID_TAG: "999999999"})
    monkeypatch.undo()
    train.run(train_cfg(tmp_path, "data.n_borrowers=800", "register.enabled=true"))
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    champion = client.get_model_version_by_alias("riskml", "champion").version
    assert model_store.registered_version(folder)["model_version"] == int(champion)  # mended
    assert first.registration.version == 1


def test_a_misspelt_register_metric_fails_with_one_line_instead_of_never_promoting(tmp_path):
    with pytest.raises(Exception, match=r"register.metric.*roc_auc_adverse"):
        train.run(train_cfg(tmp_path, "data.n_borrowers=600", "register.metric=roc_auc_adverse_typo"))


def test_a_model_in_the_wrong_role_is_refused(system, tmp_path):
    tmp, _ = system
    folder = tmp / "models" / "riskml"
    parts = {r: model_store.load_model_dir(folder / r) for r in ("adverse", "status", "recovery")}
    swapped = {"adverse": parts["recovery"], "status": parts["status"], "recovery": parts["adverse"]}
    with pytest.raises(Exception, match="adverse model must be trained for target 'adverse_3m'.*'recovery_6m'"):
        model_store.write_system_dir({r: (b.model_to_string(), m) for r, (b, m) in swapped.items()}, {},
                                     tmp_path / "swapped")
    inp = tmp / "data" / "default" / "panel.parquet"
    with pytest.raises(Exception, match=r"a single 'recovery_6m' model; expected a scoring system"):
        predict.run(predict_cfg(inp, tmp_path / "o.parquet", f"model={folder / 'recovery'}"))
    assert not (tmp_path / "o.parquet").exists()
