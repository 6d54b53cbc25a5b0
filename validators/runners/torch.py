"""PyTorch runners: torch.export programs, eager modules (class + weights, trusted pickles)
and TorchScript archives. They are the reference for PyTorch sources, and the TorchScript
runner also runs edgekit's TorchScript artifacts.

Each runner knows its input signature (from the .pt2 itself, from metadata edgekit stores
in its TorchScript artifacts, or from --input-shape) and gives converters what they need:
`eager_module()`, `example_inputs()`, `dynamic_shapes()`, `call()` and, for a .pt2, a fresh
`load_program()`. Turning a model into a torch.export program (torch.export, TorchScript's
TS2EPConverter) is conversion: edgekit.converters.torch does it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput, EdgekitError, require
from edgekit.tensors import Signature, TensorSpec, check_shapes_against, specs_from_shapes
from edgekit.validators.runners.base import Bound, Runner

TS_METADATA = "edgekit.json"  # extra file in edgekit's TorchScript artifacts: the signature
MAX_DYNAMIC_BATCH = 1024


def _torch():
    if "torch" not in sys.modules:
        passive_openmp()
    return require("torch", "torch")


def passive_openmp() -> None:
    """Make torch's OpenMP workers sleep, not spin, between parallel regions (unless the
    user chose otherwise). libgomp reads OMP_WAIT_POLICY once, when torch is imported, so
    this only acts before that. With its default (spin first), every parallel region waits
    for a worker the OS has descheduled whenever the process has more threads than idle
    cores (a shared CI box, other jobs): measured at 2 threads on a busy 2-core machine,
    TorchScript MobileNetV2 605 ms median (p90 2.6 s) spinning vs 31 ms passive, and the
    digits CNN 40 ms vs 0.1 ms. One thread is unaffected (no workers)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _dtype_name(dt) -> str:
    return str(dt).replace("torch.", "")


def output_names(n: int) -> list[str]:
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def flatten_outputs(out) -> list:
    """Tensors of a forward() result in a stable order (tensor, tuple, list, dict, nested)."""
    torch = _torch()
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


