"""Self-contained HTML pages: tables, figures embedded as base64 PNG, one inline
stylesheet; no script, no file or network reference, so a report opens the
same from an MLflow artifact, a mail attachment or a model-governance archive.

Stage code: frames and figures in, a string out.

Example:
    >>> html = page("t", [section("s", table(pd.DataFrame({"a": [0.5]})))])
    >>> html.startswith("<!DOCTYPE html>") and "<td>0.5000</td>" in html
    True
"""

from __future__ import annotations

import base64
import html as _html
import io
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;border-bottom:2px solid #d0d7de;padding-bottom:6px}h2{font-size:1.25em;margin-top:28px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}p.note{color:#57606a;font-size:.92em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.86em}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f6f8fa;text-align:center}td.t,th.t{text-align:left}
.kv td:first-child{text-align:left;color:#57606a}.ok{background:#dafbe1}.watch{background:#fff8c5}
.act,.bad{background:#ffebe9}img{max-width:100%;border:1px solid #d0d7de;margin:4px 0}
.grid{display:flex;flex-wrap:wrap;gap:12px}.grid img{width:360px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
"""

#: Cell values that colour their cell (levels and ok flags).
_CLASSES = {"ok": "ok", "watch": "watch", "act": "act", "too_few_accounts": "watch", "True": "ok", "False": "bad"}


def esc(text: object) -> str:
    return _html.escape(str(text))


def _cell(v: object, digits: int) -> tuple[str, str]:
    if isinstance(v, (bool, np.bool_)):
        text = str(bool(v))
        return text, _CLASSES[text]
    if isinstance(v, (float, np.floating)):
        return ("" if not np.isfinite(v) else f"{v:.{digits}f}"), ""
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}", ""
    text = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
    return text, _CLASSES.get(text, "t")


def table(df: pd.DataFrame, *, digits: int = 4, max_rows: int | None = None) -> str:
    """An HTML table of a frame (no index); floats at ``digits`` places, levels coloured."""
    shown = df if max_rows is None else df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            text, cls = _cell(v, digits)
            cells.append(f'<td class="{cls}">{esc(text)}</td>' if cls else f"<td>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="note">first {max_rows} of {len(df)} rows</p>' if max_rows and len(df) > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def key_values(items: Mapping[str, object], *, digits: int = 4) -> str:
    """A two-column table of named values (a whole-number float, e.g. a count logged as a metric, as a whole number)."""
    def text(v: object) -> str:
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
            return f"{int(v):,}"
        return _cell(v, digits)[0]

    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(text(v))}</td></tr>" for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


def figure(fig: Figure, *, alt: str = "", dpi: int = 90) -> str:
    """A matplotlib figure as an embedded PNG (and the figure's memory released)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clear()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def section(title: str, *parts: str, note: str | None = None) -> str:
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    return f"<h2>{esc(title)}</h2>{lead}{''.join(parts)}"


def badge(level: str) -> str:
    return f'<span class="badge {esc(_CLASSES.get(level, ""))}">{esc(level)}</span>'


def page(title: str, sections: Iterable[str], *, subtitle: str | None = None) -> str:
    """The whole document."""
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{sub}{''.join(sections)}</body></html>\n")
