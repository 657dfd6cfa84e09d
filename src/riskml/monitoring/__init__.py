"""Monitoring a scored portfolio against its model: the reference profile, drift (PSI), the back-test
and the report. Stage code: frames in, dicts, frames and strings out; ``riskml.monitor`` reads and writes.

- ``profile``: the reference profile of a model's training rows and a batch's shares;
- ``mix``: like with like, a batch's shares at the reference's age mix and against its platform state's reference;
- ``drift``: population stability (PSI) per feature, factor, score and band, with levels;
- ``migration``: the band migration matrix between two months;
- ``backtest``: realised outcomes against the predictions;
- ``report``: the monitoring report (JSON and HTML).
"""
