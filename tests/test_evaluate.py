import io
import logging
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from riskml.measure.metrics import (classification_metrics, raise_on_leaks, expected_calibration_error, ks_statistic,
                             leakage_scan, oracle_gap, oracle_proba, plot_calibration, plot_factor_importance,
                             plot_roc)
from riskml.exceptions import ConfigError, LeakageError

# Six points, three positives. Pairs (positive beats negative): 0.35 beats 0.1;
# 0.7 beats 0.1, 0.4; 0.9 beats all three -> AUC = 6/9 = 2/3, Gini = 1/3.
# ROC steps by descending score: 0.9 (TPR 1/3, FPR 0), 0.8 (1/3, 1/3),
# 0.7 (2/3, 1/3), 0.4 (2/3, 2/3), 0.35 (1, 2/3), 0.1 (1, 1) -> KS = 1/3.
# Brier = (0.01 + 0.16 + 0.4225 + 0.64 + 0.09 + 0.01) / 6 = 1.3325 / 6.
# ECE, 10 bins: every point alone in its bin -> mean |y - p| = 2.35 / 6.
# ECE, 2 bins: [0.1, 0.4, 0.35] has mean y 1/3, mean p 0.85/3 (gap 0.05);
# [0.8, 0.7, 0.9] has mean y 2/3, mean p 0.8 (gap 2/15) -> (0.05 + 2/15) / 2.
Y6 = np.array([0, 0, 1, 0, 1, 1])
P6 = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])


def test_binary_metrics_match_the_hand_computed_six_point_example():
    assert ks_statistic(Y6, P6) == pytest.approx(1 / 3)
    assert expected_calibration_error(Y6, P6) == pytest.approx(2.35 / 6)
    assert expected_calibration_error(Y6, P6, n_bins=2) == pytest.approx((0.05 + 2 / 15) / 2)
    m = classification_metrics(Y6, P6, ["normal", "adverse"])
    assert m["roc_auc_adverse"] == pytest.approx(2 / 3) and m["gini"] == pytest.approx(1 / 3)
    assert m["ks"] == pytest.approx(1 / 3) and m["brier"] == pytest.approx(1.3325 / 6)
    assert m["roc_auc_normal"] == pytest.approx(2 / 3)          # one-vs-rest of the other class, same ranking
    # PR-AUC (average precision): ranks 0.9 (1/1), 0.8, 0.7 (2/3), 0.4, 0.35 (3/5) -> (1 + 2/3 + 3/5) / 3
    assert m["pr_auc_adverse"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(np.where(Y6 == 1, P6, 1 - P6))))
    assert m["ece"] == pytest.approx(2.35 / 6)


def test_multiclass_metrics_match_hand_computed_values():
    y = [0, 1, 2, 0]
    p = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.15, 0.5, 0.35]]
    m = classification_metrics(y, p, ["normal", "suspended", "closed"])
    # p_adverse = 1 - p_normal = [0.3, 0.8, 0.9, 0.85] for adverse [0, 1, 1, 0]:
    # 0.8 loses to 0.85, the other three pairs are won -> AUC 3/4; KS: at 0.9 TPR 1/2, FPR 0 -> 1/2
    assert m["roc_auc_adverse"] == pytest.approx(0.75) and m["gini"] == pytest.approx(0.5)
    assert m["ks"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.09 + 0.04 + 0.01 + 0.7225) / 4)
    # summed squared errors per row: 0.14, 0.38, 0.26, 1.095
    assert m["brier_multi"] == pytest.approx(1.875 / 4)
    assert m["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.5) + math.log(0.6) + math.log(0.15)) / 4)
    assert m["roc_auc_closed"] == pytest.approx(1.0)
    # suspended vs rest: the suspended row (0.5) ties with row 4 (0.5) and beats 0.2, 0.3 -> (2 + 0.5) / 3
    assert m["roc_auc_suspended"] == pytest.approx(2.5 / 3)
    assert set(m) >= {f"{k}_{c}" for k in ("roc_auc", "pr_auc") for c in ("normal", "suspended", "closed", "adverse")}


def test_metrics_are_nan_when_undefined_and_inputs_are_checked():
    m = classification_metrics([0, 0, 1], [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]],
                               ["normal", "suspended", "closed"])
    assert math.isnan(m["roc_auc_closed"]) and m["roc_auc_adverse"] == 1.0
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*\(n_rows, 3\)"):
        classification_metrics([0, 1, 2], np.ones((3, 2)) / 2, ["normal", "suspended", "closed"])
    with pytest.raises(ValueError, match="labels \\[0, 3\\]"):
        classification_metrics([0, 3], [0.2, 0.3], ["normal", "adverse"])
    with pytest.raises(ConfigError, match="'n_bins'"):
        expected_calibration_error(Y6, P6, n_bins=0)


