"""The origination schedule: how many accounts open each month, and which ones."""

from __future__ import annotations

import numpy as np

from riskml.simulate import SimConfig, simulate
from riskml.simulate.book import schedule, start_months


def test_a_steady_book_opens_the_same_count_every_month():
    flat = SimConfig(n_borrowers=1200, n_months=24, open_ramp_months=0, open_season=0.0)
    assert schedule(flat).tolist() == [50] * 24
    # 1,201 does not divide: the one left over goes to the earliest month of the largest remainder
    assert schedule(SimConfig(n_borrowers=1201, n_months=24, open_ramp_months=0, open_season=0.0)).tolist() \
        == [51] + [50] * 23


def test_the_seasonal_swing_peaks_in_its_month_of_the_year():
    cfg = SimConfig(n_borrowers=24_000, n_months=24, open_ramp_months=0, open_season=0.2, open_season_peak=10)
    c = schedule(cfg)
    # 1000 a month on average, times 1 + 0.2 cos(2 pi (month of year - 10) / 12)
    assert c[10] == c[22] == 1200 and c[4] == c[16] == 800
    assert c[[1, 7, 13, 19]].tolist() == [1000] * 4
    assert c.sum() == 24_000


def test_a_young_book_ramps_up_to_its_steady_count():
    cfg = SimConfig(n_borrowers=10_000, n_months=20, open_ramp_months=10, open_ramp_start=0.3, open_season=0.0)
    c = schedule(cfg)
    # weights 0.37, 0.44, ..., 1.0 for months 0..9, then 1.0: month 0 opens 37% of a steady month's count
    steady = 10_000 / (sum(0.3 + 0.07 * (t + 1) for t in range(10)) + 10)
    assert abs(c[0] - 0.37 * steady) <= 1 and abs(c[4] - 0.65 * steady) <= 1
    assert (np.diff(c[:10]) > 0).all() and np.ptp(c[10:]) <= 1
    assert c.sum() == 10_000


def test_one_cohort_and_a_closed_origination_window():
    assert schedule(SimConfig(n_borrowers=300, n_months=12, open_months=1)).tolist() == [300] + [0] * 11
    c = schedule(SimConfig(n_borrowers=600, n_months=12, open_months=4, open_ramp_months=0, open_season=0.0))
    assert c.tolist() == [150] * 4 + [0] * 8


def test_ids_open_in_order_and_the_panel_follows_the_schedule():
    cfg = SimConfig(n_borrowers=3000, n_months=16, seed=2, block_size=256, chunk_borrowers=512)
    start = start_months(cfg)
    assert (np.diff(start) >= 0).all() and np.bincount(start, minlength=16).tolist() == schedule(cfg).tolist()
    p = simulate(cfg).panel
    first = p.groupby("borrower_id")["month"].min().to_numpy()
    assert (first == start).all()
    assert (p["months_on_book"].to_numpy() == p["month"].to_numpy() - np.repeat(start, 16 - start)).all()
    # the platform decides nothing in an account's opening month
    assert (p.loc[p["months_on_book"] == 0, "status"] == "normal").all()
    # counts per month of the panel: every account open by then, each once
    assert p.groupby("month").size().tolist() == np.cumsum(schedule(cfg)).tolist()
