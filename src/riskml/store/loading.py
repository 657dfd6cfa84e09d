"""The scoring system behind a model URI or an exported folder, opened only after its files are verified.

A folder needs no MLflow (nor its 2 s import); a ``models:/`` or ``runs:/`` URI is resolved through
the registry (:mod:`riskml.store.registry`) to a verified local copy first.
"""

from __future__ import annotations

from pathlib import Path

from riskml.exceptions import ModelError
from riskml.explain.scoring import ScoringModel, ScoringSystem
from riskml.io.files import read_json
from riskml.store.model_store import is_system_dir, load_model_dir, open_system, registered_version


def open_model(uri: str, *, tracking_uri: str | None = None) -> ScoringSystem | ScoringModel:
    """The scoring system behind a registry URI, a run URI or an exported folder, verified (or a
    ``data=tabular`` model, which scores tables)."""
    path = Path(str(uri))
    if path.is_dir():
        folder = path  # an exported model: no MLflow needed (nor its 2 s import)
    else:
        from riskml.store import registry  # lazy: importing MLflow costs 2 s an export does not need
        from riskml.store import tracking

        tracking.connect(tracking_uri, create=False, key="tracking_uri")
        folder = registry.resolve_model(uri)
    if not is_system_dir(folder):
        manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").is_file() else {}
        if manifest.get("data_kind") == "tabular":  # a table model scores a table
            return ScoringModel(*load_model_dir(folder), folder=folder)
        raise ModelError(f"model={uri}: a single {manifest.get('target', 'unknown')!r} model; expected a scoring "
                         "system (the adverse, status and recovery models that python -m riskml.train registers "
                         "as one model, e.g. models:/riskml@champion or models/riskml)")
    ver = registered_version(folder)
    return open_system(folder, name=ver.get("model_name"), version=ver.get("model_version"))
