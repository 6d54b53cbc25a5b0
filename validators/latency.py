"""Latency: the same statistics for every runtime, measured in a child process.

`measure` runs inside the child started by `edgekit.isolation`: it loads the artifact
(load time), runs one inference (first-inference time), warms up, then times N single-batch
inferences with a monotonic clock and reports median/p90/p99/min/max/std, plus file size,
peak resident memory and the threads the process ended up using.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from edgekit.isolation import progress


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


def measure(path: str, *, trust=None, threads: int | None = None, warmup: int = 10,
            iterations: int = 100, inputs: str | None = None, seed: int = 0) -> dict:
    """Load `path`, time it, and return the statistics (runs inside a child process)."""
    from edgekit.loading import Trust, open_model
    from edgekit.tensors import load_dataset, random_dataset

    p = Path(path)
    progress(f"loading {p.name}")
    t0 = time.perf_counter()
    runner = open_model(p, trust=trust or Trust(), threads=threads)
    load_s = time.perf_counter() - t0
    batch = runner.batch_size() or 1
    if inputs:
        data = load_dataset(inputs, runner.signature)
    else:
        data = random_dataset(runner.signature, n=batch, seed=seed)
    feeds = {k: v[:batch] for k, v in data.arrays.items()}
    if len(next(iter(feeds.values()))) < batch:
        feeds = {k: np.concatenate([v] * batch)[:batch] for k, v in feeds.items()}
    t0 = time.perf_counter()
    runner.infer(feeds)
    first_s = time.perf_counter() - t0
    progress(f"warming up ({warmup})")
    for _ in range(warmup):
        runner.infer(feeds)
    progress(f"timing {iterations} inferences")
    samples = []
    for i in range(iterations):
        t0 = time.perf_counter()
        runner.infer(feeds)
        samples.append(time.perf_counter() - t0)
    result = stats_ms(samples)
    result.update({
        "artifact": str(p), "runtime": runner.runtime, "runtime_version": runner.version(),
        "load_ms": load_s * 1000.0, "first_inference_ms": first_s * 1000.0, "batch": batch,
        "size_bytes": file_size(p), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads_requested": threads, "os_threads": len(os.listdir("/proc/self/task")),
        "warmup": warmup, "inputs": data.source, "arch": "host",
    })
    return result