class TorchRunner(Runner):
    """Shared part: run a torch callable on numpy feeds, and hand converters what they need."""

    extra = "torch"
    runtime = ""

    def _threads(self) -> None:
        torch = _torch()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        policy = os.environ.get("OMP_WAIT_POLICY")
        if torch.get_num_threads() > 1 and policy:
            self.notes.append(f"OpenMP workers {'sleep' if policy.upper() == 'PASSIVE' else 'spin'} between "
                              f"parallel regions (OMP_WAIT_POLICY={policy})")

    # -- for converters ------------------------------------------------------------------
    def eager_module(self):
        return self.native

    def traceable_module(self):
        """The module torch.jit.trace should record (the eager module itself, here)."""
        return self.eager_module()

    def dynamic_batch(self) -> bool:
        return any(s.shape and s.shape[0] is None for s in self.signature.inputs)

    python_scalars: dict = {}  # forward() arguments typed int/float/bool (not tensors): name -> type
    example_scalars: dict = {}  # their values from the user's data, for tracing/export (set by the pipeline)

    def example_inputs(self, batch: int | None = None, seed: int = 0) -> tuple:
        """Seeded example tensors for tracing/export; batch defaults to the signature's (1 if dynamic).
        A Python scalar argument gets the value from the user's data when there is one, else 0."""
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        out = []
        for s in self.signature.inputs:
            if s.name in self.python_scalars:
                out.append(self.python_scalars[s.name](self.example_scalars.get(s.name, 0)))
                continue
            shape = [(batch or 1) if d is None else (batch if (i == 0 and batch) else d)
                     for i, d in enumerate(s.shape)]
            dt = getattr(torch, s.dtype)
            if dt.is_floating_point:
                out.append(torch.randn(*shape, generator=g).to(dt))
            elif dt == torch.bool:
                out.append(torch.randint(0, 2, shape, generator=g).bool())
            else:
                out.append(torch.randint(0, 10, shape, generator=g).to(dt))
        return tuple(out)

    def dynamic_shapes(self):
        """torch.export dynamic_shapes for a dynamic batch (None when every shape is fixed)."""
        if not self.dynamic_batch():
            return None
        from torch.export import Dim

        batch = Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)
        return tuple({0: batch} if s.shape and s.shape[0] is None else {} for s in self.signature.inputs)

    # -- Runner --------------------------------------------------------------------------
    @classmethod
    def import_runtime(cls) -> None:
        _torch()

    def _args(self, feeds: dict[str, np.ndarray]) -> list:
        torch = _torch()
        return [self.python_scalars[s.name](np.asarray(feeds[s.name]).reshape(-1)[0].item())
                if s.name in self.python_scalars else
                torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(getattr(torch, s.dtype))
                for s in self.signature.inputs]

    def _outputs(self, out) -> dict[str, np.ndarray]:
        torch = _torch()
        out = flatten_outputs(out)
        return {s.name: t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
                for s, t in zip(self.signature.outputs, out)}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        args = self._args(feeds)
        with torch.no_grad():
            return self._outputs(self.call(*args))

    def bind(self, feeds: dict[str, np.ndarray]) -> Bound:
        """The module called on tensors built once, under inference_mode (as a user serves it)."""
        torch = _torch()
        args = self._args(feeds)
        call, mode = self.call, torch.inference_mode

        def run():
            with mode():
                return call(*args)

        return Bound(run, self._outputs)

    def call(self, *args):
        """The model on torch arguments (what infer runs), for converters that check a result."""
        return self.native(*args)

    def _outputs_from_run(self) -> list[TensorSpec]:
        """Output specs found by running the model once on example inputs."""
        torch = _torch()
        with torch.no_grad():
            out = flatten_outputs(self.call(*self.example_inputs()))
        dyn = self.dynamic_batch()
        return [TensorSpec(n, _dtype_name(t.dtype), tuple(None if (dyn and i == 0) else int(d)
                                                          for i, d in enumerate(t.shape)))
                for n, t in zip(output_names(len(out)), out)]

    def version(self) -> str:
        return _torch().__version__

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.eager_module().modules():
            if not list(m.children()):
                counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
        return counts


