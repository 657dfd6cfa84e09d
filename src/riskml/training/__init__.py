"""The training stage: data sets and splits, estimators, metrics and plots, and
the evaluation steps of a run. Stage code: frames and arrays in, fitted models,
numbers and figures out; no files, no MLflow (``riskml.train`` tracks).

- ``datasets``: :class:`Dataset` (what every model trains on) and the splits;
- ``tabular``: a flat table as a :class:`Dataset`;
- ``models``: LightGBM and the scikit-learn baselines;
- ``metrics``: metrics, the leakage scan and plots;
- ``steps``: the evaluation steps of one training run.
"""
