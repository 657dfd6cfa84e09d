import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import ConfigError, SchemaError
from riskml.factors import CATALOGUE, CAUSES
from riskml.features import TARGETS, build_features, build_snapshots, feature_specs, iter_snapshots, rectify
from riskml.schema import BEHAVIOUR, PANEL, STATUSES, cast
from riskml.features.windows import NEVER

NAN = np.nan


def literal_panel() -> pd.DataFrame:
    """3 borrowers x 8 months; only the columns the hand-computed checks read vary."""
    n, t = 3, 8
    df = pd.DataFrame({"borrower_id": np.repeat([11, 22, 33], t), "month": np.tile(np.arange(t), n)})
    for c in BEHAVIOUR:
        df[c.name] = np.zeros(n * t)
    df["external_score"] = 700.0
    df["utility_on_time"] = 1.0
    df["credit_limit"] = 1000.0
    df["income"] = 5000.0
    # borrower 11: late twice, a score dip, a limit cut (cause score_decline, still normal), suspended at 6
    df.loc[0:7, "days_past_due"] = [0, 0, 10, 0, 35, 0, 0, 0]
    df.loc[0:7, "external_score"] = [700, 690, 680, 650, 640, 660, 700, 720]
    df.loc[0:7, "credit_limit"] = [1000, 1000, 1000, 800, 800, 800, 1000, 1000]
    # borrower 22: invests drawn money, suspended at 3-4, closed from 6 (both for abnormal use)
    df.loc[8:15, "invest_share"] = [0, 0.1, 0.5, 0.6, 0, 0, 0, 0]
    status = ["normal"] * 24
    cause = [None] * 24
    status[6], cause[3], cause[6] = "suspended", "score_decline", "overdue"
    for m, s in [(3, "suspended"), (4, "suspended"), (6, "closed"), (7, "closed")]:
        status[8 + m], cause[8 + m] = s, "abnormal_use"
    df["status"], df["cause"] = status, cause
    return cast(df, PANEL)