class TorchExportRunner(TorchRunner):
    """A torch.export ExportedProgram (.pt2), run by its module in eager torch."""

    runtime = "torch_export"

    def load(self) -> "TorchExportRunner":
        torch = _torch()
        self._threads()
        if self.options.get("model_class"):
            raise BadInput(f"{self.path}: a .pt2 holds the whole program; --model-class is only for weights files.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ep = torch_export_load(self.path, self.options.get("trust"))
        except EdgekitError:
            raise
        except Exception as exc:
            raise BadInput(f"{self.path}: torch.export.load cannot read this program: {str(exc).strip()[:300]}",
                           hint="save it again with torch.export.save (with the same torch version)") from None
        self.program = ep
        self.native = ep.module()
        placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
        inputs = []
        for name in ep.graph_signature.user_inputs:
            val = placeholders[name].meta.get("val")
            if not isinstance(val, torch.Tensor):
                raise BadInput(f"{self.path}: input '{name}' is not a tensor ({type(val).__name__}); edgekit "
                               "converts programs whose inputs are all tensors.")
            shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
            inputs.append(TensorSpec(name, _dtype_name(val.dtype), shape,
                                     layout="NCHW" if len(shape) == 4 else None))
        out_node = next(n for n in ep.graph.nodes if n.op == "output")
        vals = [a.meta.get("val") for a in out_node.args[0] if hasattr(a, "meta")]
        vals = [v for v in vals if isinstance(v, torch.Tensor)]
        outputs = [TensorSpec(n, _dtype_name(v.dtype), tuple(int(d) if isinstance(d, int) else None for d in v.shape))
                   for n, v in zip(output_names(len(vals)), vals)]
        self.signature = Signature(inputs, outputs)
        shapes = self.options.get("input_shapes") or []
        if shapes:
            check_shapes_against(shapes, self.signature, str(self.path))
        return self

    def load_program(self):
        """A fresh copy of the program as the file holds it (lowering mutates programs in place,
        and this runner stays the parity reference)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch_export_load(self.path, self.options.get("trust"))

    def traceable_module(self):
        # Tracing + freezing a program's recurrent node (aten.lstm/gru/rnn) corrupts memory in
        # torch 2.13 (the frozen module crashes when run): decompose those programs to core
        # ATen first. Others keep their graph (decomposition would bake the batch into views).
        recurrent = any(n.op == "call_function" and any(k in str(n.target) for k in ("lstm", "gru", "rnn_"))
                        for n in self.program.graph.nodes)
        if not recurrent:
            return self.native
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch_export_load(self.path, self.options.get("trust")).run_decompositions().module()

def torch_export_load(path, trust=None):
    """torch.export.load without its pickle and eval paths (see edgekit.scan.load_pt2)."""
    from edgekit.loading import Trust
    from edgekit.scan import load_pt2

    _torch()
    return load_pt2(path, trust or Trust())


def _forward_arg_names(module) -> list[str]:
    import inspect

    params = inspect.signature(module.forward).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
             and p.default is p.empty]
    return names or ["input"]


def _import_model_class(spec: str):
    """Import `package.module:ClassOrFactory` from the user's Python path (cwd first)."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise BadInput(f"--model-class {spec!r}: expected package.module:ClassOrFactory.",
                       hint="e.g. --model-class mypkg.nets:DigitsCNN")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise BadInput(f"--model-class {spec}: cannot import '{mod_name}' ({exc}).",
                       hint="run edgekit from the folder that holds the package, or add it to PYTHONPATH") from None
    except Exception as exc:
        raise BadInput(f"--model-class {spec}: importing '{mod_name}' failed: {type(exc).__name__}: {exc}",
                       hint="fix the module so it imports cleanly") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadInput(f"--model-class {spec}: module '{mod_name}' has no attribute '{attr}'.",
                           hint=f"names there: {', '.join(n for n in dir(module) if not n.startswith('_'))[:300]}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInput(f"--model-class {spec}: '{attr}' is not a class or factory function.")
    return obj


def load_weights(path: Path, found_name: str) -> dict:
    """A state_dict from a torch.save file (weights_only=True, always explicit) or .safetensors."""
    torch = _torch()
    if found_name == "safetensors":
        st = require("safetensors.torch", "torch")
        try:
            return st.load_file(str(path), device="cpu")
        except Exception as exc:
            raise BadInput(f"{path}: safetensors cannot read this file: {str(exc)[:300]}") from None
    try:
        # weights_only=True passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot override it
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"{path}: not loadable as plain weights: {str(exc).strip().splitlines()[0][:300]}",
                       hint="save the weights with torch.save(model.state_dict(), path) or safetensors") from None
    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        raise BadInput(f"{path}: holds a dict that is not a state_dict (keys: {', '.join(map(str, list(obj)[:8]))}).",
                       hint="save model.state_dict() itself, or a checkpoint with a 'state_dict' entry")
    if not isinstance(obj, dict):
        raise BadInput(f"{path}: holds a {type(obj).__name__}, not a state_dict.")
    return dict(obj)


def apply_weights(model, state: dict, path: Path, spec: str) -> None:
    """load_state_dict(strict) with a readable list of the first mismatched keys."""
    torch = _torch()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} (model {list(expected[k].shape)}, file {list(state[k].shape)})" for k in expected
             if k in state and isinstance(state[k], torch.Tensor) and tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing in the file: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"not in the model: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"different shapes: {', '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}")
        raise BadInput(f"{path}: the weights do not match {spec} — " + "; ".join(parts) + ".",
                       hint="check --model-class and --model-args (e.g. num_classes) against how the weights were saved")
    model.load_state_dict(state, strict=True)


