"""LightGBM trees as flat arrays: what the factor TreeSHAP tables and the scorer share.

The JSON dump with each split's exact threshold, a split's fields appended to
flat node lists (pre-order, the left child right after its parent), the
children of that layout, and LightGBM's categorical bitset test.
"""

from __future__ import annotations

import numba as nb
import numpy as np


class Unsupported(Exception):
    """A model the compiled kernels do not cover (a decision type, or tables too big)."""

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float literal)


def dump_model(booster) -> dict:
    """``booster.dump_model()`` with each numerical split's exact threshold.

    The JSON dump clamps thresholds to +-1e300 (LightGBM's ``AvoidInf``), but a
    split that sends every finite value left has threshold ``inf``, and an
    infinite feature value then goes left, not right; the text model keeps it.
    """
    dump = booster.dump_model()
    exact = [np.array(line.split("=", 1)[1].split(), dtype=np.float64) if line else np.zeros(0)
             for line in _threshold_lines(booster.model_to_string())]
    for info, thr in zip(dump["tree_info"], exact):
        stack = [info["tree_structure"]]
        while stack:  # over nodes, once per model
            node = stack.pop()
            if "split_index" in node:
                if node["decision_type"] == "<=":
                    node["threshold"] = float(thr[node["split_index"]])
                stack += [node["left_child"], node["right_child"]]
    return dump


def _threshold_lines(text: str) -> list[str]:
    """The ``threshold=`` line of every tree of a text model ('' for a tree of one leaf)."""
    out = []
    for block in text.split("\nTree=")[1:]:
        body = block.split("\n\n", 1)[0]
        out.append(next((ln for ln in body.splitlines() if ln.startswith("threshold=")), ""))
    return out


def append_split(nodes: dict, cat_words: list[int], node: dict, local_bit: int) -> None:
    nodes["feature"].append(int(node["split_feature"]))
    nodes["default_left"].append(int(bool(node["default_left"])))
    nodes["missing"].append(_MISSING[node["missing_type"]])
    nodes["bit"].append(1 << local_bit)
    nodes["leaf"].append(-1)
    if node["decision_type"] == "==":
        cats = [int(c) for c in str(node["threshold"]).split("||")]
        words = [0] * (max(cats) // 32 + 1)
        for c in cats:
            words[c // 32] |= 1 << (c % 32)
        nodes["cat_start"].append(len(cat_words))
        nodes["cat_len"].append(len(words))
        nodes["threshold"].append(0.0)
        cat_words.extend(words)
    elif node["decision_type"] == "<=":
        nodes["cat_start"].append(-1)
        nodes["cat_len"].append(0)
        nodes["threshold"].append(float(node["threshold"]))
    else:
        raise Unsupported(f"decision_type {node['decision_type']!r}")


def link_children(is_leaf: np.ndarray, tree_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Children from the pre-order layout: left is ``j + 1``; right follows the left subtree."""
    left, right = np.full(len(is_leaf), -1, np.int64), np.full(len(is_leaf), -1, np.int64)
    size = np.ones(len(is_leaf), dtype=np.int64)
    for a, b in zip(tree_start[:-1], tree_start[1:]):
        for j in range(b - 1, a - 1, -1):
            if not is_leaf[j]:
                left[j], right[j] = j + 1, j + 1 + size[j + 1]
                size[j] = 1 + size[j + 1] + size[right[j]]
    return left, right


@nb.njit(inline="always", cache=True)
def in_bitset(v, start, n_words, words):  # pragma: no cover - numba
    """LightGBM's ``CategoricalDecision``: NaN and negatives go right."""
    if np.isnan(v) or v <= -1.0 or v >= 2147483648.0:
        return False
    iv = int(v)  # truncates toward zero like static_cast<int>
    return iv // 32 < n_words and (words[start + iv // 32] >> (iv % 32)) & 1 == 1
