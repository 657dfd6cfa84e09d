"""The edge: everything that touches the outside world. Stage code never imports it.

- ``files``: file formats (parquet, CSV, JSON), checksums, atomic writes, model export;
- ``datasets``: the data-set folder of ``riskml.generate`` (panel, truth, manifest);
- ``sources``: the data sources of a training run (synthetic data set, table);
- ``batch``: the batch file machinery (buckets of whole borrowers, resumable parts);
- ``tracking``: every MLflow call;
- ``pyfunc_model``: the MLflow model code logged with every registered model.
"""