class TorchEagerRunner(TorchRunner):
    """An nn.Module in eager torch: --model-class + weights, or a trusted whole-module pickle."""

    runtime = "torch_eager"

    def load(self) -> "TorchEagerRunner":
        torch = _torch()
        self._threads()
        found = getattr(self, "detected", None)
        kind = found.name if found else "torch_state_dict"
        spec = self.options.get("model_class")
        if kind == "torch_pickle":
            trust = self.options.get("trust")
            if not (trust and trust.pickle):  # check_policy refuses first; this is a second lock
                raise BadInput(f"{self.path}: a whole-module pickle needs --trust-pickle.")
            cwd = os.getcwd()  # the pickle names the module's class: import it from the project folder
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
            try:
                model = torch.load(str(self.path), map_location="cpu", weights_only=False)
            except Exception as exc:
                raise BadInput(f"{self.path}: torch.load failed: {str(exc).strip().splitlines()[0][:300]}",
                               hint="the module's class must be importable (run from its project folder)") from None
            if not isinstance(model, torch.nn.Module):
                raise BadInput(f"{self.path}: holds a {type(model).__name__}, not a torch.nn.Module.",
                               hint="for a state_dict pass --model-class")
            source = "the pickled module"
        else:
            if not spec:
                raise BadInput(f"{self.path}: holds only weights; edgekit needs the model's code to use them.",
                               hint="pass --model-class package.module:ClassOrFactory (and --model-args JSON, "
                                    "--input-shape)")
            factory = _import_model_class(spec)
            args = self.options.get("model_args") or {}
            try:
                model = factory(**args)
            except Exception as exc:
                raise BadInput(f"--model-class {spec}: building it with --model-args {json.dumps(args)} failed: "
                               f"{type(exc).__name__}: {exc}") from None
            if not isinstance(model, torch.nn.Module):
                raise BadInput(f"--model-class {spec}: returned a {type(model).__name__}, not a torch.nn.Module.")
            apply_weights(model, load_weights(self.path, kind), self.path, spec)
            source = spec
        model.eval()
        self.native = model
        names = _forward_arg_names(model)
        inputs = specs_from_shapes(self.options.get("input_shapes") or [], names, f"{self.path} ({source})")
        self.signature = Signature(inputs, [])
        try:
            self.signature.outputs = self._outputs_from_run()
        except Exception as exc:
            raise BadInput(f"{self.path}: the model fails on inputs of the given shape(s) "
                           f"({'; '.join(s.describe() for s in inputs)}): {type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0][:300]}",
                           hint="check --input-shape against what forward() expects") from None
        return self


