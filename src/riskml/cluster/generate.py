"""``riskml.generate`` on a Dask cluster: chunks of whole blocks simulated on the workers, each written
as one part of a partitioned parquet data set.

A part is exactly one chunk of :func:`riskml.simulate.run.chunk_blocks`
(``chunk_borrowers`` rounded down to whole blocks), simulated by the same
:func:`~riskml.simulate.run.simulate_chunk` as the single-machine path, from
the same per-block random streams: the rows of ``panel/part-*.parquet`` read
in name order are those of the single-machine ``panel.parquet``, value for
value. Parts hold whole borrowers in ascending id ranges, so they are already
partitioned by borrower for ``riskml.train`` and ``riskml.predict``.

Workers write their parts straight into the data set's temporary folder
(on a real cluster, a file system every worker and the client see) and
return only counts and checksums to the client.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from functools import partial
from typing import Any, Callable

import pyarrow as pa

from riskml.io.datasets import DICT_COLUMNS, PANEL_PARTS, TRUTH_PARTS
from riskml.io.files import ParquetSink, sha256_file
from riskml.simulate import SimConfig
from riskml.simulate.run import chunk_blocks, panel_frame, simulate_chunk
from riskml.simulate.summary import Summary


def part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def _write(frame, path: Path, *, row_group_size: int, use_dictionary) -> dict[str, Any]:
    with ParquetSink(path, pa.Schema.from_pandas(frame, preserve_index=False), row_group_size=row_group_size,
                     use_dictionary=use_dictionary) as sink:
        sink.write(frame)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def simulate_part(sim: SimConfig, k: int, blocks: list[int], folder: str) -> dict[str, Any]:
    """On a worker: simulate chunk ``k`` (its ``blocks``) and write its panel and truth parts under ``folder``."""
    cols, truth = simulate_chunk(sim, blocks)
    panel = panel_frame(cols)
    root, name = Path(folder), part_name(k)
    summary = Summary()
    summary.add(panel)
    ids = truth["borrower_id"].to_numpy()
    return {
        "k": k, "rows": len(panel), "borrowers": len(truth), "borrower_lo": int(ids[0]), "borrower_hi": int(ids[-1]),
        "summary": summary,
        f"{PANEL_PARTS}/{name}": _write(panel, root / PANEL_PARTS / name, row_group_size=sim.block_size * sim.n_months,
                                        use_dictionary=DICT_COLUMNS),
        f"{TRUTH_PARTS}/{name}": _write(truth, root / TRUTH_PARTS / name, row_group_size=sim.block_size,
                                        use_dictionary=True),
    }


def merge(summaries: list[Summary]) -> Summary:
    """One summary of several chunks' summaries (counts add up)."""
    out = Summary()
    for s in summaries:
        for f in dataclasses.fields(Summary):
            have, add = getattr(out, f.name), getattr(s, f.name)
            if isinstance(have, dict):
                for key, n in add.items():
                    have[key] = have.get(key, 0) + n
            else:
                setattr(out, f.name, have + add)
    return out


def write_parts(client: Any, sim: SimConfig, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate every chunk on the cluster into ``folder/panel/`` and ``folder/truth/``.

    Returns ``(manifest entries, summary)``: the manifest's ``files``,
    ``row_counts``, ``layout`` and ``partitions`` (each part's borrower range
    and rows, in order), and the whole data set's :class:`Summary`.
    """
    for sub in (PANEL_PARTS, TRUTH_PARTS):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    chunks = chunk_blocks(sim)
    # pure=False: every part is its own task even where two chunks' arguments hash alike
    futures = client.map(simulate_part, [sim] * len(chunks), range(len(chunks)), chunks,
                         [str(folder)] * len(chunks), pure=False)
    results = sorted(client.gather(futures), key=lambda r: r["k"])
    files = {key: meta for r in results for key, meta in r.items() if "/" in key}
    partitions = [{"file": f"{PANEL_PARTS}/{part_name(r['k'])}", "rows": r["rows"], "borrowers": r["borrowers"],
                   "borrower_lo": r["borrower_lo"], "borrower_hi": r["borrower_hi"]} for r in results]
    entries = {"layout": "parts", "files": files, "partitions": partitions,
               "row_counts": {PANEL_PARTS: sum(r["rows"] for r in results),
                              TRUTH_PARTS: sum(r["borrowers"] for r in results)}}
    return entries, merge([r["summary"] for r in results])


def parts_writer(client: Any) -> Callable[[SimConfig, Path], tuple[dict[str, Any], Summary]] | None:
    """The ``write_parts`` of :func:`riskml.io.datasets.write_dataset` on ``client`` (None: this process)."""
    return None if client is None else partial(write_parts, client)
