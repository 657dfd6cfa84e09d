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

from dataclasses import InitVar, dataclass, field
from typing import Any, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskml import factors
from riskml.exceptions import ModelError, SchemaError
from riskml.explain import trees
from riskml.explain.predictor import TreePredictor
from riskml.explain.recovery import cause_at, recovery_rule, recovery_side
from riskml.explain.reasons import FactorExplainer, adverse_contributions, advice_for, check_top_k, rank_factors
from riskml.features.snapshots import build_features
from riskml.features.windows import DEFAULT_WINDOWS, feature_specs, rectify_array
from riskml.schema import STATUSES, category_dtype, class_probabilities
from riskml.measure.calibration import Calibrator
from riskml.measure.whatif_map import WhatIfModel
from riskml.measure.scale import Bands, PointsScale



@dataclass
class ScoringModel:
    """A loaded model with what scoring needs from its manifest: the compiled
    scorer (:class:`TreePredictor`) and the factor explainer."""

    booster: lgb.Booster
    manifest: dict[str, Any]
    predictor: TreePredictor = field(init=False)
    folder: Any = None  # where the model's files are (its reference profile lies beside model.txt)
    #: False: the explainer's tables are built on first use (a status model that only splits
    #: P(adverse) into suspended and closed never needs them: a third of opening a system)
    explain_now: InitVar[bool] = True
    _explainer: FactorExplainer | None = field(init=False, default=None, repr=False)

    @property
    def explainer(self) -> FactorExplainer:
        """The factor explainer (TreeSHAP tables with the factors as players)."""
        if self._explainer is None:
            self._explainer = FactorExplainer(self.booster, self.feature_factors)
        return self._explainer

    def __post_init__(self, explain_now: bool) -> None:
        self.features: list[str] = list(self.manifest["features"])
        self.feature_factors: dict[str, str] = dict(self.manifest["feature_factors"])
        self.classes: list[str] = [str(c) for c in self.manifest["classes"]]
        self.windows = tuple(self.manifest.get("windows") or DEFAULT_WINDOWS)
        self.signals = dict(self.manifest.get("signals") or {})  # a lender's own columns, its generic plan
        self.specs = feature_specs(self.windows, self.signals)
        booster_features = self.booster.feature_name()
        if booster_features != self.features:
            raise ModelError(f"model.txt features {booster_features[:5]}... differ from the manifest's "
                             f"{self.features[:5]}...; the model folder is inconsistent")
        # the explainer and the scorer read one dump of the trees (dumping and parsing it: a third of opening)
        dump = trees.dump_model(self.booster)
        if explain_now:
            self._explainer = FactorExplainer(self.booster, self.feature_factors, dump=dump)
        self.predictor = TreePredictor(self.booster, dump=dump)
        self.calibrator = Calibrator.from_dict(self.manifest.get("calibration"))
        self.whatif_model = WhatIfModel.from_dict(self.manifest.get("whatif_model"))

    @property
    def name(self) -> str:
        return str(self.manifest.get("model_name") or self.manifest.get("name") or "riskml")

    @property
    def version(self) -> str:
        return str(self.manifest.get("model_version") or self.manifest.get("version") or "")

    def matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's features of ``X`` as one array, in the model's order (see :meth:`TreePredictor.matrix`)."""
        return self.predictor.matrix(X)

    def calibrated(self, p: np.ndarray) -> np.ndarray:
        """Class probabilities as the manifest's calibrator (fitted on the validation split) maps them."""
        return p if self.calibrator is None else self.calibrator.apply_proba(p)

    def proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), calibrated; a binary model gives two columns."""
        return self.calibrated(class_probabilities(self.predictor.predict(X)))

    def score(self, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Raw scores (None when LightGBM itself scores the model) and class probabilities of a matrix."""
        if self.predictor.method_ != "compiled":
            return None, self.proba(X)
        raw = self.predictor.raw(X)
        return raw, self.calibrated(class_probabilities(self.predictor.link(raw)))

    def positive(self, proba: np.ndarray) -> np.ndarray:
        """P(the outcome the model is about): adverse for status models, recovery for recovery models."""
        return 1.0 - proba[:, 0]

    def what_if(self, X: np.ndarray, raw: np.ndarray | None, factor: str) -> np.ndarray:
        """P(outcome) of rows of :meth:`matrix` ``X`` (raw scores ``raw``) with ``factor`` rectified.

        A what-if changes only the factor's features, so only the trees that
        split on one of them can change: the rows are rescored on those trees
        (before and after, in one pass) and the rest of the raw score is kept.
        A model whose manifest has a learned what-if (the change the advice makes,
        learned from the simulator's intervention data: ``riskml.measure.whatif_map``)
        adds that change to P(outcome) for a borrower who starts to follow the advice now.
        """
        cols = [j for j, f in enumerate(self.features) if self.feature_factors[f] == factor]
        if raw is None:  # LightGBM scores this model: rescore the rectified rows whole
            rect = self.positive(self.proba(rectify_array(X, self.features, factor, self.specs)))
            before = rect if self.whatif_model is None else self.positive(self.proba(X))
        else:
            trees = self.predictor.trees_using(cols)
            both = np.concatenate([X, rectify_array(X, self.features, factor, self.specs)])
            part = self.predictor.raw(both, trees=trees)
            after = raw + part[len(X):] - part[:len(X)]
            rect = self.positive(self.calibrated(class_probabilities(self.predictor.link(after))))
            if self.whatif_model is None:
                return rect
            before = self.positive(self.calibrated(class_probabilities(self.predictor.link(raw))))
        return rect if self.whatif_model is None else self.whatif_model.apply(X, factor, before, rect)


