import hashlib

import pandas as pd
import pyarrow as pa
import pytest

from riskml.exceptions import InputError
from riskml.io.files import ParquetSink, atomic_path, read_table, sha256_file, write_parquet


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_parquet_bytes_do_not_depend_on_how_the_caller_chunked(tmp_path):
    df = pd.DataFrame({"a": range(12), "b": [float(i) / 3 for i in range(12)]})
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    with ParquetSink(tmp_path / "one.parquet", schema, row_group_size=4) as sink:
        sink.write(df)
    with ParquetSink(tmp_path / "three.parquet", schema, row_group_size=4) as sink:
        for i in range(0, 12, 4):
            sink.write(df.iloc[i:i + 4])
    assert sha256_file(tmp_path / "one.parquet") == sha256_file(tmp_path / "three.parquet")


def test_sha256_matches_hashlib(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"riskml" * 1000)
    assert sha256_file(p, chunk=7) == hashlib.sha256(b"riskml" * 1000).hexdigest()


def test_read_table_reads_a_folder_of_mixed_parts_in_name_order(tmp_path):
    write_parquet(pd.DataFrame({"x": [1, 2]}), tmp_path / "a.parquet")
    pd.DataFrame({"x": [3]}).to_csv(tmp_path / "b.csv", index=False)
    assert read_table(tmp_path)["x"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("name, message", [
    ("missing.parquet", "file not found"),
    ("data.xlsx", "unsupported file type '.xlsx'"),
])
def test_read_table_errors_name_the_file(tmp_path, name, message):
    p = tmp_path / name
    if name.endswith(".xlsx"):
        p.write_text("x")
    with pytest.raises(InputError, match=message):
        read_table(p)


def test_unreadable_parquet_names_the_file(tmp_path):
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"broken.parquet: cannot read"):
        read_table(p)


def test_the_evaluation_cache_keeps_only_the_latest_large_object_and_builds_it_once():
    from riskml.io.eval_cache import EvalCache

    built = []

    def make(tag):
        def build():
            built.append(tag)
            return {"tag": tag}
        return build

    cache = EvalCache(None)
    first = cache.latest("snapshots", {"sim": 1}, make("a"))
    assert cache.latest("snapshots", {"sim": 1}, make("a")) is first and built == ["a"]
    assert cache.latest("snapshots", {"sim": 2}, make("b"))["tag"] == "b"
    assert cache.latest("snapshots", {"sim": 1}, make("a")) is not first  # only the latest is kept
    assert built == ["a", "b", "a"]
