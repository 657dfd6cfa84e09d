"""The scorer's kernel for deep trees: features as bin numbers, leaf bitvectors as byte planes.

On many deep trees (1000 x 63 leaves) the bitvector kernel of :mod:`riskml.explain.predictor` spends its time
deciding every split for every row in 32-bit lanes (a float32 compare, a 32-bit word of the row's leaf
bitvector). Here each feature value of a chunk is first replaced by its bin: the number of the model's
distinct thresholds on that feature below it, plus one (0 for NaN). A split then compares one byte
with one byte, and a row's leaf bitvector is held as byte planes (plane ``w`` holds leaves ``8w ..
8w+7`` of every row of the chunk), so a split clears the left subtree's leaves in the plane(s) it
spans: every step of the row loop works on 8-bit lanes, four times as many per vector instruction
(the byte-wise bitvectors of RapidScorer, Ye et al. 2018).

Exactness: with the distinct thresholds ``T_0 < ... < T_{m-1}`` of a feature and ``b(x)`` the count of
``T_i < x``, ``x <= T_k`` iff ``b(x) <= k``; so the split decides as the float compare does, bit for
bit, for float32 input against the float32-rounded thresholds and for float64 input against the
exact ones. NaN is bin 0: a split whose NaN goes right compares ``bin - 1`` (NaN wraps to 255), one
whose NaN goes left compares ``bin`` itself. A model qualifies when every split is numerical with
missing type None or NaN and no feature has more than 254 distinct thresholds (LightGBM's default
255 bins give at most 254); anything else is scored by the float kernel.
"""

from __future__ import annotations

import numba as nb
from numba.cpython.unsafe.numbers import trailing_zeros
import numpy as np

#: Rows per chunk: the chunk's bins (one byte per used feature and row) and byte planes stay in L2.
CHUNK = 2048
#: Features with at most this many thresholds are binned by counting, a vectorised compare each.
LINEAR = 24
#: Most distinct thresholds a feature may have: bins 1..255 for values, 0 for NaN.
MAX_THRESHOLDS = 254


def bin_tables(feature: np.ndarray, threshold: np.ndarray, split: np.ndarray, n_used: int):
    """Each used feature's distinct thresholds (padded to 256 with ``inf``), each split's threshold rank,
    and each feature's count of distinct thresholds (float32 rounding may merge two).

    None when a feature has more than :data:`MAX_THRESHOLDS` distinct thresholds.
    """
    edges = np.full((n_used, 256), np.inf, dtype=threshold.dtype)
    rank = np.zeros(len(feature), dtype=np.int64)
    f, t = feature[split], threshold[split]
    order = np.lexsort((t, f))
    f, t = f[order], t[order]
    new = np.ones(len(f), dtype=bool)
    new[1:] = (f[1:] != f[:-1]) | (t[1:] != t[:-1])
    group = np.cumsum(new) - 1  # distinct (feature, threshold) pairs, in order
    first_of_feature = np.searchsorted(f[new], np.arange(n_used))
    k = group - first_of_feature[f]  # a threshold's rank among its feature's distinct thresholds
    if len(k) and k.max() >= MAX_THRESHOLDS:
        return None
    edges[f[new], k[new]] = t[new]
    rank[split[order]] = k
    return edges, rank, np.bincount(f[new], minlength=n_used)


def leaf_masks(is_leaf: np.ndarray, right: np.ndarray, tree_start: np.ndarray, width: int = 32):
    """Each tree's first leaf and bitvector words, and per node its (word, bits to keep) entries.

    A split's left subtree holds the leaves ``lo .. hi-1`` of its tree (``hi``: its right child's first
    leaf); a row that goes right can reach none of them, so those bits are cleared. ``width``: bits a
    word (32 for the float kernel, 8 for the byte planes here).
    """
    n = len(is_leaf)
    rank = np.cumsum(is_leaf) - 1  # the model's leaves, numbered left to right
    # the first leaf of each node's subtree: the next leaf in pre-order, at or after the node
    nxt = np.minimum.accumulate(np.where(is_leaf, np.arange(n), n)[::-1])[::-1]
    first = rank[nxt]
    leaf_start = np.append(first[tree_start[:-1]], int(is_leaf.sum()))
    words = (np.diff(leaf_start) + width - 1) // width
    tree_of = np.repeat(np.arange(len(tree_start) - 1), np.diff(tree_start))
    split = np.flatnonzero(~is_leaf)
    base = leaf_start[tree_of[split]]
    lo, hi = first[split] - base, first[right[split]] - base
    count = (hi - 1) // width - lo // width + 1  # words a split's left subtree spans
    per_node = np.zeros(n, dtype=np.int64)
    per_node[split] = count
    owner = np.repeat(np.arange(len(split)), count)
    word = lo[owner] // width + np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    a = np.clip(lo[owner] - width * word, 0, width).astype(np.uint64)
    b = np.clip(hi[owner] - width * word, 0, width).astype(np.uint64)
    bits = ~((np.uint64(1) << b) - (np.uint64(1) << a)) & np.uint64((1 << width) - 1)
    return (leaf_start, words, np.concatenate([[0], np.cumsum(per_node)]), word.astype(np.int64),
            bits.astype(np.uint32 if width == 32 else np.uint8))


