"""Models as they come from the wild (issue 19): a streaming voice-activity model with a
recurrent state batched on axis 1, a scalar sample-rate input and its Conv/LSTM inside `If`
branches (as Silero VAD), and a tabular classifier with one-hot Equal->Cast features whose
Gemm biases are [1, K] (as some exporters write them), on which onnxruntime's quantize_static
raises a ValueError. Both are built here with onnx.helper; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_user_error, run_cli

HIDDEN = 128


def build_vad(path, hidden: int = HIDDEN, channels: int = 8, seed: int = 0):
    """input [B, T], state [2, B, H], sr scalar int64 -> prob [B, 1], stateN [2, B, H];
    Conv + LSTM + Gemm in each branch of an If on sr == 16000 (else the 8 kHz branch)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def branch(tag: str, stride: int):
        def w(name, *shape):
            return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), f"{tag}_{name}")

        def i64(name, v):
            return numpy_helper.from_array(np.array([v], np.int64), f"{tag}_{name}")

        inits = [w("conv_w", channels, 1, 5), w("conv_b", channels), w("lstm_w", 1, 4 * hidden, channels),
                 w("lstm_r", 1, 4 * hidden, hidden), w("lstm_b", 1, 8 * hidden), w("head_w", 1, hidden),
                 w("head_b", 1), i64("zero", 0), i64("one", 1), i64("two", 2)]
        t = lambda n: f"{tag}_{n}"  # noqa: E731
        nodes = [
            helper.make_node("Unsqueeze", ["input", t("one")], [t("x3")]),
            helper.make_node("Conv", [t("x3"), t("conv_w"), t("conv_b")], [t("c")], strides=[stride], pads=[2, 2]),
            helper.make_node("Relu", [t("c")], [t("r")]),
            helper.make_node("Transpose", [t("r")], [t("seq")], perm=[2, 0, 1]),
            helper.make_node("Slice", ["state", t("zero"), t("one"), t("zero")], [t("h0")]),
            helper.make_node("Slice", ["state", t("one"), t("two"), t("zero")], [t("c0")]),
            helper.make_node("LSTM", [t("seq"), t("lstm_w"), t("lstm_r"), t("lstm_b"), "", t("h0"), t("c0")],
                             ["", t("hN"), t("cN")], hidden_size=hidden),
            helper.make_node("Concat", [t("hN"), t("cN")], [t("state")], axis=0),
            helper.make_node("Squeeze", [t("hN"), t("zero")], [t("h")]),
            helper.make_node("Gemm", [t("h"), t("head_w"), t("head_b")], [t("logit")], transB=1),
            helper.make_node("Sigmoid", [t("logit")], [t("prob")]),
        ]
        outs = [helper.make_tensor_value_info(t("prob"), TensorProto.FLOAT, None),
                helper.make_tensor_value_info(t("state"), TensorProto.FLOAT, None)]
        return helper.make_graph(nodes, f"{tag}_branch", [], outs, inits)

    nodes = [helper.make_node("Constant", [], ["sr16k"], value=numpy_helper.from_array(np.array(16000, np.int64))),
             helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["prob", "stateN"], then_branch=branch("k16", 2),
                              else_branch=branch("k8", 1))]
    graph = helper.make_graph(
        nodes, "vad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "time"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", hidden]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", hidden])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_onehot_classifier(path, seed: int = 0):
    """x [N, 4] float and cat [N] int64 -> one-hot by Equal->Cast, Concat, Gemm-Relu-Gemm -> logits [N, 3].
    The Gemm biases are [1, K]: valid ONNX (C broadcasts) that onnxruntime 1.31's quantize_static
    per-channel bias adjustment cannot handle."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(np.arange(6, dtype=np.int64), "levels"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(f(10, 16), "w1"), numpy_helper.from_array(f(1, 16), "b1"),
             numpy_helper.from_array(f(16, 3), "w2"), numpy_helper.from_array(f(1, 3), "b2")]
    nodes = [helper.make_node("Unsqueeze", ["cat", "ax1"], ["cat2"]),
             helper.make_node("Equal", ["cat2", "levels"], ["hot"]),
             helper.make_node("Cast", ["hot"], ["hotf"], to=TensorProto.FLOAT),
             helper.make_node("Concat", ["x", "hotf"], ["feats"], axis=1),
             helper.make_node("Gemm", ["feats", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"])]
    graph = helper.make_graph(nodes, "onehot", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
        helper.make_tensor_value_info("cat", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    d = tmp_path_factory.mktemp("vad")
    build_vad(d / "vad.onnx")
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((6, 512)).astype(np.float32)
    state = rng.standard_normal((2, 6, HIDDEN)).astype(np.float32) * 0.1  # samples on axis 1, as the model takes it
    np.savez(d / "one_rate.npz", input=audio, state=state, sr=np.array(16000))  # a 0-d scalar for every sample
    np.savez(d / "mixed_rates.npz", input=audio, state=state, sr=np.array([16000, 8000, 16000, 8000, 8000, 16000]))
    return d


def _per_sample(model_path, audio, state, rates):
    """What the model computes for each sample on its own (plain onnxruntime, batch 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probs, states = [], []
    for i, sr in enumerate(rates):
        p, s = sess.run(None, {"input": audio[i:i + 1], "state": state[:, i:i + 1], "sr": np.array(sr, np.int64)})
        probs.append(p)
        states.append(s)
    return np.concatenate(probs), np.concatenate(states, axis=1)


def test_state_on_axis_1_and_scalar_rate_reach_the_model_sample_by_sample(vad):
    """The data set keeps samples first; the runner gives the model state [2, B, H] and a 0-d sr,
    and per-sample rates run one sample per call: outputs equal a hand-written batch-1 loop."""
    from edgekit.loading import open_model
    from edgekit.tensors import load_dataset

    runner = open_model(str(vad / "vad.onnx"))
    for name in ("one_rate.npz", "mixed_rates.npz"):
        data = load_dataset(vad / name, runner.signature)
        assert data.n == 6 and data.arrays["state"].shape == (6, 2, HIDDEN) and data.axes == {"state": 1, "sr": None}
        out = runner.predict(data.arrays, axes=data.axes)
        with np.load(vad / name) as npz:
            want_p, want_s = _per_sample(vad / "vad.onnx", npz["input"], npz["state"],
                                         np.broadcast_to(npz["sr"], (6,)))
        np.testing.assert_allclose(out["prob"], want_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["stateN"], np.moveaxis(want_s, 1, 0), rtol=1e-5, atol=1e-6)
    mixed = load_dataset(vad / "mixed_rates.npz", runner.signature)
    assert not np.allclose(runner.predict(mixed.arrays, axes=mixed.axes)["prob"],
                           runner.predict(load_dataset(vad / "one_rate.npz", runner.signature).arrays,
                                          axes={"state": 1, "sr": None})["prob"])  # the rate reached the model


def test_declared_batch_axis_and_bad_layouts_are_user_errors(vad, tmp_path):
    from edgekit.errors import BadInput
    from edgekit.loading import open_model
    from edgekit.tensors import load_dataset

    sig = open_model(str(vad / "vad.onnx")).signature
    with np.load(vad / "one_rate.npz") as npz:
        audio, state = npz["input"], npz["state"]
    np.savez(tmp_path / "declared.npz", input=audio, state=state, sr=np.array(8000), _batch_axis=np.array(["state=1"]))
    assert load_dataset(tmp_path / "declared.npz", sig).arrays["state"].shape == (6, 2, HIDDEN)
    np.savez(tmp_path / "first.npz", input=audio, state=np.moveaxis(state, 1, 0).copy(), sr=np.array(8000))
    with pytest.raises(BadInput, match=r"'state' shape: expected \[2, N, 128\].*samples on axis 1"):
        load_dataset(tmp_path / "first.npz", sig)
    np.savez(tmp_path / "matrix_rate.npz", input=audio, state=state, sr=np.full((6, 2), 8000))
    with pytest.raises(BadInput, match="'sr' is a scalar"):
        load_dataset(tmp_path / "matrix_rate.npz", sig)
    with pytest.raises(BadInput, match="batch axis given for nope"):
        load_dataset(vad / "one_rate.npz", sig, batch_axis={"nope": 1})


@pytest.mark.slow
def test_vad_validate_and_int8_refusal_say_what_is_there(vad, tmp_path):
    import shutil

    shutil.copy(vad / "vad.onnx", tmp_path / "copy.onnx")
    res = run_cli("validate", vad / "vad.onnx", tmp_path / "copy.onnx", "--inputs", vad / "mixed_rates.npz", "--json")
    assert res.code == 0, res
    assert {o["name"] for o in res.json["result"]["parity"]["outputs"]} == {"prob", "stateN"}
    # no data and a dynamic time axis: edgekit will not invent a length (exit 2 saying how to give one) ...
    assert_user_error(run_cli("validate", vad / "vad.onnx", tmp_path / "copy.onnx"), 2, "--input-shape")
    # ... and with the length pinned, random inputs get state and sr shaped right
    res = run_cli("validate", vad / "vad.onnx", tmp_path / "copy.onnx", "--input-shape", "input=1x512")
    assert res.code == 0, res
    res = run_cli("convert", vad / "vad.onnx", "--target", "onnx", "--quantize", "int8", "--calibration",
                  vad / "one_rate.npz", "-o", tmp_path / "q.onnx")
    assert_user_error(res, 3, "nothing to quantize")
    said = " ".join(res.stderr.split())  # rich wraps long lines
    for words in ("2 Conv", "2 LSTM", "control-flow subgraphs (If)", "stay float32"):
        assert words in said, said
    # onnxconverter-common's fp16 pass crashes on If subgraphs: a conversion failure naming it, not a bug
    res = run_cli("convert", vad / "vad.onnx", "--target", "onnx", "--quantize", "fp16", "--inputs",
                  vad / "one_rate.npz", "-o", tmp_path / "h.onnx")
    assert_user_error(res, 3)
    assert "onnxconverter-common convert_float_to_float16: AttributeError" in " ".join(res.stderr.split()), res


@pytest.mark.slow
def test_library_exception_in_quantize_static_is_a_conversion_failure_naming_library_and_step(tmp_path):
    """onnxruntime's quantize_static with symmetric int8 weights raises ValueError ("The truth value of an
    array ... is ambiguous", in _adjust_weight_scale_for_int32_bias) on this one-hot classifier: under
    edgekit's one rule that is ConversionFailed (exit 3) naming the library and the step. edgekit's own
    int8 (U8U8, see onnx_quant.INT8_SCHEME) no longer takes that code path, and converts the model."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgekit.errors import ConversionFailed, upstream

    model = build_onehot_classifier(tmp_path / "tab.onnx")
    rng = np.random.default_rng(0)
    calib = {"x": rng.standard_normal((32, 4)).astype(np.float32), "cat": rng.integers(0, 6, 32).astype(np.int64)}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{k: v[i:i + 1] for k, v in calib.items()} for i in range(32)])

        def get_next(self):
            return next(self.rows, None)

    with pytest.raises(ConversionFailed, match=r"onnxruntime quantize_static: ValueError: The truth value of an array"):
        with upstream("onnxruntime", "quantize_static"):
            quantize_static(str(model), str(tmp_path / "s8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    np.savez(tmp_path / "calib.npz", **calib)
    res = run_cli("convert", model, "--target", "onnx", "--quantize", "int8", "--calibration", tmp_path / "calib.npz",
                  "-o", tmp_path / "q.onnx")
    assert res.code == 0, res
    assert (tmp_path / "q.onnx").exists()


def test_upstream_rule_keeps_edgekit_bugs_as_bugs():
    """What the library (or code it runs) raises becomes ConversionFailed; an error raised by
    edgekit's own code inside the block, or in a callback edgekit handed to the library, stays a bug."""
    import json

    from edgekit.errors import ConversionFailed, upstream
    from edgekit.tensors import inferred_batch_axis as edgekit_function  # fails on a dict: AttributeError

    with pytest.raises(ConversionFailed, match=r"json loads: JSONDecodeError"):
        with upstream("json", "loads"):
            json.loads("{nope")
    with pytest.raises(AttributeError):  # the library called back into edgekit, which failed
        with upstream("json", "loads"):
            json.loads('{"a": 1}', object_hook=edgekit_function)
    def users_model_code(_):  # code the library runs that is not edgekit's (a model's forward)
        raise RuntimeError("shape mismatch in the user's layer")

    with pytest.raises(ConversionFailed, match="json loads: RuntimeError: shape mismatch"):
        with upstream("json", "loads"):
            json.loads('{"a": 1}', object_hook=users_model_code)
    with pytest.raises(ZeroDivisionError):  # raised in the block itself
        with upstream("json", "loads"):
            1 / 0


# ----------------------------------------------------------------------------- TorchScript forward(x, sr: int)
@pytest.fixture(scope="module")
def scripted_sr(tmp_path_factory):
    torch = pytest.importorskip("torch")

    class TwoRates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wide = torch.nn.Linear(16, 4)
            self.narrow = torch.nn.Linear(16, 4)

        def forward(self, x, sr: int):
            if sr == 16000:
                return self.wide(x)
            return self.narrow(x)

    d = tmp_path_factory.mktemp("ts_sr")
    torch.manual_seed(0)
    module = torch.jit.script(TwoRates().eval())
    module.save(str(d / "sr.pt"))
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    np.savez(d / "16k.npz", x=x, sr=np.array(16000))
    np.savez(d / "8k.npz", x=x, sr=np.array(8000))
    with torch.no_grad():
        want = {sr: module(torch.from_numpy(x), sr).numpy() for sr in (16000, 8000)}
    return d, x, want


@pytest.mark.slow
@pytest.mark.torch
def test_scripted_scalar_argument_takes_its_value_from_inputs(scripted_sr, tmp_path):
    import onnxruntime as ort

    d, x, want = scripted_sr
    res = run_cli("convert", d / "sr.pt", "--target", "onnx", "--input-shape", "x=Nx16", "--inputs", d / "16k.npz",
                  "-o", tmp_path / "sr16k.onnx", "--json")
    assert res.code == 0, res
    assert any("sr=16000" in n for n in res.json["result"]["parity"]["notes"])
    got = ort.InferenceSession(str(tmp_path / "sr16k.onnx")).run(None, {"x": x[:1]})[0]
    np.testing.assert_allclose(got, want[16000][:1], rtol=1e-4, atol=1e-5)  # the 16 kHz branch, not a random int's
    # the artifact computes sr=16000 only: judged on 8 kHz data it fails, and the notes say why
    res = run_cli("validate", d / "sr.pt", tmp_path / "sr16k.onnx", "--input-shape", "x=Nx16", "--inputs", d / "8k.npz")
    assert_user_error(res, 1, "parity failed")
    assert "sr=8000" in " ".join(res.stderr.split())


@pytest.mark.slow
@pytest.mark.torch
def test_inspect_suggests_only_its_own_options_and_answers_json(scripted_sr):
    d, _, _ = scripted_sr
    res = run_cli("inspect", d / "sr.pt", "--json")
    assert res.code == 2 and "Traceback" not in res.stderr, res
    err = res.json["error"]  # one JSON document on stdout, even for an error
    assert err["exit_code"] == 2 and "--input-shape x=..." in err["hint"] and "sr=" not in err["hint"]
    res = run_cli("inspect", d / "sr.pt", "--input-shape", "x=Nx16", "--json")
    assert res.code == 0, res
    inputs = {t["name"]: t for t in res.json["result"]["signature"]["inputs"]}
    assert inputs["sr"]["shape"] == [] and inputs["sr"]["dtype"] == "int64" and inputs["x"]["shape"] == [None, 16]
    res = run_cli("inspect", d / "sr.pt", "--input-shape", "x=Nx16", "--input-shape", "sr=1")
    assert_user_error(res, 2, "Python scalar", "needs no --input-shape")
    res = run_cli("inspect", d / "sr.pt", "--input-shape", "x=Nx7")  # a wrong shape: the hint fits a scripted module
    assert_user_error(res, 2, "fails on inputs of the given shape")
    said = " ".join(res.stderr.split())
    assert "scripted module" in said and "traced with" not in said, res


@pytest.mark.slow
def test_int8_calibration_feeds_a_state_batched_on_axis_1(tmp_path):
    """The calibration reader gives onnxruntime each sample in the model's layout: state [2, 1, H]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((12, 3)) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(3, np.float32), "b"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [helper.make_node("Slice", ["state", "zero", "one", "zero"], ["h0"]),
             helper.make_node("Squeeze", ["h0", "zero"], ["h"]),
             helper.make_node("Concat", ["x", "h"], ["xh"], axis=1),
             helper.make_node("Gemm", ["xh", "w", "b"], ["y"]),
             helper.make_node("Identity", ["state"], ["stateN"])]
    graph = helper.make_graph(nodes, "stateful", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "B", 8])], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3]),
        helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "B", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "st.onnx"))
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((64, 4)).astype(np.float32),
             state=rng.standard_normal((2, 64, 8)).astype(np.float32))
    res = run_cli("convert", tmp_path / "st.onnx", "--target", "onnx", "--quantize", "int8", "--calibration",
                  tmp_path / "cal.npz", "-o", tmp_path / "st8.onnx", "--json")
    assert res.code == 0, res
    outs = {o["name"]: o for o in res.json["result"]["parity"]["outputs"]}
    assert outs["y"]["passed"] and outs["stateN"]["shape"] == [64, 2, 8]  # compared sample by sample
