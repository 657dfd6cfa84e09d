import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from riskml.exceptions import SchemaError
from riskml.schema import BEHAVIOUR, PANEL, cast, exact_integers, require_columns, row_problems


def good_panel(n_borrowers=2, n_months=3) -> pd.DataFrame:
    rows = n_borrowers * n_months
    df = pd.DataFrame({
        "borrower_id": np.repeat(np.arange(n_borrowers), n_months),
        "month": np.tile(np.arange(n_months), n_borrowers),
        "months_on_book": np.tile(np.arange(n_months), n_borrowers),
    })
    for c in BEHAVIOUR:
        df[c.name] = np.zeros(rows, dtype=c.dtype)
    df["external_score"] = 650.0
    df["status"] = "normal"
    df["cause"] = None
    assert len(df) == rows
    return df


def test_good_panel_has_no_problems_and_casts_to_contract_dtypes():
    df = good_panel()
    assert row_problems(df).isna().all()
    out = cast(df, PANEL)
    assert list(out.columns[: len(PANEL.names)]) == list(PANEL.names)
    assert str(out["credit_limit"].dtype) == "float32"
    assert list(out["status"].cat.categories) == ["normal", "suspended", "closed"]
    assert row_problems(out).isna().all()  # the cast frame passes the same checks
    # months on book is optional: a lender's panel may lack it
    assert row_problems(df.drop(columns="months_on_book")).isna().all()


def test_each_bad_row_gets_its_own_reason_and_good_rows_none():
    df = good_panel(n_borrowers=3, n_months=2).astype({"days_past_due": object, "borrower_id": object})
    df.loc[0, "drawn"] = -5.0                     # negative amount
    df.loc[1, "external_score"] = 1200.0          # impossible score
    df.loc[2, "days_past_due"] = "ten"            # non-numeric
    df.loc[3, "borrower_id"] = None               # missing id
    df.loc[4, "status"] = "frozen"                # unknown status
    reasons = row_problems(df)
    assert reasons[0] == "drawn below 0"
    assert reasons[1] == "external_score above 950"
    assert reasons[2] == "days_past_due is not numeric"
    assert reasons[3] == "borrower_id is missing"
    assert reasons[4].startswith("status not one of")
    assert pd.isna(reasons[5])


def test_duplicate_borrower_months_are_both_flagged():
    df = pd.concat([good_panel(1, 2), good_panel(1, 2).iloc[[1]]], ignore_index=True)
    reasons = row_problems(df)
    assert list(reasons.isna()) == [True, False, False]
    assert reasons[1] == "duplicate (borrower_id, month)"


def test_missing_columns_are_named_with_the_source():
    df = good_panel().drop(columns=["external_score", "status"])
    with pytest.raises(SchemaError, match=r"in.csv: missing required panel column\(s\) \['external_score', 'status'\]"):
        require_columns(df, PANEL, source="in.csv")


def test_row_problems_names_the_first_problem_of_each_bad_row_only():
    df = good_panel()
    df.loc[4, "invest_share"] = 1.5
    df.loc[2, "external_score"] = 100.0
    df.loc[2, "drawn"] = -1.0  # a second problem on row 2: the first in contract order is named
    problems = row_problems(df)
    assert problems[4] == "invest_share above 1"
    assert problems[2] == "drawn below 0"
    assert problems.drop([2, 4]).isna().all()


@pytest.mark.parametrize("index_type", ["int8", "uint8", "int32", "int64"])
def test_category_codes_of_dictionary_columns_keep_nulls_unknowns_and_padding_apart(index_type):
    # parquet gives categories as dictionary columns (nulls in the indices); any index type, sliced
    import pyarrow as pa
    from riskml.schema import coerce_columns

    values = ["normal", " closed ", None, "frozen", "suspended", None, "normal"]
    arr = pa.array(values).dictionary_encode()
    arr = pa.DictionaryArray.from_arrays(arr.indices.cast(index_type), arr.dictionary)
    table = pa.table({"status": pa.chunked_array([arr.slice(0, 3), arr.slice(3)])})
    cols, first = coerce_columns(table.slice(1), PANEL)
    # -1: missing, -2: not a category; spaces around a value are stripped
    assert cols["status"].tolist() == [2, -1, -2, 1, -1, 0]
    assert (first == 0).all()


def test_row_checks_flag_the_first_problem_of_each_row_as_whole_column_numpy_checks_do():
    # the compiled per-column pass against the checks written as numpy masks, in the contract's order
    from riskml.schema import PANEL, problem_codes, problem_texts

    rng = np.random.default_rng(8)
    n = 4000
    cols = {}
    for c in PANEL.columns:
        if c.categories:
            cols[c.name] = rng.choice(np.array([-2, -1, 0, 1, 2], dtype=np.int8), n, p=[.02, .02, .9, .03, .03])
            continue
        lo = 0.0 if c.lo is None else c.lo
        hi = lo + 100 if c.hi is None else c.hi
        v = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), n)
        whole = rng.random(n) < 0.5
        v[whole] = np.round(v[whole])
        v[rng.random(n) < 0.03] = np.nan
        v[rng.random(n) < 0.01] = np.inf
        if c.lo is not None:
            v[rng.random(n) < 0.02] = c.lo  # on the bound: not below it
        kind = rng.choice(["float32", "float64", "int"])
        cols[c.name] = (v.astype(kind) if kind != "int" else np.nan_to_num(v, posinf=0).astype(np.int64))
    cols["borrower_id"] = np.arange(n, dtype=np.int64)  # no duplicate keys: rows checked on their own
    texts = problem_texts(PANEL)
    want = np.zeros(n, dtype=np.int16)
    with np.errstate(invalid="ignore"):
        for c in PANEL.columns:
            if c.name not in PANEL.required:
                continue
            v = cols[c.name]
            checks = ([(v == -1, "is missing"), (v == -2, f"not one of {list(c.categories)}")] if c.categories else
                      [(np.isnan(v) if v.dtype.kind == "f" else None, "is missing"),
                       (v < c.lo if c.lo is not None else None, f"below {c.lo:g}" if c.lo is not None else ""),
                       (v > c.hi if c.hi is not None else None, f"above {c.hi:g}" if c.hi is not None else ""),
                       ((np.isfinite(v) & (v != np.floor(v))) if c.dtype.startswith("int") and v.dtype.kind == "f"
                        else None, "is not a whole number")])
            for mask, what in checks:
                if mask is not None:
                    want[mask & (want == 0)] = texts.index(f"{c.name} {what}")
    got = problem_codes(cols, PANEL)
    assert (want > 0).mean() > 0.2 and len(np.unique(want)) > 10  # many kinds of problem, not a vacuous check
    assert np.array_equal(got, want)


def test_whole_numbers_written_as_digits_are_read_exactly_beyond_double_precision():
    cells = pa.array(["9007199254740993", " 12 ", "12.0", "12.5", "abc", None, "", "9223372036854775807",
                      "9223372036854775808", "-3"])
    values, ok = exact_integers(cells)
    assert ok.tolist() == [True, True, True, False, False, False, False, True, False, True]
    assert values[ok].tolist() == [2**53 + 1, 12, 12, 2**63 - 1, -3]  # -3: a whole number; its range is checked later
    ints, ok = exact_integers(pa.array([2**53 + 1, None], pa.int64()))
    assert ints[0] == 2**53 + 1 and ok.tolist() == [True, False]
