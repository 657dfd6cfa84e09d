"""Exact TreeSHAP with groups of features (the factors) as the players.

The game is LightGBM's path-dependent one, ``v(S) = E[f(x) | x_S]`` computed
the tree way: at a node whose split feature belongs to a factor in ``S``
follow ``x``; otherwise weight both children by their share of the training
rows (the covers). For one leaf ``l`` whose path splits on the factors
``1..k`` this is a product game

    v_l(S) = value_l * prod_{f in S} a_f(x) * prod_{f not in S} r_f

where ``a_f(x)`` is 1 when ``x`` follows every path node of factor ``f`` and
``r_f`` is the product of the cover ratios of those nodes. Its Shapley values
depend on ``x`` only through the bit pattern ``(a_1..a_k)``, so one table of
``2**k x k`` values per leaf is computed once per model (the idea of Fast
TreeSHAP v2, Yang 2021, with factors instead of features) and scoring is:
the node decisions, the pattern of every leaf, one table row added per leaf.
Cost per row is ``O(nodes + sum_l k_l)`` instead of ``O(T L D^2)``.

With every feature its own factor the values equal LightGBM's
``pred_contrib`` (a repeated feature on a path is merged the same way);
``tests/test_treeshap.py`` checks that and a brute-force Shapley sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numba as nb
import numpy as np

from riskml.exceptions import ModelError
from riskml.explain.treeshap_kernel import _kernel
from riskml.explain.trees import Unsupported, append_split, link_children

#: Leaves whose paths split on more factors than this make the tables too big
#: (2**k rows each); such models fall back to ``pred_contrib`` summed.
MAX_PATH_FACTORS = 12
#: Tables beyond this many bytes in all (deep trees, many factors) fall back too.
MAX_TABLE_BYTES = 1 << 30
#: A tree with at most this many splits also gets a *combination table*: one row per outcome of
#: all its splits (``2**splits`` rows) holding what each of its units adds, so that scoring it is
#: its split decisions and one index (a model of 4-leaf trees: 3 splits a tree, 2.4x faster; of
#: 12-leaf trees, 11 splits, 1.7x faster, bit for bit the same values either way).
MAX_COMBO_SPLITS = 11
#: Trees of more than this many splits get theirs only while the model's combination tables stay
#: within :data:`MAX_COMBO_BYTES` (a 12-leaf tree's is ~0.4 MiB: a 550-tree model would hold 200 MiB);
#: trees past the budget are walked, as trees past :data:`MAX_COMBO_SPLITS` are.
SMALL_COMBO_SPLITS = 5
MAX_COMBO_BYTES = 96 << 20



@dataclass
class TreeTables:
    """A model compiled into flat arrays for :func:`contributions`.

    Nodes of every tree are stored in pre-order (a parent before its
    children, the left child right after its parent), trees one after
    another. A *unit* is one table lookup: a leaf, or two sibling leaves
    merged into one table indexed by both leaves' patterns (fewer lookups).
    """

    n_outputs: int
    n_factors: int
    tree_start: np.ndarray  # (T+1,) node offsets
    tree_output: np.ndarray  # (T,) class of each tree
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray  # 0 None, 1 Zero, 2 NaN
    cat_start: np.ndarray  # -1 for numerical splits, else offset into cat_words
    cat_len: np.ndarray
    cat_words: np.ndarray  # category bitsets, 32 categories a word
    left: np.ndarray
    right: np.ndarray
    bit: np.ndarray  # 1 << tree-local index of the split's factor; 0 at leaves
    unit: np.ndarray  # the unit looked up at this node, -1 for none
    unit_src: np.ndarray  # 0: the pattern is read at the node (a leaf); 1: at its left child (a pair)
    unit_k: np.ndarray  # factors on the path
    unit_slot: np.ndarray  # offset into slot_bit / slot_factor
    unit_pair_bit: np.ndarray  # pairs: tree-local bit of the parent's factor, read at the right leaf; else -1
    unit_table: np.ndarray  # offset into table
    slot_bit: np.ndarray  # tree-local bit index of each path factor
    slot_factor: np.ndarray  # global factor index of each path factor
    table: np.ndarray  # Shapley values, row = pattern, column = path factor
    bias: np.ndarray  # (n_outputs,) v(empty set): the expected raw score
    combo_start: np.ndarray  # (T,) offset of the tree's combination table in combo_table; -1: none
    combo_width: np.ndarray  # (T,) values per row of it: the path factors of all the tree's units
    combo_table: np.ndarray  # rows = split outcomes, columns = each unit's slots in node order

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def _shapley_weights(k_max: int) -> np.ndarray:
    w = np.zeros((k_max + 1, k_max + 1))
    for k in range(1, k_max + 1):
        for s in range(k):
            w[k, s] = factorial(s) * factorial(k - 1 - s) / factorial(k)
    return w


@nb.njit(cache=True)  # compiled once per machine, not per process
def _fill_tables(values, ratios, ks, r_off, t_off, w, table):  # pragma: no cover - numba
    """Shapley values of each leaf's product game, for every pattern."""
    e = np.empty(w.shape[0] + 1)
    for leaf in range(ks.shape[0]):
        k, r0, base = ks[leaf], r_off[leaf], t_off[leaf]
        for p in range(1 << k):
            for i in range(k):
                # Sum over coalitions S of the other players that x follows
                # (a_j = 1) of w(|S|) * prod of r over the rest, through the
                # elementary symmetric polynomials e_t of the followed ratios.
                e[0] = 1.0
                n_p, prod_q = 0, 1.0
                for j in range(k):
                    if j == i:
                        continue
                    if (p >> j) & 1:
                        n_p += 1
                        e[n_p] = 0.0
                        for t in range(n_p, 0, -1):
                            e[t] += e[t - 1] * ratios[r0 + j]
                    else:
                        prod_q *= ratios[r0 + j]
                acc = 0.0
                for s in range(n_p + 1):
                    acc += w[k, s] * e[n_p - s]
                table[base + p * k + i] = values[leaf] * (((p >> i) & 1) - ratios[r0 + i]) * prod_q * acc


