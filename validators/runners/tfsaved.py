"""TensorFlow SavedModel runner: the reference for SavedModel folders.

It runs one signature of the SavedModel: `serving_default`, or the one named with
--signature. Inputs and outputs are the signature's own names (its keyword arguments and
the keys of its output dict). A SavedModel holds graphs, not Python code, so loading it
runs no user code.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import BadInput, require
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Bound, Runner

DEFAULT_SIGNATURE = "serving_default"


def _spec(name: str, ts) -> TensorSpec:
    shape = tuple(None if d is None else int(d) for d in ts.shape.as_list()) if ts.shape.rank is not None else ()
    dtype = "str" if ts.dtype.name == "string" else ts.dtype.name
    return TensorSpec(name, dtype, shape)


class SavedModelRunner(Runner):
    runtime = "tensorflow"
    extra = "tf"

    def load(self) -> "SavedModelRunner":
        tf = require("tensorflow", "tf")
        try:
            obj = tf.saved_model.load(str(self.path))
        except Exception as exc:
            raise BadInput(f"{self.path}: TensorFlow cannot load this SavedModel: "
                           f"{str(exc).strip().splitlines()[0][:300]}") from None
        sigs = list(getattr(obj, "signatures", {}) or {})
        name = self.options.get("signature") or DEFAULT_SIGNATURE
        if name not in sigs:
            if not sigs:
                raise BadInput(f"{self.path}: the SavedModel has no signatures, so its inputs are unknown.",
                               hint="save it with signatures (tf.saved_model.save(obj, dir, signatures=...)) "
                                    "or with keras.export.ExportArchive")
            raise BadInput(f"{self.path}: the SavedModel has no signature '{name}'; it has {', '.join(sigs)}.",
                           hint=f"choose one with --signature {sigs[0]}")
        fn = obj.signatures[name]
        _, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs
        if not isinstance(outputs, dict):
            raise BadInput(f"{self.path}: signature '{name}' does not return a dict of named outputs.")
        self._obj = obj  # keeps the variables alive
        self.native = fn
        self.signature_name = name
        self.signature_names = sigs
        self.signature = Signature([_spec(k, v) for k, v in kwargs.items()],
                                   [_spec(k, v) for k, v in outputs.items()])
        return self

    @classmethod
    def import_runtime(cls) -> None:
        require("tensorflow", "tf")

    def _args(self, feeds: dict[str, np.ndarray]) -> dict:
        tf = require("tensorflow", "tf")
        return {s.name: tf.constant(feeds[s.name], dtype=tf.as_dtype("string" if s.dtype == "str" else s.dtype))
                for s in self.signature.inputs}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.native(**self._args(feeds))
        return {k: np.asarray(v.numpy()) for k, v in out.items()}

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """The signature function called on tensors built once; outputs read back as arrays."""
        args, fn = self._args(feeds), self.native

        def run():
            return {k: np.asarray(v.numpy()) for k, v in fn(**args).items()}

        return Bound(run)

    def version(self) -> str:
        return require("tensorflow", "tf").__version__

    def op_counts(self) -> dict[str, int]:
        from collections import Counter

        graph = self.native.graph.as_graph_def()
        ops = Counter(n.op for n in graph.node)
        for f in graph.library.function:
            ops.update(n.op for n in f.node_def)
        return dict(ops)
