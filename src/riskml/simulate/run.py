"""Run the simulation block by block: seeding, chunks, workers and panel frames.

A block of ``block_size`` borrowers is the unit of determinism: block ``b``
draws its population and its monthly random numbers from
``SeedSequence([seed, b])``. A chunk simulates a whole number of blocks at
once (vectorised over all of them), so the panel does not depend on the
chunk size or the number of workers.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import multiprocessing as mp
import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from riskml.schema import BEHAVIOUR, PANEL, STATUS_DTYPE, category_dtype
from riskml.factors import CAUSES
from riskml.simulate import behaviour as bh, book
from riskml.simulate.config import SimConfig
from riskml.simulate.engine import Env, step
from riskml.simulate.population import State, draw_population, truth_frame

_BEHAVIOUR = tuple(c.name for c in BEHAVIOUR)


@dataclass
class SimResult:
    """A whole simulated data set in memory: the panel and the hidden truth."""

    panel: pd.DataFrame
    truth: pd.DataFrame


def block_rngs(seed: int, block: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The population stream and the monthly stream of one block."""
    pop, dyn = np.random.SeedSequence([seed, block]).spawn(2)
    return np.random.default_rng(pop), np.random.default_rng(dyn)


def block_ids(cfg: SimConfig, block: int) -> np.ndarray:
    lo = block * cfg.block_size
    return np.arange(lo, min(lo + cfg.block_size, cfg.n_borrowers), dtype=np.int64)


def start_blocks(cfg: SimConfig, blocks: list[int]) -> tuple[State, list[np.random.Generator], list[int]]:
    """Population state of several blocks side by side, their monthly streams and sizes."""
    states, rngs, sizes = [], [], []
    for b in blocks:
        pop, dyn = block_rngs(cfg.seed, b)
        n = len(block_ids(cfg, b))
        states.append(draw_population(pop, n, cfg.type_mix))
        rngs.append(dyn)
        sizes.append(n)
    return State.concat(states), rngs, sizes


class BlockDraws:
    """One month's uniforms and normals for blocks side by side, each block from its own stream.

    The matrices are filled in place every call (no allocation per month);
    a block's stream is consumed row by row, the same whatever the chunk.
    """

    def __init__(self, rngs: list[np.random.Generator], sizes: list[int]):
        n = sum(sizes)
        self.uniforms = np.empty((bh.N_UNIFORM, n), dtype=np.float32)
        self.normals = np.empty((bh.N_NORMAL, n), dtype=np.float32)
        edges = np.cumsum([0, *sizes])
        self.parts = [(r, int(lo), int(hi)) for r, lo, hi in zip(rngs, edges[:-1], edges[1:])]

    def __call__(self, upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw the month of every block that starts before column ``upto`` (default: all blocks).

        A block's accounts open in id order, so a block draws from the month its first account opens
        on, whatever the chunk it is simulated in; columns of blocks not drawn are left as they were.
        """
        for r, lo, hi in self.parts:
            if upto is not None and lo >= upto:
                break
            for k in range(bh.N_UNIFORM):
                r.random(dtype=np.float32, out=self.uniforms[k, lo:hi])
            for k in range(bh.N_NORMAL):
                r.standard_normal(dtype=np.float32, out=self.normals[k, lo:hi])
        return self.uniforms, self.normals


def run_months(cfg: SimConfig, blocks: list[int], *, until: int | None = None
               ) -> Iterator[tuple[int, State, int, dict[str, np.ndarray]]]:
    """Step whole blocks through the calendar months their accounts are open in.

    Yields ``(t, state, n_open, rows)`` for every month ``t`` from the first opening in the blocks to
    ``until`` (default: the last month): the accounts open at ``t`` are the first ``n_open`` of the
    blocks (ids open in order), ``state`` holds every account (the ones not open yet as drawn) and
    ``rows`` the month's panel columns of the open ones. The generator and the oracle's replay both
    run the history through here, so they see the same accounts in the same states.
    """
    state, rngs, sizes = start_blocks(cfg, blocks)
    ids = np.concatenate([block_ids(cfg, b) for b in blocks])
    start = book.start_months(cfg, ids)
    env = Env.build(cfg)
    draws = BlockDraws(rngs, sizes)
    last = cfg.n_months - 1 if until is None else until
    for t in range(int(start[0]), last + 1):
        n_open = int(np.searchsorted(start, t, side="right"))
        U, Z = draws(n_open)
        opening = start[:n_open] == t
        if n_open == len(ids):
            state, rows = step(state, t, U, Z, cfg, env, opening)
        else:  # step the open accounts only; the others wait in their drawn state
            part, rows = step(state.take(slice(0, n_open)), t, U[:, :n_open], Z[:, :n_open], cfg, env, opening)
            # the step shifts lags by reassigning arrays (score_lag2 <- score_lag1), so a new value may be
            # a view of another array written back here: copy those before writing any
            new = {k: v if v.base is None else v.copy() for k, v in part.arrays.items()}
            for k, v in new.items():
                state.arrays[k][:n_open] = v
        yield t, state, n_open, rows


def simulate_chunk(cfg: SimConfig, blocks: list[int]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Simulate whole blocks over all months, each account from the month it opens.

    Returns:
        ``(columns, truth)``: the panel columns as arrays sorted by borrower then
        month (status and cause as codes), and the blocks' truth table.
    """
    ids = np.concatenate([block_ids(cfg, b) for b in blocks])
    start = book.start_months(cfg, ids)
    n_rows = cfg.n_months - start.astype(np.int64)  # an account has a row from its opening month on
    offsets = np.r_[0, np.cumsum(n_rows)[:-1]]
    total = int(n_rows.sum())
    cols: dict[str, np.ndarray] = {"borrower_id": np.repeat(ids, n_rows),
                                   "month": np.empty(total, dtype=np.int32)}
    for t, state, n_open, rows in run_months(cfg, blocks):
        dest = offsets[:n_open] + (t - start[:n_open])
        cols["month"][dest] = t
        for c in (*_BEHAVIOUR, "status", "cause"):
            if c not in cols:
                cols[c] = np.empty(total, dtype=rows[c].dtype)
            cols[c][dest] = rows[c]
    cols["months_on_book"] = (cols["month"] - np.repeat(start, n_rows)).astype(np.int32)
    return cols, truth_frame(state, ids)  # the hidden traits never change


def panel_frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """The panel frame of a chunk, columns and dtypes exactly per ``schema.PANEL``."""
    data = {}
    for c in PANEL.columns:
        v = cols[c.name]
        if c.name == "status":
            data[c.name] = pd.Categorical.from_codes(v, dtype=STATUS_DTYPE)
        elif c.name == "cause":
            data[c.name] = pd.Categorical.from_codes(v, dtype=category_dtype(CAUSES))
        else:
            data[c.name] = v.astype(c.dtype, copy=False)
    return pd.DataFrame(data)


def panel_table(cols: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """The Arrow table of a chunk as :func:`panel_frame` would convert, without the frame:
    numbers zero-copy, status and cause from their codes. ``schema``: the frames' Arrow schema."""
    arrays = []
    for c in PANEL.columns:
        v, typ = cols[c.name], schema.field(c.name).type
        if c.categories:
            values = pa.array(list(c.categories), pa.string())
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(v, mask=v < 0), values).cast(typ))
        else:
            arrays.append(pa.array(v.astype(c.dtype, copy=False), type=typ))
    return pa.Table.from_arrays(arrays, schema=schema)


