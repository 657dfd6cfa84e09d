"""A lender's panel in its own names, codes and dates: the schema file (``data.schema=PATH``) that maps it
onto the panel contract (``riskml.schema.PANEL``), read and checked before any data.

Example schema (YAML)::

    id: account_id                 # the lender's borrower or account id
    month: period                  # whole-number months, or YYYY-MM / dates (one row a month)
    status:
      column: state
      normal: [current]            # the lender's codes of each riskml state
      suspended: [late, frozen]
      closed: []                   # may be empty: a panel with two states trains
    cause:                         # optional: the decision's recorded reason
      column: reason_code
      values: {OD: overdue, FR: agreement_violation}
    columns:                       # every behaviour column the lender has
      bureau_score: {as: external_score}
      app_logins: {factor: other, direction: 0}
      pay_status: {factor: overdue, direction: 1, rectified: 0, above: 0}   # above: months past it are counted

Translation is column-wise and vectorised (:meth:`LenderSchema.to_contract`): ids and months renamed (months
as ``YYYY-MM`` or dates become months since January 1970, :data:`EPOCH`), state and cause codes mapped (a code not in the map
is kept as it is, so the row checks reject it), ``as:`` columns renamed; the contract's behaviour columns the
lender lacks stay absent, and the features that need them are left out of the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from riskml.exceptions import ConfigError
from riskml.factors import CATALOGUE
from riskml.schema import PANEL, SIGNAL_PREFIX, STATUSES

log = logging.getLogger(__name__)

_KEYS = ("id", "month", "status", "cause", "columns", "custom_factors")
#: The contract's columns a lender's column may be under ``as:``: behaviour and the account's age.
_MAPPABLE = tuple(c.name for c in PANEL.columns if c.name not in ("borrower_id", "month", "status", "cause"))
_WARNED: set[tuple[str, str]] = set()
#: The year whose January is month 0 of a lender's dated months: the contract's month index runs from 0 to
#: ``schema.MAX_MONTH`` (a century), so dates from 1970 to 2069 fit it.
EPOCH = 1970


def _fail(key: str, value: Any, expected: str, source: str) -> ConfigError:
    return ConfigError(f"data.schema {source}: {key}", value, expected)


@dataclass(frozen=True)
class LenderSchema:
    """A lender's panel schema: its id, month and status columns, state codes, cause codes and signals."""

    id: str
    month: str
    status_column: str
    states: Mapping[str, tuple[str, ...]]
    cause_column: str | None = None
    causes: Mapping[str, str] = field(default_factory=dict)
    renames: Mapping[str, str] = field(default_factory=dict)    # lender column -> contract column (``as:``)
    signals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # lender column -> factor, direction...
    custom_factors: tuple[str, ...] = ()
    source: str = "inline"

    # --- reading and checking -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "inline") -> "LenderSchema":
        """Check a parsed schema; every problem is one :class:`ConfigError` naming the schema key."""
        if not isinstance(raw, Mapping):
            raise _fail("(top level)", type(raw).__name__, f"a mapping with keys {list(_KEYS)}", source)
        unknown = [k for k in raw if k not in _KEYS]
        if unknown:
            raise _fail(str(unknown[0]), raw[unknown[0]], f"one of the schema keys {list(_KEYS)}", source)
        for key in ("id", "month"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise _fail(key, raw.get(key), "the name of the lender's column", source)
        status = raw.get("status")
        if not isinstance(status, Mapping) or not isinstance(status.get("column"), str):
            raise _fail("status", status, "a mapping with 'column' and the codes of normal, suspended, closed",
                        source)
        states, seen = {}, {}
        for s in STATUSES:
            codes = status.get(s, [])
            codes = [codes] if isinstance(codes, (str, int)) else codes
            if not isinstance(codes, list):
                raise _fail(f"status.{s}", codes, "a list of the lender's codes of that state", source)
            for c in map(str, codes):
                if c in seen:
                    raise _fail(f"status.{s}", c, f"a code of one state only; it is in status.{seen[c]} too", source)
                seen[c] = s
            states[s] = tuple(map(str, codes))
        extra = [k for k in status if k not in ("column", *STATUSES)]
        if extra:
            raise _fail(f"status.{extra[0]}", status[extra[0]], f"one of 'column', {list(STATUSES)}", source)
        if not states["normal"] or not any(states[s] for s in STATUSES[1:]):
            raise _fail("status", dict(states), "codes for normal and for suspended or closed (two states at least)",
                        source)
        custom = raw.get("custom_factors") or []
        if not isinstance(custom, list) or not all(isinstance(f, str) for f in custom):
            raise _fail("custom_factors", custom, "a list of factor ids of your own", source)
        cause_col, causes = None, {}
        if raw.get("cause") is not None:
            cause = raw["cause"]
            if not isinstance(cause, Mapping) or not isinstance(cause.get("column"), str) or \
                    not isinstance(cause.get("values"), Mapping):
                raise _fail("cause", cause, "a mapping with 'column' and 'values' (lender code -> factor id)", source)
            cause_col = cause["column"]
            for code, fid in cause["values"].items():
                if fid not in CATALOGUE or fid == "other":
                    raise _fail(f"cause.values.{code}", fid, f"a documented factor id, one of "
                                f"{[f for f in CATALOGUE if f != 'other']}", source)
                causes[str(code)] = str(fid)
        renames, signals = cls._columns(raw.get("columns") or {}, custom, source)
        keys = {"id": raw["id"], "month": raw["month"], "status.column": status["column"]}
        if cause_col:
            keys["cause.column"] = cause_col
        for col in [*renames, *signals]:
            hit = [k for k, v in keys.items() if v == col]
            if hit:
                raise _fail(f"columns.{col}", col, f"a behaviour column; it is the schema's {hit[0]} column", source)
        return cls(raw["id"], raw["month"], status["column"], states, cause_col, causes, renames, signals,
                   tuple(custom), source)

    @staticmethod
    def _columns(columns: Any, custom: list[str], source: str) -> tuple[dict[str, str], dict[str, dict]]:
        if not isinstance(columns, Mapping):
            raise _fail("columns", columns, "a mapping of the lender's behaviour columns", source)
        renames: dict[str, str] = {}
        signals: dict[str, dict] = {}
        for col, spec in columns.items():
            key = f"columns.{col}"
            if not isinstance(spec, Mapping) or ("as" in spec) == ("factor" in spec):
                raise _fail(key, spec, "either {as: <a contract column>} or {factor: <id>, direction: -1|0|1, "
                            "rectified: <value or null>}", source)
            if "as" in spec:
                if spec["as"] not in _MAPPABLE:
                    raise _fail(f"{key}.as", spec["as"], f"a behaviour column of the panel contract, one of "
                                f"{list(_MAPPABLE)}", source)
                if spec["as"] in renames.values():
                    raise _fail(f"{key}.as", spec["as"], "a contract column named once", source)
                renames[str(col)] = str(spec["as"])
                continue
            fid = spec["factor"]
            if fid not in CATALOGUE and fid not in custom:
                raise _fail(f"{key}.factor", fid, f"a factor id of the catalogue, one of {list(CATALOGUE)}, or one "
                            f"declared in custom_factors ({custom})", source)
            direction = spec.get("direction", 0)
            if isinstance(direction, bool) or direction not in (-1, 0, 1):
                raise _fail(f"{key}.direction", direction, "-1, 0 or 1", source)
            rect = spec.get("rectified")
            if rect is not None and (isinstance(rect, bool) or not isinstance(rect, (int, float))):
                raise _fail(f"{key}.rectified", rect, "a number or null", source)
            above = spec.get("above")
            if above is not None and (isinstance(above, bool) or not isinstance(above, (int, float))):
                raise _fail(f"{key}.above", above, "a number (months above it are counted) or null", source)
            extra = [k for k in spec if k not in ("factor", "direction", "rectified", "above")]
            if extra:
                raise _fail(f"{key}.{extra[0]}", spec[extra[0]], "one of factor, direction, rectified, above", source)
            signals[str(col)] = {"factor": str(fid), "direction": int(direction),
                                 "rectified": None if rect is None else float(rect)}
            if above is not None:  # only where a threshold means something: written only when given
                signals[str(col)]["above"] = float(above)
        return renames, signals

    def to_dict(self) -> dict[str, Any]:
        """The schema as its file has it (what a model's manifest carries)."""
        out: dict[str, Any] = {"id": self.id, "month": self.month,
                               "status": {"column": self.status_column, **{s: list(c) for s, c in self.states.items()}}}
        if self.cause_column:
            out["cause"] = {"column": self.cause_column, "values": dict(self.causes)}
        out["columns"] = {**{c: {"as": a} for c, a in self.renames.items()},
                          **{c: dict(s) for c, s in self.signals.items()}}
        if self.custom_factors:
            out["custom_factors"] = list(self.custom_factors)
        return out

    # --- the lender's columns ---------------------------------------------------------------------------------
    @property
    def required(self) -> tuple[str, ...]:
        """The lender's columns a file must carry: id, month, status and every behaviour column named."""
        return (self.id, self.month, self.status_column, *self.renames, *self.signals)

    @property
    def signal_columns(self) -> tuple[str, ...]:
        """The lender's own signals as carried beside the contract's columns."""
        return tuple(SIGNAL_PREFIX + c for c in self.signals)

    @property
    def contract_columns(self) -> tuple[str, ...]:
        """The contract's behaviour columns this lender has."""
        return tuple(c for c in _MAPPABLE if c in self.renames.values())

    def read_columns(self, header: list[str], *, file: str | Path) -> list[str]:
        """The columns to read of a file with ``header``: a named column missing is a one-line error; columns
        the schema does not name are warned of once and left unread."""
        missing = [c for c in self.required if c not in header]
        if missing:
            raise ConfigError(f"data.schema {self.source}", missing[0], f"a column of {file}; it has "
                              f"{header[:12]}{'...' if len(header) > 12 else ''}")
        named = set(self.required) | ({self.cause_column} if self.cause_column else set())
        unused = [c for c in header if c not in named]
        if unused and (str(file), self.source) not in _WARNED:  # once per file, however many reads
            _WARNED.add((str(file), self.source))
            log.warning("%s: column(s) %s not named in the schema %s: not used", file, unused, self.source)
        return [c for c in header if c in named]

    def to_contract(self, table: pa.Table) -> pa.Table:
        """A raw batch of the lender's rows as panel-contract columns (other columns, e.g. a row's file and
        number, kept as they are)."""
        out: dict[str, pa.Array] = {}
        for name in table.column_names:
            col = table.column(name)
            if name == self.id:
                out["borrower_id"] = col
            elif name == self.month:
                out["month"] = pa.array(month_index(col.to_pandas()))
            elif name == self.status_column:
                out["status"] = _mapped(col, {c: s for s, codes in self.states.items() for c in codes})
            elif name == self.cause_column:
                out["cause"] = _mapped(col, self.causes)
            elif name in self.renames:
                out[self.renames[name]] = col
            elif name in self.signals:  # its own signal: carried beside the contract's columns
                out[SIGNAL_PREFIX + name] = col
            else:
                out[name] = col
        return pa.table(out)

    def unmapped(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a raw batch whose state code is not in the schema, and their codes (for the reject's
        reason: the code named, with the codes the schema knows)."""
        if self.status_column not in table.column_names:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        text = pc.utf8_trim_whitespace(table.column(self.status_column).cast(pa.string()))
        known = pa.array([c for codes in self.states.values() for c in codes], pa.string())
        bad = pc.and_(pc.invert(pc.is_in(text, value_set=known)), pc.is_valid(text))
        rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        return rows, np.asarray(text.take(pa.array(rows)).to_pylist(), dtype=object)

    def status_reason(self, code: str) -> str:
        """The reject reason of a state code the schema does not map."""
        known = [c for codes in self.states.values() for c in codes]
        return f"{self.status_column} {code!r} is not a state code of the schema (one of {known})"

    def name_codes(self, rejects: pd.DataFrame, codes: pd.DataFrame) -> pd.DataFrame:
        """``rejects`` (``file``, ``row``, ``reason``) whose status reason is about a state code the schema does
        not map (``codes``: ``file``, ``row``, ``code`` of :meth:`unmapped`), naming that code."""
        if codes.empty or rejects.empty:
            return rejects
        code = rejects[["file", "row"]].astype({"file": str}).merge(codes.astype({"file": str}), on=["file", "row"],
                                                                    how="left")["code"]
        is_status = rejects["reason"].astype(str).str.startswith("status not one of").to_numpy()
        named = code.map({c: self.status_reason(c) for c in codes["code"].unique()}).to_numpy(dtype=object)
        pick = is_status & pd.notna(named)
        reason = rejects["reason"].astype(object).to_numpy().copy()
        reason[pick] = named[pick]
        return rejects.assign(reason=pd.array(reason, dtype="string"))

    def from_contract(self, predictions: pd.DataFrame, *, text_months: bool = False) -> pd.DataFrame:
        """Predictions answered in the lender's terms: its id name, and ``as_of_month`` as ``YYYY-MM`` where
        its months are dates (``text_months``)."""
        out = predictions.rename(columns={"borrower_id": self.id})
        if text_months and "as_of_month" in out.columns:
            out["as_of_month"] = month_labels(out["as_of_month"].to_numpy())
        return out

    def present(self, table: pa.Table, *, text_months: bool = False) -> pa.Table:
        """:meth:`from_contract` on an Arrow table of predictions (a batch job's output, part by part)."""
        names = [self.id if n == "borrower_id" else n for n in table.column_names]
        out = table.rename_columns(names)
        if text_months and "as_of_month" in names:
            i = names.index("as_of_month")
            month = out.column(i).to_numpy(zero_copy_only=False)
            out = out.set_column(i, pa.field("as_of_month", pa.string()), pa.array(month_labels(month), pa.string()))
        return out

    def contract_predictions(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """Predictions in the lender's terms (:meth:`from_contract`) back in riskml's (a monitor reading them)."""
        if self.id not in predictions.columns or "borrower_id" in predictions.columns:
            return predictions
        out = predictions.rename(columns={self.id: "borrower_id"})
        if "as_of_month" in out.columns and not pd.api.types.is_numeric_dtype(out["as_of_month"]):
            out["as_of_month"] = pd.array(month_index(out["as_of_month"]), dtype="Float64").astype("Int64")
        return out


def _mapped(col: pa.ChunkedArray, mapping: Mapping[str, str]) -> pa.Array:
    """Codes mapped to riskml's names (after stripping spaces); a code not in the map is kept, so the row
    checks reject it with the column's expected values."""
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    keys = pa.array(list(mapping), pa.string())
    idx = pc.index_in(text, value_set=keys)
    values = pa.array(list(mapping.values()) or [""], pa.string())
    hit = pc.take(values, pc.fill_null(idx, 0))
    return pc.if_else(pc.is_null(idx), text, hit)


def month_index(values: pd.Series) -> np.ndarray:
    """Months as whole numbers: numbers stay as they are; ``YYYY-MM`` or dates become months since :data:`EPOCH`
    (NaN where a cell is neither, which the row checks reject as a missing month)."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().sum() >= values.notna().sum():
        return num.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype("string").str.strip()
    when = pd.to_datetime(text, format="%Y-%m", errors="coerce")
    rest = when.isna() & text.notna()
    if rest.any():
        when[rest] = pd.to_datetime(text[rest], format="ISO8601", errors="coerce")
    out = ((when.dt.year - EPOCH) * 12 + when.dt.month - 1).astype("Float64")
    return out.to_numpy(dtype=np.float64, na_value=np.nan)


def month_labels(months: np.ndarray) -> np.ndarray:
    """Month indices (months since January :data:`EPOCH`) as ``YYYY-MM`` labels (``None`` where missing)."""
    m = np.asarray(months, dtype=np.float64)
    ok = ~np.isnan(m)
    out = np.full(len(m), None, dtype=object)
    if ok.any():
        ordinals = m[ok].astype(np.int64) + (EPOCH - 1970) * 12  # pandas' monthly periods count from 1970-01
        out[ok] = np.asarray(pd.PeriodIndex.from_ordinals(ordinals, freq="M").strftime("%Y-%m"), dtype=object)
    return out


def dated_months(values: pd.Series) -> bool:
    """Months given as dates or ``YYYY-MM`` text rather than whole numbers (a frame's column)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    v = values.dropna()
    return len(v) > 0 and isinstance(v.iloc[0], str) and bool(pd.isna(pd.to_numeric(v.iloc[:1], errors="coerce")).all())


def is_text_months(col: pa.ChunkedArray) -> bool:
    """Months given as text that is not a number (``YYYY-MM`` or dates)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return False
    v = col.drop_null()
    return len(v) > 0 and pd.to_numeric(pd.Series(v.slice(0, 1).to_pylist()), errors="coerce").isna().all()


def load_schema(path: str | Path | None) -> LenderSchema | None:
    """Read and check ``data.schema`` (``None``: the panel is in riskml's own schema)."""
    if path in (None, "", "null"):
        return None
    p = Path(str(path))
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError("data.schema", str(p), f"a readable YAML schema file ({type(e).__name__})") from None
    except yaml.YAMLError as e:
        raise ConfigError("data.schema", str(p), f"valid YAML ({str(e).splitlines()[0]})") from None
    return LenderSchema.from_dict(raw, source=str(p))