def random_panel(n=120, t=24, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = n * t
    df = pd.DataFrame({"borrower_id": np.repeat(np.arange(n) * 3 + 5, t), "month": np.tile(np.arange(t), n)})
    for c in BEHAVIOUR:
        hi = c.hi if c.hi is not None else 1000.0
        v = (c.lo or 0) + rng.random(rows) * (min(hi, 1000.0) - (c.lo or 0))
        df[c.name] = np.floor(v) * (rng.random(rows) < 0.4) if c.dtype.startswith("int") else v
    st = rng.choice(3, size=rows, p=[0.8, 0.15, 0.05])
    df["status"] = np.array(STATUSES)[st]
    cz = np.where((st > 0) | (rng.random(rows) < 0.05), rng.integers(0, len(CAUSES), rows), -1)
    df["cause"] = pd.Categorical.from_codes(cz, categories=list(CAUSES))
    return cast(df, PANEL)


def at(s, bid, month):
    i = np.flatnonzero((s.keys.borrower_id == bid).to_numpy() & (s.keys.month == month).to_numpy())
    assert len(i) == 1, f"expected one snapshot row for borrower {bid} month {month}"
    return s.X.iloc[i[0]], i[0]


def test_snapshot_rows_and_labels_match_hand_computed():
    s = build_snapshots(literal_panel(), target="status_3m", horizon=2, min_history=3, windows=(2, 3))
    # t runs 2..5 (= 8 - 1 - H); borrower 22 is down at 3 and 4, so it has no snapshot there
    assert s.keys[["borrower_id", "month"]].values.tolist() == [
        [11, 2], [11, 3], [11, 4], [11, 5], [22, 2], [22, 5], [33, 2], [33, 3], [33, 4], [33, 5]]
    assert (s.keys.status == "normal").all()
    # worst status over t+1..t+2: 11 is suspended at 6 -> t=4,5 get 1; 22 suspended at 3 (t=2), closed at 6 (t=5)
    assert s.y.tolist() == [0, 0, 1, 1, 1, 2, 0, 0, 0, 0]
    assert s.cause.astype(object).where(s.cause.notna(), None).tolist() == [
        None, None, "overdue", "overdue", "abnormal_use", "abnormal_use", None, None, None, None]


def test_the_label_cause_is_the_first_change_when_two_causes_fall_in_one_horizon():
    panel = literal_panel()
    # borrower 33 (rows 16..23): suspended for multi-lending at month 5, closed for fraud at month 6
    i5, i6 = 16 + 5, 16 + 6
    panel["status"] = panel["status"].astype(object)
    panel["cause"] = panel["cause"].astype(object)
    panel.loc[i5, ["status", "cause"]] = ["suspended", "multi_lending"]
    panel.loc[i6:23, "status"], panel.loc[i6:23, "cause"] = "closed", "agreement_violation"
    panel = cast(panel, PANEL)
    s = build_snapshots(panel, target="status_3m", horizon=3, min_history=3, windows=(2, 3))
    _, i = at(s, 33, 4)  # months 5..7 ahead: suspended, then closed
    assert s.y[i] == STATUSES.index("closed")  # the label is the worst status ...
    assert s.cause.iloc[i] == "multi_lending"  # ... its cause the first change's, not the last's
    _, j = at(s, 33, 3)  # months 4..6 ahead: normal, suspended, closed: still the first change
    assert s.cause.iloc[j] == "multi_lending"


def test_maintenance_suspension_is_not_adverse():
    # the label rule (platform.effective_status): a month suspended for maintenance counts as normal
    df = literal_panel()
    i = (df["borrower_id"] == 33) & (df["month"] == 4)
    df.loc[i, "status"], df.loc[i, "cause"], df.loc[i, "maintenance"] = "suspended", "maintenance", 1
    s = build_snapshots(df, target="status_3m", horizon=2, min_history=3, windows=(2, 3))
    k = s.keys.reset_index(drop=True)
    rows = (k["borrower_id"] == 33).to_numpy()
    # 33 is down at 4 (no snapshot there); t=2 and t=3 see the outage ahead and stay normal, without a cause
    assert k.loc[rows, "month"].tolist() == [2, 3, 5]
    assert s.y[rows].tolist() == [0, 0, 0]
    assert s.cause[rows].isna().all()
    a = build_snapshots(df, target="adverse_3m", horizon=2, min_history=3, windows=(2, 3))
    assert a.y[(a.keys["borrower_id"] == 33).to_numpy()].tolist() == [0, 0, 0]


def test_features_match_hand_computed_values():
    s = build_snapshots(literal_panel(), target="status_3m", horizon=2, min_history=3, windows=(2, 3))
    x4, _ = at(s, 11, 4)
    x5, _ = at(s, 11, 5)
    assert x4["days_past_due"] == 35 and x4["days_past_due_max_3m"] == 35
    assert x4["days_past_due_cnt_2m"] == 1 and x4["days_past_due_cnt_3m"] == 2   # months 3..4, 2..4 late: 10, 35
    assert x4["days_past_due_since"] == 0 and x5["days_past_due_since"] == 1
    assert x5["days_past_due_cnt_3m"] == 1                                       # months 3..5: only 35
    assert x4["external_score_chg_2m"] == 640 - 680 and x4["external_score_chg_3m"] == 640 - 690
    assert x4["external_score_min_3m"] == 640 and x4["external_score_dd_3m"] == 640 - 680
    assert x5["external_score_chg_2m"] == 660 - 650 and x5["external_score_dd_3m"] == 0
    assert x4["credit_limit_ratio_3m"] == pytest.approx(0.8) and x5["credit_limit_ratio_3m"] == 1.0
    assert x4["past_cause_score_decline_3m"] == 1 and x4["past_cause_overdue_3m"] == 0
    assert np.isnan(x4["months_since_not_normal"])                             # never down before t
    x2, _ = at(s, 22, 2)
    y5, _ = at(s, 22, 5)
    assert x2["invest_share_mean_2m"] == pytest.approx(0.3) and x2["invest_share_cnt_3m"] == 1  # 0.5 > 0.2
    assert y5["invest_share_max_3m"] == pytest.approx(0.6) and y5["invest_share_mean_2m"] == 0
    assert y5["months_suspended_3m"] == 2 and y5["past_suspensions"] == 1 and y5["past_closures"] == 0
    assert y5["months_since_not_normal"] == 1 and y5["months_in_status"] == 1 and y5["status_code"] == 0
    assert y5["past_cause_abnormal_use_3m"] == 2
    z, _ = at(s, 33, 5)
    assert z["days_past_due_since"] == NEVER and z["past_cause_overdue_3m"] == 0 and z["months_in_status"] == 6


def test_short_history_windows_read_only_the_months_that_exist():
    s = build_snapshots(literal_panel(), target="status_3m", horizon=2, min_history=1, windows=(2, 3))
    x0, _ = at(s, 11, 0)
    x1, _ = at(s, 11, 1)
    assert np.isnan(x0["external_score_chg_2m"]) and np.isnan(x1["external_score_chg_2m"])
    assert x1["external_score_chg_2m"] != 0
    assert x0["recent_applications_mean_2m"] == 0 and x1["external_score_min_3m"] == 690


def test_scrambling_every_month_after_t_leaves_features_at_t_bit_identical():
    t0 = 12
    panel = random_panel()
    scrambled = random_panel(seed=1)          # every column of every month is different ...
    keep = (panel.month <= t0).to_numpy()
    scrambled.loc[keep] = panel.loc[keep]    # ... except months <= t0, which are the original
    a = build_snapshots(panel, target="status_3m")
    b = build_snapshots(scrambled, target="status_3m")
    ra = (a.keys.month <= t0).to_numpy()
    rb = (b.keys.month <= t0).to_numpy()
    pd.testing.assert_frame_equal(a.keys[ra].reset_index(drop=True), b.keys[rb].reset_index(drop=True))
    xa, xb = a.X[ra].to_numpy(), b.X[rb].to_numpy()
    assert xa.view(np.uint32).tobytes() == xb.view(np.uint32).tobytes()   # bit-identical, NaNs included
    # the labels of snapshots near t0 read the scrambled months, and they did change
    near = (a.keys.month[ra] > t0 - 3).to_numpy()
    assert (a.y[ra][near] != b.y[rb][near]).any()
    # serving at as_of = t0 sees exactly the training features, whatever comes after
    f = build_features(scrambled, as_of=t0)
    rows = (a.keys.month == t0).to_numpy()
    g = f.X.set_index(f.keys.borrower_id).loc[a.keys.borrower_id[rows]].to_numpy()
    assert g.view(np.uint32).tobytes() == a.X[rows].to_numpy().view(np.uint32).tobytes()


def test_ragged_shuffled_input_gives_the_same_features_as_the_regular_grid():
    panel = random_panel(n=40)
    a = build_snapshots(panel, target="adverse_3m")
    shuffled = panel.sample(frac=1.0, random_state=3)     # not sorted: the scatter path
    b = build_snapshots(shuffled, target="adverse_3m")
    np.testing.assert_array_equal(a.X.to_numpy(), b.X.to_numpy())
    np.testing.assert_array_equal(a.y, b.y)
    # prediction input: the reshape fast path and the scatter path agree too
    np.testing.assert_array_equal(build_features(panel).X.to_numpy(), build_features(shuffled).X.to_numpy())
    np.testing.assert_array_equal(build_features(panel, as_of=9).X.to_numpy(),
                                  build_features(shuffled, as_of=9).X.to_numpy())
    # a borrower whose first 8 months are unknown: prediction right-aligns it with NaN padding
    late = panel.borrower_id.iloc[0]
    ragged = panel[~((panel.borrower_id == late) & (panel.month < 8))].copy()
    ragged.loc[ragged.borrower_id == late, "status"] = "normal"
    f = build_features(ragged, as_of=15)
    c = build_snapshots(ragged, target="status_3m", min_history=1)
    row = (c.keys.borrower_id == late).to_numpy() & (c.keys.month == 15).to_numpy()
    assert row.sum() == 1
    got = f.X[(f.keys.borrower_id == late).to_numpy()].to_numpy()
    np.testing.assert_array_equal(got, c.X[row].to_numpy())
    assert np.isnan(got[0, list(f.X.columns).index("external_score_chg_12m")])  # month 3 is unknown
    assert f.keys.month.eq(15).all() and len(f.keys) == 40


def test_build_features_takes_each_borrowers_last_month_by_default():
    panel = random_panel(n=5, t=10)
    panel = panel[~((panel.borrower_id == 5) & (panel.month > 6))]    # borrower 5 stops at month 6
    f = build_features(panel)
    assert f.keys.set_index("borrower_id").month.to_dict() == {5: 6, 8: 9, 11: 9, 14: 9, 17: 9}
    assert f.y is None and f.cause is None
    assert (f.X.dtypes == np.float32).all()
    assert np.isnan(build_features(panel.drop(columns="cause")).X.filter(like="past_cause_")).all().all()


def test_recovery_target_takes_accounts_that_are_down():
    s = build_snapshots(literal_panel(), target="recovery_6m", horizon=2, min_history=3, windows=(2, 3))
    assert s.keys[["borrower_id", "month"]].values.tolist() == [[22, 3], [22, 4]]
    assert s.y.tolist() == [1, 1] and s.cause.tolist() == ["abnormal_use", "abnormal_use"]
    assert (s.keys.status == "suspended").all() and set(TARGETS) == {"status_3m", "adverse_3m", "recovery_6m"}


def test_every_feature_is_tagged_with_a_catalogue_factor_and_direction():
    specs = feature_specs()
    assert 40 <= len(specs) <= 80 and len({s.name for s in specs}) == len(specs)
    s = build_snapshots(random_panel(n=20), target="adverse_3m", every=3)
    assert set(s.keys.month) == {5, 8, 11, 14, 17, 20}
    assert list(s.X.columns) == [sp.name for sp in specs] and (s.X.dtypes == np.float32).all()
    assert set(s.feature_factors.values()) <= set(CATALOGUE) and set(s.y) <= {0, 1}
    assert set(s.feature_directions.values()) <= {-1, 0, 1}
    assert s.feature_factors["past_cause_abnormal_use_12m"] == "abnormal_use"
    assert s.feature_factors["days_past_due_cnt_12m"] == "overdue"
    assert s.feature_directions["external_score"] == -1 and s.feature_directions["external_score_chg_3m"] == -1
    assert s.feature_directions["income_std_6m"] == 0 and s.feature_factors["months_suspended_12m"] == "other"
    assert {s.feature_factors[f"past_cause_{c}_12m"] for c in CAUSES} == set(CAUSES)


def test_iter_snapshots_chunks_concatenate_to_build_snapshots():
    panel = random_panel(n=50)
    whole = build_snapshots(panel, chunk_borrowers=50)
    parts = list(iter_snapshots(panel, chunk_borrowers=16))
    assert len(parts) == 4
    np.testing.assert_array_equal(np.concatenate([p.X.to_numpy() for p in parts]), whole.X.to_numpy())
    np.testing.assert_array_equal(np.concatenate([p.y for p in parts]), whole.y)
    np.testing.assert_array_equal(build_snapshots(panel, chunk_borrowers=7).X.to_numpy(), whole.X.to_numpy())


def test_rectify_moves_only_that_factors_features_to_their_advised_values():
    s = build_snapshots(literal_panel(), target="status_3m", horizon=2, min_history=3, windows=(2, 3))
    X = s.X
    specs = feature_specs((2, 3))
    r = rectify(X, "overdue", specs)
    assert (r["days_past_due"] == 0).all() and (r["days_past_due_cnt_3m"] == 0).all()
    assert (r["days_past_due_since"] == NEVER).all() and (r["past_cause_overdue_3m"] == 0).all()
    untouched = [c for c in X.columns if s.feature_factors[c] != "overdue"]
    pd.testing.assert_frame_equal(r[untouched], X[untouched])
    sc = rectify(X, "score_decline", specs)
    low = [c for c in X.columns if "_low_" in c]
    lowered = rectify(X.assign(**{c: np.float32(2.0) for c in low}), "score_decline", specs)
    assert low and (lowered[low] == 0).all().all()  # months with a low score are undone too (they were kept)
    _, i = at(s, 11, 4)
    assert sc["external_score"].iloc[i] == 700 and sc["external_score_chg_2m"].iloc[i] == 0
    hi = X.assign(external_score=np.float32(810.0))
    assert (rectify(hi, "score_decline", specs)["external_score"] == 810).all()  # never made worse
    # a change for the worse is undone, an improvement already made is kept
    moves = X.assign(external_score_chg_2m=np.where(np.arange(len(X)) % 2, 25.0, -25.0).astype(np.float32))
    chg = rectify(moves, "score_decline", specs)["external_score_chg_2m"].to_numpy()
    assert (chg == np.where(np.arange(len(X)) % 2, 25.0, 0.0)).all()
    with pytest.raises(KeyError, match="unknown factor id 'luck'"):
        rectify(X, "luck", specs)


def test_bad_input_names_the_problem():
    panel = literal_panel()
    with pytest.raises(SchemaError, match="income"):
        build_snapshots(panel.drop(columns="income"))
    with pytest.raises(ConfigError, match="'target'.*'default_6m'"):
        build_snapshots(panel, target="default_6m")
    with pytest.raises(ConfigError, match="'min_history'.*got 8"):
        build_snapshots(panel, min_history=8)
    with pytest.raises(ConfigError, match="'windows'"):
        build_snapshots(panel, windows=(0, 3))
    with pytest.raises(SchemaError, match=r"duplicate \(borrower_id, month\) = \(11, 0\)"):
        build_snapshots(pd.concat([panel, panel.iloc[:1]]))
    bad = panel.astype({"status": object})
    bad.loc[5, "status"] = "frozen"
    with pytest.raises(SchemaError, match="row 5: column 'status' has value 'frozen'"):
        build_features(bad)


def test_no_single_feature_is_near_perfect_on_simulated_snapshots():
    from riskml.measure.metrics import leakage_scan
    from riskml.simulate import SimConfig, simulate

    panel = simulate(SimConfig(n_borrowers=3000, n_months=48, seed=0)).panel
    s = build_snapshots(panel, target="adverse_3m")
    assert 0 < s.y.mean() < 0.2 and len(s) > 30_000
    assert leakage_scan(s.X, s.y, threshold=0.95) == []
    # ... while the label itself, smuggled in as a feature, is caught by name
    hits = leakage_scan(s.X.assign(future_status=s.y.astype(np.float32)), s.y, threshold=0.95)
    assert [n for n, _ in hits] == ["future_status"]
    # the cause of the first change is a documented cause exactly when the label is adverse
    assert (s.cause.notna().to_numpy() == (s.y == 1)).all()


def test_large_outputs_are_writable_column_ordered_float32():
    from riskml.features.snapshots import _empty_features

    X = _empty_features(300_000, 64)         # 77 MB: the mapped path
    X[:, 3] = 1.5
    assert X.dtype == np.float32 and X.flags.f_contiguous and X.flags.writeable and X[-1, 3] == 1.5


def test_acceptance_gap_and_reviews_past_the_line_match_hand_computed():
    """The platform's grade here is 0.4 per other lender (score 620, no debt, no arrears); the review is the
    mean of the last 6 months' grades; the line is 1.0 in a normal month and 1.0 - 5 x 0.2 = 0 at policy 0.5."""
    t = 8
    lenders = [1, 1, 2, 2, 2, 3, 3, 5]
    policy = [0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    df = pd.DataFrame({"borrower_id": np.repeat([1, 2, 3], t), "month": np.tile(np.arange(t), 3)})
    for c in BEHAVIOUR:
        df[c.name] = 0.0
    df["external_score"], df["credit_limit"], df["income"] = 620.0, 1000.0, 5000.0
    df["other_lenders"], df["policy_index"] = np.tile(lenders, 3), np.tile(policy, 3)
    # the same history three times: 1 stays open, 2 is closed by the policy from month 5, 3 suspended for
    # multi-lending from month 5 (a line the acceptance line does not govern)
    df["status"] = ["normal"] * t + ["normal"] * 5 + ["closed"] * 3 + ["normal"] * 5 + ["suspended"] * 3
    df["cause"] = [None] * t + [None] * 5 + ["policy_tightening"] * 3 + [None] * 5 + ["multi_lending"] * 3
    panel = cast(df, PANEL)
    # reviews 0.4, 0.4, 1.6/3, 2.4/4, 3.2/5, 4.4/6, 5.2/6, 6.8/6; gap = review - line while tightening and
    # review <= 1.0 (beyond it the cause rules act), NaN otherwise
    want_gap = [NAN, NAN, 1.6 / 3, 0.6, 0.64, 4.4 / 6, 5.2 / 6, NAN]
    want_run = [0, 0, 1, 2, 3, 4, 5, 0]
    for m in range(t):
        x = build_features(panel, as_of=m).X
        np.testing.assert_allclose(x["acceptance_gap"].iloc[0], want_gap[m], rtol=1e-5, atol=1e-6)
        assert x["reviews_past_acceptance_line"].iloc[0] == want_run[m]
        if m >= 5:  # the policy closure keeps its gap (whether the line takes it back); the suspension has none
            np.testing.assert_allclose(x["acceptance_gap"].iloc[1], want_gap[m], rtol=1e-5, atol=1e-6)
            assert np.isnan(x["acceptance_gap"].iloc[2]) and np.isnan(x["reviews_past_acceptance_line"].iloc[2])
    specs = {s.name: s for s in feature_specs()}
    for name in ("acceptance_gap", "reviews_past_acceptance_line", "policy_index_chg_6m", "policy_index_chg_12m"):
        assert specs[name].factor == "policy_tightening" and specs[name].direction == 1


def test_the_engine_closes_for_policy_exactly_the_accounts_the_features_find_past_the_line():
    """The features recompute the platform's rule from panel columns alone: every policy closure at month m
    follows REVIEWS snapshots in a row (m-3..m-1) whose acceptance gap is > 0."""
    from riskml import platform as acceptance
    from riskml.simulate import SimConfig, simulate

    panel = simulate(SimConfig(n_borrowers=3000, n_months=16, scenario="tightening", tighten_month=6,
                               block_size=1024)).panel
    s = build_snapshots(panel, target="adverse_3m", horizon=1, min_history=1)
    closed_next = (s.y == 1) & (s.cause == "policy_tightening").to_numpy()
    assert closed_next.sum() > 30
    x = s.X[closed_next]
    assert (x["acceptance_gap"] > 0).all() and (x["reviews_past_acceptance_line"] >= acceptance.REVIEWS).all()


def test_the_review_grid_equals_the_review_of_shifted_grids_bit_for_bit():
    from riskml import platform as acceptance

    rng = np.random.default_rng(5)
    g = rng.normal(0, 3, (20, 300)).astype(np.float32)
    g[rng.random(g.shape) < 0.3] = np.nan
    g[:4, :50] = np.nan  # a history that starts late
    shifted = [np.concatenate([np.full((k, 300), np.nan, np.float32), g[:len(g) - k]]) for k in range(acceptance.MONTHS)]
    want = acceptance.review(*shifted)
    got = acceptance.review_grid(g)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.int32), want.view(np.int32))
    short = acceptance.review_grid(g[:3])  # fewer months than a review reads
    assert np.array_equal(short, acceptance.review(*[s[:3] for s in shifted]), equal_nan=True)