_NODE_KEYS = ("feature", "threshold", "default_left", "missing", "cat_start", "cat_len", "bit", "leaf")


def compile_model(dump: dict, feature_factor: np.ndarray, n_factors: int) -> TreeTables:
    """Flatten ``booster.dump_model()`` and precompute the per-leaf tables.

    Args:
        dump: the booster's ``dump_model()``.
        feature_factor: global factor index of each model feature.
        n_factors: number of factors (players).

    Raises:
        ModelError: linear trees or averaged trees (random forest).
        Unsupported: a tree with more than 31 factors, a path with more
            than :data:`MAX_PATH_FACTORS` factors, or tables over
            :data:`MAX_TABLE_BYTES`.
    """
    if dump.get("average_output"):
        raise ModelError("the model averages its trees (boosting=rf); expected a boosted model (gbdt, dart, goss)")
    n_out = int(dump.get("num_tree_per_iteration", 1))
    nodes: dict[str, list] = {k: [] for k in _NODE_KEYS}
    cat_words: list[int] = []
    leaves: list[tuple[float, list[int], list[int], list[float]]] = []  # value, slot bits, factors, ratios
    tree_start, bias = [0], np.zeros(n_out)
    for t, info in enumerate(dump["tree_info"]):
        root = info["tree_structure"]
        local: dict[int, int] = {}  # global factor -> tree-local bit
        stack = [(root, [])]  # node, path as [(factor, cover ratio)]
        while stack:
            node, path = stack.pop()
            if "leaf_value" in node:
                if node.get("leaf_coeff"):
                    raise ModelError("the model has linear trees (linear_tree=true); TreeSHAP, LightGBM's "
                                     "included, needs constant leaves: retrain with linear_tree=false")
                groups: dict[int, float] = {}
                for f, r in path:
                    groups[f] = groups.get(f, 1.0) * r
                if len(groups) > MAX_PATH_FACTORS:
                    raise Unsupported(f"a path splits on {len(groups)} factors (> {MAX_PATH_FACTORS})")
                value = float(node["leaf_value"])
                leaves.append((value, [local[f] for f in groups], list(groups), list(groups.values())))
                bias[t % n_out] += value * float(np.prod(list(groups.values())))
                for key in _NODE_KEYS:
                    nodes[key].append(len(leaves) - 1 if key == "leaf" else (-1 if key == "cat_start" else 0))
                continue
            f = int(feature_factor[node["split_feature"]])
            if f not in local:
                if len(local) == 31:
                    raise Unsupported("a tree splits on more than 31 factors")
                local[f] = len(local)
            append_split(nodes, cat_words, node, local[f])
            cover = float(node["internal_count"])
            kids = node["left_child"], node["right_child"]
            share = [_count(c) / cover if cover > 0 else 0.0 for c in kids]
            # Right pushed first so the left subtree follows its parent (pre-order).
            stack.append((kids[1], path + [(f, share[1])]))
            stack.append((kids[0], path + [(f, share[0])]))
        tree_start.append(len(nodes["leaf"]))
    arr = {k: np.asarray(v, dtype=np.float64 if k == "threshold" else np.int64) for k, v in nodes.items()}
    arr["bit"] = arr["bit"].astype(np.int32)
    starts = np.asarray(tree_start, dtype=np.int64)
    left, right = link_children(arr["leaf"] >= 0, starts)
    units = _build_units(leaves, arr.pop("leaf"), left, right, arr["bit"])
    return TreeTables(n_outputs=n_out, n_factors=n_factors, tree_start=starts,
                      tree_output=np.arange(len(starts) - 1, dtype=np.int64) % n_out,
                      cat_words=np.asarray(cat_words, dtype=np.uint32), left=left, right=right, bias=bias,
                      **arr, **units, **_combo_tables(starts, left, right, arr["bit"], units))


