import numpy as np
import pandas as pd
import pytest

from riskml.exceptions import SchemaError
from riskml.schema import BEHAVIOUR, PANEL, cast, require_columns, row_problems


def good_panel(n_borrowers=2, n_months=3) -> pd.DataFrame:
    rows = n_borrowers * n_months
    df = pd.DataFrame({
        "borrower_id": np.repeat(np.arange(n_borrowers), n_months),
        "month": np.tile(np.arange(n_months), n_borrowers),
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
