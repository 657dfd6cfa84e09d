"""Every file format riskml reads or writes: parquet, CSV, JSON manifests,
checksums, and atomic writes (a file appears under its final name only when
it is complete, so a killed job never leaves a half-written output that looks
finished)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

import lightgbm as lgb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.exceptions import InputError, ModelError

#: Parquet settings fixed so that equal frames give equal bytes.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


class _HashingFile(io.RawIOBase):
    """A file being written that keeps the sha256 of every byte written to it (no second read)."""

    def __init__(self, path: Path):
        super().__init__()
        self._f, self.sha256 = open(path, "wb"), hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha256.update(b)
        return self._f.write(b)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        super().close()


class ParquetSink:
    """Append frames (or Arrow tables) to one parquet file, written atomically on ``close()``.

    Each ``write`` becomes one or more row groups of at most ``row_group_size``
    rows, so the bytes depend on the data and that size only, not on how the
    caller chunked it (as long as chunks are multiples of it). ``sha256`` is
    the file's checksum once closed, computed as it is written.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, *, row_group_size: int | None = None,
                 use_dictionary: bool | list[str] = True):
        # use_dictionary: restrict dictionary encoding to low-cardinality columns; trying it on noisy
        # floats makes writing ~4x slower and the file larger.
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._file = _HashingFile(self._tmp)
        self._writer = pq.ParquetWriter(self._file, schema, use_dictionary=use_dictionary, **PARQUET_OPTIONS)
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self.sha256: str | None = None

    def write(self, data: pd.DataFrame | pa.Table) -> None:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, schema=self.schema,
                                                                               preserve_index=False)
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def close(self) -> Path:
        self._writer.close()
        self._file.close()
        self.sha256 = self._file.sha256.hexdigest()
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self._file.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write one frame to parquet atomically, without the index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, **PARQUET_OPTIONS)
    return Path(path)


def table_files(path: str | os.PathLike) -> list[Path]:
    """The data files behind ``path``: the file itself, or a folder's parquet/CSV parts in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in {".parquet", ".csv"} and not f.name.startswith("."))
        if not files:
            raise InputError(f"{p}: folder holds no .parquet or .csv files")
        return files
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.suffix not in {".parquet", ".csv"}:
        raise InputError(f"{p}: unsupported file type {p.suffix!r}; expected .parquet or .csv")
    return [p]


def read_table(path: str | os.PathLike, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a parquet or CSV file, or a folder of parts, into one frame."""
    frames = []
    for f in table_files(path):
        try:
            if f.suffix == ".parquet":
                frames.append(pd.read_parquet(f, columns=columns))
            else:
                frames.append(pd.read_csv(f, usecols=columns))
        except (OSError, ValueError, pa.ArrowException) as e:
            raise InputError(f"{f}: cannot read ({type(e).__name__}: {e})") from None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# --- model export (a LightGBM text model + a JSON manifest; never a pickle) ---

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"


def export_model_dir(model_text: str, manifest: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``<path>/model.txt`` and ``<path>/manifest.json`` atomically.

    ``model_text`` is ``booster.model_to_string()``. The manifest gains
    ``model_sha256`` (of model.txt as written) and ``files``; the model file is
    written first so a manifest never points at a file that is not there.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / MODEL_FILE) as tmp:
        tmp.write_text(model_text)
    manifest = {**manifest, "model_sha256": sha256_file(path / MODEL_FILE),
                "files": {"model": MODEL_FILE, "manifest": MANIFEST_FILE}}
    write_json(manifest, path / MANIFEST_FILE)
    return path


def load_model_dir(path: str | os.PathLike):
    """Load an exported model folder: ``(lightgbm.Booster, manifest dict)``.

    Verifies model.txt against the manifest's sha256 and never unpickles.
    Raises :class:`~riskml.exceptions.ModelError` for a missing file, a
    checksum mismatch or a model whose features differ from the manifest's.
    """
    path = Path(path)
    model_file, manifest_file = path / MODEL_FILE, path / MANIFEST_FILE
    for f in (model_file, manifest_file):
        if not f.is_file():
            raise ModelError(f"{path}: model folder lacks {f.name}; expected {MODEL_FILE} and {MANIFEST_FILE}")
    manifest = read_json(manifest_file)
    want, got = manifest.get("model_sha256"), sha256_file(model_file)
    if want != got:
        raise ModelError(f"{model_file}: sha256 {got} does not match the manifest's model_sha256 {want!r}")
    booster = lgb.Booster(model_file=str(model_file))
    if manifest.get("features") is not None and list(booster.feature_name()) != list(manifest["features"]):
        raise ModelError(f"{model_file}: model features {booster.feature_name()[:5]}... differ from the "
                         f"manifest's features {list(manifest['features'])[:5]}...")
    return booster, manifest
