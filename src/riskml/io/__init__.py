"""Files and data sets: every format riskml reads or writes, and how it writes them.

- ``files``: parquet, CSV, JSON, checksums, atomic writes, output checks, the job lock;
- ``datasets``: the data-set folder of ``riskml.generate`` (panel, truth, manifest);
- ``eval_cache``: the evaluation's simulations of a training run, kept beside its data set.
"""
