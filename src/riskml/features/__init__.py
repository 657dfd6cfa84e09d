"""The features stage: panel -> snapshots (features from months <= t, labels from t+1..t+H).

- ``grid``: the panel as time-major month grids, the layout every feature reads;
- ``block``: a chunk's grids, read at rows ``<= t``;
- ``windows``: what each feature is (:class:`FeatureSpec`), its factor, its
  what-if rule, and how it is computed on a grid;
- ``labels``: the prediction targets and their labels;
- ``at_month``: prediction's features at one month, one compiled pass per borrower;
- ``snapshots``: the whole build, for training panels and prediction input.

The platform's acceptance rule the features measure is :mod:`riskml.platform`'s.
"""

from riskml.features.labels import TARGETS, Target, get_target
from riskml.features.snapshots import Snapshots, build_features, build_snapshots, iter_snapshots
from riskml.features.windows import DEFAULT_WINDOWS, FeatureSpec, feature_specs, rectify

__all__ = ["DEFAULT_WINDOWS", "TARGETS", "FeatureSpec", "Snapshots", "Target", "build_features",
           "build_snapshots", "feature_specs", "get_target", "iter_snapshots", "rectify"]
