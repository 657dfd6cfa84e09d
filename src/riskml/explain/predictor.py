"""A LightGBM model compiled for scoring: the same probabilities as
``Booster.predict``, faster.

Why riskml's own and not a model compiler from PyPI (checked 2026-12 on this
project's machine, Python 3.11): ``lleaves`` 1.3.0 (its newest release)
fails to compile with the llvmlite that numba 0.68 needs (0.50: the legacy
``PassManagerBuilder`` it calls is gone), takes seconds to many minutes to
compile a model (9 s for 374 x 4 leaves, 76 s for 300 x 31 on a loaded
machine), and, compiled through a shim, scores slower than this module on
the shapes of ``benchmarks/bench_scorer.py`` (1000 x 63 too, with the byte
kernel); ``tl2cgen`` 1.0.0 compiles C with gcc at scoring time and scores at
2-3x LightGBM. This module walks the trees in
numba, which riskml already compiles its factor TreeSHAP with.

How: LightGBM walks each row down each tree, one dependent load after
another, and converts every row to a sparse vector first. Here rows go in
chunks of :data:`CHUNK`, transposed so that one feature of a chunk is
contiguous. Each row keeps a bitvector of its tree's leaves, left to right
(32-bit words); each split of the tree is decided for the whole chunk at
once (a compare of a contiguous run of values against one threshold, which
vectorises, with no branch on the data) and, for the rows that go right,
clears the leaves of its left subtree. The leaf a row reaches is the first
one left (the idea of QuickScorer, Lucchese et al. 2015, applied a tree at a
time). A row's own path walk was measured too: numba's walk, whose next node
depends on the last load, ran at 0.7x LightGBM on 31-leaf trees, against
10x for the bitvectors; deeper trees only take more words (a split's left
subtree rarely spans two). Many deep trees (1000 x 63 leaves) go to the
byte kernel of :mod:`riskml.explain.predictor_binned` instead: features as
bin numbers, the bitvectors as byte planes, four times the rows a vector
instruction (:meth:`TreePredictor.kernel_for` chooses, per call). Raw scores
are summed tree by tree in LightGBM's order, in float64, so they are bit for
bit LightGBM's; the link (sigmoid, softmax) is the objective's.

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
from numba.cpython.unsafe.numbers import trailing_zeros
import numpy as np
import pandas as pd
import lightgbm as lgb

from riskml.exceptions import SchemaError
from riskml.explain import predictor_binned as binned
from riskml.explain.trees import ZERO_THRESHOLD, append_split, dump_model, in_bitset, link_children

#: Rows per chunk (one thread each): a chunk's transposed features stay in L2.
CHUNK = 1024

#: The byte kernel scores trees of this many splits on average and more, where the trees to score have
#: this many splits per feature they read and more (below, binning the chunk costs more than it saves;
#: measured in ``benchmarks/bench_scorer.py``).
BINNED_MIN_SPLITS, BINNED_SPLITS_PER_FEATURE = 24, 150

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
        kernel_: ``"auto"`` (each call takes the kernel :meth:`kernel_for` names), or the one kernel
            the model allows (``"bitvector"``: categorical or Zero-missing splits, more than 254
            thresholds on a feature); setting ``"bitvector"`` or ``"binned"`` forces one.

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
        self.tree_output_ = np.arange(self.n_trees_, dtype=np.int64) % self.n_outputs_
        # the leaves in each tree's left-to-right order (pre-order meets them so), and per split the
        # 32-bit words of its tree's leaf bitvector that a row going right clears: its left subtree's leaves
        self.leaf_value_ = self.value_[is_leaf]
        self.leaf_start_, self.words_, self.mask_start_, self.mask_word_, self.mask_bits_ = binned.leaf_masks(
            is_leaf, self.right_, self.tree_start_)
        # which used features each tree splits on: a subset of trees (a what-if) transposes only theirs
        tree_of_node = np.repeat(np.arange(self.n_trees_), np.diff(self.tree_start_))
        self.tree_features_ = np.zeros((self.n_trees_, len(self.used_features_)), dtype=bool)
        self.tree_features_[tree_of_node[~is_leaf], self.feature_[~is_leaf]] = True
        self._binned = self._compile_binned(is_leaf)
        self.kernel_ = "auto" if self._binned is not None else "bitvector"
        return True

    def _compile_binned(self, is_leaf: np.ndarray) -> dict | None:
        """The byte kernel's tables (:mod:`riskml.explain.predictor_binned`), per input dtype; None
        where a split is categorical or of missing type Zero, or a feature has too many thresholds."""
        if np.isin(self.kind_, (_ZERO_LEFT, _ZERO_RIGHT, _CAT)).any():
            return None
        split = np.flatnonzero(~is_leaf)
        nan_right = self.kind_ == _LE  # compared as bin - 1: NaN's bin 0 wraps to 255, past every limit
        out = {"offset": np.where(nan_right, 255, 0).astype(np.uint8)}
        for dtype, thr in ((np.float32, self.threshold32_), (np.float64, self.threshold_)):
            tables = binned.bin_tables(self.feature_, thr, split, len(self.used_features_))
            if tables is None:
                return None
            edges, rank, n_edges = tables
            out[dtype] = (edges, n_edges, np.where(nan_right, rank, rank + 1).astype(np.uint8))
        (out["leaf_start"], out["planes"], out["mask_start"], out["mask_word"],
         out["mask_bits"]) = binned.leaf_masks(is_leaf, self.right_, self.tree_start_, width=8)
        return out

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
        if X.shape[0] and self.kernel_for(order, fill) == "binned":
            b, zero = self._binned, np.array([ZERO_THRESHOLD], dtype=X.dtype)
            edges, n_edges, limit = b[X.dtype.type]
            binned.binned_kernel(X, self.used_features_, fill, edges, n_edges, order, self.tree_start_,
                                 self.tree_output_, self.feature_, b["offset"], limit, b["mask_start"],
                                 b["mask_word"], b["mask_bits"], b["leaf_start"], b["planes"], self.leaf_value_,
                                 zero, out)
        elif X.shape[0]:
            thr = self.threshold32_ if X.dtype == np.float32 else self.threshold_
            _raw_kernel(X, self.used_features_, fill, order, self.tree_start_, self.tree_output_, self.kind_, self.feature_, thr,
                        self.cat_start_, self.cat_len_, self.cat_words_, self.mask_start_, self.mask_word_, self.mask_bits_,
                        self.leaf_start_, self.words_, self.leaf_value_, np.array([ZERO_THRESHOLD], dtype=X.dtype), out)
        if self._average:  # boosting=rf: LightGBM averages the iterations
            out /= self.n_trees_ // self.n_outputs_
        return out

    def kernel_for(self, trees: np.ndarray, fill: np.ndarray) -> str:
        """The kernel that scores ``trees`` fastest (``kernel_``, unless "auto"): the byte kernel bins
        every feature of ``fill`` first, which pays where the trees are deep and many per feature."""
        if self.kernel_ != "auto":
            return self.kernel_
        splits = (np.diff(self.tree_start_)[trees] // 2).sum()  # a tree of L leaves has 2L - 1 nodes
        deep = len(trees) > 0 and splits >= BINNED_MIN_SPLITS * len(trees)
        return "binned" if deep and splits >= BINNED_SPLITS_PER_FEATURE * len(fill) else "bitvector"

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


def _round_down_f32(t: np.ndarray) -> np.ndarray:
    """The largest float32 ``<= t`` for each threshold (``-inf``/``inf`` beyond float32's range)."""
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    too_big = t32.astype(np.float64) > t
    t32[too_big] = np.nextafter(t32[too_big], np.float32(-np.inf))
    return t32


@nb.njit(parallel=True, cache=True, nogil=True)  # nogil: the reader and writer threads go on meanwhile
def _raw_kernel(X, used, fill, trees, tree_start, tree_output, kind, feature, thr, cat_start, cat_len, cat_words,
                mask_start, mask_word, mask_bits, leaf_start, words, leaf_value, zero, out):  # pragma: no cover - numba
    """Rows in chunks (a thread each); per chunk, trees outer and rows inner: every split of a tree is
    decided for the whole chunk, and clears the leaves a row going right can no longer reach from the
    row's bitvector of its tree's leaves; the row's leaf is the first one left.

    Scratch arrays are 2-D and read through row views indexed from 0: with flat
    arrays and computed offsets numba's negative-index wraparound keeps LLVM
    from vectorising the row loops (it gathers instead: measured 3-4x slower).
    """
    n = X.shape[0]
    n_out = out.shape[1]
    CH = CHUNK
    z = zero[0]
    ALL = np.uint32(0xFFFFFFFF)
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
        bv = np.empty((max(words.max(), 1), CH), dtype=np.uint32)  # each row's leaves still reachable
        go = np.empty(CH, dtype=np.uint32)  # all ones: the row goes left at the current split
        acc = np.zeros((n_out, CH))
        for ti in range(trees.shape[0]):
            t = trees[ti]
            n_words = words[t]
            for w in range(n_words):
                bw = bv[w]
                for r in range(nr):
                    bw[r] = ALL
            for j in range(tree_start[t], tree_start[t + 1]):
                k = kind[j]
                if k == 0:
                    continue
                x, th, e0, e1 = xt[feature[j]], thr[j], mask_start[j], mask_start[j + 1]
                if k <= 2 and e1 == e0 + 1:  # the common split: decided and applied in one pass
                    bw, m = bv[mask_word[e0]], mask_bits[e0]
                    if k == 1:  # NaN goes right
                        for r in range(nr):
                            bw[r] &= m | (np.uint32(0) - np.uint32(x[r] <= th))
                    else:  # NaN goes left
                        for r in range(nr):
                            bw[r] &= m | (np.uint32(0) - np.uint32(not x[r] > th))
                    continue
                if k == 1:
                    for r in range(nr):
                        go[r] = np.uint32(0) - np.uint32(x[r] <= th)
                elif k == 2:
                    for r in range(nr):
                        go[r] = np.uint32(0) - np.uint32(not x[r] > th)
                elif k == 3 or k == 4:  # zero (and NaN, read as zero) go the default way
                    for r in range(nr):
                        v = x[r]
                        left = (k == 3) if np.isnan(v) or (v >= -z and v <= z) else v <= th
                        go[r] = np.uint32(0) - np.uint32(left)
                else:
                    for r in range(nr):
                        go[r] = np.uint32(0) - np.uint32(in_bitset(x[r], cat_start[j], cat_len[j], cat_words))
                for e in range(e0, e1):
                    bw, m = bv[mask_word[e]], mask_bits[e]
                    for r in range(nr):
                        bw[r] &= m | go[r]
            ac, lv = acc[tree_output[t]], leaf_value[leaf_start[t]:leaf_start[t + 1]]
            if n_words == 1:
                b0 = bv[0]
                for r in range(nr):
                    ac[r] += lv[trailing_zeros(b0[r])]
            elif n_words == 2:  # one 64-bit word: no branch on which word holds the leaf
                b0, b1 = bv[0], bv[1]
                for r in range(nr):
                    ac[r] += lv[trailing_zeros(np.uint64(b0[r]) | (np.uint64(b1[r]) << np.uint64(32)))]
            else:
                for r in range(nr):
                    w = 0
                    while bv[w, r] == 0:  # the rightmost leaf is never cleared: a word is left
                        w += 1
                    ac[r] += lv[32 * w + trailing_zeros(bv[w, r])]
        for o in range(n_out):
            ao = acc[o]
            for r in range(nr):
                out[r0 + r, o] = ao[r]
