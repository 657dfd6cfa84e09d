"""LightGBM model text checked before LightGBM reads a byte of it.

Checksums say a model folder is the one that was written, not that whoever wrote it meant well: a
folder can be crafted with matching checksums. LightGBM's loader trusts its input (a tree's
``tree_sizes`` entry is used to cut the text, a child or feature index is used to index arrays), and a
crafted ``model.txt`` crashes the process inside it. So the structure is checked here first: the header's
counts, every tree's array lengths, child indices within the tree, feature indices within the model,
categorical boundaries within their table, and a bound on the model's size. A model LightGBM wrote
passes unchanged; anything else is a :class:`ModelError` naming the file, the tree and the key.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from riskml.exceptions import ModelError

__all__ = ["MAX_LEAVES", "MAX_TREES", "check_model_text"]

#: far above any model riskml trains or tunes (LightGBM's own leaf limit is 131072)
MAX_TREES, MAX_LEAVES = 200_000, 131_072
_TREE = re.compile(r"^Tree=(\d+)\n", re.M)


def check_model_text(text: str, source: str | Path) -> None:
    """Raise :class:`ModelError` unless ``text`` is a well-formed LightGBM model text (see the module)."""
    end = text.find("\nend of trees")
    if not text.startswith("tree\n") or end < 0:
        raise ModelError(f"{source}: not a whole LightGBM model text (expected 'tree' first and 'end of trees')")
    starts = [m.start() for m in _TREE.finditer(text, 0, end + 1)]
    head = _fields(text[:starts[0]] if starts else text[:end], source, "header")
    n_features = _int(head, "max_feature_idx", source, "header", 0, 1 << 24) + 1
    if len(head.get("feature_names", "").split()) != n_features:
        raise ModelError(f"{source}: header: {len(head.get('feature_names', '').split())} feature_names for "
                         f"max_feature_idx={n_features - 1}; expected {n_features}")
    _int(head, "num_class", source, "header", 1, 1 << 16)
    _int(head, "num_tree_per_iteration", source, "header", 1, 1 << 16)
    if len(starts) > MAX_TREES:
        raise ModelError(f"{source}: {len(starts)} trees; expected at most {MAX_TREES:,}")
    sizes = np.diff([*starts, end + 1])
    if "tree_sizes" in head:  # LightGBM cuts the text by these: each must be its tree's exact length
        listed = _array(head, "tree_sizes", source, "header", len(starts))
        bad = np.flatnonzero(listed != sizes)
        if bad.size:
            raise ModelError(f"{source}: header: tree_sizes[{bad[0]}]={listed[bad[0]]}; expected {sizes[bad[0]]}, "
                             "the length of that tree's text")
    for i, (a, b) in enumerate(zip(starts, [*starts[1:], end + 1])):
        _check_tree(_fields(text[a:b], source, f"tree {i}"), n_features, source, f"tree {i}")


def _check_tree(t: dict[str, str], n_features: int, source, where: str) -> None:
    leaves = _int(t, "num_leaves", source, where, 1, MAX_LEAVES)
    inner = leaves - 1
    _array(t, "leaf_value", source, where, leaves, float)
    if inner == 0:
        return
    feature = _array(t, "split_feature", source, where, inner)
    _in_range(feature, 0, n_features - 1, "split_feature", source, where)
    for key in ("left_child", "right_child"):  # an inner node (0..inner-1) or a leaf (~leaf: -1..-leaves)
        _in_range(_array(t, key, source, where, inner), -leaves, inner - 1, key, source, where)
    threshold = _array(t, "threshold", source, where, inner, float)
    kind = _array(t, "decision_type", source, where, inner)
    n_cat = _int(t, "num_cat", source, where, 0, inner)
    categorical = (kind & 1).astype(bool)
    if n_cat:
        bounds = _array(t, "cat_boundaries", source, where, n_cat + 1)
        if bounds[0] != 0 or (np.diff(bounds) < 0).any():
            raise ModelError(f"{source}: {where}: cat_boundaries must start at 0 and never decrease")
        _array(t, "cat_threshold", source, where, int(bounds[-1]))
        _in_range(threshold[categorical], 0, n_cat - 1, "threshold (categorical)", source, where)
    elif categorical.any():
        raise ModelError(f"{source}: {where}: a categorical split without num_cat; expected num_cat > 0")
    if t.get("is_linear", "0").strip() == "1" and t.get("leaf_features", "").split():
        _in_range(np.array(t["leaf_features"].split(), dtype=np.int64), 0, n_features - 1, "leaf_features",
                  source, where)


def _fields(block: str, source, where: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _int(fields: dict[str, str], key: str, source, where: str, lo: int, hi: int) -> int:
    try:
        v = int(fields[key])
    except (KeyError, ValueError):
        raise ModelError(f"{source}: {where}: {key}={fields.get(key)!r}; expected a whole number") from None
    if not lo <= v <= hi:
        raise ModelError(f"{source}: {where}: {key}={v}; expected {lo}..{hi}")
    return v


def _array(fields: dict[str, str], key: str, source, where: str, n: int, dtype=np.int64) -> np.ndarray:
    try:
        v = np.array(fields.get(key, "").split(), dtype=dtype)
    except (ValueError, OverflowError):
        raise ModelError(f"{source}: {where}: {key} holds a value that is not a number") from None
    if len(v) != n:
        raise ModelError(f"{source}: {where}: {key} has {len(v)} values; expected {n}")
    if dtype is float and not np.isfinite(v).all() and key != "threshold":
        raise ModelError(f"{source}: {where}: {key} holds a value that is not finite")
    return v


def _in_range(v: np.ndarray, lo: int, hi: int, key: str, source, where: str) -> None:
    bad = np.flatnonzero((v < lo) | (v > hi))
    if bad.size:
        raise ModelError(f"{source}: {where}: {key}[{bad[0]}]={v[bad[0]]:g}; expected {lo}..{hi}")
