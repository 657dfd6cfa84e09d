"""The training stage: data sets and splits, estimators, and fitting them. Stage code: frames and
arrays in, fitted models out; no files, no MLflow (``riskml.train`` tracks).

- ``datasets``: :class:`Dataset` (what every model trains on), the splits and a run's folds;
- ``tabular``: a flat table as a :class:`Dataset`;
- ``models``: LightGBM and the scikit-learn baselines (:func:`~riskml.training.models.fit_one`);
- ``select``: ``model=auto``, the choice among them on inner folds;
- ``fit``: the model a config names, one estimator or ``model=auto``'s choice;
- ``trees``: LightGBM's text model read as flat trees;
- ``scorecard``: the logistic baseline's scorecard (optbinning);
- ``distributed``: the same fit with ``lightgbm.dask`` on a cluster.
"""
