"""Every simulation parameter in one frozen dataclass, validated where it enters.

``SimConfig.from_cfg`` reads the Hydra config of ``python -m riskml.generate``
(top-level keys, the ``scenario`` group and the ``engine`` block) and raises
:class:`~riskml.exceptions.ConfigError` naming the key, the value and what is
allowed before any work starts. ``to_dict`` / ``from_dict`` round-trip it
through a data set's manifest so the oracle can be run later.

Example:
    >>> cfg = SimConfig(n_borrowers=100, n_months=12)
    >>> SimConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from omegaconf import OmegaConf

from riskml.exceptions import ConfigError, whole_number
from riskml.schema import BORROWER_TYPES

SCENARIOS = ("baseline", "tightening", "maintenance")
MAX_MONTHS = 240


@dataclass(frozen=True)
class EngineParams:
    """Rates of the platform's risk engine and of recovery (``engine:`` in the config).

    Hazards are logistic in the observable signals; ``*_bias`` is the logit at
    a neutral signal, the other coefficients are per unit of the named signal.
    """

    # overdue: a limit cut at the first arrears, suspension once arrears persist (60+ days), closure at 90+
    overdue_cut: float = 0.35  # monthly cut probability of an uncut line in its first month of arrears
    overdue_bias: float = -6.0  # suspension logit at 60 days past due
    overdue_dpd: float = 3.0  # per 30 days past 60
    overdue_amount: float = 0.5  # per overdue amount / base limit
    overdue_late: float = 0.3  # per unit of the late-month memory
    escalate_bias: float = -2.8  # suspended for overdue -> closed
    escalate_dpd: float = 0.9  # per 30 days past 90
    escalate_amount: float = 1.0
    # multi-lending: lenders and applications that build up over months
    multi_bias: float = -11.5
    multi_lenders: float = 0.7  # per other lender
    multi_dti: float = 1.0  # per unit of debt-to-income above 0.5
    multi_apps: float = 0.7  # per unit of the applications memory
    # abnormal use: repeated investing with drawn money and rapid draws over recent months
    abnormal_bias: float = -8.0
    abnormal_invest: float = 1.6  # per unit of the invest-month memory
    abnormal_rapid: float = 0.2  # per unit of the rapid-draw memory
    abnormal_repeat: int = 2  # abnormal-use triggers that close instead of suspend
    # score decline: a cut on a first drop, suspension while the score stays low or keeps falling
    score_bias: float = -8.5
    score_level: float = 2.0  # per 40 points below 600
    score_drop: float = 0.6  # per 20 points of 3-month drop
    score_low: float = 0.8  # per unit of the low-score (< 600) month memory
    # policy tightening: closure of marginal accounts, those past the platform's acceptance line that a normal
    # period keeps (the line and the grade are the platform's published rule, riskml.platform)
    policy_rate: float = 0.15  # monthly closure hazard of a marginal account while the platform tightens
    policy_reopen: float = 0.3  # monthly reopen probability of a policy closure the current line accepts again
    # agreement violation: fraud confirmed after anomaly flags seen in recent months
    fraud_bias: float = -5.0  # closure logit in a flagged month with no earlier flags
    fraud_flags: float = 4.0  # per unit of the earlier-flag memory
    fraud_false_flag: float = 0.0001  # flag rate of accounts without fraud activity
    cut_factor: float = 0.6  # limit after a cut, as a share of the limit before
    recover: float = 0.45  # monthly restore probability once the cause is rectified
    reopen: float = 0.06  # monthly reopen probability of a closed line after clean months
    reopen_clean_months: int = 6
    restore_step: float = 0.1  # limit restored per clean month, as share of the base limit
    rectify: float = 0.7  # probability a borrower starts repairing after a decision
    rectify_months: int = 6
    # a suspension for arrears / abnormal use is rectified once its signal memory has faded below these
    rectify_late: float = 1.0  # late-month memory (about 6 on-time months after a 60-day arrears)
    rectify_invest: float = 0.5  # invest-month memory (about 5 months without investing drawn money)
    rectify_rapid: float = 2.0  # rapid-draw memory


@dataclass(frozen=True)
class SimConfig:
    """Every parameter of one simulation: size, seed, scenario, engine rates.

    ``policy_*`` give the platform's policy index path (a slow cycle, stepped
    up to ``tighten_level`` from ``tighten_month`` on in the tightening
    scenario); ``maintenance_months`` are platform-wide outage months in which
    a share ``outage_share`` of normal accounts is suspended;
    ``maintenance_rate`` is the monthly chance of a partial outage hitting an
    account in any month. ``block_size`` borrowers share one random stream and
    are the unit of determinism; chunks are whole numbers of blocks.

    ``open_*`` is the origination schedule (``riskml.simulate.book``): the
    ``n_borrowers`` accounts open month by month, borrower ids in opening
    order, in months ``0..open_months - 1`` (``None``: every month of the
    history; ``1``: one cohort opened at month 0); the monthly count ramps up
    linearly from ``open_ramp_start`` of the steady count over the first
    ``open_ramp_months`` (a young book) and swings by ``open_season`` over the
    calendar year, most openings in month-of-year ``open_season_peak``.
    """

    n_borrowers: int = 50_000
    n_months: int = 48
    seed: int = 0
    horizon: int = 3
    min_history: int = 6
    scenario: str = "baseline"
    block_size: int = 4096
    chunk_borrowers: int = 32_768
    workers: int = 1
    type_mix: tuple[float, ...] = (0.54, 0.17, 0.10, 0.025, 0.165)
    policy_base: float = 0.3
    policy_amplitude: float = 0.1
    policy_period: int = 24
    tighten_month: int | None = None
    tighten_level: float = 0.5
    maintenance_months: tuple[int, ...] = ()
    outage_share: float = 0.5
    maintenance_rate: float = 0.0008
    open_months: int | None = None
    open_ramp_months: int = 12
    open_ramp_start: float = 0.3
    open_season: float = 0.2
    open_season_peak: int = 10
    engine: EngineParams = field(default_factory=EngineParams)

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_borrowers / self.block_size)

    @property
    def chunk_blocks(self) -> int:
        """Blocks per chunk: ``chunk_borrowers`` rounded down to whole blocks (at least one)."""
        return max(1, self.chunk_borrowers // self.block_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["type_mix"] = dict(zip(BORROWER_TYPES, self.type_mix))
        d["maintenance_months"] = list(self.maintenance_months)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SimConfig":
        """Build and validate from a plain mapping (``to_dict``'s output or a manifest's)."""
        d = dict(d)
        engine = d.pop("engine", None) or {}
        _check_known(d, {f.name for f in dataclasses.fields(cls)} - {"engine"}, prefix="")
        _check_known(engine, {f.name for f in dataclasses.fields(EngineParams)}, prefix="engine.")
        if "type_mix" in d:
            d["type_mix"] = _type_mix(d["type_mix"])
        if d.get("maintenance_months") is not None:
            d["maintenance_months"] = tuple(d["maintenance_months"])
        else:
            d.pop("maintenance_months", None)
        eng = EngineParams(**{k: _number(f"engine.{k}", v) for k, v in engine.items()})
        cfg = cls(**d, engine=eng)
        cfg.validate()
        return cfg

    @classmethod
    def from_cfg(cls, cfg: Any) -> "SimConfig":
        """Build from the Hydra config of ``riskml.generate`` (a DictConfig or a dict)."""
        raw = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: raw[k] for k in names if k in raw and k not in ("scenario", "engine")}
        scen = dict(raw.get("scenario") or {})
        d["scenario"] = scen.pop("name", "baseline")
        _check_known(scen, names, prefix="scenario.")
        d.update(scen)
        d["engine"] = raw.get("engine") or {}
        return cls.from_dict(d)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "SimConfig":
        """The config a stored data set was generated with (its ``manifest.json``)."""
        if "sim_config" not in manifest:
            raise ConfigError("sim_config", None, "a manifest written by riskml.generate")
        d = dict(manifest["sim_config"])
        if "open_months" not in d:  # written before the origination schedule: one cohort, opened at month 0
            d["open_months"] = 1
        return cls.from_dict(d)

    def with_scenario(self, scenario: Mapping[str, Any], **changes: Any) -> "SimConfig":
        """This config under another scenario (a ``conf/scenario`` group's keys, ``name`` included), validated.

        ``changes`` override any other key (e.g. ``seed``, ``n_borrowers``): a fresh
        portfolio of the same platform under the scenario's policy and outage paths.
        """
        scen = dict(scenario)
        d = {**self.to_dict(), "scenario": scen.pop("name", "baseline"), **changes}
        _check_known(scen, {f.name for f in dataclasses.fields(self)} - {"engine", "scenario"}, prefix="scenario.")
        return SimConfig.from_dict({**d, **scen})

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first key whose value is not allowed."""
        whole_number("n_borrowers", self.n_borrowers, 1)
        whole_number("horizon", self.horizon, 1)
        whole_number("min_history", self.min_history, 1)
        # 20 years of monthly history: more is no credit line's record, and memory grows with it (1000 took 7 GB)
        whole_number("n_months", self.n_months, 1, MAX_MONTHS)
        if self.n_months <= self.horizon + self.min_history:
            raise ConfigError("n_months", self.n_months, f"more than horizon ({self.horizon}) + min_history "
                              f"({self.min_history}) = {self.horizon + self.min_history} months")
        whole_number("seed", self.seed, 0)
        whole_number("block_size", self.block_size, 16)
        whole_number("chunk_borrowers", self.chunk_borrowers, 1)
        whole_number("workers", self.workers, 1)
        if self.scenario not in SCENARIOS:
            raise ConfigError("scenario", self.scenario, f"one of {list(SCENARIOS)}")
        if len(self.type_mix) != len(BORROWER_TYPES) or not math.isclose(sum(self.type_mix), 1.0, abs_tol=1e-6):
            raise ConfigError("type_mix", self.type_mix, f"shares of {list(BORROWER_TYPES)} summing to 1")
        for key in ("policy_base", "policy_amplitude", "tighten_level", "outage_share", "maintenance_rate"):
            _prob(key, getattr(self, key))
        whole_number("policy_period", self.policy_period, 1)
        if self.tighten_month is not None:
            whole_number("tighten_month", self.tighten_month, 0, self.n_months - 1)
        for m in self.maintenance_months:
            whole_number("maintenance_months", m, 0, self.n_months - 1)
        if self.open_months is not None:
            whole_number("open_months", self.open_months, 1, self.n_months)
        whole_number("open_ramp_months", self.open_ramp_months, 0)
        whole_number("open_season_peak", self.open_season_peak, 0, 11)
        _prob("open_ramp_start", self.open_ramp_start)
        if self.open_ramp_start <= 0:
            raise ConfigError("open_ramp_start", self.open_ramp_start, "a share in (0, 1] of the steady monthly count")
        _prob("open_season", self.open_season)
        if self.open_season >= 1:
            raise ConfigError("open_season", self.open_season, "a swing in [0, 1): every month opens accounts")
        e = self.engine
        for key in ("overdue_cut", "fraud_false_flag", "cut_factor", "recover", "reopen", "restore_step",
                    "rectify", "policy_rate", "policy_reopen"):
            _prob(f"engine.{key}", getattr(e, key))
        for key in ("abnormal_repeat", "reopen_clean_months", "rectify_months"):
            whole_number(f"engine.{key}", getattr(e, key), 1)


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_name(name: Any) -> str:
    """A data set name must be a plain folder name."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise ConfigError("name", name, "a folder name of letters, digits, '_', '-' or '.'")
    return name


def _check_known(d: Mapping[str, Any], allowed: set[str], *, prefix: str) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{prefix}{k}", d[k], f"a known key, one of {sorted(allowed)}")


def _type_mix(v: Any) -> tuple[float, ...]:
    if isinstance(v, Mapping):
        unknown = set(v) - set(BORROWER_TYPES)
        if unknown:
            raise ConfigError("type_mix", dict(v), f"shares keyed by {list(BORROWER_TYPES)}; unknown {sorted(unknown)}")
        shares = [_number(f"type_mix.{t}", v.get(t, 0.0)) for t in BORROWER_TYPES]
    else:
        shares = [_number("type_mix", x) for x in v]
    if any(s < 0 for s in shares) or sum(shares) <= 0:
        raise ConfigError("type_mix", v, "non-negative shares with a positive sum")
    total = sum(shares)
    if abs(total - 1.0) < 1e-9:  # already shares: keep them bit for bit (manifest round trip)
        return tuple(float(s) for s in shares)
    return tuple(s / total for s in shares)


def _number(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(key, v, "a finite number")
    return v


def _prob(key: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise ConfigError(key, v, "a number in [0, 1]")
