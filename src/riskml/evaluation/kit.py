"""One scoring kit per trained model: the compiled scorer and the factor explainer, built once.

A training run scores the same model many times (out-of-fold and validation
rows, oracle gap, fidelity on the test set and on each scenario's portfolio,
the what-if, the report's tables and the reference profile). Each of those
steps used to build its own factor explainer (dump the trees, compile the
TreeSHAP tables: about a second for the default model) and to score with
``Booster.predict``. Here both are built once per model from one dump of its
trees, and the model's :meth:`~riskml.training.models.FittedModel.predict_proba`
is pointed at the compiled scorer (:class:`riskml.explain.predictor.TreePredictor`:
the raw scores bit for bit equal to LightGBM's, many times faster).
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from riskml.explain import trees
from riskml.explain.predictor import TreePredictor
from riskml.explain.reasons import FactorExplainer

#: booster -> (its dump, {frozen feature_factors: explainer}); weak, so a model's kit goes with the model
_KITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kit(booster: Any) -> tuple[dict, dict]:
    if booster not in _KITS:
        _KITS[booster] = (trees.dump_model(booster), {})
    return _KITS[booster]


def attach_scorer(model: Any) -> Any:
    """Point a LightGBM ``model``'s ``predict_proba`` at the compiled scorer; other models unchanged.

    Returns ``model``. The scorer falls back to ``Booster.predict`` itself where it does not compile a
    model (linear trees, other objectives), so the probabilities are LightGBM's either way.
    """
    if model.kind == "lightgbm" and model.scorer is None:
        model.scorer = TreePredictor(model.booster, dump=_kit(model.booster)[0]).predict
    return model


def explainer(model: Any, feature_factors: Mapping[str, str]) -> FactorExplainer:
    """The factor explainer of a LightGBM ``model`` with ``feature_factors``, built on first use and kept."""
    dump, explainers = _kit(model.booster)
    key = tuple(sorted(feature_factors.items()))
    if key not in explainers:
        explainers[key] = FactorExplainer(model.booster, dict(feature_factors), dump=dump)
    return explainers[key]
