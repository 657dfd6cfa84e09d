"""Points, bands and the optbinning scorecard: hand-computed scaling, band edges, and a scorecard whose
bins' points add up to the points of its own probability."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import ConfigError
from riskml.training.scorecard import fit_scorecard, scorecard_points, scorecard_proba, scorecard_table
from riskml.measure.scale import Bands, PointsScale, band_of


def test_points_hand_computed():
    # p = 0.2 is good:bad odds 4 = 2 doublings of even odds: 100 + 2 x 20 = 140
    assert PointsScale(base_points=100, base_odds=1, pdo=20).points(0.2) == pytest.approx(140.0, abs=1e-9)
    s = PointsScale()  # 600 points at 50:1, 20 points to double
    p = np.array([1 / 51, 1 / 101, 1 / 26, 1 / 201])  # odds 50, 100, 25, 200
    assert s.points(p) == pytest.approx([600.0, 620.0, 580.0, 640.0], abs=1e-9)
    assert s.factor == pytest.approx(20 / math.log(2))
    assert s.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))
    assert s.probability(s.points(p)) == pytest.approx(p, rel=1e-12)
    assert np.isfinite(s.points([0.0, 1.0])).all() and s.points([0.0])[0] > s.points([1.0])[0]


def test_points_config_is_validated():
    assert PointsScale.from_config({"base_points": 500, "base_odds": 20, "pdo": 40}).pdo == 40.0
    with pytest.raises(ConfigError, match="points.pdo"):
        PointsScale.from_config({"base_points": 600, "base_odds": 50, "pdo": 0})
    with pytest.raises(ConfigError, match="points.base_odds"):
        PointsScale.from_config({"base_points": 600, "base_odds": "fifty", "pdo": 20})


def test_bands_on_probability_and_on_points():
    prob = Bands("probability", (0.02, 0.05), ("A", "B", "C"))
    assert prob.assign(p_adverse=[0.01, 0.02, 0.049, 0.05, 0.9]).tolist() == ["A", "B", "B", "C", "C"]
    pts = Bands("points", (560.0, 600.0), ("A", "B", "C"))
    assert pts.assign(points=[640, 600, 599.9, 560, 559]).tolist() == ["A", "A", "B", "B", "C"]
    # the same cuts expressed in points give the same bands (away from the edges themselves)
    s = PointsScale()
    p = np.array([0.005, 0.03, 0.2, 0.6])
    by_points = Bands("points", tuple(sorted(s.points([0.35, 0.15, 0.05, 0.02]))), ("A", "B", "C", "D", "E"))
    assert band_of(p, s, by_points).tolist() == band_of(p, s, Bands()).tolist() == ["A", "B", "D", "E"]
    with pytest.raises(ConfigError, match="bands.by"):
        Bands("score", (0.1,), ("A", "B"))
    with pytest.raises(ConfigError, match="one more label"):
        Bands("probability", (0.1, 0.05), ("A", "B", "C"))
    with pytest.raises(ConfigError, match="bands.edges"):
        Bands("probability", (500.0,), ("A", "B"))  # points edges on a probability cut


def test_scorecard_bins_woe_and_points_add_up():
    rng = np.random.default_rng(0)
    n = 6000
    X = pd.DataFrame({"dpd": rng.exponential(10, n).astype("float32"), "score": rng.normal(650, 60, n),
                      "noise": rng.normal(size=n)})
    logit = -3.5 + 0.08 * X["dpd"] - 0.01 * (X["score"] - 650)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    scale = PointsScale()
    card = fit_scorecard(X, y, scale)
    table = scorecard_table(card, {"dpd": "overdue", "score": "score_decline", "noise": "other"})
    assert {"feature", "factor", "bin", "count", "events", "woe", "iv", "points"} <= set(table.columns)
    # WoE by hand from the bin counts: ln(share of goods / share of bads)
    for feature, t in table.groupby("feature"):
        ne, e = t["non_events"].sum(), t["events"].sum()
        has = (t["events"] > 0) & (t["non_events"] > 0)
        woe = np.log((t["non_events"] / ne) / (t["events"] / e))
        assert t["woe"][has].to_numpy() == pytest.approx(woe[has].to_numpy(), rel=1e-6)
        assert t["iv"][has].to_numpy() == pytest.approx(((t["non_events"] / ne - t["events"] / e) * woe)[has],
                                                         rel=1e-6)
    iv = table.groupby("feature")["iv"].sum()
    assert iv["dpd"] > iv["noise"] and iv["score"] > iv["noise"]
    # a row's points are its bins' points summed, and equal the points of its probability on the same scale
    pts = scorecard_points(card, X)
    assert pts == pytest.approx(scale.points(scorecard_proba(card, X)), abs=1e-6)
    # safer rows score higher: the riskiest dpd bin carries fewer points than the safest
    dpd = table[table["feature"] == "dpd"].sort_values("event_rate")
    assert dpd["points"].iloc[0] > dpd["points"].iloc[-1]


def test_train_and_predict_configs_share_the_points_and_bands():
    from hydra import compose, initialize_config_module

    with initialize_config_module("riskml.conf", version_base="1.3"):
        t = compose("train")
    with initialize_config_module("riskml.conf.predict", version_base="1.3"):
        p = compose("predict")
    assert PointsScale.from_config(t.points) == PointsScale.from_config(p.points) == PointsScale()
    assert Bands.from_config(t.bands) == Bands.from_config(p.bands) == Bands()
