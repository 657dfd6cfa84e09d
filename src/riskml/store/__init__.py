"""The model store: MLflow runs, the registry, exported model folders and the served model.

- ``tracking_uri``: where the MLflow store is, without importing MLflow;
- ``tracking``: every MLflow call of a run (params, metrics, data sets, the logged model);
- ``registry``: registered versions, the ``champion`` alias, model URIs resolved to verified folders;
- ``model_store``: exported folders (LightGBM text + JSON manifest + checksums, never a pickle);
- ``model_text``: a model text's structure checked before LightGBM reads it (crafted texts crash its loader);
- ``loading``: the scoring system behind a model URI or folder, opened once verified;
- ``ship``: log, register, export and promote a trained model, in that order;
- ``pyfunc_system``, ``pyfunc_features``: the MLflow models-from-code that serve a system or one model.
"""
