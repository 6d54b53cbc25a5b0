"""Latency: the same statistics for every runtime, measured in a child process.

`measure` runs inside the child started by `edgekit.isolation`: it imports the runtime
(runtime import time, paid once per process), loads the artifact (load time), runs one
checked inference (`infer`: first-inference time), binds the batch (`Runner.bind`), warms
up, then times N single-batch inferences with a monotonic clock and reports
median/p90/p99/min/max/std, plus file size, peak resident memory and the threads the
process ended up using.

What is timed is `bind`'s call: set inputs -> invoke -> read outputs, the same calls a
user of the runtime's own API makes, so the figure is the runtime's and not edgekit's
per-call Python (input conversions, name lookups, dequantizing: done once at bind).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from edgekit.progress import progress


def file_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def stats_ms(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)), "min_ms": float(a.min()), "max_ms": float(a.max()),
        "mean_ms": float(a.mean()), "std_ms": float(a.std()), "iterations": int(a.size),
    }


def import_runtime(path: Path) -> float | None:
    """Seconds to import the runtime that runs `path` (None if unknown here: open_model
    then reports the problem), so `load_ms` is the model's load alone."""
    from edgekit.errors import EdgekitError
    from edgekit.formats import detect
    from edgekit.validators.runners import runner_class

    try:
        runtime = detect(path).spec.runtime
        if runtime is None:
            return None
        cls = runner_class(runtime)
        progress(f"importing the {runtime} runtime")
        t0 = time.perf_counter()
        cls.import_runtime()
        return time.perf_counter() - t0
    except EdgekitError:  # unreadable file, missing extra...: open_model says so properly
        return None


def dynamic_axes(signature, batch_axis: dict | None = None) -> list[str]:
    """Inputs with a dynamic axis besides the batch (e.g. an image's height and width): random
    data cannot stand in for them, since any size edgekit picked would be invented. The batch
    axis is each input's own (a recurrent state [2, N, 128] is batched on axis 1)."""
    from edgekit.tensors import batch_axes

    axes = batch_axes(signature.inputs, batch_axis)
    return [s.describe() for s in signature.inputs
            if any(d is None for i, d in enumerate(s.shape) if i != axes.get(s.name, 0))]


def random_samples(runner, n: int, seed: int, flags: str, batch_axis: dict | None = None):
    """Seeded random inputs for `runner`, or BadInput (exit 2) naming `flags` when an input has a
    dynamic non-batch axis: timing or checking a 1x1 image measures nothing and can crash."""
    from edgekit.errors import BadInput
    from edgekit.tensors import random_dataset

    sampler = getattr(runner, "random_dataset", None)  # runners that know realistic values (and sizes)
    if sampler:
        return sampler(n, seed)
    dynamic = dynamic_axes(runner.signature, batch_axis)
    if dynamic:
        raise BadInput(f"{runner.path.name}: input {'; '.join(dynamic)} has dynamic axes besides the batch, so "
                       "edgekit cannot make up inputs for it (it would have to invent an image size).",
                       hint=f"pass {flags}")
    return random_dataset(runner.signature, n=n, seed=seed, batch_axis=batch_axis)


def timed_on(samples) -> str:
    """What a timing ran on, e.g. 'val.npz sample 0, images 1x3x320x320' (or random inputs)."""
    if samples is None:
        return "seeded random inputs"
    shapes = ", ".join(f"{k} " + "x".join(map(str, (1, *v.shape[1:]))) for k, v in samples.arrays.items())
    return f"{samples.source} sample 0, {shapes}"


def _renamed(data, names: list[str]):
    """`data` keyed by `names`: by name when they match, else by position (as parity does)."""
    from edgekit.tensors import Dataset

    if set(data.arrays) <= set(names) or len(data.arrays) != len(names):
        return data
    renamed = dict(zip(data.arrays, names))
    axes = {renamed[k]: v for k, v in data.axes.items() if k in renamed} if data.axes else data.axes
    return Dataset(dict(zip(names, data.arrays.values())), data.labels, data.source, axes)


