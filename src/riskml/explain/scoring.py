"""Score borrower histories with a trained model: probabilities, band,
reasons in the documented factors, advice and the what-if of following it.

Stage code: frames in, frames out; no files, no MLflow. ``riskml.predict``
streams an input through :func:`score_histories` chunk by chunk.

Accounts that are normal at the snapshot month get the status model's
P(normal), P(suspended), P(closed) and the reasons that push towards an
adverse outcome. Suspended or closed accounts get, when a recovery model is
given, P(normal again within 6 months) and the reasons that stand in the way
of recovery. Each actionable reason carries the catalogue's advice and the
probability after rescoring with that factor rectified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskml import factors
from riskml.exceptions import ModelError
from riskml.explain.reasons import FactorExplainer, adverse_contributions, advice_for, check_top_k, top_reasons
from riskml.features.snapshots import build_features
from riskml.features.windows import DEFAULT_WINDOWS, feature_specs, rectify
from riskml.schema import STATUSES, class_probabilities, prediction_schema
from riskml.training.calibration import Calibrator
from riskml.training.scorecard import Bands, PointsScale

ACTIONABLE = {f: advice_for(f)[0] for f in factors.CATALOGUE}
ADVICE = {f: advice_for(f)[1] for f in factors.CATALOGUE}
LABEL = {f: factors.CATALOGUE[f].name for f in factors.CATALOGUE}


@dataclass
class ScoringModel:
    """A loaded model with what scoring needs from its manifest."""

    booster: lgb.Booster
    manifest: dict[str, Any]
    explainer: FactorExplainer = field(init=False)
    folder: Any = None  # where the model's files are (its reference profile lies beside model.txt)

    def __post_init__(self) -> None:
        self.features: list[str] = list(self.manifest["features"])
        self.feature_factors: dict[str, str] = dict(self.manifest["feature_factors"])
        self.classes: list[str] = [str(c) for c in self.manifest["classes"]]
        self.windows = tuple(self.manifest.get("windows") or DEFAULT_WINDOWS)
        self.specs = feature_specs(self.windows)
        booster_features = self.booster.feature_name()
        if booster_features != self.features:
            raise ModelError(f"model.txt features {booster_features[:5]}... differ from the manifest's "
                             f"{self.features[:5]}...; the model folder is inconsistent")
        self.explainer = FactorExplainer(self.booster, self.feature_factors)
        self.calibrator = Calibrator.from_dict(self.manifest.get("calibration"))

    @property
    def name(self) -> str:
        return str(self.manifest.get("model_name") or self.manifest.get("name") or "riskml")

    @property
    def version(self) -> str:
        return str(self.manifest.get("model_version") or self.manifest.get("version") or "")

    def proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), calibrated as the manifest says; binary: two columns."""
        p = class_probabilities(self.booster.predict(X[self.features], num_threads=0))
        return p if self.calibrator is None else self.calibrator.apply_proba(p)

    def positive(self, proba: np.ndarray) -> np.ndarray:
        """P(the outcome the model is about): adverse for status models, recovery for recovery models."""
        return 1.0 - proba[:, 0]


def check_features(model: ScoringModel, feature_names: Sequence[str], *, source: str) -> None:
    """Fail before any work when the input's features cannot feed the model."""
    missing = [f for f in model.features if f not in set(feature_names)]
    if missing:
        raise ModelError(
            f"{source}: the model {model.name!r} needs {len(missing)} feature(s) that riskml's feature "
            f"builder does not make from panel histories, e.g. {missing[:5]}; was it trained on another data set "
            "(a tabular model) or with other feature windows?")


