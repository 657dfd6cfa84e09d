"""Score a table (one row per applicant or account) with a model trained on ``data=tabular``.

Stage code: frames in, frames out. :func:`check_rows` turns raw cells (CSV
strings or parquet values) into the model's features and says, per row, what
is wrong: a missing id, a value that is not a number in a numeric column.
A category the model never saw is no error: the row is scored with that
value as missing (how the model was trained to treat a missing level) and
the value is reported in ``unseen_categories``.
:func:`score_table` gives each good row the class probabilities,
P(adverse), the risk band and up to ``top_k`` reasons in the factors of the
user's factor map (``data.factors`` at training): a factor of the catalogue
gets the catalogue's advice, a factor of the user's own gets none, and the
unmapped columns (``other``) are a reason only with ``include_other``.

Example:
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"id": ["a", None, "c"], "dpd": ["0", "30", "x"], "region": ["north", "east", "moon"]})
    >>> X, reason, unseen = check_rows(raw, id_column="id", numeric=["dpd"], categories={"region": ["east", "north"]})
    >>> reason.tolist(), unseen.tolist()
    ([<NA>, 'id is missing', 'dpd is not numeric'], [<NA>, <NA>, 'region=moon'])
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from riskml import factors
from riskml.exceptions import ModelError
from riskml.explain.reasons import adverse_contributions, check_top_k, top_reasons
from riskml.explain.reasons import advice_for
from riskml.explain.scoring import ScoringModel
from riskml.measure.scale import Bands

ACTIONABLE = {f: advice_for(f)[0] for f in factors.CATALOGUE}
ADVICE = {f: advice_for(f)[1] for f in factors.CATALOGUE}
from riskml.schema import reason_fields

UNSEEN = "unseen_categories"
_BOOL = {"true": 1.0, "false": 0.0}


def table_columns(model: ScoringModel) -> tuple[str, list[str]]:
    """The id column and feature columns a table must have for ``model`` (from its manifest)."""
    if model.manifest.get("data_kind") != "tabular":
        raise ModelError(f"model {model.name!r} was trained on {model.manifest.get('data_kind')!r} data, "
                         "not a table; it scores borrower histories")
    id_column = model.manifest.get("id_column")
    if not id_column:
        raise ModelError(f"model {model.name!r}: its manifest names no id_column; retrain it with this riskml")
    return str(id_column), list(model.features)


def table_schema(model: ScoringModel, k: int) -> pa.Schema:
    """The output contract of a scored table: id, one probability per class, P(adverse), band, reasons."""
    id_column, _ = table_columns(model)
    fields = [(id_column, pa.string())] + [(f"p_{c}", pa.float64()) for c in model.classes]
    fields += [("p_adverse", pa.float64()), ("risk_band", pa.string()), *reason_fields(k), (UNSEEN, pa.string()),
               ("model_name", pa.string()), ("model_version", pa.string())]
    return pa.schema(fields)


def check_rows(raw: pd.DataFrame, *, id_column: str, numeric: Sequence[str], categories: Mapping[str, list[str]]
               ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features as the model takes them, the first problem per row (``<NA>``: none) and unseen levels.

    Numeric columns become float32 (missing stays NaN; ``true``/``false`` are
    1/0, as pandas reads a boolean column); categorical ones a pandas
    categorical over the model's levels.
    """
    reason = pd.Series(pd.NA, index=raw.index, dtype="string")
    unseen = pd.Series(pd.NA, index=raw.index, dtype="string")

    def flag(mask: np.ndarray, text: str) -> None:
        mask = mask & reason.isna().to_numpy()
        if mask.any():
            reason[mask] = text

    ids = raw[id_column].astype("string").str.strip()
    flag((ids.isna() | (ids == "")).to_numpy(), f"{id_column} is missing")
    X = pd.DataFrame(index=raw.index)
    for c in numeric:
        s = raw[c]
        if not pd.api.types.is_numeric_dtype(s.dtype):
            s = s.astype("string").str.strip()
            s = s.mask(s.str.lower().isin(list(_BOOL)), s.str.lower().map(_BOOL)).mask(s == "", None)
        num = pd.to_numeric(s, errors="coerce").astype("float64")
        flag((num.isna() & s.notna()).to_numpy(), f"{c} is not numeric")
        flag(np.isinf(num.to_numpy()), f"{c} is not a finite number")
        X[c] = num.astype("float32")
    for c, levels in categories.items():
        s = raw[c].astype("string").str.strip()
        s = s.mask(s == "", None)
        new = (s.notna() & ~s.isin(levels)).to_numpy()
        text = c + "=" + s.fillna("")
        unseen = unseen.mask(new, unseen.where(unseen.isna(), unseen + "; ").fillna("") + text)
        known = s.mask(new, None)
        X[c] = pd.Categorical(known.astype(object).where(known.notna(), None), categories=levels)
    return X, reason, unseen


def feature_matrix(X: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as their level codes (NaN when missing): the numbers LightGBM's trees split on."""
    out = X.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            codes = out[c].cat.codes.to_numpy()
            out[c] = np.where(codes >= 0, codes, np.nan).astype(np.float64)
    return out


def score_table(rows: pd.DataFrame, model: ScoringModel, *, top_k: int = 3, include_other: bool = False,
                band_edges: Sequence[float] = (0.02, 0.05, 0.15, 0.35),
                band_labels: Sequence[str] = ("A", "B", "C", "D", "E")) -> pd.DataFrame:
    """One prediction per row of a table that passed :func:`check_rows` (features plus id and ``unseen``)."""
    check_top_k(top_k)
    id_column, features = table_columns(model)
    X = rows[features]
    proba = model.proba(X)
    p_adv = model.positive(proba)
    out = pd.DataFrame({id_column: rows[id_column].astype("string").str.strip().to_numpy()})
    for i, c in enumerate(model.classes):
        out[f"p_{c}"] = proba[:, i]
    out["p_adverse"] = p_adv
    out["risk_band"] = Bands("probability", tuple(band_edges), tuple(band_labels)).assign(p_adverse=p_adv)
    contrib = model.explainer.contributions(feature_matrix(X))
    adverse = adverse_contributions(contrib, proba, adverse_classes=tuple(range(1, proba.shape[1])))
    names = model.explainer.factors
    if not include_other:  # unmapped columns are no reason the user could be told
        adverse = np.where(np.asarray(names) == factors.OTHER, 0.0, adverse)
    long = top_reasons(adverse, names, k=top_k, include_other=True)
    for rank in range(1, top_k + 1):
        r = long[long["rank"] == rank].set_index("row")
        fid = r["factor"].reindex(out.index)
        out[f"reason_{rank}"] = fid.astype("string")
        out[f"reason_{rank}_label"] = r["label"].reindex(out.index).astype("string")
        out[f"reason_{rank}_contribution"] = r["contribution"].reindex(out.index).astype("float64")
        documented = fid.isin(list(factors.CAUSES))  # advice only for a catalogue factor the user mapped
        out[f"reason_{rank}_actionable"] = fid.map(ACTIONABLE).where(documented)
        out[f"reason_{rank}_advice"] = fid.map(ADVICE).where(documented)
        out[f"reason_{rank}_p_after"] = np.nan  # no what-if: a table has no rectified values
    out[UNSEEN] = rows[UNSEEN].to_numpy()
    out["model_name"] = model.name
    out["model_version"] = model.version
    return out
