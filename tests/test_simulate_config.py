"""Config validation: bad values fail before any work, naming key, value and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from riskml.exceptions import ConfigError
from riskml.simulate import EngineParams, SimConfig


@pytest.fixture
def cfg(compose):
    return compose("generate")


def with_(cfg, **kv):
    c = OmegaConf.to_container(cfg)
    c.update(kv)
    return OmegaConf.create(c)


def test_yaml_defaults_equal_the_dataclass_defaults(cfg):
    sim = SimConfig.from_cfg(cfg)
    assert sim.engine == EngineParams()
    expect = dataclasses.replace(SimConfig(), chunk_borrowers=sim.chunk_borrowers)
    assert sim == expect


@pytest.mark.parametrize("key, value, match", [
    ("n_borrowers", -1, r"'n_borrowers': got -1; expected a whole number >= 1"),
    ("n_borrowers", 2.5, r"'n_borrowers': got 2.5"),
    ("seed", -3, r"'seed': got -3"),
    ("workers", 0, r"'workers': got 0"),
    ("n_months", 8, r"'n_months': got 8; expected more than horizon \(3\) \+ min_history \(6\)"),
    ("horizon", 0, r"'horizon': got 0"),
    ("n_months", 1000, r"'n_months': got 1000; expected a whole number in \[1, 240\]"),
    ("type_mix", {"steady": 1.0, "lucky": 0.5}, r"'type_mix'.*unknown \['lucky'\]"),
    ("open_months", 60, r"'open_months': got 60; expected a whole number in \[1, 48\]"),
    ("open_ramp_start", 0.0, r"'open_ramp_start': got 0.0; expected a share in \(0, 1\]"),
    ("open_season", 1.0, r"'open_season': got 1.0; expected a swing in \[0, 1\)"),
    ("open_season_peak", 12, r"'open_season_peak': got 12; expected a whole number in \[0, 11\]"),
])
def test_bad_top_level_values(cfg, key, value, match):
    with pytest.raises(ConfigError, match=match):
        SimConfig.from_cfg(with_(cfg, **{key: value}))


def test_bad_scenario_and_engine_values(cfg):
    c = OmegaConf.to_container(cfg)
    c["scenario"]["tighten_month"] = 50
    with pytest.raises(ConfigError, match=r"'tighten_month': got 50; expected a whole number in \[0, 47\]"):
        SimConfig.from_cfg(OmegaConf.create(c))
    c = OmegaConf.to_container(cfg)
    c["scenario"]["name"] = "boom"
    with pytest.raises(ConfigError, match=r"'scenario': got 'boom'; expected one of \['baseline'"):
        SimConfig.from_cfg(OmegaConf.create(c))
    c = OmegaConf.to_container(cfg)
    c["engine"]["recover"] = 1.5
    with pytest.raises(ConfigError, match=r"'engine.recover': got 1.5; expected a number in \[0, 1\]"):
        SimConfig.from_cfg(OmegaConf.create(c))
    c = OmegaConf.to_container(cfg)
    c["engine"]["overdue_bais"] = -3
    with pytest.raises(ConfigError, match=r"'engine.overdue_bais'.*expected a known key"):
        SimConfig.from_cfg(OmegaConf.create(c))


def test_manifest_round_trip():
    sim = SimConfig(n_borrowers=123, n_months=15, seed=9, scenario="maintenance", maintenance_months=(4, 7),
                    type_mix=(0.5, 0.2, 0.1, 0.1, 0.1))
    assert SimConfig.from_manifest({"sim_config": sim.to_dict()}) == sim
    with pytest.raises(ConfigError, match="sim_config"):
        SimConfig.from_manifest({})


def test_chunks_are_whole_blocks():
    assert SimConfig(block_size=64, chunk_borrowers=200).chunk_blocks == 3
    assert SimConfig(block_size=64, chunk_borrowers=10).chunk_blocks == 1
    assert SimConfig(n_borrowers=130, block_size=64).n_blocks == 3


def test_a_manifest_from_before_the_origination_schedule_is_one_cohort():
    old = SimConfig(n_borrowers=40, n_months=12).to_dict()
    for k in ("open_months", "open_ramp_months", "open_ramp_start", "open_season", "open_season_peak"):
        old.pop(k)
    assert SimConfig.from_manifest({"sim_config": old}).open_months == 1
