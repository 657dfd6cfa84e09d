"""A LightGBM model compiled for scoring: the same probabilities as
``Booster.predict``, faster.

Why riskml's own and not a model compiler from PyPI (checked 2026-12 on this
project's machine, Python 3.11): ``lleaves`` 1.3.0 (its newest release)
fails to compile with the llvmlite that numba 0.68 needs (0.50: the legacy
``PassManagerBuilder`` it calls is gone), and ``tl2cgen`` 1.0.0 compiles C
with gcc at scoring time (14 s for a 300 x 31 model) and then scored that
model no faster than LightGBM (0.96-1.15x). This module walks the trees in
numba, which riskml already compiles its factor TreeSHAP with.

How: LightGBM walks each row down each tree, one dependent load after
another, and converts every row to a sparse vector first. Here rows go in
chunks of :data:`CHUNK`, transposed so that one feature of a chunk is
contiguous; each tree then evaluates *every* node for the whole chunk (a
compare of a contiguous run of values against one threshold, which
vectorises) and propagates "reached" flags from parents to children in
pre-order. The leaf reached adds its value. Raw scores are summed tree by
tree in LightGBM's order, in float64, so they are bit for bit LightGBM's; the
link (sigmoid, softmax) is the objective's.

Exactness: float32 input is compared in float32 against each threshold
rounded *down* to float32, which decides exactly as LightGBM's float64
compare does (for float32 ``x``: ``x <= t`` iff ``x <= the largest float32
<= t``); missing values follow each node's missing type and default
direction; categorical splits use LightGBM's bitsets (NaN and negatives go
right). Linear trees and objectives other than binary/multiclass are scored
by ``Booster.predict`` itself (``method_ == "lightgbm"``).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd
import lightgbm as lgb

from riskml.exceptions import SchemaError
from riskml.explain.trees import ZERO_THRESHOLD, append_split, dump_model, in_bitset, link_children

#: Rows per chunk (one thread each): a chunk's transposed features stay in L2.
CHUNK = 512

# node kinds: decided once per model, so the row loops have no per-row branch on them
_LEAF, _LE, _NOT_GT, _ZERO_LEFT, _ZERO_RIGHT, _CAT = 0, 1, 2, 3, 4, 5
_LINKS = {"binary": "sigmoid", "multiclass": "softmax", "softmax": "softmax", "multiclassova": "ova",
          "multiclass_ova": "ova", "ova": "ova", "ovr": "ova"}


class TreePredictor:
    """A booster's trees as flat arrays, scored by a compiled kernel.

    Args:
        booster: a trained ``lightgbm.Booster``.
        dump: its :func:`riskml.explain.trees.dump_model`, when the caller has it already.

    Attributes:
        method_: ``"compiled"``, or ``"lightgbm"`` when the model has linear
            trees or an objective other than binary/multiclass (then
            :meth:`predict` is ``Booster.predict``).
        n_outputs_: raw scores per row (1 for binary, the class count else).
        n_trees_: trees in the model (all classes).

    Example:
        >>> import lightgbm as lgb, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(500, 3))
        >>> b = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4},
        ...               lgb.Dataset(X, (X[:, 0] > 0).astype(int)), 5)
        >>> bool(np.allclose(TreePredictor(b).predict(X), b.predict(X), rtol=0, atol=1e-12))
        True
    """

    def __init__(self, booster: lgb.Booster, *, dump: dict | None = None):
        self.booster = booster
        self.features_ = list(booster.feature_name())
        dump = dump or dump_model(booster)  # exact thresholds (the JSON dump clamps inf to 1e300)
        self.n_outputs_ = int(dump.get("num_tree_per_iteration", 1))
        self.n_trees_ = len(dump["tree_info"])
        objective = str(dump.get("objective") or "").split()
        self._link = _LINKS.get(objective[0] if objective else "")
        self._sigmoid = next((float(w.split(":", 1)[1]) for w in objective[1:] if w.startswith("sigmoid:")), 1.0)
        self._average = bool(dump.get("average_output"))
        self.method_ = "lightgbm"
        if self._link is not None and self._compile(dump):
            self.method_ = "compiled"
            self.trees_of_feature_ = self._trees_of_feature(len(self.features_))

    def _compile(self, dump: dict) -> bool:
        """Flatten the trees (pre-order, trees one after another); False for linear trees."""
        nodes: dict[str, list] = {k: [] for k in ("feature", "threshold", "default_left", "missing", "cat_start",
                                                 "cat_len", "bit", "leaf", "value")}
        leaf_row = {"feature": 0, "threshold": 0.0, "default_left": 0, "missing": 0, "cat_start": -1, "cat_len": 0,
                    "bit": 0, "leaf": 0}
        cat_words: list[int] = []
        starts = [0]
        for info in dump["tree_info"]:
            stack = [info["tree_structure"]]
            while stack:
                node = stack.pop()
                if "leaf_value" in node:
                    if node.get("leaf_coeff"):
                        return False  # linear trees: Booster.predict scores them
                    for key, v in leaf_row.items():
                        nodes[key].append(v)
                    nodes["value"].append(float(node["leaf_value"]))
                    continue
                append_split(nodes, cat_words, node, 0)
                nodes["value"].append(0.0)
                stack += [node["right_child"], node["left_child"]]  # left popped first: pre-order
            starts.append(len(nodes["leaf"]))
        self.tree_start_ = np.asarray(starts, dtype=np.int64)
        is_leaf = np.asarray(nodes["leaf"]) >= 0
        self.left_, self.right_ = link_children(is_leaf, self.tree_start_)
        thr = np.asarray(nodes["threshold"], dtype=np.float64)
        missing = np.asarray(nodes["missing"])  # 0 None, 1 Zero, 2 NaN
        dl = np.asarray(nodes["default_left"]) == 1
        # where NaN goes: the default way (NaN type), or where 0.0 goes (None type); Zero type apart
        kind = np.where(np.where(missing == 2, dl, 0.0 <= thr), _NOT_GT, _LE)
        kind = np.where(missing == 1, np.where(dl, _ZERO_LEFT, _ZERO_RIGHT), kind)
        kind = np.where(np.asarray(nodes["cat_start"]) >= 0, _CAT, kind)
        self.kind_ = np.where(is_leaf, _LEAF, kind).astype(np.int8)
        feature = np.asarray(nodes["feature"], dtype=np.int64)
        # the kernel transposes only the features the trees split on: feature_ indexes used_features_
        self.used_features_ = np.unique(feature[~is_leaf])
        self.feature_ = np.searchsorted(self.used_features_, feature)
        self.threshold_ = thr
        self.threshold32_ = _round_down_f32(thr)
        self.cat_start_ = np.asarray(nodes["cat_start"], dtype=np.int64)
        self.cat_len_ = np.asarray(nodes["cat_len"], dtype=np.int64)
        self.cat_words_ = np.asarray(cat_words, dtype=np.uint32)
        self.value_ = np.asarray(nodes["value"], dtype=np.float64)
        self.subtree_end_ = _subtree_end(is_leaf, self.right_)
        self.tree_output_ = np.arange(self.n_trees_, dtype=np.int64) % self.n_outputs_
        self.max_nodes_ = int(np.diff(self.tree_start_).max(initial=1))
        # which used features each tree splits on: a subset of trees (a what-if) transposes only theirs
        tree_of_node = np.repeat(np.arange(self.n_trees_), np.diff(self.tree_start_))
        self.tree_features_ = np.zeros((self.n_trees_, len(self.used_features_)), dtype=bool)
        self.tree_features_[tree_of_node[~is_leaf], self.feature_[~is_leaf]] = True
        return True

    def _trees_of_feature(self, n_features: int) -> list[np.ndarray]:
        """The trees (ascending) that split on each of the model's features, from :attr:`tree_features_`."""
        out = [np.zeros(0, dtype=np.int64)] * n_features
        for p, f in enumerate(self.used_features_):  # once per model, over features
            out[f] = np.flatnonzero(self.tree_features_[:, p])
        return out

    def trees_using(self, features: list[int] | np.ndarray) -> np.ndarray:
        """The trees (ascending) that split on any of the feature indices ``features``."""
        if self.method_ != "compiled":
            raise SchemaError("trees_using needs the compiled predictor (method_ == 'compiled')")
        parts = [self.trees_of_feature_[int(f)] for f in features]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def matrix(self, X) -> np.ndarray:
        """``X`` (frame or array) as a float32 (if all float32) or float64 array in the booster's feature order."""
        if hasattr(X, "columns"):
            absent = [f for f in self.features_ if f not in X.columns]
            if absent:
                raise SchemaError(f"feature frame lacks model features {absent[:10]}; expected all of "
                                  f"{len(self.features_)} features the model was trained on")
            if list(X.columns) != self.features_:
                X = X[self.features_]
            dtypes = X.dtypes  # read from the frame's blocks: taking each column out cost 4 ms per 20k rows
            cats = [c for c, dt in dtypes.items() if isinstance(dt, pd.CategoricalDtype)]
            if cats:  # LightGBM reads a pandas category as its code (the training levels' order); missing: NaN
                X = X.assign(**{c: X[c].cat.codes.where(X[c].notna()).astype("float64") for c in cats})
                dtypes = X.dtypes
            f32 = all(dt == np.float32 for dt in dtypes)
            X = X.to_numpy(dtype=np.float32 if f32 else np.float64, na_value=np.nan)
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.features_):
            raise SchemaError(f"feature matrix has shape {X.shape}; expected (n_rows, {len(self.features_)})")
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
        # the kernel reads C- or F-ordered arrays as they are; anything else is copied once
        return X if X.flags.c_contiguous or X.flags.f_contiguous else np.ascontiguousarray(X)

    def raw(self, X, *, trees: np.ndarray | None = None) -> np.ndarray:
        """Raw scores ``(n_rows, n_outputs)``: the sum of the leaves reached (``trees``: only those trees).

        With all trees this equals ``Booster.predict(X, raw_score=True)`` bit for bit.
        """
        X = self.matrix(X)
        if self.method_ != "compiled":
            raw = np.asarray(self.booster.predict(X, raw_score=True), dtype=np.float64)
            return raw.reshape(len(X), self.n_outputs_)
        if trees is None:
            order, fill = np.arange(self.n_trees_, dtype=np.int64), np.arange(len(self.used_features_))
        else:
            order = np.asarray(trees, dtype=np.int64)
            fill = np.flatnonzero(self.tree_features_[order].any(axis=0))
        out = np.empty((X.shape[0], self.n_outputs_))
        if X.shape[0]:
            thr = self.threshold32_ if X.dtype == np.float32 else self.threshold_
            _raw_kernel(X, self.used_features_, fill, order, self.tree_start_, self.tree_output_, self.kind_, self.feature_, thr,
                        self.cat_start_, self.cat_len_, self.cat_words_, self.left_, self.right_, self.subtree_end_, self.value_,
                        self.max_nodes_, np.array([ZERO_THRESHOLD], dtype=X.dtype), out)
        if self._average:  # boosting=rf: LightGBM averages the iterations
            out /= self.n_trees_ // self.n_outputs_
        return out

    def link(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities from raw scores, as the objective maps them: ``(n,)`` binary, ``(n, C)`` multiclass."""
        raw = np.asarray(raw, dtype=np.float64)
        if self._link == "sigmoid":
            return 1.0 / (1.0 + np.exp(-self._sigmoid * raw[:, 0]))
        if self._link == "ova":
            return 1.0 / (1.0 + np.exp(-self._sigmoid * raw))
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Probabilities as ``Booster.predict(X)`` gives them (equal to 1e-12 and better)."""
        if self.method_ != "compiled":
            return np.asarray(self.booster.predict(self.matrix(X)), dtype=np.float64)
        return self.link(self.raw(X))


def _subtree_end(is_leaf: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One past the last node of each node's subtree (pre-order: the end of its right subtree)."""
    end = np.arange(1, len(is_leaf) + 1, dtype=np.int64)
    for j in range(len(is_leaf) - 1, -1, -1):  # once per model, over nodes
        if not is_leaf[j]:
            end[j] = end[right[j]]
    return end


def _round_down_f32(t: np.ndarray) -> np.ndarray:
    """The largest float32 ``<= t`` for each threshold (``-inf``/``inf`` beyond float32's range)."""
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    too_big = t32.astype(np.float64) > t
    t32[too_big] = np.nextafter(t32[too_big], np.float32(-np.inf))
    return t32


@nb.njit(parallel=True, cache=True, nogil=True)  # nogil: the reader and writer threads go on meanwhile
def _raw_kernel(X, used, fill, trees, tree_start, tree_output, kind, feature, thr, cat_start, cat_len, cat_words, left,
                right, subtree_end, value, max_nodes, zero, out):  # pragma: no cover - numba
    """Rows in chunks (a thread each); per chunk, trees outer and rows inner: every split of a
    tree is decided for the whole chunk, and a leaf adds its value at its parent.

    Scratch arrays are 2-D and read through row views indexed from 0: with flat
    arrays and computed offsets numba's negative-index wraparound keeps LLVM
    from vectorising the row loops (measured 3-4x slower).
    """
    n = X.shape[0]
    n_out = out.shape[1]
    CH = CHUNK
    z = zero[0]
    for c in nb.prange((n + CH - 1) // CH):
        r0 = c * CH
        nr = min(n, r0 + CH) - r0
        xt = np.zeros((used.shape[0], CH), dtype=X.dtype)  # the chunk's used features, one row each
        for i in range(fill.shape[0]):  # the ones ``trees`` split on (the rest are never read)
            f = fill[i]
            src, dst = used[f], xt[f]
            for r in range(nr):
                v = X[r0 + r, src]
                dst[r] = 0.0 if abs(v) <= z else v  # LightGBM reads |x| <= kZeroThreshold as 0
        reach = np.empty((max_nodes, CH), dtype=np.uint8)  # 1: the row reaches this node
        go = np.empty(CH, dtype=np.uint8)  # 1: the row goes left at the current split
        count = np.zeros(max_nodes, dtype=np.int64)  # rows of the chunk that reach each node
        acc = np.zeros((n_out, CH))
        for ti in range(trees.shape[0]):
            t = trees[ti]
            a, b = tree_start[t], tree_start[t + 1]
            ac = acc[tree_output[t]]
            if b - a == 1:  # a tree of one leaf
                v = value[a]
                for r in range(CH):
                    ac[r] += v
                continue
            root = reach[0]
            for r in range(CH):
                root[r] = 1
            count[0] = CH
            j = a
            while j < b:
                k = kind[j]
                if k == 0:  # a leaf: added at its parent
                    j += 1
                    continue
                if count[j - a] == 0:  # no row of the chunk gets here: skip the subtree
                    j = subtree_end[j]
                    continue
                x, th = xt[feature[j]], thr[j]
                if k == 1:  # NaN goes right
                    for r in range(CH):
                        go[r] = np.uint8(x[r] <= th)
                elif k == 2:  # NaN goes left
                    for r in range(CH):
                        go[r] = np.uint8(not x[r] > th)
                elif k == 3 or k == 4:  # zero (and NaN, read as zero) go the default way
                    dl = np.uint8(k == 3)
                    for r in range(CH):
                        v = x[r]
                        zero_ = np.isnan(v) or (v >= -z and v <= z)
                        go[r] = dl if zero_ else np.uint8(v <= th)
                else:
                    for r in range(CH):
                        go[r] = np.uint8(in_bitset(x[r], cat_start[j], cat_len[j], cat_words))
                here, lj, rj = reach[j - a], left[j], right[j]
                if kind[lj] == 0 and kind[rj] == 0:
                    vl, vr = value[lj], value[rj]
                    for r in range(CH):
                        ac[r] += (vl if go[r] else vr) if here[r] else 0.0
                elif kind[lj] == 0:
                    vl, to_r, n_r = value[lj], reach[rj - a], 0
                    for r in range(CH):
                        ac[r] += vl if here[r] & go[r] else 0.0
                        to_r[r] = here[r] & (go[r] ^ 1)
                        n_r += to_r[r]
                    count[rj - a] = n_r
                elif kind[rj] == 0:
                    vr, to_l, n_l = value[rj], reach[lj - a], 0
                    for r in range(CH):
                        ac[r] += vr if here[r] & (go[r] ^ 1) else 0.0
                        to_l[r] = here[r] & go[r]
                        n_l += to_l[r]
                    count[lj - a] = n_l
                else:
                    to_l, to_r, n_l = reach[lj - a], reach[rj - a], 0
                    for r in range(CH):
                        to_l[r] = here[r] & go[r]
                        to_r[r] = here[r] & (go[r] ^ 1)
                        n_l += to_l[r]
                    count[lj - a], count[rj - a] = n_l, count[j - a] - n_l
                j += 1
        for o in range(n_out):
            ao = acc[o]
            for r in range(nr):
                out[r0 + r, o] = ao[r]