def _combo_tables(starts: np.ndarray, left: np.ndarray, right: np.ndarray, bit: np.ndarray,
                  units: dict[str, np.ndarray], max_splits: int | None = None) -> dict[str, np.ndarray]:
    """The combination table of every tree with at most ``max_splits`` splits (see :data:`MAX_COMBO_SPLITS`).

    Row ``c`` is what the kernel's mask-and-pattern walk adds for a row whose split outcomes are the
    bits of ``c`` (bit ``i``: the ``i``-th split in pre-order sends it left): the same walk, run here
    once for all ``2**splits`` outcomes at the same time.
    """
    max_splits = MAX_COMBO_SPLITS if max_splits is None else max_splits
    u_k, u_src, u_slot, u_pb, u_tab = (units[k] for k in ("unit_k", "unit_src", "unit_slot", "unit_pair_bit",
                                                            "unit_table"))
    unit, slot_bit, table = units["unit"], units["slot_bit"], units["table"]
    n_trees = len(starts) - 1
    start, width = np.full(n_trees, -1, dtype=np.int64), np.zeros(n_trees, dtype=np.int64)
    parts, n = [], 0
    for t in range(n_trees):  # once per model, over trees; vectorised over the outcomes
        a, b = int(starts[t]), int(starts[t + 1])
        splits = np.flatnonzero(left[a:b] >= 0) + a
        if len(splits) > max_splits:
            continue
        mine = unit[a:b][unit[a:b] >= 0]
        size = (1 << len(splits)) * int(u_k[mine].sum())  # its table's rows x columns (k per unit)
        if len(splits) > SMALL_COMBO_SPLITS and (n + size) * 8 > MAX_COMBO_BYTES:
            continue
        c = np.arange(1 << len(splits), dtype=np.int64)
        mask = np.zeros((b - a, len(c)), dtype=np.int64)  # per node: the factors failed on the way there
        for i, j in enumerate(splits):  # pre-order: a parent's mask is final before its children's
            go = (c >> i) & 1
            mask[left[j] - a] = mask[j - a] | np.where(go == 0, bit[j], 0)
            mask[right[j] - a] = mask[j - a] | np.where(go == 1, bit[j], 0)
        cols = []
        for j in np.flatnonzero(unit[a:b] >= 0) + a:
            u = unit[j]
            k, s0, src = int(u_k[u]), int(u_slot[u]), mask[j - a + u_src[u]]
            pat = np.zeros(len(c), dtype=np.int64)
            for s in range(k):
                pat |= (((src >> slot_bit[s0 + s]) & 1) ^ 1) << s
            if u_pb[u] >= 0:  # a pair: the right leaf's bit for the parent's factor
                pat |= (((mask[j - a + 2] >> u_pb[u]) & 1) ^ 1) << k
            cols += [table[u_tab[u] + pat * k + s] for s in range(k)]
        start[t], width[t] = n, len(cols)
        if cols:
            parts.append(np.stack(cols, axis=1).ravel())
            n += parts[-1].size
    return {"combo_start": start, "combo_width": width,
            "combo_table": np.concatenate(parts) if parts else np.zeros(0)}


