"""onnxruntime runner (CPU execution provider)."""

from __future__ import annotations

import numpy as np

from edgekit.errors import BadInput
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Bound, Runner

_ONNXRUNTIME_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or []))
    return TensorSpec(arg.name, _ONNXRUNTIME_TYPES.get(arg.type, arg.type), shape)


def _shape(dims) -> str:
    return "[" + ", ".join("?" if d is None or isinstance(d, str) else str(d) for d in dims) + "]"


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    extra = "core"

    @classmethod
    def import_runtime(cls) -> None:
        import onnxruntime  # noqa: F401

    def load(self) -> "OnnxRuntimeRunner":
        import onnxruntime

        self.check_file()
        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        try:
            self.native = onnxruntime.InferenceSession(str(self.path), sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BadInput(f"{self.path}: onnxruntime cannot load this model: {str(exc).strip()[:400]}",
                           hint="check the model with 'edgekit inspect'; it may need a newer onnxruntime") from None
        self.signature = Signature([_spec(a) for a in self.native.get_inputs()],
                                   [_spec(a) for a in self.native.get_outputs()])
        return self

    def check_file(self) -> None:
        """The file check before onnxruntime reads it (a subclass for another file format of
        onnxruntime checks its own)."""
        from edgekit.loading import check_onnx_file

        check_onnx_file(self.path)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.signature.outputs]
        self._check_ranks(feeds)
        try:
            outs = self.native.run(names, feeds)
        except Exception as exc:
            if type(exc).__name__ != "InvalidArgument":  # ORT's error for inputs that do not fit the model
                raise
            given = ", ".join(f"'{k}' {_shape(np.shape(v))} {np.asarray(v).dtype}" for k, v in feeds.items())
            raise BadInput(f"{self.path}: onnxruntime refused the inputs ({given}): {str(exc).strip()[:300]}",
                           hint="the two models do not take the same inputs: check that the artifact was "
                                "converted from this source") from None
        return dict(zip(names, outs))

    def _check_ranks(self, feeds: dict[str, np.ndarray]) -> None:
        """An input of another rank than the model's (e.g. two unrelated ONNX files in
        `validate`) is bad input, named before onnxruntime sees it."""
        for arg in self.native.get_inputs():
            if arg.name in feeds and arg.shape is not None and len(arg.shape) != np.ndim(feeds[arg.name]):
                got = np.shape(feeds[arg.name])
                raise BadInput(f"{self.path}: input '{arg.name}' has shape {_shape(arg.shape)} (rank {len(arg.shape)}), "
                               f"but the inputs it was given have shape {_shape(got)} (rank {len(got)}).",
                               hint="the two models do not take the same inputs: check that the artifact was "
                                    "converted from this source")

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """session.run(None, feeds) on feeds built once: exactly what a user of plain
        onnxruntime writes (all outputs, in the session's order = the signature's). IOBinding
        is not used: it would time a different protocol from a hand-written loop."""
        names = [o.name for o in self.signature.outputs]
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        run_session = self.native.run

        def run():
            return run_session(None, feeds)

        return Bound(run, lambda outs: dict(zip(names, outs)))

    def _graph(self):
        import onnx

        if getattr(self, "_proto", None) is None:
            self._proto = onnx.load_model(str(self.path), load_external_data=False)
        return self._proto

    def op_counts(self) -> dict[str, int]:
        from collections import Counter

        return dict(Counter(n.op_type for n in self._graph().graph.node))

    def precision(self) -> str:
        from onnx import TensorProto

        return quantized_precision(self.op_counts()) or \
            ("fp16" if _has_fp16(self._graph().graph, TensorProto.FLOAT16) else "fp32")

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__


def _has_fp16(graph, fp16: int) -> bool:
    """float16 weights anywhere: initializers, Constant nodes (how torch and onnxconverter-common
    often store them) or a Cast to float16, in the graph and its subgraphs (If/Loop bodies)."""
    if any(t.data_type == fp16 for t in graph.initializer):
        return True
    for node in graph.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.t.data_type == fp16:
                return True
            if node.op_type == "Cast" and a.name == "to" and a.i == fp16:
                return True
            if any(_has_fp16(g, fp16) for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)):
                return True
    return False


def quantized_precision(ops: dict[str, int]) -> str | None:
    """'dynamic' or 'int8' from an onnxruntime graph's operator counts (whichever file format
    it ran), else None."""
    if "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops or "ConvInteger" in ops:
        return "dynamic"
    if "QuantizeLinear" in ops or "QLinearConv" in ops or "QLinearMatMul" in ops:
        return "int8"
    return None
