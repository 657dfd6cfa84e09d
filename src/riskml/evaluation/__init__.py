"""The evaluation of a training run: what it measures beyond its fit, with the explainer and the
monitoring profile (the only stage that reads training, explain and monitoring together).

- ``steps``: test metrics, the leakage scan, the oracle gap, explanation fidelity, importance, plots;
- ``report``: the risk team's tables, the HTML model report and the reference profile;
- ``whatif``: each actionable reason's ``p_after`` against the oracle under intervention, and the what-if
  learned from intervention data.
"""
