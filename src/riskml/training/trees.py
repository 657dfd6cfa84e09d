"""LightGBM models as text: one-feature (additive) trees, scaled trees, joined ensembles.

A blend of a LightGBM model and a logistic scorecard is shipped as *one*
LightGBM text model, so that everything downstream (TreeSHAP reasons, the
MLflow pyfunc, ``riskml.predict``) handles it like any other riskml model and
nothing is pickled. The scorecard enters as one tree per feature (a step
function of that feature alone, with its own leaf for a missing value), the
LightGBM part as its own trees scaled by their blend weight. Stage code:
strings and arrays in, strings out.

Example (a step function of feature 0: -1 up to 0.5, +1 above, 0.25 when missing):
    >>> tree = additive_tree(0, thresholds=[0.5], values=[-1.0, 1.0], counts=[10, 10], nan_value=0.25,
    ...                      nan_count=2, hessian=0.25)
    >>> [line for line in tree.splitlines() if line.startswith("leaf_value")]
    ['leaf_value=-1.0 1.0 0.25']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence


#: A threshold every finite value is below: the root split that sends only NaN (and +inf) right.
_ABOVE_ALL = 1.7976931348623157e308
#: LightGBM's decision_type for a numerical split whose missing values (NaN) go right.
_NAN_RIGHT = 8
_VALUE_LINES = ("leaf_value=", "internal_value=")


def _num(x: float) -> str:
    return repr(float(x))  # shortest text that reads back as the same double


@dataclass
class _Builder:
    """Accumulates the arrays of one tree in LightGBM's text layout (internal nodes in creation order)."""

    feature: int
    hessian: float
    split_gain: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    internal_value: list[float] = field(default_factory=list)
    internal_count: list[int] = field(default_factory=list)

    def node(self, threshold: float) -> int:
        for arr, v in ((self.split_gain, 0.0), (self.threshold, threshold), (self.left, 0), (self.right, 0),
                       (self.internal_value, 0.0), (self.internal_count, 0)):
            arr.append(v)
        return len(self.threshold) - 1

    def close(self, i: int, left: tuple[int, float, int], right: tuple[int, float, int]) -> tuple[int, float, int]:
        """Set node ``i``'s children ``(ref, mean value, count)``; return the node as such a triple."""
        (lref, lval, ln), (rref, rval, rn) = left, right
        n = ln + rn
        mean = (lval * ln + rval * rn) / n if n else 0.5 * (lval + rval)
        self.left[i], self.right[i] = lref, rref
        self.internal_value[i], self.internal_count[i] = mean, n
        # second-order loss reduction of the split, as LightGBM's gain: 1/2 * h * n_l * n_r / n * (v_l - v_r)^2
        self.split_gain[i] = 0.5 * self.hessian * (ln * rn / n if n else 0.0) * (lval - rval) ** 2
        return i, mean, n