def check_features(model: ScoringModel, feature_names: Sequence[str], *, source: str) -> None:
    """Fail before any work when the input's features cannot feed the model."""
    missing = [f for f in model.features if f not in set(feature_names)]
    if missing:
        raise ModelError(
            f"{source}: the model {model.name!r} needs {len(missing)} feature(s) that riskml's feature "
            f"builder does not make from panel histories, e.g. {missing[:5]}; was it trained on another data set "
            "(a tabular model) or with other feature windows?")


class _Reasons:
    """The reason columns of a chunk as arrays: factor codes into ``ids`` (-1: none), contributions,
    p_after. ``ids`` is fixed (the catalogue's factors, then any other of the models), so every
    bucket writes the same dictionary."""

    def __init__(self, n: int, k: int, ids: list[str]):
        self.ids, self.k = ids, k
        self.code = np.full((n, k), -1, dtype=np.int32)
        self.contribution = np.full((n, k), np.nan)
        self.p_after = np.full((n, k), np.nan)

    def fill(self, rows: np.ndarray, model: ScoringModel, X: np.ndarray, raw: np.ndarray | None,
             proba: np.ndarray, *, sign: float, what_if: bool, include_other: bool) -> None:
        """Reasons of ``rows`` (positions in the chunk) scored by ``model`` on its matrix ``X``."""
        contrib = model.explainer.contributions(X)
        adverse = adverse_contributions(contrib, proba, adverse_classes=tuple(range(1, proba.shape[1])))
        if sign < 0:  # the recovery side: platform-side factors are never a learned reason
            adverse = recovery_side(adverse, model.explainer.factors)
        # sign=+1: reasons raise P(adverse). sign=-1 (recovery): reasons lower P(recovery).
        order, vals = rank_factors(sign * adverse, model.explainer.factors, k=self.k, include_other=include_other)
        to_id = np.array([self.ids.index(f) for f in model.explainer.factors] + [-1], dtype=np.int32)
        self.code[rows] = to_id[order]  # order -1 picks the appended -1
        self.contribution[rows] = sign * vals
        if not what_if:
            return
        for j, fid in enumerate(model.explainer.factors):
            if not factors.CATALOGUE.get(fid, factors.CATALOGUE[factors.OTHER]).actionable:
                continue
            r, rank = np.nonzero(order == j)  # a factor is at most one reason of a row
            if r.size:
                self.p_after[rows[r], rank] = model.what_if(X[r], None if raw is None else raw[r], fid)

    def set_rule(self, rows: np.ndarray, factor_ids: np.ndarray) -> None:
        """``rows`` get one reason, the rule's factor (no contribution: not the model's; no what-if)."""
        self.code[rows] = -1
        self.contribution[rows] = np.nan
        self.p_after[rows] = np.nan
        self.code[rows, 0] = [self.ids.index(f) for f in factor_ids]

    def columns(self) -> dict[str, Any]:
        known = [f in factors.CATALOGUE for f in self.ids]
        labels = [factors.CATALOGUE[f].name if ok else f for f, ok in zip(self.ids, known)]
        # actionable per factor: 1/0, -1 (NA) for a factor the catalogue does not know and for no reason
        actionable = np.array([int(advice_for(f)[0]) if ok else -1 for f, ok in zip(self.ids, known)] + [-1])
        advice = [advice_for(f)[1] if ok else "" for f, ok in zip(self.ids, known)]
        advice_code = np.array([i if ok else -1 for i, ok in enumerate(known)] + [-1], dtype=np.int32)
        out: dict[str, Any] = {}
        ids_dt, labels_dt, advice_dt = (category_dtype(tuple(v)) for v in (self.ids, labels, advice))
        for i in range(self.k):
            c = self.code[:, i]
            out[f"reason_{i + 1}"] = pd.Categorical.from_codes(c, dtype=ids_dt)
            out[f"reason_{i + 1}_label"] = pd.Categorical.from_codes(c, dtype=labels_dt)
            out[f"reason_{i + 1}_contribution"] = self.contribution[:, i]
            out[f"reason_{i + 1}_actionable"] = pd.arrays.BooleanArray(actionable[c] == 1, actionable[c] < 0)
            out[f"reason_{i + 1}_advice"] = pd.Categorical.from_codes(advice_code[c], dtype=advice_dt)
            out[f"reason_{i + 1}_p_after"] = self.p_after[:, i]
        return out


