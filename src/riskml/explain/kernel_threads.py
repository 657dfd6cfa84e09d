"""The threads of riskml's compiled (numba) kernels: the factor TreeSHAP, the tree scorer and the month
features. numba's thread count belongs to the calling thread, so every place that shares the cores out
(a scoring thread, a worker process, an explainer given ``n_threads``) sets it here, the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba as nb

__all__ = ["kernel_threads", "set_kernel_threads", "share_of_threads"]


def set_kernel_threads(n: int) -> None:
    """The calling thread's kernels run on ``n`` threads (at least 1, at most numba's pool)."""
    nb.set_num_threads(max(1, min(int(n), nb.config.NUMBA_NUM_THREADS)))


def share_of_threads(parts: int) -> int:
    """The calling thread's kernel threads shared out between ``parts`` threads or processes that run
    kernels at once: on 2 cores two scoring threads each run their kernels alone, where a team of 2 per
    thread only oversubscribes the cores."""
    return max(1, nb.get_num_threads() // max(1, parts))


@contextmanager
def kernel_threads(n: int | None) -> Iterator[None]:
    """Within the block the calling thread's kernels run on ``n`` threads (None: unchanged); restored after."""
    before = nb.get_num_threads()
    set_kernel_threads(n or before)
    try:
        yield
    finally:
        nb.set_num_threads(before)
