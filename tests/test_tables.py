"""Gains, calibration and information-value tables against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskml.measure.tables import (calibration_table, decile_groups, gains_table, information_values,
                                    quantile_iv, wilson_interval, woe_iv)


def test_gains_table_hand_computed():
    # 10 accounts in 2 bands; band H: 4 accounts, 3 events; band L: 6 accounts, 1 event
    y = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1]
    g = gains_table(y, p, groups=list("HHHHLLLLLL"), order=["H", "L"])
    h, low = g.iloc[0], g.iloc[1]
    assert (h["count"], h["events"], low["count"], low["events"]) == (4, 3, 6, 1)
    assert h["event_rate"] == pytest.approx(0.75) and h["cum_capture"] == pytest.approx(0.75)
    assert h["cum_non_events"] == pytest.approx(1 / 6)
    assert h["ks"] == pytest.approx(0.75 - 1 / 6)           # KS of the table: 0.5833
    assert h["lift"] == pytest.approx(0.75 / 0.4) and low["cum_lift"] == pytest.approx(1.0)
    assert low["cum_capture"] == pytest.approx(1.0) and low["ks"] == pytest.approx(0.0)
    assert g["p_mean"].tolist() == pytest.approx([0.75, 1.0 / 6])


def test_deciles_are_equal_counts_riskiest_first():
    p = np.linspace(0, 1, 100)
    d = decile_groups(p)
    assert np.bincount(d)[1:].tolist() == [10] * 10
    assert d[-1] == 1 and d[0] == 10  # the highest probability is in decile 1
    g = gains_table((p > 0.9).astype(int), p)
    assert g["cum_capture"].iloc[0] == pytest.approx(1.0) and g["ks"].max() == pytest.approx(1.0)


def test_wilson_and_calibration_flags():
    lo, hi = wilson_interval(np.array([0, 5]), np.array([10, 50]))
    assert lo[0] == pytest.approx(0.0, abs=1e-12) and hi[0] == pytest.approx(0.27753, abs=1e-5)
    assert (lo[1], hi[1]) == pytest.approx((0.04348, 0.21360), abs=1e-5)
    # band A: 1000 rows, predicted 0.10, observed 0.10 -> ok; band B: 20 rows, predicted 0.5, observed 0.15
    # (gap 0.35, outside the interval [0.052, 0.360]) -> not ok; band C: 10 rows, predicted 0.3, observed 0.1
    # (gap 0.2 but inside the small band's interval [0.018, 0.404]) -> ok
    y = [1] * 100 + [0] * 900 + [1] * 3 + [0] * 17 + [1] + [0] * 9
    p = [0.1] * 1000 + [0.5] * 20 + [0.3] * 10
    t = calibration_table(y, p, groups=["A"] * 1000 + ["B"] * 20 + ["C"] * 10, order=["C", "B", "A"])
    assert t.set_index("group")["ok"].to_dict() == {"C": True, "B": False, "A": True}


@pytest.mark.parametrize("binning", ["quantile", "optimal"])
def test_woe_iv_hand_computed_and_both_binnings_agree(binning):
    # bin 1: 10 events, 90 non-events; bin 2: 40 events, 60 non-events (50 events, 150 non-events in all)
    woe, iv = woe_iv([10, 40], [90, 60])
    assert woe.tolist() == pytest.approx([np.log(0.6 / 0.2), np.log(0.4 / 0.8)])
    assert iv == pytest.approx((0.6 - 0.2) * np.log(3) + (0.4 - 0.8) * np.log(0.5))
    # a two-valued feature: its optimal bins and its quantile bins are its two values, so its IV is the
    # hand-computed one
    x = np.r_[np.zeros(100), np.ones(100)]
    y = np.r_[np.ones(10), np.zeros(90), np.ones(40), np.zeros(60)]
    X = pd.DataFrame({"flag": x, "noise": np.random.default_rng(0).normal(size=200)})
    per_feature, per_factor = information_values(X, y, {"flag": "overdue", "noise": "other"}, binning=binning)
    got = per_feature.set_index("feature")["iv"]
    assert got["flag"] == pytest.approx(iv, rel=1e-6) and got["noise"] < got["flag"]
    assert per_factor.iloc[0]["factor"] == "overdue" and per_factor.iloc[0]["best_feature"] == "flag"


def test_quantile_iv_bins_missing_values_and_categories_apart():
    # missing values are their own bin: a column whose only signal is being missing has the flag's IV
    y = np.r_[np.ones(10), np.zeros(90), np.ones(40), np.zeros(60)]
    missing = np.r_[np.zeros(100), np.full(100, np.nan)]
    kind = pd.Categorical(np.r_[["a"] * 100, ["b"] * 100])
    got = quantile_iv(pd.DataFrame({"missing": missing, "kind": kind, "constant": np.ones(200)}), y)
    _, iv = woe_iv([10, 40], [90, 60])
    assert got["missing"] == pytest.approx(iv) and got["kind"] == pytest.approx(iv) and got["constant"] == 0.0
    # a rare flag (0.5% of rows) keeps its own bin however the quantiles fall
    rare = np.r_[np.zeros(995), np.ones(5)]
    y2 = np.r_[np.zeros(995), np.ones(5)]
    assert quantile_iv(pd.DataFrame({"rare": rare}), y2)["rare"] > 1.0


def test_information_values_refuse_an_unknown_binning():
    with pytest.raises(ValueError, match="binning must be"):
        information_values(pd.DataFrame({"x": [0.0, 1.0]}), [0, 1], {"x": "overdue"}, binning="cart")
