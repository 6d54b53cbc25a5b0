"""CSV/.npz tabular data and content detection of tabular model files (no framework needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import BadInput
from edgekit.formats import detect
from edgekit.tensors import LABELS_KEY, Signature, TensorSpec, load_dataset

COLUMNS = Signature([TensorSpec("age", "float32", (None, 1)), TensorSpec("city", "str", (None, 1))],
                    [TensorSpec("label", "int64", (None,))])
MATRIX = Signature([TensorSpec("input", "float32", (None, 3))], [TensorSpec("variable", "float32", (None, 1))])


def write(path, text: str):
    path.write_text(text)
    return path


def test_csv_feeds_one_input_per_column_with_missing_values_and_labels(tmp_path):
    csv = write(tmp_path / "rows.csv", "age,city,extra,y\n31,paris,a,1\n,berlin,b,0\n45,,c,1\n")
    data = load_dataset(csv, COLUMNS, label_column="y")
    assert data.arrays["age"].shape == (3, 1) and data.arrays["age"].dtype == np.float32
    assert np.isnan(data.arrays["age"][1, 0])
    assert data.arrays["city"][:, 0].tolist() == ["paris", "berlin", ""]  # missing string = ""
    assert data.labels.tolist() == [1, 0, 1] and data.labels.dtype == np.int64


def test_csv_missing_column_is_named(tmp_path):
    csv = write(tmp_path / "rows.csv", "age,town\n31,paris\n")
    with pytest.raises(BadInput, match="no column for model input.*city"):
        load_dataset(csv, COLUMNS)


def test_csv_non_numeric_value_names_column_and_row(tmp_path):
    csv = write(tmp_path / "rows.csv", "age,city\n31,paris\nold,rome\n")
    with pytest.raises(BadInput, match="column 'age' must be numeric.*row 2"):
        load_dataset(csv, COLUMNS)


def test_csv_unknown_label_column(tmp_path):
    csv = write(tmp_path / "rows.csv", "age,city\n31,paris\n")
    with pytest.raises(BadInput, match="no column 'y'"):
        load_dataset(csv, COLUMNS, label_column="y")


def test_csv_matrix_input_takes_the_feature_columns_in_order(tmp_path):
    csv = write(tmp_path / "rows.csv", "a,b,c,target\n1,2,3,0\n4,5,6,1\n")
    data = load_dataset(csv, MATRIX, label_column="target")
    assert data.arrays["input"].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(BadInput, match="takes 3 feature columns, but the table has 4"):
        load_dataset(csv, MATRIX)  # the label column was not named


def test_csv_header_only_and_ragged_rows(tmp_path):
    with pytest.raises(BadInput, match="no rows"):
        load_dataset(write(tmp_path / "h.csv", "a,b,c\n"), MATRIX)
    with pytest.raises(BadInput, match="line 3 has 2 fields"):
        load_dataset(write(tmp_path / "r.csv", "a,b,c\n1,2,3\n4,5\n"), MATRIX)


def test_npz_label_column_and_column_vectors(tmp_path):
    np.savez(tmp_path / "d.npz", age=np.array([1.0, 2.0]), city=np.array(["x", "y"]), y=np.array([0, 1]))
    data = load_dataset(tmp_path / "d.npz", COLUMNS, label_column="y")
    assert data.arrays["age"].shape == (2, 1) and data.labels.tolist() == [0, 1]
    assert LABELS_KEY not in data.arrays


def test_detects_tabular_model_files_by_content(tmp_path):
    xgb_json = write(tmp_path / "model.bin", '{"learner":{"attributes":{},"feature_names":[]},"version":[3,2,0]}')
    ubj = tmp_path / "m.data"
    ubj.write_bytes(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{L\x00\x00\x00\x00\x00\x00\x00\nattributes{}}")
    lgb = write(tmp_path / "m.model", "tree\nversion=v4\nnum_class=1\n")
    table = write(tmp_path / "data.txt", "a,b\n1,2\n")
    assert detect(xgb_json).name == "xgboost_json"
    assert detect(ubj).name == "xgboost_ubj"
    assert detect(lgb).name == "lightgbm_txt"
    assert detect(table).name == "csv"
    with pytest.raises(BadInput, match="not a model format"):
        detect(write(tmp_path / "notes.csv", "just one line of prose\n"))