def _count(node: dict) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _build_units(leaves: list, leaf: np.ndarray, left: np.ndarray, right: np.ndarray,
                 bit: np.ndarray) -> dict[str, np.ndarray]:
    """Per-leaf tables, then sibling leaves merged into one table per pair."""
    ks = np.array([len(lv[1]) for lv in leaves], dtype=np.int64)
    t_off = np.zeros(len(ks) + 1, dtype=np.int64)
    np.cumsum((1 << ks) * ks, out=t_off[1:])
    if t_off[-1] * 8 > MAX_TABLE_BYTES:
        raise Unsupported(f"tables of {t_off[-1] * 8 / 2**20:.0f} MiB (> {MAX_TABLE_BYTES / 2**20:.0f} MiB)")
    r_off = np.concatenate([[0], np.cumsum(ks)[:-1]]).astype(np.int64)
    ratios = np.array([r for lv in leaves for r in lv[3]], dtype=np.float64)
    leaf_tab = np.zeros(int(t_off[-1]))
    _fill_tables(np.array([lv[0] for lv in leaves]), ratios, ks, r_off, t_off,
                 _shapley_weights(max(int(ks.max(initial=0)), 1)), leaf_tab)
    unit = np.full(len(leaf), -1, np.int64)
    cols: dict[str, list] = {k: [] for k in ("unit_src", "unit_k", "unit_slot", "unit_pair_bit", "unit_table",
                                             "slot_bit", "slot_factor")}
    tables: list[np.ndarray] = []
    n_tab = 0

    def rows(lf: int) -> np.ndarray:
        return leaf_tab[t_off[lf]:t_off[lf + 1]].reshape(1 << ks[lf], ks[lf])

    for j in np.flatnonzero(leaf < 0):
        # A split whose two children are leaves: both share the path's factors.
        if leaf[left[j]] < 0 or leaf[right[j]] < 0 or ks[leaf[left[j]]] == 0:
            continue
        l1, l2 = leaf[left[j]], leaf[right[j]]
        k, bits = int(ks[l1]), leaves[l1][1]
        fs = bits.index(int(bit[j]).bit_length() - 1)  # slot of the parent's factor
        p1 = np.arange(1 << k)
        merged = np.concatenate([rows(l1) + rows(l2)[(p1 & ~(1 << fs)) | (q << fs)] for q in (0, 1)])
        unit[j] = _add_unit(cols, src=1, k=k, pair_bit=bits[fs], n_tab=n_tab, bits=bits, factors=leaves[l1][2])
        tables.append(merged.ravel())
        n_tab += merged.size
        unit[left[j]] = unit[right[j]] = -2  # done by the pair
    for j in np.flatnonzero(leaf >= 0):
        lf = leaf[j]
        if unit[j] == -2 or ks[lf] == 0:
            unit[j] = -1
            continue
        unit[j] = _add_unit(cols, src=0, k=int(ks[lf]), pair_bit=-1, n_tab=n_tab, bits=leaves[lf][1],
                            factors=leaves[lf][2])
        tables.append(rows(lf).ravel())
        n_tab += tables[-1].size
    out = {k: np.asarray(v, dtype=np.int32 if k == "slot_bit" else np.int64) for k, v in cols.items()}
    out["table"] = np.concatenate(tables) if tables else np.zeros(0)
    out["unit"] = unit
    return out


def _add_unit(cols: dict, *, src: int, k: int, pair_bit: int, n_tab: int, bits: list[int],
              factors: list[int]) -> int:
    for key, val in (("unit_src", src), ("unit_k", k), ("unit_slot", len(cols["slot_bit"])),
                     ("unit_pair_bit", pair_bit), ("unit_table", n_tab)):
        cols[key].append(val)
    cols["slot_bit"].extend(bits)
    cols["slot_factor"].extend(factors)
    return len(cols["unit_k"]) - 1


def contributions(tables: TreeTables, X: np.ndarray) -> np.ndarray:
    """Factor Shapley values of every row: ``(n_rows, n_outputs, n_factors + 1)``, bias last."""
    # float32 rows are widened chunk by chunk inside the kernel, not copied here.
    X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
    out = np.empty((X.shape[0], tables.n_outputs, tables.n_factors + 1))
    tb = tables
    _kernel(X, tb.tree_start, tb.tree_output, tb.feature, tb.threshold, tb.default_left, tb.missing, tb.cat_start,
            tb.cat_len, tb.cat_words, tb.left, tb.right, tb.bit, tb.unit, tb.unit_src, tb.unit_k, tb.unit_slot,
            tb.unit_pair_bit, tb.unit_table, tb.slot_bit, tb.slot_factor, tb.table, tb.combo_start, tb.combo_width,
            tb.combo_table, out[:, :, :-1])
    out[:, :, -1] = tb.bias
    return out