def _chunk_job(args: tuple[SimConfig, list[int]]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    return simulate_chunk(*args)


def chunk_blocks(cfg: SimConfig) -> list[list[int]]:
    """The blocks of each chunk, in order."""
    k = cfg.chunk_blocks
    return [list(range(i, min(i + k, cfg.n_blocks))) for i in range(0, cfg.n_blocks, k)]


def iter_chunks(cfg: SimConfig, *, progress: bool | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield ``(panel_chunk, truth_chunk)`` in borrower order, whole blocks at a time.

    With ``cfg.workers > 1`` chunks are simulated in a process pool; at most
    ``workers + 1`` chunks are in flight, so memory stays flat as N grows.

    Args:
        cfg: the simulation config.
        progress: tqdm progress bar; ``None`` shows it on a terminal only.
    """
    for cols, truth in iter_chunk_columns(cfg, progress=progress):
        yield panel_frame(cols), truth


def iter_chunk_columns(cfg: SimConfig, *, progress: bool | None = None
                       ) -> Iterator[tuple[dict[str, np.ndarray], pd.DataFrame]]:
    """:func:`iter_chunks` without the frames: the panel columns as arrays (status and cause as codes),
    for writers that go straight to Arrow."""
    jobs = [(cfg, blocks) for blocks in chunk_blocks(cfg)]
    bar = tqdm(total=cfg.n_borrowers, unit="borrower", disable=None if progress is None else not progress,
               desc="simulate")
    try:
        if cfg.workers == 1 or len(jobs) == 1:
            results: Iterator = map(_chunk_job, jobs)
            for cols, truth in results:
                bar.update(len(truth))
                yield cols, truth
            return
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as pool:
            window = cfg.workers + 1
            futures = [pool.submit(_chunk_job, j) for j in jobs[:window]]
            for i in range(len(jobs)):
                cols, truth = futures[i].result()
                futures[i] = None  # free the result as soon as it is used
                if i + window < len(jobs):
                    futures.append(pool.submit(_chunk_job, jobs[i + window]))
                bar.update(len(truth))
                yield cols, truth
    finally:
        bar.close()


def simulate(cfg: SimConfig) -> SimResult:
    """Simulate the whole data set in memory (for tests and small N; use ``iter_chunks`` for large N).

    Example:
        >>> res = simulate(SimConfig(n_borrowers=50, n_months=12, block_size=16))  # accounts open month by month
        >>> len(res.panel), len(res.truth)
        (256, 50)
    """
    panels, truths = zip(*iter_chunks(cfg, progress=False))
    return SimResult(pd.concat(panels, ignore_index=True), pd.concat(truths, ignore_index=True))