def _bits(x: pd.DataFrame) -> bytes:
    return x.to_numpy().view(np.uint32).tobytes()   # NaNs included


@pytest.mark.parametrize("windows", [(3, 6, 12), (2, 5), (1,), (4, 7, 9, 13)])
def test_the_compiled_features_at_a_month_are_the_grid_features_bit_for_bit(windows):
    """Prediction computes every feature in one compiled pass per borrower (``features.at_month``); the month
    grids training reads are the reference. Same bits for every kind: simulated histories with policy periods
    (acceptance gap), NaN cells, shuffled and ragged input (missing months, late starts), ``as_of``, no cause."""
    from riskml.simulate import SimConfig, simulate

    rng = np.random.default_rng(11)
    panel = simulate(SimConfig(n_borrowers=700, n_months=30, seed=3)).panel
    holes = panel.copy()
    for c in ("days_past_due", "external_score", "income", "invest_share", "policy_index", "balance"):
        holes[c] = holes[c].astype("float32").mask(rng.random(len(holes)) < 0.1)
    ragged = holes[rng.random(len(holes)) > 0.15].sample(frac=1.0, random_state=4)   # missing months, shuffled
    ragged = ragged[~((ragged.borrower_id % 7 == 0) & (ragged.month < 20))]          # late starts
    cases = [(panel, None), (panel, 17), (holes, None), (ragged, None), (ragged, 12), (ragged, 40),
             (holes.drop(columns="cause"), 25)]
    for i, (p, as_of) in enumerate(cases):
        want = build_features(p, as_of=as_of, windows=windows, engine="grids")
        got = build_features(p, as_of=as_of, windows=windows)
        pd.testing.assert_frame_equal(got.keys, want.keys)
        assert list(got.X.columns) == list(want.X.columns)
        for name in want.X.columns:  # one column at a time, so a failure names the feature
            assert _bits(got.X[[name]]) == _bits(want.X[[name]]), f"case {i}: feature {name} differs"
    # the comparison is not vacuous: every feature takes several values (but those constant by definition:
    # a 1-month window's drop, volatility and ratio to its peak; maintenance is never a cause on record here)
    x = build_features(ragged, windows=windows, engine="grids").X
    const = {s.name for s in feature_specs(windows) if s.window == 1 and s.kind in ("dd", "std", "ratio")}
    flat = [c for c in x.columns if x[c].nunique() < 2 and c not in const and not c.startswith("past_cause_maintenance")]
    assert flat == []


