"""Every file format riskml reads or writes: parquet, CSV, JSON manifests,
checksums, and atomic writes (a file appears under its final name only when
it is complete, so a killed job never leaves a half-written output that looks
finished)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.exceptions import ConfigError, InputError, ModelError

#: Parquet settings fixed so that equal frames give equal bytes.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_TMP_PID = re.compile(r"\.tmp-(\d+)(-old)?$")  # -old: the folder atomic_dir moves aside


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a temp name's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>`` siblings of ``path`` left by processes that died (kill -9).

    Only names riskml itself gives its temporaries are touched, and only when
    their process is gone, so a job running now keeps its own. Returns what was removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for cand in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        m = _TMP_PID.search(cand.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(cand) if cand.is_dir() and not cand.is_symlink() else cand.unlink(missing_ok=True)
            removed.append(cand)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    Temporaries of this name left by killed processes are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: the manifest of a folder of prediction parts (``output=<folder>``): its presence names riskml's folder
PARTS_MANIFEST = "_manifest.json"
PARTS_KIND = "riskml.predictions"


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``path``; on success it takes ``path``'s place whole.

    An earlier folder at ``path`` (checked by the caller to be one riskml
    wrote) is moved aside first and removed only once the new one is in
    place; on an exception the temporary folder is removed and ``path`` is
    untouched. Temporaries of killed processes are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = tmp.with_name(tmp.name + "-old")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def is_folder_output(path: str | os.PathLike) -> bool:
    """An output named without an extension is a folder of parquet parts."""
    return Path(path).suffix == ""


def check_output_dir(path: str | os.PathLike, *, key: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Fail before any work when ``path`` cannot be an output folder: it is a file, or a folder holding
    anything but an earlier riskml prediction folder (which a new job replaces whole), or its place is
    not writable or not apart from ``inputs``. Returns the absolute path."""
    out = check_own_folder(path, key=key, what="the prediction parts", manifest=PARTS_MANIFEST,
                           claim=("kind", PARTS_KIND), writer="riskml.predict")
    return _check_place(out, key, inputs)


def check_own_folder(path: str | os.PathLike, *, key: str, what: str, manifest: str, claim: tuple[str, str],
                     writer: str) -> Path:
    """``path`` as an absolute folder riskml may replace whole: absent, empty, or one whose ``manifest``
    holds ``claim`` (key, value), i.e. an earlier output of ``writer``; a file or a folder of anything
    else is a :class:`ConfigError` (riskml never deletes what it did not make)."""
    out = Path(os.path.abspath(path))
    if out.is_file():
        raise ConfigError(key, str(out), f"a folder for {what}; it is a file")
    if out.is_dir() and any(out.iterdir()):
        try:
            said = read_json(out / manifest).get(claim[0])
        except (OSError, ValueError, AttributeError):
            said = None
        if said != claim[1]:
            raise ConfigError(key, str(out), f"a new folder or one {writer} wrote ({manifest}); this one holds "
                              "other files, which riskml will not delete")
    return out


def check_output_path(path: str | os.PathLike, *, key: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Fail before any work when ``path`` cannot be an output file: it is a folder,
    a folder on its way is a file, the nearest existing folder is not writable,
    or it is (or lies inside) one of ``inputs``. Returns the absolute path."""
    out = Path(os.path.abspath(path))
    if out.is_dir():
        raise ConfigError(key, str(out), "a file path; it is a folder")
    return _check_place(out, key, inputs)


def check_writable(path: str | os.PathLike, *, key: str) -> Path:
    """Fail before any work when ``path`` (a file or a folder, there or not yet) cannot be written: a file
    on its way, or the nearest existing folder not writable. Returns the absolute path."""
    out = Path(os.path.abspath(path))
    if out.exists() and not os.access(out, os.W_OK | (os.X_OK if out.is_dir() else 0)):
        raise ConfigError(key, str(out), "a path riskml may write; it is not writable")
    return _check_place(out, key, ())


def _check_place(out: Path, key: str, inputs: Iterable[str | os.PathLike]) -> Path:
    """``out`` (a file or a folder) lies under folders riskml may write, apart from every input."""
    anc = out.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(key, str(out), f"a path under folders; {anc} is a file")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(key, str(out), f"a path riskml may write; folder {anc} is not writable")
    # compared where the links lead (a linked output folder, an input that is a link to the output)
    # and as files (a hard link is the same file under another name)
    real = Path(os.path.realpath(out))
    for f in inputs:
        src, src_real = Path(os.path.abspath(f)), Path(os.path.realpath(f))
        same = real == src_real or (real.exists() and src_real.exists() and os.path.samefile(real, src_real))
        if same or (src_real.is_dir() and src_real in real.parents) or real in src_real.parents:
            raise ConfigError(key, str(out), f"an output apart from the input {src} (it would overwrite it "
                              "or be read as input next time)")
    return out


@contextlib.contextmanager
def job_lock(path: str | os.PathLike, *, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``path``'s job while the block runs (``.<name>.lock`` beside it).

    A second job on the same path fails at once with a one-line
    :class:`InputError` naming the holder's pid, instead of mixing its work
    into the first's. The lock is the kernel's (``flock``): it ends with the
    process, so a killed job never leaves a stale lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "?"
            raise InputError(f"{path}: another {what} (pid {holder}) is writing it now; wait for it to end or "
                             "choose another output") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield lock
        finally:
            lock.unlink(missing_ok=True)  # still held: a job starting now fails on it, or opens a new one


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


def check_known_keys(cfg: Any, config: str) -> None:
    """Refuse a top-level key the command's config file (``conf/<config>.yaml``) does not name, nor its
    defaults list: Hydra takes ``+whatif=false`` as a new key, and the run would go on without it."""
    from importlib.resources import files as package_files

    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.create(package_files("riskml.conf").joinpath(f"{config}.yaml").read_text()))
    known = {"hydra", *raw}
    for entry in raw.get("defaults", []):
        name = next(iter(entry)) if isinstance(entry, dict) else str(entry)
        if not name.startswith("override ") and name != "_self_":
            known.add(name.split("@", 1)[-1].split(".", 1)[0].lstrip("/"))  # group@package: the package's top
    unknown = sorted(k for k in set(cfg) - known if not str(k).startswith("_"))  # _name: set by riskml itself
    if unknown:
        raise ConfigError(unknown[0], cfg[unknown[0]], f"one of the keys of {config}.yaml "
                          f"{sorted(known - {'defaults', 'hydra'})} (a +key adds a key riskml never reads)")
