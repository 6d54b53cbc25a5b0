"""Where samples sit in each input (issue 19, item 5): the batch axis of a recurrent state,
scalar inputs, and how they are declared (CLI, .npz, edgekit.toml). No framework needed."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from edgekit.errors import BadInput
from edgekit.tensors import (Signature, TensorSpec, batch_axes, match_inputs, parse_batch_axes, random_dataset,
                             to_model_layout)

VAD = Signature([TensorSpec("input", "float32", (None, None)), TensorSpec("state", "float32", (2, None, 128)),
                 TensorSpec("sr", "int64", ())],
                [TensorSpec("prob", "float32", (None, 1)), TensorSpec("stateN", "float32", (2, None, 128))])


def test_batch_axis_is_inferred_only_where_it_is_clear():
    assert batch_axes(VAD.inputs) == {"state": 1, "sr": None}
    assert batch_axes(VAD.outputs) == {"stateN": 1}
    # a fixed batch of 1 with a dynamic length is batched on axis 0, as is a lone [2, ?, 128]
    assert batch_axes([TensorSpec("audio", "float32", (1, None))]) == {}
    assert batch_axes([TensorSpec("state", "float32", (2, None, 128))]) == {}
    # a declaration wins over the inference
    assert batch_axes(VAD.inputs, {"state": 0}) == {"sr": None}


def test_random_data_is_sample_first_and_goes_back_to_the_model_layout():
    data = random_dataset(VAD, n=5, seed=0)
    assert data.arrays["state"].shape == (5, 2, 128) and data.arrays["input"].shape == (5, 1)
    assert data.arrays["sr"].shape == (5,) and len(set(data.arrays["sr"].tolist())) == 1
    feeds = to_model_layout(data.take(3).arrays, data.axes)
    assert feeds["state"].shape == (2, 3, 128) and feeds["sr"].shape == () and feeds["input"].shape == (3, 1)


def test_scalar_as_0d_or_per_sample_and_declared_axes():
    audio = np.zeros((4, 10), np.float32)
    state = np.zeros((2, 4, 128), np.float32)
    d = match_inputs({"input": audio, "state": state, "sr": np.array(8000)}, VAD, "t")
    assert d.n == 4 and d.arrays["sr"].tolist() == [8000] * 4
    d = match_inputs({"input": audio, "state": state, "sr": np.array([8000, 16000, 8000, 8000])}, VAD, "t")
    assert d.arrays["sr"].tolist() == [8000, 16000, 8000, 8000]
    with pytest.raises(BadInput, match="different sample counts"):
        match_inputs({"input": audio, "state": state, "sr": np.array([8000, 16000])}, VAD, "t")
    sig = Signature([TensorSpec("x", "float32", (None, 3)), TensorSpec("h", "float32", (1, None, 8))])
    given = {"x": np.zeros((6, 3), np.float32), "h": np.zeros((1, 6, 8), np.float32)}
    with pytest.raises(BadInput, match=r"different sample counts \[1, 6\]") as err:  # [1, ?, 8] is not inferred
        match_inputs(given, sig, "t")
    assert "--batch-axis" in err.value.hint
    assert match_inputs(given, sig, "t", batch_axis={"h": 1}).arrays["h"].shape == (6, 1, 8)
    assert match_inputs({**given, "_batch_axis": np.array(["h=1"])}, sig, "t").axes == {"h": 1}
    with pytest.raises(BadInput, match="expected NAME=K"):
        parse_batch_axes(["h:1"])
    with pytest.raises(BadInput, match="batch axis 5 does not exist"):
        match_inputs(given, sig, "t", batch_axis={"h": 5})


def test_cli_and_toml_declarations_are_checked(tmp_path):
    from edgekit import config

    res = run_cli("validate", "a.onnx", "b.onnx", "--batch-axis", "state:1")
    assert_user_error(res, 2)
    toml = tmp_path / "edgekit.toml"
    (tmp_path / "m.onnx").write_bytes(b"")
    toml.write_text('[[models]]\nname = "vad"\nsource = "m.onnx"\noutput_kinds = { prob = "regression" }\n'
                    'batch_axis = { state = 1 }\n[[models.targets]]\ntarget = "onnx"\n')
    m = config.load(str(toml)).models[0]
    assert m.output_kinds == {"prob": "regression"} and m.batch_axis == {"state": 1}
    toml.write_text('[[models]]\nname = "vad"\nsource = "m.onnx"\noutput_kinds = { prob = "boxes" }\n'
                    '[[models.targets]]\ntarget = "onnx"\n')
    with pytest.raises(BadInput, match="unknown kind 'boxes'"):
        config.load(str(toml))
