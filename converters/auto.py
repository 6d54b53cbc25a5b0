"""`--quantize auto`, for every converter that supports more than one precision.

One implementation for every target: convert each candidate precision with the path's own
registered converter function, check each candidate's parity against the source model with
the precision's tolerance preset, time each on this machine (edgekit.validators.latency,
in this process, alternating between candidates), and keep the fastest that passed.
Candidates within TIE_MARGIN of the fastest count as equally fast and the smallest file
wins. fp32 is always a candidate, so the chosen file is never measurably slower than its
fp32 sibling (beyond the margin), which is the point: a quantized file is handed out only
where it pays on this CPU.

Candidates: every precision the converter declares, except int8 without --calibration; when full
int8 fails parity on a path that can keep layers float (ONNX, ExecuTorch, TFLite), the mixed
candidate too (int8 with `--keep-float auto`), timed beside the failed full int8 file so that
the report gives what the float layers cost (ms and size) against full int8.
Every candidate is tried: one whose conversion or check raises anything (nothing quantizable,
a converter library's own error, a file that does not load) is recorded with the reason and
skipped. The gate and the timing run on real samples (`request.samples`: --inputs, else
--calibration) at the shapes the model really gets; random inputs only when there are none
(refused for dynamic spatial axes). The decision table goes to `details["auto"]` (rendered by
edgekit.report), plus `details["latency_vs_fp32"]` for the chosen file.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from edgekit.converters.base import ConvertResult
from edgekit.errors import CheckFailed, EdgekitError
from edgekit.progress import progress

TIE_MARGIN = 1.05  # candidates within 5% of the fastest count as equally fast; the smallest wins
SLOWER_LIMIT = 1.10  # a chosen file this much slower than fp32 (cannot happen unless fp32 failed parity)
LATENCY_ITERATIONS = 40
LATENCY_ROUNDS = 2
GATE_SAMPLES = 64  # calibration samples the parity gate uses
GATE_RANDOM = 16  # seeded random samples when there are no real ones


def median_ms(paths: list[Path], rounds: int = LATENCY_ROUNDS, iterations: int = LATENCY_ITERATIONS,
              data=None) -> list[float]:
    """Median batch-1 latency of each model file, on the first sample of `data` (a Dataset of
    real inputs) when given; rounds alternate between the files so that load on a shared
    machine hits them alike, and each file's best round counts."""
    from edgekit.validators.latency import measure

    best = [float("inf")] * len(paths)
    for _ in range(rounds):
        for i, p in enumerate(paths):
            r = measure(str(p), warmup=5, iterations=iterations, data=data)
            best[i] = min(best[i], r["median_ms"])
    return best


def _why(exc: BaseException) -> str:
    """One line on why a candidate failed: edgekit's message, or the library's exception."""
    text = exc.message if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())[:200]


MIXED = "int8+keep-float"  # the candidate that keeps the layers auto finds sensitive in float


def keeps_float(conv, request) -> bool:
    """Whether the path can keep layers float in int8 (edgekit.converters.keep_float)."""
    from edgekit.config import KEEP_FLOAT_TARGETS

    return conv.target in KEEP_FLOAT_TARGETS and not request.options.get("int8_io")


def candidates(conv, calibration) -> list[str]:
    """The --quantize modes auto tries for a converter."""
    return [q for q in conv.quantize if q != "auto" and (q != "int8" or calibration is not None)]


def gate_data(model, samples):
    """Parity data for the gate: real samples (--inputs, else --calibration) when given, else
    seeded random inputs (refused when the model has dynamic axes besides the batch)."""
    from edgekit.validators.latency import random_samples, shape_flags

    if samples is None:
        return random_samples(model, GATE_RANDOM, 0, shape_flags(model))
    return samples.take(min(samples.n, GATE_SAMPLES))