@nb.njit(parallel=True, cache=True, nogil=True)  # nogil: the reader and writer threads go on meanwhile
def binned_kernel(X, used, fill, edges, n_edges, trees, tree_start, tree_output, feature, offset, limit, mask_start,
                  mask_word, mask_bits, leaf_start, planes, leaf_value, zero, out):  # pragma: no cover - numba
    """Rows in chunks (a thread each): the chunk's used features binned once; per tree, each split's
    byte compare clears, for the rows going right, its left subtree's leaves in the byte planes; the
    row's leaf is the first one left. A split goes left iff ``uint8(bin + offset) <= limit``."""
    n = X.shape[0]
    n_out = out.shape[1]
    CH = CHUNK
    z = zero[0]
    for c in nb.prange((n + CH - 1) // CH):
        r0 = c * CH
        nr = min(n, r0 + CH) - r0
        xb = np.zeros((used.shape[0], CH), dtype=np.uint8)
        xt = np.empty(CH, dtype=X.dtype)
        for i in range(fill.shape[0]):  # the features the scored trees split on
            f = fill[i]
            src, dst, e, m = used[f], xb[f], edges[f], n_edges[f]
            for r in range(nr):
                v = X[r0 + r, src]
                xt[r] = 0.0 if abs(v) <= z else v  # LightGBM reads |x| <= kZeroThreshold as 0
            if m <= LINEAR:  # few thresholds: counted with a compare per threshold, across the rows
                for r in range(nr):
                    dst[r] = 1
                for k in range(m):
                    ek = e[k]
                    for r in range(nr):
                        dst[r] += np.uint8(xt[r] > ek)
                for r in range(nr):
                    if np.isnan(xt[r]):
                        dst[r] = 0
                continue
            for r in range(nr):  # a search without branches on the data
                v = xt[r]
                b = 0
                b += 128 if e[b + 127] < v else 0
                b += 64 if e[b + 63] < v else 0
                b += 32 if e[b + 31] < v else 0
                b += 16 if e[b + 15] < v else 0
                b += 8 if e[b + 7] < v else 0
                b += 4 if e[b + 3] < v else 0
                b += 2 if e[b + 1] < v else 0
                b += 1 if e[b] < v else 0
                dst[r] = 0 if np.isnan(v) else b + 1
        bv = np.empty((max(planes.max(), 1), CH), dtype=np.uint8)
        word = np.empty(CH, dtype=np.uint64)
        acc = np.zeros((n_out, CH))
        for ti in range(trees.shape[0]):
            t = trees[ti]
            n_planes = planes[t]
            for w in range(n_planes):
                bw = bv[w]
                for r in range(nr):
                    bw[r] = 255
            for j in range(tree_start[t], tree_start[t + 1]):
                x, o, lim = xb[feature[j]], offset[j], limit[j]
                for m in range(mask_start[j], mask_start[j + 1]):  # none for a leaf
                    bw, keep = bv[mask_word[m]], mask_bits[m]
                    for r in range(nr):
                        bw[r] &= keep | (np.uint8(0) - np.uint8(np.uint8(x[r] + o) <= lim))
            ac, lv = acc[tree_output[t]], leaf_value[leaf_start[t]:leaf_start[t + 1]]
            if n_planes <= 8:  # up to 64 leaves: the planes as one 64-bit word per row
                b0 = bv[0]
                for r in range(nr):
                    word[r] = np.uint64(b0[r])
                for w in range(1, n_planes):
                    bw, sh = bv[w], np.uint64(8 * w)
                    for r in range(nr):
                        word[r] |= np.uint64(bw[r]) << sh
                for r in range(nr):
                    ac[r] += lv[trailing_zeros(word[r])]
            else:
                for r in range(nr):
                    w = 0
                    while bv[w, r] == 0:  # the rightmost leaf is never cleared: a plane is left
                        w += 1
                    ac[r] += lv[8 * w + trailing_zeros(np.uint32(bv[w, r]))]
        for o in range(n_out):
            ao = acc[o]
            for r in range(nr):
                out[r0 + r, o] = ao[r]
