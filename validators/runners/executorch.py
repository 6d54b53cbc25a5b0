"""ExecuTorch runner: runs a .pte with `executorch.runtime` (the XNNPACK delegate included).

A .pte records input/output sizes and dtypes but no names, so tensors are called
input_N/output_N and parity pairs them with the source by position. Shapes are the planned
(upper-bound) sizes. The precision is not visible in the program (XNNPACK keeps quantized
weights inside its delegate blob), so it is read from edgekit's conversion report next to
the file when there is one.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from edgekit.errors import BadInput, require
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Bound, Runner

# executorch ScalarType codes (TensorInfo.dtype() returns the int)
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool", 15: "bfloat16"}


def _names(prefix: str, n: int) -> list[str]:
    return [prefix] if n == 1 else [f"{prefix}_{i}" for i in range(n)]


class ExecuTorchRunner(Runner):
    runtime = "executorch"
    extra = "torch"

    @classmethod
    def import_runtime(cls) -> None:
        # executorch.runtime imports torch and, through its pybindings, the whole export
        # stack (executorch.exir): seconds, paid once per process, not per .pte
        import sys

        if "torch" not in sys.modules:  # executorch imports torch: same OpenMP policy as the torch runners
            from edgekit.validators.runners.torch import passive_openmp

            passive_openmp()
        require("executorch.runtime", "torch")

    def load(self) -> "ExecuTorchRunner":
        self.import_runtime()
        rt_mod = require("executorch.runtime", "torch")
        if self.threads:
            try:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(int(self.threads))
            except (ImportError, AttributeError):
                self.notes.append("this executorch build cannot set the thread count; it used its default")
        try:
            program = rt_mod.Runtime.get().load_program(str(self.path))
            method = program.load_method("forward")
        except Exception as exc:
            raise BadInput(f"{self.path}: the ExecuTorch runtime cannot load this program: {str(exc).strip()[:300]}",
                           hint="the file is probably truncated, corrupt, or needs a backend this build lacks") from None
        self.native = method
        meta = method.metadata

        def spec(name, info):
            return TensorSpec(name, SCALAR_TYPES.get(int(info.dtype()), str(info.dtype())),
                              tuple(int(d) for d in info.sizes()))

        try:
            self.signature = Signature(
                [spec(n, meta.input_tensor_meta(i)) for i, n in enumerate(_names("input", meta.num_inputs()))],
                [spec(n, meta.output_tensor_meta(i)) for i, n in enumerate(_names("output", meta.num_outputs()))])
        except (IndexError, RuntimeError, ValueError) as exc:  # e.g. an input that is not a tensor in a mutated file
            raise BadInput(f"{self.path}: the program's input/output metadata cannot be read ({exc}); edgekit runs "
                           "programs whose inputs and outputs are tensors.",
                           hint="the file is probably corrupt; export the program again") from None
        self._mark_dynamic_inputs()
        return self

    def _mark_dynamic_inputs(self) -> None:
        """The runtime's metadata gives an input's planned (upper-bound) sizes only; the program
        says which inputs are DYNAMIC_BOUND (a torch.export Dim, e.g. a sequence length): their
        non-batch axes become dynamic (None), so data shorter than the bound reaches the runtime,
        which refuses what exceeds it."""
        try:
            plan = self._program().execution_plan[0]
            dynamism = [int(getattr(plan.values[i].val, "shape_dynamism", 0) or 0) for i in plan.inputs]
        except (BadInput, AttributeError, IndexError, TypeError, ValueError):
            return
        if len(dynamism) != len(self.signature.inputs):
            return
        for spec, dyn in zip(self.signature.inputs, dynamism):
            if dyn and len(spec.shape) > 1:
                spec.shape = (spec.shape[0], *[None] * (len(spec.shape) - 1))

    def _args(self, feeds: dict[str, np.ndarray]) -> list:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(feeds[s.name].astype(s.dtype, copy=False)))
                for s in self.signature.inputs]

    def _outputs(self, outs) -> dict[str, np.ndarray]:
        import torch

        return {s.name: (o.detach().numpy().copy() if isinstance(o, torch.Tensor) else np.asarray(o))
                for s, o in zip(self.signature.outputs, outs)}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._outputs(self.native.execute(self._args(feeds)))

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """Method.execute on input tensors built once (ExecuTorch's own call)."""
        args = self._args(feeds)
        execute = self.native.execute

        def run():
            return execute(args)

        return Bound(run, self._outputs)

    def version(self) -> str:
        from importlib.metadata import version

        return version("executorch")

    def _program(self):
        from executorch.exir._serialize._program import deserialize_pte_binary

        try:
            pte = deserialize_pte_binary(self.path.read_bytes())
        except UnicodeDecodeError as exc:
            raise BadInput(f"{self.path}: a name in the program is not valid UTF-8 (byte "
                           f"{exc.object[exc.start:exc.start + 1].hex()} at {exc.start}); the file is corrupt or crafted.",
                           hint="export the program again") from None
        except Exception as exc:  # the flatbuffer does not parse: load() accepted what the runtime could use
            raise BadInput(f"{self.path}: the program's flatbuffer cannot be read ({type(exc).__name__}: "
                           f"{str(exc).strip()[:200]}); the file is corrupt or crafted.",
                           hint="export the program again") from None
        return getattr(pte, "program", pte)

    def op_counts(self) -> dict[str, int]:
        """Kernel calls outside delegates, plus one entry per delegate backend call."""
        counts: Counter = Counter()
        plan = self._program().execution_plan[0]
        ops = [o.name for o in plan.operators]
        delegates = [d.id for d in plan.delegates]
        try:
            for chain in plan.chains:
                for ins in chain.instructions:
                    args = ins.instr_args
                    kind = type(args).__name__
                    if kind == "KernelCall":
                        counts[ops[args.op_index]] += 1
                    elif kind == "DelegateCall":
                        counts[f"delegate:{delegates[args.delegate_index]}"] += 1
        except (IndexError, TypeError) as exc:
            raise BadInput(f"{self.path}: an instruction of the program refers to an operator or delegate that "
                           f"does not exist ({exc}); the file is corrupt or crafted.",
                           hint="export the program again") from None
        return dict(counts)

    def precision(self) -> str:
        report = self.path.with_name(self.path.name + ".report.json")
        try:
            return json.loads(report.read_text())["result"]["precision"]
        except (OSError, ValueError, KeyError, TypeError):
            return "fp32"