def test_build_features_names_a_bad_engine():
    with pytest.raises(ConfigError, match="engine"):
        build_features(random_panel(n=3, t=6), engine="fast")


def test_a_part_of_later_accounts_gets_the_whole_books_snapshot_months():
    """Borrower ids follow the opening order, so a part of a book's later accounts starts months after the
    first: its snapshots are the whole panel's rows of those accounts (the same calendar months, every
    `every` of them), and a part too young for any snapshot has none rather than an error."""
    from riskml.simulate import SimConfig, simulate

    panel = simulate(SimConfig(n_borrowers=1500, n_months=30, seed=4, block_size=256)).panel
    whole = build_snapshots(panel, target="status_3m", every=2)
    late = panel[panel["borrower_id"] >= 1000]
    assert late["month"].min() > 10
    parts = [build_snapshots(panel[panel["borrower_id"] < 1000], target="status_3m", every=2),
             build_snapshots(late, target="status_3m", every=2)]
    pd.testing.assert_frame_equal(pd.concat([p.keys for p in parts], ignore_index=True), whole.keys)
    pd.testing.assert_frame_equal(pd.concat([p.X for p in parts], ignore_index=True), whole.X)
    assert np.array_equal(np.concatenate([p.y for p in parts]), whole.y)
    youngest = build_snapshots(panel[panel["borrower_id"] >= 1490], target="status_3m")
    assert len(youngest) == 0 and youngest.X.shape[1] == whole.X.shape[1]
