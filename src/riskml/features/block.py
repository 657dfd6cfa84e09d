"""The month grids of one chunk of borrowers, as the snapshot features read them (:class:`Block`).

Every read is of grid rows ``<= t`` (a view ``k`` rows back, a trailing window,
a cumulative sum up to the last snapshot row), which is what makes the
features leak-free; :mod:`riskml.features.windows` says what each feature is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class Block:
    """The grids of one chunk of borrowers and the snapshot rows ``pos`` to compute at.

    ``pos`` is an arithmetic run of grid rows (first, step, count), so the row
    ``t - k`` of every snapshot is a strided *view* of a grid, never a copy.
    Grids come lazily through ``get(column)`` (a ``(n_rows, n)`` float32 array)
    and only the last few are cached, so a chunk never holds every column.
    """

    def __init__(self, get: Callable[[str], np.ndarray], status: np.ndarray, cause: np.ndarray | None,
                 pos: np.ndarray, dense: frozenset[str] = frozenset(), first_real: int = 0):
        self._get, self.status, self.cause, self.dense, self.first_real = get, status, cause, dense, first_real
        self.pos = np.asarray(pos)
        step = int(self.pos[1] - self.pos[0]) if len(self.pos) > 1 else 1
        assert step > 0 and (np.diff(self.pos) == step).all(), "snapshot rows must be an arithmetic run"
        self._first, self._step, self._n = int(self.pos[0]), step, len(self.pos)
        self._cache: dict[tuple, np.ndarray] = {}

    def at(self, x: np.ndarray, k: int = 0) -> np.ndarray:
        """Rows ``pos - k`` of ``x`` (a view)."""
        first = self._first - k
        return x[first:first + self._step * (self._n - 1) + 1:self._step]

    def _cached(self, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = make()
        return self._cache[key]

    def g(self, col: str) -> np.ndarray:
        return self._cached(("g", col), lambda: self._get(col))

    def zeros_nan(self, col: str) -> np.ndarray:
        def build():
            x = self.g(col).copy()
            x[np.isnan(x)] = 0.0
            return x
        return self._cached(("z", col), build)

    def n_valid(self, col: str, w: int) -> np.ndarray:
        """Months with data in the trailing window, as float32 (for dense columns, shared and analytic)."""
        if col in self.dense:  # NaN only in the pad rows: min(w, months since the grid's first real row)
            return self._cached(("n*", w), lambda: np.minimum(w, self.pos - self.first_real + 1)
                                .astype(np.float32)[:, None])
        return self._cached(("n", col, w), lambda: self.wsum(~np.isnan(self.g(col)), w).astype(np.float32))

    def wsum(self, x: np.ndarray, w: int) -> np.ndarray:
        """Sum of rows ``pos - w + 1 .. pos`` of ``x`` (w views added; exact and prefix-only)."""
        out = self.at(x).astype(np.float32 if x.dtype.kind == "f" else np.int16)
        for k in range(1, w):  # a loop over window offsets, never over borrowers
            out += self.at(x, k)
        return out

    def csum(self, key: tuple, make: Callable[[], np.ndarray], dtype=np.int32) -> np.ndarray:
        """Cumulative sum over months (row ``r + 1`` = rows ``0..r``), up to the last snapshot row."""
        def build():
            x = make()
            last = int(self.pos[-1]) + 1
            out = np.zeros((last + 1, x.shape[1]), dtype=dtype)
            for r in range(last):  # a loop over months, vectorised over borrowers
                np.add(out[r], x[r], out=out[r + 1], casting="unsafe")
            return out
        return self._cached(key, build)

    def window(self, key: tuple, make: Callable[[], np.ndarray], w: int, dtype=np.int32) -> np.ndarray:
        """Sum over the trailing window ``w`` at every snapshot row (whole numbers: exact either way)."""
        if self._n == 1:  # one snapshot row (prediction): add the window's rows, not the whole history's
            p = self._first
            rows = self._cached(("w1",) + key, make)[max(p - w + 1, 0):p + 1]
            return rows.sum(axis=0, dtype=dtype)[None, :]
        cs = self.csum(key, make, dtype)
        return self.at(cs, -1) - self.at(cs, w - 1)

    def running(self, col: str, w: int, fn) -> np.ndarray:
        x = self.g(col)
        out = self.at(x)
        for k in range(1, w):  # a loop over window offsets, never over borrowers
            out = fn(out, self.at(x, k))
        return out

    def since(self, event: np.ndarray) -> np.ndarray:
        if self._n == 1:  # one snapshot row (prediction): the last event at or before it, by a reduction
            p = self._first
            back = event[p::-1]  # rows p, p-1, .., 0
            first = back.argmax(axis=0)
            hit = back[first, np.arange(back.shape[1])]
            return np.where(hit, first, np.nan)[None, :]
        idx = np.where(event, np.arange(event.shape[0], dtype=np.int32)[:, None], -1)
        last = self.at(np.maximum.accumulate(idx, axis=0))
        return np.where(last >= 0, self.pos[:, None] - last, np.nan)