def test_oracle_gap_is_oracle_auc_minus_model_auc():
    oracle = pd.DataFrame({"p_normal": 1 - Y6 * 0.9 - 0.05, "p_suspended": Y6 * 0.9, "p_closed": 0.05})
    op = oracle_proba(oracle, ["normal", "adverse"])
    np.testing.assert_allclose(op[:, 1], 1 - oracle.p_normal)
    g = oracle_gap(Y6, P6, op, ["normal", "adverse"])
    assert g["oracle_roc_auc_adverse"] == 1.0 and g["auc_gap_to_oracle"] == pytest.approx(1 - 2 / 3)
    assert oracle_proba(oracle, ["normal", "suspended", "closed"]).shape == (6, 3)
    keys = pd.DataFrame({"borrower_id": np.arange(6), "month": 7})
    keyed = oracle.assign(borrower_id=np.arange(6), month=7)
    assert oracle_proba(keyed, ["normal", "adverse"], keys=keys).shape == (6, 2)
    with pytest.raises(ValueError, match="first at row 2"):
        oracle_proba(keyed, ["normal", "adverse"], keys=keys.assign(month=[7, 7, 8, 7, 7, 7]))


def test_leakage_scan_names_near_perfect_features_and_the_guard_fails_the_run(caplog):
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.2
    X = pd.DataFrame({
        "noise": rng.random(2000),
        "leak": y + rng.random(2000) * 0.1,                      # separates perfectly
        "inverse_leak": -(y * 1.0),                              # perfect, the other way round
        "nan_when_bad": np.where(y, np.nan, rng.random(2000)),   # missing exactly for the positives
        "honest": y + rng.normal(0, 1, 2000),                    # informative, far from perfect
    })
    hits = leakage_scan(X, y, threshold=0.99)
    assert {n for n, _ in hits} == {"leak", "inverse_leak", "nan_when_bad"}
    assert dict(hits)["leak"] == pytest.approx(1.0) and dict(hits)["inverse_leak"] == pytest.approx(0.0)
    with pytest.raises(LeakageError, match=r"leak \(AUC 1\.0000\)"):
        raise_on_leaks(hits, threshold=0.99)
    with caplog.at_level(logging.WARNING, logger="riskml.measure.metrics"):
        raise_on_leaks(hits, threshold=0.99, allow=True)  # named in the log, not raised
    assert "'nan_when_bad'" in caplog.text
    assert leakage_scan(X[["noise", "honest"]], y, threshold=0.99) == []
    raise_on_leaks([], threshold=0.99)  # nothing found: nothing raised
    assert [n for n, _ in leakage_scan(X, y, threshold=0.99, max_rows=500, seed=1)] == [n for n, _ in hits]
    with pytest.raises(ConfigError, match="leakage_threshold"):
        leakage_scan(X, y, threshold=0.4)


def test_plots_return_figures_that_render():
    p3 = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.15, 0.5, 0.35]])
    figs = [plot_roc([0, 1, 2, 0], p3, ["normal", "suspended", "closed"]), plot_calibration(Y6, P6),
            plot_factor_importance({"overdue": 3.0, "abnormal_use": 1.5, "other": 0.2})]
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:4] == b"\x89PNG"
    assert [t.get_text() for t in figs[2].axes[0].get_yticklabels()] == ["other", "abnormal_use", "overdue"]
    assert len(figs[0].axes[0].get_legend().get_texts()) == 4   # three classes + adverse


def test_the_scoring_kit_scores_as_lightgbm_and_builds_one_explainer_per_model():
    from riskml.evaluation import kit
    from riskml.training.models import fit_one

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(600, 4)).astype("float32"), columns=list("abcd"))
    X.iloc[::7, 1] = np.nan  # missing values take the default way in both scorers
    y = ((X["a"] + rng.normal(scale=0.5, size=600)) > 0.3).astype(int).to_numpy() + (X["c"] > 1.2).to_numpy()
    cfg = {"name": "lightgbm", "num_leaves": 15, "num_boost_round": 20, "min_data_in_leaf": 5, "verbose": -1}
    model = fit_one(cfg, X, y, classes=["normal", "suspended", "closed"])
    before = model.predict_proba(X)  # Booster.predict
    assert kit.attach_scorer(model) is model and model.scorer is not None
    np.testing.assert_allclose(model.predict_proba(X), before, rtol=0, atol=1e-12)
    factors = {"a": "overdue", "b": "overdue", "c": "multi_lending", "d": "other"}
    one = kit.explainer(model, factors)
    assert kit.explainer(model, dict(factors)) is one  # the same model and factors: built once
    assert kit.explainer(model, {**factors, "d": "overdue"}) is not one  # other players: its own tables
    baseline = fit_one({"name": "logistic", "C": 1.0, "max_iter": 200}, X.fillna(0), y,
                       classes=["normal", "suspended", "closed"])
    assert kit.attach_scorer(baseline).scorer is None  # a baseline scores itself
