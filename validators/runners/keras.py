"""Keras 3 runner: the reference for Keras sources (.keras, legacy .h5)."""

from __future__ import annotations

import numpy as np

from edgekit.errors import BadInput, require
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Bound, Runner


def _dtype(t) -> str:
    return str(getattr(t, "dtype", "float32")).replace("tf.", "")


class KerasRunner(Runner):
    runtime = "keras"
    extra = "tf"

    def load(self) -> "KerasRunner":
        keras = require("keras", "tf")
        trust = self.options.get("trust")
        try:
            model = keras.models.load_model(self.path, safe_mode=not (trust and trust.code), compile=False)
        except Exception as exc:
            raise BadInput(f"{self.path}: Keras cannot load this model: {str(exc).strip().splitlines()[0][:300]}",
                           hint="check that it was saved by Keras 3 (model.save('m.keras'))") from None
        if not getattr(model, "inputs", None):
            raise BadInput(f"{self.path}: the Keras model was saved before it was built, so its inputs are unknown.",
                           hint="build it (call it once or give it a keras.Input) and save it again")
        self.native = model
        out_names = list(getattr(model, "output_names", None) or [])
        if len(out_names) != len(model.outputs):
            out_names = [f"output_{i}" for i in range(len(model.outputs))]
        # Keras images are channels-last unless a layer was configured otherwise
        self.signature = Signature(
            [TensorSpec(t.name, _dtype(t), tuple(t.shape), layout="NHWC" if len(t.shape) == 4 else None)
             for t in model.inputs],
            [TensorSpec(n, _dtype(t), tuple(t.shape)) for n, t in zip(out_names, model.outputs)],
        )
        return self

    @classmethod
    def import_runtime(cls) -> None:
        require("keras", "tf")

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [feeds[s.name] for s in self.signature.inputs]
        return self._outputs(self.native(args[0] if len(args) == 1 else args, training=False))

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """The model called on backend tensors built once; outputs read back as arrays."""
        keras = require("keras", "tf")
        args = [keras.ops.convert_to_tensor(feeds[s.name]) for s in self.signature.inputs]
        x = args[0] if len(args) == 1 else args
        model = self.native

        def run():
            return self._outputs(model(x, training=False))

        return Bound(run)

    def _outputs(self, out) -> dict[str, np.ndarray]:
        names = [s.name for s in self.signature.outputs]
        if isinstance(out, dict):
            values = [out[k] for k in out]
        elif isinstance(out, (list, tuple)):
            values = list(out)
        else:
            values = [out]
        return {n: np.asarray(v) for n, v in zip(names, values)}

    def version(self) -> str:
        import keras

        return keras.__version__

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.native.layers:
            counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + 1
        return counts