def additive_tree(feature: int, *, thresholds: Sequence[float], values: Sequence[float], counts: Sequence[int],
                  nan_value: float, nan_count: int, hessian: float) -> str:
    """One LightGBM tree (text) that is a step function of a single feature.

    Args:
        feature: the feature's index in the model.
        thresholds: ``len(values) - 1`` increasing cut points; bin ``i`` holds
            ``thresholds[i-1] < x <= thresholds[i]``.
        values: the output of each bin.
        counts: training rows per bin (the cover TreeSHAP weighs paths by).
        nan_value / nan_count: the output and training rows of a missing value.
        hessian: a typical second derivative of the loss (p(1-p)), for the split gains.
    """
    values, counts, thresholds = list(map(float, values)), list(map(int, counts)), list(map(float, thresholds))
    if not values or len(thresholds) != len(values) - 1 or len(counts) != len(values):
        raise ValueError(f"additive_tree: {len(values)} values need {len(values) - 1} thresholds and as many "
                         f"counts; got {len(thresholds)} and {len(counts)}")
    b = _Builder(feature, hessian)
    leaves = values + [float(nan_value)]
    leaf_count = counts + [int(nan_count)]

    def grow(lo: int, hi: int) -> tuple[int, float, int]:
        if hi - lo == 1:
            return ~lo, values[lo], counts[lo]
        mid = (lo + hi) // 2
        i = b.node(thresholds[mid - 1])
        return b.close(i, grow(lo, mid), grow(mid, hi))

    root = b.node(_ABOVE_ALL)  # finite values go left, a missing value right (its own leaf)
    b.close(root, grow(0, len(values)), (~len(values), float(nan_value), int(nan_count)))
    n_int = len(b.threshold)
    lines = [
        f"num_leaves={len(leaves)}", "num_cat=0",
        "split_feature=" + " ".join([str(feature)] * n_int),
        "split_gain=" + " ".join(_num(g) for g in b.split_gain),
        "threshold=" + " ".join(_num(t) for t in b.threshold),
        "decision_type=" + " ".join([str(_NAN_RIGHT)] * n_int),
        "left_child=" + " ".join(map(str, b.left)), "right_child=" + " ".join(map(str, b.right)),
        "leaf_value=" + " ".join(_num(v) for v in leaves),
        "leaf_weight=" + " ".join(_num(c * hessian) for c in leaf_count),
        "leaf_count=" + " ".join(map(str, leaf_count)),
        "internal_value=" + " ".join(_num(v) for v in b.internal_value),
        "internal_weight=" + " ".join(_num(c * hessian) for c in b.internal_count),
        "internal_count=" + " ".join(map(str, b.internal_count)),
        "is_linear=0", "shrinkage=1",
    ]
    return "\n".join(lines)


def split_model(text: str) -> tuple[str, list[str], str]:
    """A LightGBM model text as ``(header, tree bodies, footer)``; bodies lack their ``Tree=i`` line."""
    head, sep, rest = text.partition("\nTree=")
    if not sep:
        return head.rstrip("\n"), [], text[text.find("end of trees"):] if "end of trees" in text else ""
    trees_part, _, footer = ("Tree=" + rest).partition("end of trees")
    blocks = [b.strip("\n") for b in re.split(r"^Tree=\d+\n", trees_part, flags=re.M) if b.strip()]
    return head.rstrip("\n"), blocks, "end of trees" + footer


def _map_values(block: str, fn, gain_factor: float = 1.0) -> str:
    out = []
    for line in block.split("\n"):
        key = next((k for k in _VALUE_LINES if line.startswith(k)), None)
        if key is not None and len(line) > len(key):
            line = key + " ".join(_num(fn(float(v))) for v in line[len(key):].split(" "))
        elif line.startswith("split_gain=") and gain_factor != 1.0 and len(line) > len("split_gain="):
            line = "split_gain=" + " ".join(_num(float(v) * gain_factor) for v in line[len("split_gain="):].split(" "))
        out.append(line)
    return "\n".join(out)


def scale_tree(block: str, weight: float) -> str:
    """A tree body whose outputs are multiplied by ``weight`` (a blend weight; gains, ~ output^2, by its square)."""
    return _map_values(block, lambda v: v * weight, gain_factor=weight * weight)


def shift_tree(block: str, constant: float) -> str:
    """A tree body whose outputs all gain ``constant`` (an intercept; the splits and gains do not change)."""
    return _map_values(block, lambda v: v + constant)


def join_model(header: str, blocks: Sequence[str], footer: str) -> str:
    """A model text from a template's header and footer and the given tree bodies (renumbered)."""
    # tree_sizes only lets LightGBM parse trees in parallel; without it they are read in order
    head = "\n".join(line for line in header.split("\n") if not line.startswith("tree_sizes="))
    trees = "".join(f"Tree={i}\n{b}\n\n\n" for i, b in enumerate(blocks))
    return f"{head}\n\n{trees}{footer}"