def _reasons(model: ScoringModel, X: pd.DataFrame, proba: np.ndarray, *, k: int, sign: float,
             what_if: bool, include_other: bool) -> pd.DataFrame:
    """Wide reason columns for rows of ``X``: factor, label, contribution, advice, p_after."""
    contrib = model.explainer.contributions(X[model.features])
    adverse = adverse_contributions(contrib, proba, adverse_classes=tuple(range(1, proba.shape[1])))
    if sign < 0:
        adverse = recovery_side(adverse, model.explainer.factors)
    # sign=+1: reasons raise P(adverse). sign=-1 (recovery): reasons lower P(recovery).
    long = top_reasons(sign * adverse, model.explainer.factors, k=k, include_other=include_other)
    out = pd.DataFrame(index=pd.RangeIndex(len(X)))
    base = model.positive(proba)
    for rank in range(1, k + 1):
        r = long[long["rank"] == rank].set_index("row")
        fid = r["factor"].reindex(out.index)
        out[f"reason_{rank}"] = fid.astype("string")
        out[f"reason_{rank}_label"] = r["label"].reindex(out.index).astype("string")
        out[f"reason_{rank}_contribution"] = (sign * r["contribution"]).reindex(out.index).astype("float64")
        out[f"reason_{rank}_actionable"] = fid.map(ACTIONABLE)  # dict lookups, not a Python call per row
        out[f"reason_{rank}_advice"] = fid.map(ADVICE)
        out[f"reason_{rank}_p_after"] = np.nan
    if what_if:
        for fid in model.explainer.factors:
            if not factors.CATALOGUE.get(fid, factors.CATALOGUE[factors.OTHER]).actionable:
                continue
            for rank in range(1, k + 1):
                rows = np.flatnonzero((out[f"reason_{rank}"] == fid).fillna(False).to_numpy())
                if rows.size == 0:
                    continue
                Xf = rectify(X.iloc[rows], fid, model.specs)
                out.loc[rows, f"reason_{rank}_p_after"] = model.positive(model.proba(Xf))
    out["_base"] = base
    return out


#: Platform-side causes. On the recovery side they are a reason by the cause on record only
#: (:func:`recovery_rule`), never a learned one: in the platform's rules a line down for the user's
#: own cause comes back on that cause's terms, whatever the policy or an outage.
PLATFORM_SIDE = ("policy_tightening", "maintenance")
#: P(recovery) that the platform's own rules set (``DOMAIN.md``, Recovery): a maintenance suspension clears
#: by itself once the system is fixed; a closure for fraud or agreement violation is permanent.
RULE_RECOVERY = {"maintenance": 1.0, "agreement_violation": 0.0}


def recovery_side(contrib: np.ndarray, factor_ids: Sequence[str]) -> np.ndarray:
    """Factor contributions to P(recovery) with the platform-side factors' set to 0 (never a learned reason)."""
    return np.where(np.isin(np.asarray(factor_ids), PLATFORM_SIDE), 0.0, contrib)


def recovery_rule(status, cause, maintenance, months_in_status, explained) -> tuple[np.ndarray, np.ndarray]:
    """The rules of the recovery side: which rows the cause on record explains, and rule-set P(recovery).

    Platform-side causes (maintenance, policy tightening) and permanent ones (fraud) are explained as
    such, not as the user's behaviour (``DESIGN.md``): the cause on record is the reason. P(recovery) is
    a rule where the platform's rule fixes it and the training history rarely or never shows the case
    (an outage month, a fraud closure that reopens), so a learned probability could only smear it: a
    maintenance suspension clears by itself, a fraud closure is permanent; whether a policy closure
    reopens (the line in force) is the model's estimate. A row where no factor of the user's stands in
    the way (``explained`` false) also gets the cause on record: the notice always names why a line is
    down. Maintenance is the cause on record or, with none on record, a suspension that began this very
    month with the maintenance flag set.

    Returns:
        ``(factor, p_recovery)``: the reason's factor id (None: the model's reasons stand) and the
        rule's P(recovery) (NaN: the model's).

    >>> f, p = recovery_rule(["suspended", "closed", "closed", "closed", "suspended"],
    ...                      [None, "agreement_violation", "overdue", "policy_tightening", "abnormal_use"],
    ...                      [1, 0, 0, 0, 0], [1, 9, 3, 2, 4], [True, True, True, True, False])
    >>> f.tolist(), p.tolist()
    (['maintenance', 'agreement_violation', None, 'policy_tightening', 'abnormal_use'], [1.0, 0.0, nan, nan, nan])
    """
    status, cause = np.asarray(status, dtype=object), pd.Series(np.asarray(cause, dtype=object)).astype(object)
    unknown = cause.isna().to_numpy()
    cause = cause.fillna("").to_numpy()
    flagged = (np.asarray(maintenance, dtype=float) > 0) & (np.asarray(months_in_status, dtype=float) <= 1)
    maint = (status == "suspended") & ((cause == "maintenance") | (unknown & flagged))
    fraud = (status == "closed") & (cause == "agreement_violation")
    policy = (status == "closed") & (cause == "policy_tightening")
    silent = ~np.asarray(explained, dtype=bool) & ~unknown
    factor = np.select([maint, fraud, policy, silent], ["maintenance", "agreement_violation", "policy_tightening",
                                                        cause], None).astype(object)
    p = np.select([maint, fraud], [RULE_RECOVERY["maintenance"], RULE_RECOVERY["agreement_violation"]], np.nan)
    return factor, p


