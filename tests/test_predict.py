"""Batch prediction: the contract, explanations, bad input, conservation, kill-and-rerun."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import kill_on_call
from hydra import compose, initialize_config_module

from riskml import factors, predict, train
from riskml.explain import scoring
from riskml.explain.recovery import PLATFORM_SIDE
from riskml.features import build_features
from riskml.exceptions import ConfigError, InputError, ModelError, SchemaError
from riskml.batch import results
from riskml.io.datasets import load_dataset
from riskml.io.files import sha256_file
from riskml.store.model_store import load_model_dir, open_system, write_system_dir

@pytest.fixture(scope="session")
def trained(small_system) -> Path:
    """A small simulated portfolio and the scoring system predict uses (exported to models/riskml)."""
    return small_system


def role_dir(trained: Path, role: str) -> Path:
    """One role's model folder inside the exported system."""
    return trained / "models" / "riskml" / role


def cfg_for(trained: Path, inp: Path | str, out: Path, *overrides: str):
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        return compose("predict", overrides=[f"input={inp}", f"output={out}",
                                             f"model={trained / 'models' / 'riskml'}", *overrides])


@pytest.fixture(scope="session")
def panel(trained) -> pd.DataFrame:
    return load_dataset(trained / "data" / "default")[0]


@pytest.fixture(scope="session")
def scored(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "scores.parquet"
    result = predict.run(cfg_for(trained, trained / "data" / "default" / "panel.parquet", out))
    return result, pd.read_parquet(out)


def test_bands_cut_on_points(trained, scored, tmp_path):
    """bands.by=points cuts score_points; the points edges of the default probability edges give the same bands."""
    from riskml.measure.scale import PointsScale

    _, df = scored
    edges = sorted(PointsScale().points([0.35, 0.15, 0.05, 0.02]).round(6).tolist())
    out = tmp_path / "points.parquet"
    predict.run(cfg_for(trained, trained / "data" / "default" / "panel.parquet", out, "bands.by=points",
                        f"bands.edges=[{','.join(map(str, edges))}]", "what_if=false"))
    got = pd.read_parquet(out)
    far = (df["p_adverse"].notna() & ~np.isclose(df["p_adverse"].to_numpy()[:, None],
                                                 [0.02, 0.05, 0.15, 0.35], rtol=1e-4).any(axis=1))
    assert far.sum() > 100
    assert (got.loc[far, "risk_band"] == df.loc[far, "risk_band"]).all()
    with pytest.raises(ConfigError, match="bands.by"):
        predict.run(cfg_for(trained, trained / "data" / "default" / "panel.parquet", out, "bands.by=odds"))


def test_one_explained_row_per_borrower(scored, panel):
    result, df = scored
    assert df["borrower_id"].tolist() == sorted(panel["borrower_id"].unique())  # sorted, none lost
    assert (df["as_of_month"] == panel["month"].max()).all()
    normal = df["status"] == "normal"
    assert normal.any() and (~normal).any()
    n = df[normal]
    np.testing.assert_allclose(n["p_normal"] + n["p_adverse"], 1, atol=1e-9)
    np.testing.assert_allclose(n["p_suspended"] + n["p_closed"], n["p_adverse"], atol=1e-9)
    assert n["risk_band"].isin(["A", "B", "C", "D", "E"]).all()
    # bands follow P(adverse): a higher band never has a lower probability
    order = n.groupby("risk_band")["p_adverse"].agg(["min", "max"]).sort_index()
    assert (order["max"].to_numpy()[:-1] <= order["min"].to_numpy()[1:]).all()
    # points: 600 at odds 50:1, 20 more per doubling (predict.yaml's defaults)
    odds = n["p_normal"] / n["p_adverse"]
    np.testing.assert_allclose(n["score_points"], 600 + 20 * np.log2(odds / 50), rtol=1e-9)
    down = df[~normal]
    assert down["p_adverse"].isna().all() and down["p_recovery_6m"].between(0, 1).all()
    assert down["score_points"].isna().all()
    assert (down["risk_band"] == down["status"]).all()
    # following advice makes a recovery likelier, never less likely (the recovery model is
    # monotone in the opposite direction of the risk models)
    for i in (1, 2, 3):
        after = down[f"reason_{i}_p_after"]
        has = after.notna()
        assert (after[has] >= down.loc[has, "p_recovery_6m"] - 1e-12).all()
    assert down["reason_1_p_after"].notna().any()
    # closed lines come back less often than suspended ones
    assert down.groupby("status")["p_recovery_6m"].mean()["closed"] < \
        down.groupby("status")["p_recovery_6m"].mean()["suspended"]
    s = result.summary
    assert s["input_borrowers"] == s["scored_borrowers"] + s["rejected_borrowers"] == panel["borrower_id"].nunique()
    assert s["model"]["name"] == "riskml" and s["model"]["version"] == "1"
    assert (df["model_name"] == "riskml").all() and (df["model_version"] == "1").all()


def test_reasons_are_documented_ordered_advised_and_what_if_lowers_risk(scored):
    _, df = scored
    n = df[df["status"] == "normal"]
    r1, r2 = n["reason_1_contribution"], n["reason_2_contribution"]
    both = r1.notna() & r2.notna()
    assert both.any() and (r1[both] >= r2[both]).all() and (r1.dropna() > 0).all()
    reasons = pd.concat([n[f"reason_{i}"] for i in (1, 2, 3)]).dropna()
    assert set(reasons) <= set(factors.CAUSES)  # documented causes only, never "other"
    for i in (1, 2, 3):
        fid = n[f"reason_{i}"].dropna().astype(str)  # dictionary-encoded: a categorical in pandas
        rows = n.loc[fid.index]
        actionable = fid.map(lambda f: factors.CATALOGUE[f].actionable)
        assert (rows[f"reason_{i}_actionable"] == actionable).all()
        assert (rows.loc[actionable, f"reason_{i}_advice"] == fid[actionable].map(
            lambda f: factors.CATALOGUE[f].advice)).all()
        assert rows.loc[~actionable, f"reason_{i}_advice"].str.startswith("Not actionable").all()
        assert rows.loc[~actionable, f"reason_{i}_p_after"].isna().all()
        after = rows.loc[actionable, f"reason_{i}_p_after"]
        assert after.notna().all()
        # the adverse model is monotone in each factor's direction: following advice never raises the risk
        assert (after <= rows.loc[actionable, "p_adverse"] + 1e-12).all()
    # and for the top reason it lowers it for most borrowers
    top = n[n["reason_1_actionable"].fillna(False).astype(bool)]
    assert (top["reason_1_p_after"] < top["p_adverse"] - 1e-6).mean() > 0.8


def test_reasons_match_the_explainers_contributions_on_both_sides(trained, panel):
    """Normal accounts: the factors that raise P(adverse) most, with their (positive) contributions.
    Suspended and closed accounts: the factors that lower P(recovery) most, with their (negative)
    contributions to the recovery log-odds."""
    model, recovery = (scoring.ScoringModel(*load_model_dir(role_dir(trained, r))) for r in ("adverse", "recovery"))
    last = panel[panel["month"] == panel["month"].max()]
    down_ids = last.loc[last["status"] != "normal", "borrower_id"].head(30)
    few = panel[(panel["borrower_id"] < 40) | panel["borrower_id"].isin(down_ids)]
    out = scoring.score_histories(few, model, recovery, top_k=4, what_if=False)
    X = build_features(few, windows=model.windows).X
    sides = {"normal": (model, +1.0), "down": (recovery, -1.0)}
    checked = {"normal": 0, "down": 0}
    for side, (m, sign) in sides.items():
        contrib = m.explainer.contributions(X)[:, 0, :-1]
        # on the recovery side the platform-side causes are a reason by the cause on record only
        learned = factors.CAUSES if side == "normal" else set(factors.CAUSES) - set(PLATFORM_SIDE)
        documented = [i for i, f in enumerate(m.explainer.factors) if f in learned]
        for row in range(len(out)):
            if (out.loc[row, "status"] == "normal") != (side == "normal"):
                continue
            if pd.notna(out.loc[row, "reason_1"]) and pd.isna(out.loc[row, "reason_1_contribution"]):
                continue  # explained by the recovery rule (explain.recovery.recovery_rule), not the model
            c = {m.explainer.factors[i]: contrib[row, i] for i in documented if sign * contrib[row, i] > 0}
            want = sorted(c, key=lambda f: -sign * c[f])[:4]
            got = [out.loc[row, f"reason_{i}"] for i in range(1, 5) if pd.notna(out.loc[row, f"reason_{i}"])]
            assert got == want
            np.testing.assert_allclose([out.loc[row, f"reason_{i}_contribution"] for i in range(1, len(got) + 1)],
                                       [c[f] for f in want])
            checked[side] += len(got) > 0
    assert checked["normal"] > 5 and checked["down"] > 5  # both sides really compared


def test_same_input_and_model_give_identical_output(trained, tmp_path):
    inp = trained / "data" / "default" / "panel.parquet"
    a = predict.run(cfg_for(trained, inp, tmp_path / "a" / "p.parquet"))
    b = predict.run(cfg_for(trained, inp, tmp_path / "b" / "p.parquet", "bucket_rows=10000"))
    assert b.summary["buckets"] > 1
    assert sha256_file(a.output) == sha256_file(b.output)  # and whatever the bucket size


def test_rows_in_any_order_give_the_same_output_as_sorted_ones(trained, panel, tmp_path):
    """Sorted input streams bucket by bucket; shuffled input goes through range partitions."""
    sorted_in = trained / "data" / "default" / "panel.parquet"
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    mixed = panel.sample(frac=1.0, random_state=3)
    mixed = mixed.sort_values("month", kind="stable")  # months stay in order within a borrower
    for i, part in enumerate(np.array_split(np.arange(len(mixed)), 3)):
        mixed.iloc[part].to_parquet(shuffled / f"part-{i}.parquet")
    a = predict.run(cfg_for(trained, sorted_in, tmp_path / "a.parquet", "bucket_rows=10000"))
    b = predict.run(cfg_for(trained, shuffled, tmp_path / "b.parquet", "bucket_rows=10000"))
    assert b.summary["buckets"] > 1 and b.summary["scored_borrowers"] == a.summary["scored_borrowers"]
    assert sha256_file(a.output) == sha256_file(b.output)


def test_an_output_folder_holds_the_file_outputs_rows_in_parts_and_is_replaced_whole(trained, tmp_path):
    inp = trained / "data" / "default" / "panel.parquet"
    one = predict.run(cfg_for(trained, inp, tmp_path / "one.parquet"))
    folder = tmp_path / "scores"
    parts = predict.run(cfg_for(trained, inp, folder, "bucket_rows=10000"))
    assert parts.summary["buckets"] > 1
    manifest = json.loads((folder / "_manifest.json").read_text())
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["_manifest.json", *[f["file"] for f in manifest["parts"]]]  # no rejects or summary inside
    assert manifest["rows"] == len(pd.read_parquet(one.output))
    for f in manifest["parts"]:
        assert sha256_file(folder / f["file"]) == f["sha256"]
        assert pq.read_metadata(folder / f["file"]).num_rows == f["rows"]
    assert pq.read_table(folder).equals(pq.read_table(one.output))  # the same rows, types and order
    assert parts.rejects == tmp_path / "scores.rejects.parquet" and parts.summary_path.parent == tmp_path
    # the bytes do not depend on the buckets (the manifest holds every part's sha256)
    other = predict.run(cfg_for(trained, inp, tmp_path / "again", "bucket_rows=50000"))
    assert other.summary["buckets"] == 1
    assert sha256_file(other.output / "_manifest.json") == sha256_file(folder / "_manifest.json")
    # parts are cut at a fixed number of rows, whatever the buckets were
    table = pq.read_table(one.output)
    pieces = []
    for i, lo in enumerate(range(0, table.num_rows, 700)):  # uneven buckets
        pieces.append(results.write_table_part(table.slice(lo, 700), tmp_path / f"piece-{i}.arrow"))
    rows = results.assemble(pieces, tmp_path / "cut", table.schema, fmt="parts", row_group=256, part_rows=512)
    cut = json.loads((tmp_path / "cut" / "_manifest.json").read_text())["parts"]
    assert rows == table.num_rows and [f["rows"] for f in cut[:-1]] == [512] * (len(cut) - 1) and len(cut) > 2
    assert pq.read_table(tmp_path / "cut").equals(table)
    # a rerun replaces riskml's folder whole; a folder with other files is refused before any work
    (folder / "part-00099.parquet").write_bytes(b"stale")
    predict.run(cfg_for(trained, inp, folder))
    assert not (folder / "part-00099.parquet").exists() and pq.read_table(folder).equals(pq.read_table(one.output))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"config key 'output'.*mine.*other files"):
        predict.run(cfg_for(trained, inp, mine))
    assert (mine / "notes.txt").read_text() == "keep" and not (tmp_path / "mine.summary.json").exists()
    # riskml's own folder, but the input is one of its parts: refused before it is replaced
    with pytest.raises(ConfigError, match=r"config key 'output'.*apart from the input"):
        predict.run(cfg_for(trained, folder / "part-00000.parquet", folder))