def convert(conv, model, request, out_path: Path):
    """Run `conv` (a registry.Converter) for each candidate precision and keep the best file."""
    from edgekit.loading import open_model
    from edgekit.targets import get_target, precision_of, tolerance_preset
    from edgekit.validators.latency import file_size, timed_on
    from edgekit.validators.parity import check

    out_path = Path(out_path)
    target = get_target(conv.target)
    modes = candidates(conv, request.calibration)
    real = request.samples if request.samples is not None else request.calibration
    data = gate_data(model, real)
    rows: list[dict] = []
    results: dict[str, object] = {}
    failures: dict[str, BaseException] = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-", dir=out_path.parent) as tmp:
        files: dict[str, Path] = {}

        def attempt(key: str, mode: str, req) -> dict:
            precision = precision_of(mode)
            row = {"mode": key, "precision": precision}
            rows.append(row)
            path = Path(tmp) / f"{key}{target.extension}"
            progress(f"auto: converting the {key if key != mode else precision} candidate")
            try:
                result = conv.impl(model, req, path)
            except Exception as exc:  # any candidate may break (a converter library's own error): try the next
                row.update(passed=False, reason=f"conversion failed: {_why(exc)}")
                failures[key] = exc
                return row
            results[key] = result
            row["size_bytes"] = file_size(path)  # a folder artifact (tfjs): all its files
            progress(f"auto: checking parity of the {precision} candidate on {data.n} samples from {data.source}")
            try:
                cand = open_model(path, runtime=target.runtime)
                rep = check(model, cand, data, precision=result.precision,
                            tolerance=tolerance_preset(result.precision, getattr(model, "runtime", None)))
            except Exception as exc:  # a file that does not load or run is a failed candidate
                row.update(passed=False, reason=f"check failed: {_why(exc)}")
                return row
            row["passed"] = rep.passed
            row["reason"] = "parity passed" if rep.passed else f"parity failed: {rep.failure_summary()}"
            row["parity"] = {o.name: {k: o.metrics.get(k) for k in ("max_abs", "cosine", "snr_db", "top1", "agreement")
                                      if k in o.metrics} for o in rep.outputs}
            files[key] = path
            return row

        for mode in modes:
            row = attempt(mode, mode, replace(request, quantize=mode))
            if mode == "int8" and mode in files and not row["passed"] and keeps_float(conv, request):
                # full int8 failed parity: the mixed candidate (the sensitive layers float) before fp16/fp32 win
                mixed = attempt(MIXED, "int8", replace(request, quantize="int8",
                                                       options={**request.options, "keep_float": ["auto"]}))
                kept = ((results.get(MIXED) and results[MIXED].details.get("keep_float")) or {}).get("nodes")
                if kept is not None:
                    mixed["keep_float"] = kept
                    if not kept:  # auto found no passing set: the file is full int8 again
                        mixed.update(passed=False, reason="--keep-float auto found no passing set of layers")
                        files.pop(MIXED, None)
        passing = [r for r in rows if r.get("passed")]
        if not passing and "none" in failures:
            raise failures["none"]  # even the float conversion fails: that is the error to show
        if not passing:
            raise CheckFailed(f"--quantize auto: no candidate for {conv.target} passed parity against the source "
                              f"({'; '.join(r['mode'] + ': ' + r.get('reason', '') for r in rows)[:600]}).",
                              hint="check the source model and the data; convert with an explicit --quantize to see "
                                   "the full parity report")
        progress(f"auto: timing {len(passing)} candidate(s) on this CPU")
        timed = [r["mode"] for r in passing]
        if MIXED in timed and "int8" in files:  # full int8 failed, but it is what the kept layers cost against
            timed.append("int8")
        for mode, ms in zip(timed, median_ms([files[m] for m in timed], data=real)):
            next(r for r in rows if r["mode"] == mode)["median_ms"] = ms
        by_mode = {r["mode"]: r for r in rows}
        if MIXED in timed:
            m, full = by_mode[MIXED], by_mode["int8"]
            m["vs_full_int8"] = {"full_int8_ms": full["median_ms"], "ms": m["median_ms"] - full["median_ms"],
                                 "ratio": m["median_ms"] / full["median_ms"] if full["median_ms"] else 1.0,
                                 "full_int8_size_bytes": full["size_bytes"],
                                 "size_bytes": m["size_bytes"] - full["size_bytes"]}
            full["reason"] += " (timed as the reference for the kept-float layers)"
            m["reason"] += (f"; keeps {', '.join(m['keep_float'])} float: {m['vs_full_int8']['ms']:+.3f} ms, "
                            f"{m['vs_full_int8']['size_bytes'] / 1024:+.1f} KB vs full int8")
        fastest = min(r["median_ms"] for r in passing)
        tied = [r for r in passing if r["median_ms"] <= fastest * TIE_MARGIN]
        chosen = min(tied, key=lambda r: (r["size_bytes"], r["median_ms"]))
        for r in rows:
            r["chosen"] = r is chosen
            if r is chosen:
                r["reason"] += ("; fastest" if r["median_ms"] == fastest
                                else f"; within {int((TIE_MARGIN - 1) * 100)}% of the fastest and the smallest")
        if files[chosen["mode"]].is_dir():  # a folder artifact (tfjs)
            shutil.copytree(files[chosen["mode"]], out_path)
        else:
            shutil.copyfile(files[chosen["mode"]], out_path)
    base = results[chosen["mode"]]
    fp32 = next((r for r in rows if r["mode"] == "none" and "median_ms" in r), None)
    details = dict(base.details)
    if "vs_full_int8" in chosen:
        details["keep_float"] = {**details["keep_float"], "vs_full_int8": chosen["vs_full_int8"]}
    details["auto"] = rows
    details["auto_data"] = {"gate": f"{data.n} samples from {data.source}", "timing": timed_on(real)}
    if fp32 is not None:
        ratio = chosen["median_ms"] / fp32["median_ms"] if fp32["median_ms"] else 1.0
        details["latency_vs_fp32"] = {"fp32_ms": fp32["median_ms"], "quantized_ms": chosen["median_ms"],
                                      "ratio": ratio, "mode": chosen["mode"], "fp32_size_bytes": fp32["size_bytes"],
                                      "quantized_size_bytes": chosen["size_bytes"], "slower": ratio > SLOWER_LIMIT,
                                      "timed_on": timed_on(real)}
    tried = "; ".join(f"{r['mode']} " + (f"{r['median_ms']:.3f} ms" if "median_ms" in r else "-") +
                      f" {'pass' if r.get('passed') else 'fail'}" for r in rows)
    notes = [f"--quantize auto chose {chosen['precision']}: the fastest candidate that passed parity on this CPU "
             f"(ties within {int((TIE_MARGIN - 1) * 100)}% go to the smallest file). Tried: {tried}"]
    if request.calibration is None and "int8" in conv.quantize:
        notes.append("auto did not try int8: pass --calibration to include it")
    return ConvertResult(out_path, chosen["precision"], notes + list(base.notes), details)
