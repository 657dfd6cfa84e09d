"""The measures every stage reads: metrics, the risk team's tables, the points scale and bands,
the calibrator of P(adverse), and the HTML report's parts.

- ``metrics``: ROC/PR-AUC, KS, Gini, Brier, log-loss, ECE, the oracle gap, the leakage scan, plots;
- ``tables``: gains and calibration tables, weights of evidence and information values;
- ``scale``: scores in points and risk bands;
- ``calibration``: the calibrator of P(adverse) fitted on the validation split;
- ``html``: the self-contained HTML of model and monitoring reports;
- ``whatif_map``: the what-if learned from the simulator's intervention data (shipped in a manifest).
"""