class TorchScriptRunner(TorchRunner):
    """A TorchScript archive (torch.jit.load). The signature comes from edgekit's metadata in
    its own artifacts, or from --input-shape for anyone else's."""

    runtime = "torchscript"

    def load(self) -> "TorchScriptRunner":
        torch = _torch()
        self._threads()
        extra = {TS_METADATA: ""}
        try:
            module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            raise BadInput(f"{self.path}: torch.jit.load cannot read this archive: {str(exc).strip()[:300]}",
                           hint="save it again with torch.jit.save") from None
        module.eval()
        self.native = module
        self.metadata = json.loads(extra[TS_METADATA]) if extra[TS_METADATA] else None
        shapes = self.options.get("input_shapes") or []
        if self.metadata:
            self.signature = Signature([TensorSpec(**t) for t in self.metadata["inputs"]],
                                       [TensorSpec(**t) for t in self.metadata["outputs"]])
            for t in self.signature.inputs + self.signature.outputs:
                t.shape = tuple(t.shape)
            if shapes:
                check_shapes_against(shapes, self.signature, str(self.path))
            self._optimize()
            return self
        args = module.forward.schema.arguments[1:]
        self.python_scalars = {a.name: _SCALAR_TYPES[str(a.type)][0] for a in args if str(a.type) in _SCALAR_TYPES}
        named = [s.name for s in shapes if s.name in self.python_scalars]
        if named:
            raise BadInput(f"{self.path}: forward() takes {', '.join(named)} as a Python scalar, which needs no "
                           "--input-shape.", hint="give its value in the data file as a 0-d array, e.g. "
                                                  f"numpy.savez(..., {named[0]}=numpy.array(16000)); drop its --input-shape")
        tensors = specs_from_shapes(shapes, [a.name for a in args if a.name not in self.python_scalars],
                                    str(self.path))
        by_name = {t.name: t for t in tensors}
        inputs = [by_name.get(a.name) or TensorSpec(a.name, _SCALAR_TYPES[str(a.type)][1], ()) for a in args]
        self.signature = Signature(inputs, [])
        scripted = not self.metadata and _is_scripted(module)
        try:
            self.signature.outputs = self._outputs_from_run()
        except Exception as exc:
            raise BadInput(f"{self.path}: the TorchScript module fails on inputs of the given shape(s) "
                           f"({'; '.join(s.describe() for s in inputs)}): "
                           f"{str(exc).strip().splitlines()[-1][:300]}",
                           hint="check --input-shape against the shapes forward() expects (a scripted module: "
                                "read its code with print(torch.jit.load(path).code))" if scripted else
                                "check --input-shape against what the model was traced with") from None
        self._optimize()
        return self

    _run_module = None  # what infer/bind run: the optimized module, else the loaded one

    def _optimize(self) -> None:
        """Run a copy optimized with torch.jit.optimize_for_inference (frozen, convolutions
        as prepacked oneDNN ops) when it computes what the archive does; the archive's own
        module stays `native` for converters. Loaded as is, MobileNetV2's depthwise convs
        take aten's im2col path (_slow_conv2d_forward): 2x slower at one thread. The
        rewrite cannot be saved in the archive (it does not survive torch.jit.save/load),
        so it is done at load, as a libtorch user does, for image models (see _big_images).
        options['optimize']: False never, "always" whatever the input size."""
        torch = _torch()
        if not self.options.get("optimize", True) or not hasattr(torch.jit, "optimize_for_inference"):
            return
        if self.options.get("optimize") != "always" and not _big_images(self.signature):
            return
        import copy

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast = torch.jit.optimize_for_inference(copy.deepcopy(self.native))
                with torch.no_grad():
                    check = self.example_inputs(batch=2 if self.dynamic_batch() else None)
                    want = flatten_outputs(self.native(*check))
                    got = flatten_outputs(fast(*check))
        except Exception as exc:  # an operator the pass does not handle: run the archive as is
            self.notes.append(f"torch.jit.optimize_for_inference failed ({type(exc).__name__}); "
                              "running the archive as loaded")
            return
        if len(got) != len(want) or any(a.shape != b.shape or a.dtype != b.dtype or
                                         not torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)
                                         for a, b in zip(got, want)):
            self.notes.append("torch.jit.optimize_for_inference changed the outputs; running the archive as loaded")
            return
        self._run_module = fast
        self.notes.append("running the archive through torch.jit.optimize_for_inference (checked against it at load)")

    def call(self, *args):
        """The model on torch arguments (what infer runs), for converters that check a result."""
        return (self._run_module or self.native)(*args)

    def eager_module(self):
        return self.native

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.native.inlined_graph.nodes():
            kind = node.kind()
            if kind.startswith("aten::"):
                counts[kind] = counts.get(kind, 0) + 1
        return counts


_SCALAR_TYPES = {"int": (int, "int64"), "float": (float, "float64"), "bool": (bool, "bool")}


def _is_scripted(module) -> bool:
    """A guess, for hints: torch.jit.script keeps control flow (prim::If/Loop) and Python scalar
    arguments; torch.jit.trace records straight-line tensor code."""
    try:
        return any(n.kind() in ("prim::If", "prim::Loop") for n in module.inlined_graph.nodes()) or \
            any(str(a.type) in _SCALAR_TYPES for a in module.forward.schema.arguments[1:])
    except Exception:  # noqa: BLE001 - only a hint depends on it
        return False


def _big_images(signature: Signature, min_pixels: int = 32 * 32) -> bool:
    """An image input of at least 32x32: where oneDNN's convolutions repay the layout
    conversions optimize_for_inference adds around them. Measured at one thread on a busy
    2-core box: MobileNetV2 224x224 58 -> 40 ms median (min 30.5 -> 19), the 8x8 digits
    CNN 0.07 -> 0.16 ms (slower), so small inputs run the archive as loaded."""
    for s in signature.inputs:
        if len(s.shape) == 4 and all(isinstance(d, int) for d in s.shape[2:]) and s.shape[2] * s.shape[3] >= min_pixels:
            return True
    return False
