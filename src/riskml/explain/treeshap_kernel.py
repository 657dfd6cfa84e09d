"""The factor TreeSHAP kernel: rows scored against the tables :mod:`riskml.explain.treeshap` compiles.

Two ways to find, per row and tree, the table rows to add: the general one
walks the tree's splits, keeps the factors each row failed on the way to each
node (a mask) and builds every unit's pattern from the masks; a tree with a
few splits (:data:`riskml.explain.treeshap.MAX_COMBO_SPLITS`) has one table
indexed by all its split outcomes at once, precomputed from the same walk.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from riskml.explain.trees import ZERO_THRESHOLD, in_bitset


@nb.njit(inline="always", cache=True)
def _add_combo(xt, a, b, cls, n_fac, feature, threshold, default_left, missing, cat_start, cat_len, cat_words,
               left, unit, unit_k, unit_slot, slot_factor, start, width, combo_table, combo, acc):  # pragma: no cover
    """One tree of a chunk by its combination table: bit ``i`` of a row's index is the outcome
    (1: left) of the tree's ``i``-th split in pre-order."""
    CH = combo.shape[0]
    for r in range(CH):
        combo[r] = 0
    i = 0
    for j in range(a, b):
        if left[j] < 0:
            continue
        x, thr, dl = xt[feature[j]], threshold[j], default_left[j] == 1
        if cat_start[j] >= 0:
            for r in range(CH):
                combo[r] |= np.int64(in_bitset(x[r], cat_start[j], cat_len[j], cat_words)) << i
        elif missing[j] == 1:  # zero and NaN go the default way
            for r in range(CH):
                v = x[r]
                z = np.isnan(v) | ((v >= -ZERO_THRESHOLD) & (v <= ZERO_THRESHOLD))
                combo[r] |= (np.int64(dl) if z else np.int64(v <= thr)) << i
        else:  # NaN goes the default way (NaN type) or reads as 0 (None type)
            nan_left = dl if missing[j] == 2 else 0.0 <= thr
            for r in range(CH):
                v = x[r]
                combo[r] |= np.int64((v <= thr) | (np.isnan(v) & nan_left)) << i
        i += 1
    off = 0
    for j in range(a, b):
        u = unit[j]
        if u < 0:
            continue
        k, s0 = unit_k[u], unit_slot[u]
        for s in range(k):
            dst = acc[cls * n_fac + slot_factor[s0 + s]]
            col = start + off + s
            for r in range(CH):
                dst[r] += combo_table[col + combo[r] * width]
        off += k


#: Rows per unit of work (one thread each): the chunk's scratch rows stay in the cache.
CHUNK = 256


@nb.njit(parallel=True, cache=True, nogil=True)  # nogil: the reader and writer threads go on meanwhile
def _kernel(X, tree_start, tree_output, feature, threshold, default_left, missing, cat_start, cat_len, cat_words,
            left, right, bit, unit, unit_src, unit_k, unit_slot, unit_pair_bit, unit_table, slot_bit, slot_factor,
            table, combo_start, combo_width, combo_table, out):  # pragma: no cover - numba
    """Rows in chunks (one thread each); per chunk, trees outer and rows inner
    so that the loops over rows vectorise and a tree's tables stay in cache.

    A tree with a combination table (``combo_start[t] >= 0``, a few splits) is scored by its
    split outcomes alone: each row's outcomes are one index into the table, whose row holds the
    values every unit of the tree would add for them, in the units' order (the same additions
    in the same order as the mask-and-pattern walk below, so the same bits, 2.4x faster).

    Scratch arrays are 2-D and read through row views indexed from 0: with
    flat arrays and computed offsets numba's negative-index wraparound kept
    LLVM from vectorising the row loops (numba 0.68: 2-3x slower)."""
    n, n_feat = X.shape
    n_out, n_fac = out.shape[1], out.shape[2]
    CH = CHUNK
    max_nodes = 1
    for t in range(tree_start.shape[0] - 1):
        max_nodes = max(max_nodes, tree_start[t + 1] - tree_start[t])
    for c in nb.prange((n + CH - 1) // CH):
        r0 = c * CH
        nr = min(n, r0 + CH) - r0
        xt = np.zeros((n_feat, CH))  # float64, as LightGBM compares
        for f in range(n_feat):
            xf = xt[f]
            for r in range(nr):
                v = X[r0 + r, f]
                xf[r] = 0.0 if abs(v) <= ZERO_THRESHOLD else v  # LightGBM reads |x| <= it as 0
        mask = np.empty((max_nodes, CH), dtype=np.int32)  # bit set: a factor x failed on the way to the node
        pat = np.empty(CH, dtype=np.int64)
        acc = np.zeros((n_out * n_fac, CH))
        for t in range(tree_start.shape[0] - 1):
            a, b, cls = tree_start[t], tree_start[t + 1], tree_output[t]
            if combo_start[t] >= 0:
                _add_combo(xt, a, b, cls, n_fac, feature, threshold, default_left, missing, cat_start, cat_len,
                           cat_words, left, unit, unit_k, unit_slot, slot_factor, combo_start[t], combo_width[t],
                           combo_table, pat, acc)
                continue
            root = mask[0]
            for r in range(CH):
                root[r] = 0
            for j in range(a, b):
                here = mask[j - a]
                if left[j] >= 0:
                    to_l, to_r, x, bj = mask[left[j] - a], mask[right[j] - a], xt[feature[j]], bit[j]
                    thr, dl = threshold[j], default_left[j] == 1
                    if cat_start[j] >= 0:
                        for r in range(CH):
                            go = np.int32(in_bitset(x[r], cat_start[j], cat_len[j], cat_words))
                            m = here[r]
                            to_l[r] = m | (bj & (go - 1))
                            to_r[r] = m | (bj & -go)
                    elif missing[j] == 1:  # zero and NaN go the default way
                        for r in range(CH):
                            v = x[r]
                            z = np.isnan(v) | ((v >= -ZERO_THRESHOLD) & (v <= ZERO_THRESHOLD))
                            go = np.int32(dl) if z else np.int32(v <= thr)
                            m = here[r]
                            to_l[r] = m | (bj & (go - 1))
                            to_r[r] = m | (bj & -go)
                    else:  # NaN goes the default way (NaN type) or reads as 0 (None type)
                        nan_left = dl if missing[j] == 2 else 0.0 <= thr
                        for r in range(CH):
                            v = x[r]
                            go = np.int32((v <= thr) | (np.isnan(v) & nan_left))
                            m = here[r]
                            to_l[r] = m | (bj & (go - 1))
                            to_r[r] = m | (bj & -go)
                u = unit[j]
                if u < 0:
                    continue
                k, s0, base, pb = unit_k[u], unit_slot[u], unit_table[u], unit_pair_bit[u]
                src = mask[j - a + unit_src[u]]
                for r in range(CH):
                    pat[r] = 0
                for s in range(k):
                    sb = slot_bit[s0 + s]
                    for r in range(CH):
                        pat[r] |= (((src[r] >> sb) & 1) ^ 1) << s
                if pb >= 0:  # the right leaf of a pair: did x follow the parent's factor there?
                    m_r = mask[j - a + 2]
                    for r in range(CH):
                        pat[r] |= (((m_r[r] >> pb) & 1) ^ 1) << k
                for s in range(k):
                    dst = acc[cls * n_fac + slot_factor[s0 + s]]
                    for r in range(CH):
                        dst[r] += table[base + pat[r] * k + s]
        for o in range(n_out):
            for f in range(n_fac):
                af = acc[o * n_fac + f]
                for r in range(nr):
                    out[r0 + r, o, f] = af[r]