def reason_ids(*models: ScoringModel | None) -> list[str]:
    """The factor ids reasons can name: the catalogue's, then any other factor of ``models`` (sorted)."""
    extra = {f for m in models if m is not None for f in m.explainer.factors if f not in factors.CATALOGUE}
    return list(factors.factor_ids()) + sorted(extra)


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=category_dtype((value,)))


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
        A frame ordered like the borrowers' first appearance, with the prediction contract's columns
        (the reason, label, advice and model columns as categoricals: a few distinct values each).
    """
    check_top_k(top_k)
    snaps = build_features(panel, as_of=as_of, windows=model.windows, signals=model.signals)
    keys, X = snaps.keys, snaps.X
    n = len(keys)
    st = np.asarray(keys["status"].cat.codes, dtype=np.int64)  # status codes, in STATUSES order
    if (st < 0).any():  # no row at as_of: the state that month is unknown, and never made up
        who = keys["borrower_id"].to_numpy()[st < 0]
        raise SchemaError(f"score_histories: {len(who)} borrower(s) have no row at as_of={as_of}, e.g. "
                          f"borrower_id {who[0]!r}; expected a row in the month scored (a batch job rejects them)")
    p = {c: np.full(n, np.nan) for c in ("p_normal", "p_suspended", "p_closed", "p_adverse", "score_points",
                                         "p_recovery_6m")}
    band_names = list(dict.fromkeys([*bands.labels, *STATUSES]))
    codes = np.array([band_names.index(s) for s in STATUSES])[st]  # down accounts: their status as band
    reasons = _Reasons(n, top_k, reason_ids(model, recovery))

    matrices: dict[tuple[str, ...], np.ndarray] = {}

    def matrix(m: ScoringModel) -> np.ndarray:  # one array per feature order: the models share theirs
        key = tuple(m.features)
        if key not in matrices:
            matrices[key] = m.matrix(X)
        return matrices[key]

    normal = np.flatnonzero(st == 0)
    if normal.size:
        _score_normal(normal, model, status, matrix, p, codes, reasons, band_names=band_names, scale=scale,
                      bands=bands, what_if=what_if, include_other=include_other)
    blocked = np.flatnonzero(st != 0)
    if blocked.size and recovery is not None:
        _score_blocked(blocked, recovery, matrix, p, reasons, status_names=np.asarray(STATUSES, dtype=object)[st],
                       cause=cause_at(panel, keys), X=X, what_if=what_if, include_other=include_other)

    return pd.DataFrame({
        "borrower_id": keys["borrower_id"].to_numpy(),
        "as_of_month": keys["month"].to_numpy(),
        "status": np.asarray(STATUSES, dtype=object)[st],  # short strings: cheap as objects, and comparable
        **{c: p[c] for c in ("p_normal", "p_suspended", "p_closed", "p_adverse", "score_points")},
        "p_recovery_6m": p["p_recovery_6m"],
        "risk_band": np.asarray(band_names, dtype=object)[codes],
        **reasons.columns(),
        "model_name": _constant(model.name if name is None else name, n),
        "model_version": _constant(model.version if version is None else version, n),
    }, copy=False)


def _score_normal(rows: np.ndarray, model: ScoringModel, status: ScoringModel | None, matrix, p: dict,
                  codes: np.ndarray, reasons: "_Reasons", *, band_names: list[str], scale: PointsScale,
                  bands: Bands, what_if: bool, include_other: bool) -> None:
    """Accounts normal at the snapshot: P(adverse) (split by ``status`` when ``model`` is binary), points,
    band and the reasons that raise the risk, written into ``p``, ``codes`` and ``reasons`` at ``rows``."""
    Xn = matrix(model)[rows]
    raw, proba = model.score(Xn)
    p_adv = model.positive(proba)
    if proba.shape[1] == len(STATUSES):
        p["p_normal"][rows], p["p_suspended"][rows], p["p_closed"][rows] = proba.T
    else:
        p["p_normal"][rows] = proba[:, 0]
        if status is not None:  # split P(adverse) by the status model's odds of closure vs suspension
            sp = status.proba(matrix(status)[rows])
            closed = np.divide(sp[:, 2], sp[:, 1] + sp[:, 2], out=np.full(len(sp), 0.5),
                               where=sp[:, 1] + sp[:, 2] > 0)
            p["p_suspended"][rows] = p_adv * (1 - closed)
            p["p_closed"][rows] = p_adv * closed
    p["p_adverse"][rows] = p_adv
    points = scale.points(p_adv)
    p["score_points"][rows] = points
    # each band's position among the output's band names, then each row's (no string per row)
    codes[rows] = pd.Index(band_names).get_indexer(list(bands.labels))[bands.positions(p_adv, points)]
    reasons.fill(rows, model, Xn, raw, proba, sign=+1.0, what_if=what_if, include_other=include_other)


def _score_blocked(rows: np.ndarray, recovery: ScoringModel, matrix, p: dict, reasons: "_Reasons", *,
                   status_names: np.ndarray, cause: np.ndarray, X: pd.DataFrame, what_if: bool,
                   include_other: bool) -> None:
    """Suspended and closed accounts: P(recovery) and what stands in the way, or the platform's rule for
    the cause on record (maintenance, policy, fraud), written into ``p`` and ``reasons`` at ``rows``."""
    Xb = matrix(recovery)[rows]
    raw, proba = recovery.score(Xb)
    p["p_recovery_6m"][rows] = recovery.positive(proba)
    reasons.fill(rows, recovery, Xb, raw, proba, sign=-1.0, what_if=what_if, include_other=include_other)
    rule, p_rule = recovery_rule(status_names[rows], cause[rows], X["maintenance"].to_numpy()[rows],
                                 X["months_in_status"].to_numpy()[rows], reasons.code[rows, 0] >= 0)
    fixed, ruled = np.flatnonzero(~np.isnan(p_rule)), np.flatnonzero(pd.notna(rule))
    p["p_recovery_6m"][rows[fixed]] = p_rule[fixed]
    # the cause on record is the one reason, with the catalogue's text; no contribution (not the model's)
    reasons.set_rule(rows[ruled], rule[ruled])


@dataclass
class ScoringSystem:
    """What scores a portfolio: the adverse model (P(adverse), reasons, what-ifs), the status model
    (its split into suspended and closed) and the recovery model (suspended and closed accounts),
    trained together and registered as one model version (``riskml.store.model_store``)."""

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
        names = [spec.name for spec in feature_specs(self.adverse.windows, self.adverse.signals)]
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