def _cause_at(panel: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """The cause on record at each key's month (NA without a ``cause`` column)."""
    if "cause" not in panel.columns:
        return np.full(len(keys), None, dtype=object)
    got = keys[["borrower_id", "month"]].merge(panel[["borrower_id", "month", "cause"]], how="left",
                                               on=["borrower_id", "month"])
    return got["cause"].astype(object).to_numpy()


def score_histories(panel: pd.DataFrame, model: ScoringModel, recovery: ScoringModel | None = None, *,
                    status: ScoringModel | None = None, as_of: int | None = None, top_k: int = 3,
                    what_if: bool = True, include_other: bool = False, scale: PointsScale = PointsScale(),
                    bands: Bands = Bands(), name: str | None = None, version: str | None = None) -> pd.DataFrame:
    """One prediction row per borrower of a validated panel chunk.

    Args:
        panel: borrower-month rows that passed validation (any number of months each).
        model: the model of P(adverse) for accounts normal at the snapshot, whose
            reasons and what-ifs are given: the binary ``adverse_3m`` model (monotone in
            each factor's direction, so following advice never raises it) or a
            multiclass ``status_3m`` model.
        recovery: the ``recovery_6m`` model for suspended/closed accounts, or None.
        status: a multiclass ``status_3m`` model that splits a binary model's
            P(adverse) into P(suspended) and P(closed); None leaves them empty.
        as_of: snapshot month (default: each borrower's last month).
        top_k: reasons per borrower, 1..4.
        what_if: rescore each actionable reason with its factor rectified.
        include_other: let the non-documented ``other`` pseudo-factor be a reason.
        scale: the points scale of ``score_points`` (from P(adverse)).
        bands: the risk bands, cut on P(adverse) or on points.
        name, version: the model name and version written on every row (default: ``model``'s).

    Returns:
        A frame ordered like the borrowers' first appearance, with the prediction contract's columns.
    """
    check_top_k(top_k)
    snaps = build_features(panel, as_of=as_of, windows=model.windows)
    keys, X = snaps.keys.reset_index(drop=True), snaps.X.reset_index(drop=True)
    n = len(keys)
    out = pd.DataFrame({
        "borrower_id": keys["borrower_id"].to_numpy(),
        "as_of_month": keys["month"].to_numpy(),
        "status": keys["status"].astype("string").to_numpy(),
    })
    for c in ("p_normal", "p_suspended", "p_closed", "p_adverse", "score_points", "p_recovery_6m"):
        out[c] = np.nan
    out["risk_band"] = pd.array([pd.NA] * n, dtype="string")
    reason_frames = []

    normal = np.flatnonzero((out["status"] == "normal").to_numpy())
    if normal.size:
        Xn = X.iloc[normal]
        proba = model.proba(Xn)
        p_adv = model.positive(proba)
        if proba.shape[1] == len(STATUSES):
            out.loc[normal, ["p_normal", "p_suspended", "p_closed"]] = proba
        else:
            out.loc[normal, "p_normal"] = proba[:, 0]
            if status is not None:  # split P(adverse) by the status model's odds of closure vs suspension
                sp = status.proba(Xn)
                closed = np.divide(sp[:, 2], sp[:, 1] + sp[:, 2], out=np.full(len(sp), 0.5),
                                   where=sp[:, 1] + sp[:, 2] > 0)
                out.loc[normal, "p_suspended"] = p_adv * (1 - closed)
                out.loc[normal, "p_closed"] = p_adv * closed
        out.loc[normal, "p_adverse"] = p_adv
        points = scale.points(p_adv)
        out.loc[normal, "score_points"] = points
        out.loc[normal, "risk_band"] = bands.assign(p_adverse=p_adv, points=points)
        r = _reasons(model, Xn.reset_index(drop=True), proba, k=top_k, sign=+1.0, what_if=what_if,
                     include_other=include_other)
        reason_frames.append(r.set_index(normal))

    blocked = np.flatnonzero((out["status"] != "normal").to_numpy())
    if blocked.size:
        out.loc[blocked, "risk_band"] = out.loc[blocked, "status"]
        if recovery is not None:
            Xb = X.iloc[blocked]
            proba = recovery.proba(Xb)
            out.loc[blocked, "p_recovery_6m"] = recovery.positive(proba)
            r = _reasons(recovery, Xb.reset_index(drop=True), proba, k=top_k, sign=-1.0, what_if=what_if,
                         include_other=include_other)
            rule, p_rule = recovery_rule(out.loc[blocked, "status"], _cause_at(panel, keys.iloc[blocked]),
                                         Xb["maintenance"], Xb["months_in_status"], r["reason_1"].notna())
            fixed, ruled = np.flatnonzero(~np.isnan(p_rule)), np.flatnonzero(pd.notna(rule))
            out.loc[blocked[fixed], "p_recovery_6m"] = p_rule[fixed]
            # the cause on record is the one reason, with the catalogue's text; no contribution (not the model's)
            r.iloc[ruled, [r.columns.get_loc(c) for c in r.columns if c.startswith("reason_")]] = np.nan
            why = pd.Series(rule[ruled])
            r.loc[ruled, "reason_1"] = why.to_numpy()
            for col, text in (("label", LABEL), ("actionable", ACTIONABLE), ("advice", ADVICE)):
                r.loc[ruled, f"reason_1_{col}"] = why.map(text).to_numpy()
            reason_frames.append(r.set_index(blocked))

    if reason_frames:
        reasons = pd.concat(reason_frames).sort_index().reindex(out.index).drop(columns="_base")
    else:  # no row to explain: the contract's reason columns, empty
        empty = prediction_schema(top_k).empty_table().to_pandas()
        reasons = empty[[c for c in empty.columns if c.startswith("reason_")]].reindex(out.index)
    out = pd.concat([out, reasons], axis=1)
    out["model_name"] = model.name if name is None else name
    out["model_version"] = model.version if version is None else version
    return out


@dataclass
class ScoringSystem:
    """What scores a portfolio: the adverse model (P(adverse), reasons, what-ifs), the status model
    (its split into suspended and closed) and the recovery model (suspended and closed accounts),
    trained together and registered as one model version (``riskml.edge.model_store``)."""

    adverse: ScoringModel
    status: ScoringModel | None = None
    recovery: ScoringModel | None = None
    name: str = "riskml"
    version: str = ""
    checksums: str = ""  # sha256 of the system folder's checksums.json: one value for every file
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is not None and len(self.status.classes) != len(STATUSES):
            raise ModelError(f"system {self.name!r}: the status model has classes {self.status.classes}; "
                             f"expected the {len(STATUSES)} classes {list(STATUSES)}")
        names = [spec.name for spec in feature_specs(self.adverse.windows)]
        for role, m in (("adverse", self.adverse), ("status", self.status), ("recovery", self.recovery)):
            if m is not None:
                check_features(m, names, source=f"system {self.name!r}, {role} model")

    @property
    def windows(self) -> tuple[int, ...]:
        return self.adverse.windows

    def score(self, panel: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """:func:`score_histories` of validated panel rows with this system's three models."""
        return score_histories(panel, self.adverse, self.recovery, status=self.status, name=self.name,
                               version=self.version, **options)