def _load_by_position(inputs: str, signature):
    """The `inputs` file matched to the artifact's inputs: by name, else (an .npz written for the
    source model, e.g. input_ids/attention_mask for an ExecuTorch program's input_0/input_1) by
    position, as parity does."""
    from edgekit.errors import BadInput
    from edgekit.tensors import LABELS_KEY, load_dataset, match_inputs, read_npz

    try:
        return load_dataset(inputs, signature)
    except BadInput:
        if not str(inputs).endswith(".npz"):
            raise
        arrays = [v for k, v in read_npz(Path(inputs)).items() if k != LABELS_KEY]
        if len(arrays) != len(signature.input_names):
            raise
        return match_inputs(dict(zip(signature.input_names, arrays)), signature, str(inputs), "--inputs")


def shape_flags(reference) -> str:
    """What to pass when random inputs cannot stand in for real ones (dynamic H/W...)."""
    dyn = [s for s in reference.signature.inputs if any(d is None for d in s.shape[1:])]
    pins = " ".join(f"--input-shape {s.name}=" + "x".join("1" if i == 0 and d is None else (str(d) if d else "SIZE")
                                                           for i, d in enumerate(s.shape)) for s in dyn)
    return f"--inputs with real samples (.npz keyed by input name), or {pins} to pin the dynamic axes"


def _timed_here(runner, feeds, warmup: int, iterations: int) -> tuple[float, list[float]]:
    """(first inference s, timed samples s) of a runner in this process."""
    t0 = time.perf_counter()
    runner.infer(feeds)  # the checked path: bad inputs fail here with a clear error
    first_s = time.perf_counter() - t0
    run = runner.bind(feeds).run
    progress(f"warming up ({warmup})")
    for _ in range(warmup):
        run()
    progress(f"timing {iterations} inferences")
    samples = []
    clock = time.perf_counter
    for i in range(iterations):
        t0 = clock()
        run()
        samples.append(clock() - t0)
    return first_s, samples


def measure(path: str, *, trust=None, threads: int | None = None, warmup: int = 10,
            iterations: int = 100, inputs: str | None = None, seed: int = 0, options: dict | None = None,
            data=None) -> dict:
    """Load `path`, time it, and return the statistics (runs inside a child process).

    The timed batch is the first of `data` (an edgekit Dataset, for callers in-process), else of
    the `inputs` file, else seeded random inputs (refused for dynamic spatial axes)."""
    from edgekit.loading import Trust, open_model
    from edgekit.tensors import to_model_layout

    p = Path(path)
    import_s = import_runtime(p)
    progress(f"loading {p.name}")
    t0 = time.perf_counter()
    runner = open_model(p, trust=trust or Trust(), threads=threads,  # options: --input-shape, --signature...
                        options={"trust": trust or Trust(), **(options or {})} if options else None)
    load_s = time.perf_counter() - t0
    batch = runner.batch_size() or 1
    if data is not None:  # samples written for the source model: the artifact's names may differ
        data = _renamed(data, runner.signature.input_names)
    if data is None and inputs:
        data = _load_by_position(inputs, runner.signature)
    elif data is None:
        data = random_samples(runner, batch, seed, "--inputs with real samples (.npz keyed by input name)")
    feeds = {k: v[:batch] for k, v in data.arrays.items()}
    if len(next(iter(feeds.values()))) < batch:
        feeds = {k: np.concatenate([v] * batch)[:batch] for k, v in feeds.items()}
    feeds = to_model_layout(feeds, data.axes)  # a state batched on axis 1, a scalar as 0-d
    timed = "bind"  # Runner.bind's call (set inputs -> invoke -> read outputs), not infer()
    if hasattr(runner, "timed_runs"):  # a runtime in another process (Node.js): timed in there
        first_s, samples = runner.timed_runs(feeds, warmup, iterations)
        timed = "in the runtime's process (performance.now)"
    else:
        first_s, samples = _timed_here(runner, feeds, warmup, iterations)
    result = stats_ms(samples)
    result.update({
        "artifact": str(p), "runtime": runner.runtime, "runtime_version": runner.version(),
        "runtime_import_ms": None if import_s is None else import_s * 1000.0,
        "load_ms": load_s * 1000.0, "first_inference_ms": first_s * 1000.0, "batch": batch,
        "size_bytes": file_size(p), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads_requested": threads, "os_threads": len(os.listdir("/proc/self/task")),
        "warmup": warmup, "inputs": data.source, "arch": "host", "timed": timed,
    })
    if runner.notes:
        result["notes"] = list(runner.notes)
    return result