def handmade_csv(panel: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A CSV of six borrowers' histories: one bad row of each kind in four of them, months out of
    file order in a fifth (fine: rows carry no order), a sixth clean, and a row without an id."""
    ids = sorted(panel["borrower_id"].unique())[:6]
    df = panel[panel["borrower_id"].isin(ids)].astype({"status": str, "cause": str}).copy()
    df["cause"] = df["cause"].replace("nan", "")
    df = df.astype(object)
    rows = {b: df.index[df["borrower_id"] == b] for b in ids}
    df.loc[rows[ids[0]][3], "drawn"] = -10                      # negative amount
    df.loc[rows[ids[1]][5], "external_score"] = 1500            # impossible score
    df.loc[rows[ids[2]][2], "days_past_due"] = "ten"            # non-numeric
    dup = df.loc[[rows[ids[3]][4]]]                              # duplicate borrower-month
    swap = df.loc[rows[ids[4]]].copy()
    swap.iloc[[6, 7]] = swap.iloc[[7, 6]].to_numpy()              # months out of order: sorted, not rejected
    df = pd.concat([df.drop(rows[ids[4]]), swap, dup])
    missing = df.iloc[[0]].copy()
    missing["borrower_id"] = ""                                  # missing id
    df = pd.concat([df, missing])
    df.to_csv(path, index=False)
    return df


def test_bad_rows_are_rejected_with_reasons_and_the_rest_scored(trained, panel, tmp_path):
    inp = tmp_path / "histories.csv"
    df = handmade_csv(panel, inp)
    result = predict.run(cfg_for(trained, inp, tmp_path / "out" / "scores.csv", "format=csv"))
    scores = pd.read_csv(result.output)
    rejects = pd.read_csv(result.rejects)
    ids = sorted(panel["borrower_id"].unique())[:6]
    assert scores["borrower_id"].tolist() == [ids[4], ids[5]]     # the clean one and the unordered one
    by_borrower = rejects.dropna(subset=["borrower_id"]).groupby("borrower_id")["reason"].apply(set)
    assert by_borrower[ids[0]] == {"drawn below 0"}
    assert by_borrower[ids[1]] == {"external_score above 950"}
    assert by_borrower[ids[2]] == {"days_past_due is not numeric"}
    assert by_borrower[ids[3]] == {"duplicate (borrower_id, month)"}
    assert ids[4] not in by_borrower
    assert rejects["borrower_id"].isna().sum() == 1
    # rows point back into the file (0-based data rows)
    bad = rejects[rejects["reason"] == "drawn below 0"].iloc[0]
    assert df.iloc[int(bad["row"])]["drawn"] == -10 and bad["file"] == str(inp)
    s = result.summary
    assert s["input_borrowers"] == 6 == s["scored_borrowers"] + s["rejected_borrowers"]
    assert s["rows_without_borrower_id"] == 1 and s["input_rows"] == len(df)


@pytest.mark.parametrize("problem, error, match", [
    ("missing_column", SchemaError, r"missing required panel column\(s\) \['external_score'\]"),
    ("unreadable", InputError, r"broken.parquet: cannot read"),
    ("no_such_file", InputError, "file not found"),
])
def test_bad_input_stops_before_writing_anything(trained, panel, tmp_path, problem, error, match):
    inp = tmp_path / ("broken.parquet" if problem == "unreadable" else "in.parquet")
    if problem == "missing_column":
        panel.head(50).drop(columns=["external_score"]).to_parquet(inp)
    elif problem == "unreadable":
        inp.write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out" / "scores.parquet"
    with pytest.raises(error, match=match):
        predict.run(cfg_for(trained, inp, out))
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_model_that_does_not_fit_the_input_is_refused(trained, panel, tmp_path):
    folder = tmp_path / "model"
    parts = {r: load_model_dir(role_dir(trained, r)) for r in ("adverse", "status", "recovery")}
    booster, manifest = parts["adverse"]
    manifest["features"] = [f if f != "days_past_due" else "salary_band" for f in manifest["features"]]
    manifest["feature_factors"]["salary_band"] = "other"
    text = booster.model_to_string().replace("days_past_due ", "salary_band ", 1)
    models = {r: (b.model_to_string(), m) for r, (b, m) in parts.items()}
    models["adverse"] = (text.replace("feature_names=days_past_due", "feature_names=salary_band"), manifest)
    write_system_dir(models, {"name": "tampered"}, folder)
    panel.head(48).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(ModelError, match=r"salary_band"):
        predict.run(cfg_for(trained, tmp_path / "in.parquet", tmp_path / "o.parquet", f"model={folder}"))
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("override, key", [("top_k=5", "top_k"), ("format=xlsx", "format"), ("as_of=-1", "as_of"),
                                           ("what_if=maybe", "what_if"), ("+whatif=false", "whatif")])
def test_bad_config_is_named(trained, tmp_path, override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        predict.run(cfg_for(trained, tmp_path / "x.parquet", tmp_path / "o.parquet", override))


def test_as_of_scores_an_earlier_month_and_rejects_borrowers_without_history(trained, panel, tmp_path):
    late = panel[panel["borrower_id"] == panel["borrower_id"].max()].copy()
    late = late[late["month"] >= 10]  # this borrower has no month <= 8
    inp = tmp_path / "in.parquet"
    pd.concat([panel[panel["borrower_id"] < 30], late]).to_parquet(inp)
    r = predict.run(cfg_for(trained, inp, tmp_path / "o.parquet", "as_of=8"))
    out = pd.read_parquet(r.output)
    assert (out["as_of_month"] == 8).all() and len(out) == 30
    assert pd.read_parquet(r.rejects)["reason"].tolist() == ["no month at or before as_of=8"]


def test_a_borrower_whose_history_ends_before_as_of_is_a_reject_not_a_made_up_state(trained, panel, tmp_path):
    gone = panel["borrower_id"].min()
    ended = panel[(panel["borrower_id"] == gone) & (panel["month"] <= 5)]  # its last row: month 5
    inp = tmp_path / "in.parquet"
    pd.concat([panel[panel["borrower_id"].between(gone + 1, gone + 20)], ended]).to_parquet(inp)
    r = predict.run(cfg_for(trained, inp, tmp_path / "o.parquet", "as_of=8"))
    out, rej = pd.read_parquet(r.output), pd.read_parquet(r.rejects)
    assert gone not in set(out["borrower_id"]) and len(out) == 20
    assert rej["borrower_id"].tolist() == [gone]  # one reject line per borrower, as for other borrower problems
    assert (rej["reason"] == "no row at as_of=8: the history ends before it").all()
    with pytest.raises(SchemaError, match="no row at as_of=8"):  # the library refuses it too
        open_system(trained / "models" / "riskml").score(ended, as_of=8)


def test_killed_job_resumes_to_the_same_complete_output(trained, tmp_path, monkeypatch):
    inp = trained / "data" / "default" / "panel.parquet"
    clean = predict.run(cfg_for(trained, inp, tmp_path / "clean" / "p.parquet", "bucket_rows=10000"))
    out = tmp_path / "killed" / "p.parquet"
    real = predict.score_histories
    kill_on_call(monkeypatch, predict, "score_histories", 3)
    with pytest.raises(KeyboardInterrupt):
        predict.run(cfg_for(trained, inp, out, "bucket_rows=10000"))
    assert not out.exists() and not out.with_name("p.summary.json").exists()  # nothing that looks complete
    # the buckets finished before the kill: two, or three when the other scoring thread's bucket reached
    # the killed call first (two buckets are scored at once)
    done = len(list((out.parent / ".p.parquet.work" / "parts").glob("scored-*")))
    assert 2 <= done < clean.summary["buckets"]
    monkeypatch.setattr(predict, "score_histories", real)
    again = predict.run(cfg_for(trained, inp, out, "bucket_rows=10000"))
    assert again.summary["resumed_buckets"] == done  # every finished bucket reused, none scored twice
    assert sha256_file(again.output) == sha256_file(clean.output)
    assert pd.read_parquet(out)["borrower_id"].is_unique


def test_cli_exits_non_zero_with_a_clear_message(trained, tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_text("borrower_id,month\n1,0\n")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.run([sys.executable, "-m", "riskml.predict", f"input={inp}", f"output={tmp_path}/o.parquet",
                        f"model={trained / 'models' / 'riskml'}"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert p.returncode != 0
    assert "missing required panel column(s)" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o.parquet").exists()
    # every borrower rejected (here: all past as_of's history): the files are written, the exit status says so
    pd.read_parquet(trained / "data" / "default" / "panel.parquet").query("borrower_id < 5").to_csv(inp, index=False)
    p = subprocess.run([sys.executable, "-m", "riskml.predict", f"input={inp}", f"output={tmp_path}/o.parquet",
                        f"model={trained / 'models' / 'riskml'}", "as_of=99"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert p.returncode == predict.EXIT_ALL_REJECTED, p.stderr[-2000:]
    assert "every input borrower or row was rejected" in p.stderr.strip().splitlines()[-1]
    assert len(pd.read_parquet(tmp_path / "o.rejects.parquet")) == 5


@pytest.mark.slow
def test_top_reason_finds_the_true_cause_on_a_fresh_simulation(trained):
    """Fidelity: on borrowers the model never saw, the top reason of a snapshot that
    turned adverse is the cause the simulator recorded for it."""
    from riskml.explain import fidelity, top_reasons
    from riskml.features import build_snapshots
    from riskml.simulate import SimConfig, simulate

    booster, manifest = load_model_dir(role_dir(trained, "adverse"))
    model = scoring.ScoringModel(booster, manifest)
    sim = SimConfig.from_manifest(json.loads((trained / "data" / "default" / "manifest.json").read_text()))
    fresh = simulate(dataclasses.replace(sim, seed=sim.seed + 101, n_borrowers=4000)).panel
    s = build_snapshots(fresh, target="adverse_3m", windows=model.windows)
    rows = np.flatnonzero(s.y > 0)
    X = s.X.iloc[rows]
    c = model.explainer.contributions(X)[:, 0, :-1]
    top = top_reasons(c, model.explainer.factors, k=1)
    top1 = pd.Series(pd.NA, index=range(len(rows)), dtype="object")
    top1.iloc[top["row"].to_numpy()] = top["factor"].to_numpy()
    fid = fidelity(top1, s.cause.iloc[rows].reset_index(drop=True), min_events=50)
    assert fid.n_events > 500
    assert fid.overall >= 0.8, fid.per_cause
    judged = fid.per_cause[fid.per_cause["judged"]]
    # every cause is found, policy tightening included (a 2,000-borrower model here: the 0.75 target
    # per cause is tested on a larger one in test_fidelity.py)
    assert len(judged) >= 6 and (judged["top1_rate"] >= 0.7).all(), judged


def test_down_accounts_without_a_recovery_model_keep_the_contract(trained, panel):
    booster, manifest = load_model_dir(role_dir(trained, "adverse"))
    last = panel[panel["month"] == panel["month"].max()]
    down = last.loc[last["status"] != "normal", "borrower_id"].head(5)
    out = scoring.score_histories(panel[panel["borrower_id"].isin(down)], scoring.ScoringModel(booster, manifest))
    assert len(out) == len(down) and out["p_adverse"].isna().all() and out["p_recovery_6m"].isna().all()
    assert (out["risk_band"] == out["status"]).all()
    from riskml.schema import prediction_schema
    assert set(prediction_schema(3).names) <= set(out.columns)
    assert out[[f"reason_{i}" for i in (1, 2, 3)]].isna().all().all()


def test_the_cause_on_record_is_read_at_each_key_month_sorted_or_not():
    from riskml.explain.recovery import cause_at as _cause_at

    panel = pd.DataFrame({"borrower_id": [1, 1, 1, 2, 2, 3], "month": [0, 1, 2, 0, 1, 0],
                          "cause": pd.Categorical(["overdue", None, "maintenance", "fraud_x", "overdue", None])})
    keys = pd.DataFrame({"borrower_id": [1, 2, 3], "month": [2, 3, 0]})  # borrower 2: no row at month 3
    sorted_fast = _cause_at(panel, keys)
    shuffled = _cause_at(panel.iloc[[5, 2, 0, 4, 1, 3]].reset_index(drop=True), keys)  # the merge path
    later = _cause_at(panel, keys.assign(month=[1, 1, 0]))  # rows after the key month: read at the key month
    assert list(sorted_fast) == ["maintenance", None, None]
    assert [c if isinstance(c, str) else None for c in shuffled] == ["maintenance", None, None]
    assert [c if isinstance(c, str) else None for c in later] == [None, "overdue", None]


@pytest.mark.parametrize("bid, month, expected", [
    ([1, 1, 2, 3], [0, 1, 0, 5], True),
    ([1, 1, 2], [1, 1, 0], False),          # a key twice
    ([1, 1, 2], [1, 0, 0], False),          # months back
    ([2, 1], [0, 0], False),                # borrowers back
    ([1.0, np.nan], [0, 0], False),         # a missing id is never in order
    ([1, 1], [0.0, np.nan], False),
    ([], [], True),
])
def test_the_fast_path_of_the_cause_on_record_takes_only_strictly_sorted_rows(bid, month, expected):
    from riskml.schema import in_key_order

    assert in_key_order(np.asarray(bid, dtype=float), np.asarray(month, dtype=float), strict=True) is expected


def test_the_kernel_warm_up_compiles_the_types_a_job_uses_and_never_fails_a_run(trained, panel, monkeypatch):
    """After the warm-up, scoring real histories with the trained system compiles no new kernel signature
    (the warm-up compiled what a job uses); a warm-up that fails is logged, never raised."""
    from riskml.explain import predictor, predictor_binned, treeshap_kernel, warmup
    from riskml.features import at_month
    from riskml.store.loading import open_model

    warmup.compile_kernels()
    kernels = (at_month._kernel, predictor._raw_kernel, predictor_binned.binned_kernel, treeshap_kernel._kernel)
    before = [set(k.signatures) for k in kernels]
    assert all(before)  # each kernel compiled (or loaded) by the warm-up, the byte kernel too
    system = open_model(str(trained / "models" / "riskml"))
    one = panel[panel["borrower_id"].isin(panel["borrower_id"].unique()[:200])]
    scored = scoring.score_histories(one, system.adverse, system.recovery, status=system.status)
    assert len(scored) == 200
    assert [set(k.signatures) for k in kernels] == before
    monkeypatch.setattr(warmup, "compile_kernels", lambda: 1 / 0)
    thread = warmup.start()
    thread.join(30)
    assert not thread.is_alive()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_borrower_ids_beyond_double_precision_stay_exact(trained, panel, tmp_path, fmt):
    big = 2**53  # 2**53 + 1 has no float64 of its own: read as a double it becomes 2**53
    two = panel[panel["borrower_id"].isin([0, 1])].copy()
    two["borrower_id"] = np.where(two["borrower_id"] == 0, big, big + 1).astype(np.int64)
    bad = panel[panel["borrower_id"] == 2].assign(borrower_id=big + 3)
    bad.loc[bad.index[0], "drawn"] = -5.0  # a reject names its borrower exactly too
    rows = pd.concat([two, bad])
    inp = tmp_path / f"in.{fmt}"
    rows.to_csv(inp, index=False) if fmt == "csv" else rows.to_parquet(inp)
    r = predict.run(cfg_for(trained, inp, tmp_path / "o.parquet"))
    out = pq.read_table(r.output).column("borrower_id").to_pylist()
    assert sorted(out) == [big, big + 1]
    assert pq.read_table(r.rejects).column("borrower_id").to_pylist() == [big + 3]


def test_state_codes_in_any_case_and_a_month_far_out_are_read_as_they_mean(trained, panel, tmp_path):
    rows = panel[panel["borrower_id"] < 12].copy()
    rows.to_csv(tmp_path / "plain.csv", index=False)
    shouting = rows.assign(status=rows["status"].astype(str).str.upper().str.pad(9, side="left"))
    far = rows[rows["borrower_id"] == 11].tail(1).assign(month=2_000_000_000)
    pd.concat([shouting, far]).to_csv(tmp_path / "odd.csv", index=False)
    plain = pd.read_parquet(predict.run(cfg_for(trained, tmp_path / "plain.csv", tmp_path / "p.parquet")).output)
    r = predict.run(cfg_for(trained, tmp_path / "odd.csv", tmp_path / "o.parquet"))
    odd = pd.read_parquet(r.output)
    pd.testing.assert_frame_equal(odd, plain[plain["borrower_id"] < 11].reset_index(drop=True))
    assert pd.read_parquet(r.rejects)["reason"].tolist() == ["month above 1200"]  # its borrower, once
