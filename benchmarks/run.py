"""`make bench`: edgekit's artifacts against the frameworks, the hand-made peer paths and the
hardware limit, measured in one run on this machine. Writes BENCHMARKS.md and
benchmarks/results.json.

    .venv/bin/python benchmarks/run.py            # the full run (make bench)
    .venv/bin/python benchmarks/run.py --quick    # one tiny model, 2 iterations (smoke test)
    .venv/bin/python benchmarks/run.py --transformer   # only the BERT latency table (benchmarks/transformer.py)

Every artifact is timed in its own child process (each thread count with a new session): edgekit artifacts through edgekit's own latency
machinery (`edgekit.validators.latency.measure`, as `edgekit bench` does), baselines through
`benchmarks.workers.baseline_latency`, which follows the same protocol. Conversions run as
whole processes (`edgekit convert` vs `python -m benchmarks.workers hand ...`) so their wall
times compare like for like. Figures are medians after warm-up with the spread; every
comparison is a ratio of two numbers taken in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks.workers` in spawned children (they inherit sys.path)

from benchmarks import report  # noqa: E402

SCHEMA_VERSION = 1
BIN = Path(sys.executable).parent
EDGEKIT = [str(BIN / "edgekit")] if (BIN / "edgekit").exists() else [sys.executable, "-m", "edgekit"]

# (target, quantize) per model. "auto" (convert every precision, keep the fastest that passes
# parity) only on the small models: on the random-init MobileNets every quantized candidate fails
# parity, so auto would spend minutes to keep fp32 (the ONNX auto row of mobilenet_keras shows it).
TORCH_ARTIFACTS = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8"),
                   ("executorch", "none"), ("executorch", "int8"), ("torchscript", "none")]
TORCH_SMALL_EXTRA = [("tflite", "fp16"), ("tflite", "dynamic"), ("onnx", "fp16"), ("onnx", "dynamic"),
                     ("tflite", "auto"), ("onnx", "auto")]
KERAS_ARTIFACTS = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8"), ("onnx", "auto")]
KERAS_SMALL_EXTRA = [("tflite", "fp16"), ("tflite", "dynamic"), ("onnx", "fp16"), ("onnx", "dynamic"),
                     ("tflite", "auto")]
TORCH_BASELINES = [("torch eager", "torch_eager", None), ("TFLite (litert_torch.convert by hand)", "tflite", "torch_tflite"),
                   ("ORT, plain torch.onnx.export", "onnx", "torch_onnx"),
                   ("ExecuTorch (own XNNPACK flow)", "executorch", "torch_executorch"),
                   ("TorchScript (trace+freeze by hand)", "torchscript", "torch_torchscript")]
KERAS_BASELINES = [("Keras tf.function", "keras_fn", None), ("Keras tf.function XLA", "keras_xla", None),
                   ("Keras predict_on_batch", "keras_predict_on_batch", None),
                   ("TFLite (TFLiteConverter.from_keras_model)", "tflite", "keras_tflite"),
                   ("ORT, plain tf2onnx export", "onnx", "keras_onnx")]
EXT = {"tflite": ".tflite", "onnx": ".onnx", "executorch": ".pte", "torchscript": ".ts.pt", "tfjs": "_tfjs"}


def model_specs(samples: Path, out: Path, quick: bool) -> list[dict]:
    """The benchmarked models: source, data, artifacts, baselines, and what is measured for each."""
    torch_ok = (ROOT / "samples" / "mobilenet_torch.py").exists()
    specs = []
    if not quick:
        if torch_ok:
            specs.append({"name": "mobilenet_torch", "family": "torch", "source": samples / "mobilenet_torch.pt2",
                          "inputs": samples / "mobilenet_torch_val.npz", "calibration": samples / "mobilenet_torch_calib.npz",
                          "artifacts": TORCH_ARTIFACTS, "baselines": TORCH_BASELINES, "floor": True, "big": True,
                          "arm": [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]})
        specs.append({"name": "mobilenet_keras", "family": "keras", "source": out / "mobilenet_keras.keras",
                      "inputs": out / "mobilenet_keras_val.npz", "calibration": out / "mobilenet_keras_calib.npz",
                      "artifacts": KERAS_ARTIFACTS, "baselines": KERAS_BASELINES, "floor": True, "big": True,
                      "arm": [("tflite", "none"), ("tflite", "int8")], "browser": True})
    specs.append({"name": "digits_keras", "family": "keras", "source": samples / "digits_keras.keras",
                  "inputs": samples / "digits_keras_val.npz", "calibration": samples / "digits_keras_calib.npz",
                  "artifacts": [("tflite", "none")] if quick else KERAS_ARTIFACTS + KERAS_SMALL_EXTRA,
                  "baselines": KERAS_BASELINES[:1] if quick else KERAS_BASELINES, "floor": True, "accuracy": True,
                  "arm": [] if quick else [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")],
                  "browser": not quick})
    if quick:
        return specs
    if torch_ok:
        specs.append({"name": "digits_torch", "family": "torch", "source": samples / "digits_torch.pt2",
                      "inputs": samples / "digits_torch_val.npz", "calibration": samples / "digits_torch_calib.npz",
                      "artifacts": TORCH_ARTIFACTS + TORCH_SMALL_EXTRA, "baselines": TORCH_BASELINES, "floor": True,
                      "accuracy": True,
                      "arm": [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]})
        specs.append({"name": "lstm_torch", "family": "torch", "source": samples / "lstm_torch.pt2",
                      "inputs": samples / "lstm_torch_val.npz", "calibration": samples / "lstm_torch_calib.npz",
                      # int8 TFLite/ExecuTorch of an LSTM is refused by design (the quantizers leave
                      # aten.lstm float): the executorch int8 row records that refusal
                      "artifacts": [a for a in TORCH_ARTIFACTS + TORCH_SMALL_EXTRA if a[1] != "int8"]
                      + [("onnx", "int8"), ("executorch", "int8")],
                      "baselines": TORCH_BASELINES, "floor": True, "arm": []})
    specs.append({"name": "loan_risk", "family": "sklearn", "source": samples / "loan_risk.skops",
                  "inputs": samples / "loan_risk_val.csv", "calibration": None, "label_column": "default_flag",
                  "artifacts": [("onnx", "none"), ("onnx", "dynamic"), ("onnx", "auto")],
                  "baselines": [("scikit-learn predict_proba", "sklearn", None),
                                ("ORT, plain skl2onnx.to_onnx export", "onnx", "sklearn_onnx")],
                  "floor": False, "arm": [("onnx", "none")]})
    return specs


# ----------------------------------------------------------------------------- helpers
class Log:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[bench {time.perf_counter() - self.t0:6.0f}s] {msg}", flush=True)


log = Log()
PHASES: list[list] = []  # [name, seconds]: where the wall clock of `make bench` goes


@contextlib.contextmanager
def phase(name: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        PHASES.append([name, time.perf_counter() - t0])


def run_process(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, timeout: float = 1200) -> dict:
    """Run a whole process; wall time and the peak resident memory of it and its children."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env={**os.environ, **(env or {})})
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "code": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024.0,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def child(stage: str, target: str, *args, timeout: float = 900, **kwargs):
    """A function in a fresh child process (edgekit's isolation); errors become {"error": ...}."""
    from edgekit.isolation import run

    try:
        return run(stage, target, *args, timeout=timeout, **kwargs)
    except Exception as exc:  # a failed measurement is a result to report, not a crash of the run
        msg = getattr(exc, "message", None) or str(exc)
        log(f"  {stage} failed: {msg.splitlines()[0][:200]}")
        return {"error": msg[:1000], "details": (getattr(exc, "details", None) or "")[-1500:]}


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu"] = fields.get("Model name")
        info["vendor"] = fields.get("Vendor ID")
        info["family_model"] = f"{fields.get('CPU family')}/{fields.get('Model')}"
        info["hypervisor"] = fields.get("Hypervisor vendor")
        flags = fields.get("Flags", "").split()
        keep = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
        info["flags"] = [f for f in keep if f in flags]
        info["l2"] = fields.get("L2 cache")
        info["l3"] = fields.get("L3 cache")
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    libs = {}
    for name in ("edgekit", "numpy", "torch", "tensorflow-cpu", "keras", "onnx", "onnxruntime", "ai-edge-litert",
                 "litert-torch", "executorch", "tf2onnx", "skl2onnx", "scikit-learn"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            pass
    info["versions"] = libs
    return info


# ----------------------------------------------------------------------------- sections
def build_samples(specs: list[dict], samples: Path, out: Path) -> dict:
    names = sorted({s["name"] for s in specs if s["family"] != "keras" or s["name"] == "digits_keras"}
                   - {"mobilenet_keras"})
    t0 = time.perf_counter()
    env = {"EDGEKIT_SAMPLES_DIR": str(samples)}
    res = run_process([sys.executable, str(ROOT / "samples" / "make_samples.py"), *names], env=env)
    if res["code"]:
        raise SystemExit(f"building the samples failed:\n{res['stderr'][-3000:]}")
    result = {"samples": names, "seconds": time.perf_counter() - t0}
    if any(s["name"] == "mobilenet_keras" for s in specs):
        if not (out / "mobilenet_keras.keras").exists():
            r = child("sample", "benchmarks.workers:build_keras_mobilenet", str(out), timeout=600)
            if "error" in r:
                raise SystemExit(f"building the Keras MobileNetV2 failed: {r['error']}")
        result["seconds"] = time.perf_counter() - t0
    return result


def artifact_name(spec: dict, target: str, quantize: str) -> str:
    return f"{spec['name']}.{'fp32' if quantize == 'none' else quantize}{EXT[target]}"


def _convert_cmd(spec: dict, target: str, quantize: str, path: Path) -> list[str]:
    cmd = [*EDGEKIT, "convert", str(spec["source"]), "--target", target, "--quantize", quantize,
           "-o", str(path), "--no-validate", "--json", "--quiet"]
    if quantize in ("int8", "auto") and spec.get("calibration"):
        cmd += ["--calibration", str(spec["calibration"])]
    if quantize == "auto":
        cmd += ["--inputs", str(spec["inputs"])]
        if spec.get("label_column"):
            cmd += ["--label-column", spec["label_column"]]
    return cmd


def _convert_one(spec: dict, target: str, quantize: str, out: Path, concurrent: bool) -> dict:
    path = out / artifact_name(spec, target, quantize)
    if path.is_dir() and not path.is_symlink():  # a folder artifact (tfjs)
        shutil.rmtree(path)
    path.unlink(missing_ok=True)
    log(f"convert {spec['name']} -> {target} ({quantize})" + (" [2 at a time]" if concurrent else ""))
    res = run_process(_convert_cmd(spec, target, quantize, path), cwd=out)
    row = {"model": spec["name"], "target": target, "quantize": quantize, "path": str(path),
           "wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"], "code": res["code"], "concurrent": concurrent}
    try:
        doc = json.loads(res["stdout"])
        r = doc.get("result") or {}
        row.update({"precision": r.get("precision"), "convert_s": r.get("convert_seconds"),
                    "total_s": r.get("total_seconds"), "size_bytes": r.get("size_bytes"),
                    "notes": r.get("notes", []), "ok": bool(doc.get("ok")) and path.exists()})
        if not row["ok"]:
            err = doc.get("error") or {}
            row["error"] = err.get("message") or res["stderr"][-500:]
            row["error_details"] = str(err.get("details") or "")[-1500:]
    except ValueError:
        row.update({"ok": False, "error": res["stderr"][-800:] or res["stdout"][-800:]})
    if row.get("error"):
        log(f"  failed: {str(row['error']).strip().splitlines()[0][:200] if str(row['error']).strip() else '?'}")
    return row


def convert_all(spec: dict, out: Path, jobs: int = 2) -> list[dict]:
    """edgekit convert for every (target, quantize) of the model, each a whole timed process.

    The fp32 conversions that are compared with a hand conversion run alone (their wall
    time is a measurement); the others run `jobs` at a time to keep `make bench` short."""
    from concurrent.futures import ThreadPoolExecutor

    paired = {runtime for _, runtime, kind in spec["baselines"] if kind}
    alone = [(t, q) for t, q in spec["artifacts"] if q == "none" and t in paired]
    rest = [(t, q) for t, q in spec["artifacts"] if (t, q) not in alone]
    rows = [_convert_one(spec, t, q, out, False) for t, q in alone]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows += list(pool.map(lambda tq: _convert_one(spec, tq[0], tq[1], out, jobs > 1), rest))
    order = {tq: i for i, tq in enumerate(spec["artifacts"])}
    return sorted(rows, key=lambda r: order[(r["target"], r["quantize"])])


def hand_convert_all(spec: dict, out: Path) -> list[dict]:
    rows = []
    for label, runtime, kind in spec["baselines"]:
        if not kind:
            continue
        path = out / f"{spec['name']}.hand{EXT[runtime]}"
        path.unlink(missing_ok=True)
        log(f"hand conversion {spec['name']}: {kind}")
        res = run_process([sys.executable, "-m", "benchmarks.workers", "hand", kind, str(spec["source"]), str(path)],
                          cwd=ROOT, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
        row = {"model": spec["name"], "kind": kind, "label": label, "runtime": runtime, "path": str(path),
               "wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"], "ok": res["code"] == 0 and path.exists()}
        if row["ok"]:
            row["convert_s"] = float(res["stdout"].strip().splitlines()[-1])
            row["size_bytes"] = path.stat().st_size
        else:
            row["error"] = res["stderr"].strip().splitlines()[-1][:400] if res["stderr"].strip() else f"exit {res['code']}"
            log(f"  failed: {row['error'][:200]}")
        rows.append(row)
    return rows


def latency_all(spec: dict, conversions: list[dict], hand: list[dict], threads_list, warmup, iterations,
                rounds: int = 1) -> list[dict]:
    rows = []
    inputs = str(spec["inputs"])
    jobs = []
    for c in conversions:
        if c.get("ok"):
            jobs.append(("edgekit", f"{c['target']} {c['precision'] or c['quantize']}"
                         + (" (auto)" if c["quantize"] == "auto" else ""), c))
    keras_kinds = [(label, runtime) for label, runtime, kind in spec["baselines"]
                   if kind is None and runtime.startswith("keras")]
    for label, runtime, kind in spec["baselines"]:
        if kind is None and not runtime.startswith("keras"):
            jobs.append(("baseline", label, {"kind": runtime, "path": str(spec["source"])}))
        elif kind:
            h = next((h for h in hand if h["kind"] == kind), None)
            if h and h["ok"]:
                jobs.append(("baseline", label, {"kind": runtime, "path": h["path"]}))
            if h and h["ok"] and runtime != "torchscript":  # a plain TorchScript file records no input shapes
                # the same hand-made file through edgekit's runner: separates the file from the harness
                jobs.append(("harness", f"{label} — file timed by edgekit's runner",
                             {"path": h["path"], "target": runtime, "quantize": "none"}))
    # `rounds` passes over every job, in the same order each pass, each measurement a fresh
    # child: a burst of load on this shared machine then hits one round, not one artifact
    # (the same file measured twice once differed 1.9x in a single-round run). Each row keeps
    # its best round (lowest median) and records every round's median.
    measured: dict = {}
    for rnd in range(rounds):
        for threads in threads_list:
            if keras_kinds:
                log(f"latency {spec['name']}: {', '.join(l for l, _ in keras_kinds)}, {threads} thread(s)"
                    + (f" [round {rnd + 1}/{rounds}]" if rounds > 1 else ""))
                res = child("baseline", "benchmarks.workers:keras_baselines", str(spec["source"]), threads, inputs,
                            [k for _, k in keras_kinds], warmup=warmup, iterations=iterations)
                for (label, _), r in zip(keras_kinds, res if isinstance(res, list) else [res] * len(keras_kinds)):
                    measured.setdefault((label, threads), []).append(
                        {**r, "model": spec["name"], "who": "baseline", "label": label, "threads": threads})
        for who, label, job in jobs:
            tl = list(threads_list)
            log(f"latency {spec['name']}: {label}, {'/'.join(map(str, tl))} thread(s)"
                + (f" [round {rnd + 1}/{rounds}]" if rounds > 1 else ""))
            res = child("bench", "benchmarks.workers:latency_per_threads", "baseline" if who == "baseline" else "edgekit",
                        job["path"], tl, inputs, kind=job.get("kind"), warmup=warmup, iterations=iterations)
            for threads, r in zip(tl, res if isinstance(res, list) else [res] * len(tl)):
                r = dict(r)
                if who in ("edgekit", "harness"):
                    r.update({"target": job["target"], "quantize": job["quantize"], "precision": job.get("precision")})
                r.update({"model": spec["name"], "who": who, "label": label, "threads": threads})
                measured.setdefault((label, threads), []).append(r)
    for tries in measured.values():
        ok = [r for r in tries if "median_ms" in r]
        best = dict(min(ok, key=lambda r: r["median_ms"]) if ok else tries[-1])
        best["round_medians_ms"] = [r.get("median_ms") for r in tries]
        rows.append(best)
    return rows


def accuracy_all(spec: dict, conversions: list[dict]) -> list[dict]:
    log(f"accuracy {spec['name']}")
    ref = child("accuracy", "benchmarks.workers:predictions", str(spec["source"]), str(spec["inputs"]))
    rows = [{"model": spec["name"], "label": "source", "accuracy": ref.get("accuracy"), "n": ref.get("n")}]
    for c in conversions:
        if not c.get("ok"):
            continue
        r = child("accuracy", "benchmarks.workers:predictions", c["path"], str(spec["inputs"]))
        row = {"model": spec["name"], "label": f"{c['target']} {c['precision']}", "target": c["target"],
               "quantize": c["quantize"], "precision": c["precision"], "accuracy": r.get("accuracy"),
               "error": r.get("error")}
        if "pred" in r and "pred" in ref:
            row["agreement"] = sum(a == b for a, b in zip(r["pred"], ref["pred"])) / len(ref["pred"])
            row["delta_points"] = (r["accuracy"] - ref["accuracy"]) * 100.0
        rows.append(row)
    return rows


def flops_for(spec: dict, conversions: list[dict]) -> dict:
    fp32_onnx = next((c for c in conversions if c["target"] == "onnx" and c["quantize"] == "none" and c.get("ok")),
                     None)
    result = {}
    if fp32_onnx:
        result = child("flops", "benchmarks.workers:onnx_flops", fp32_onnx["path"])
        result["from"] = Path(fp32_onnx["path"]).name
    if spec["family"] == "torch":
        result["torch_flop_counter"] = child("flops", "benchmarks.workers:torch_flops", spec["name"]).get("flops")
        if result.get("uncounted") and result.get("torch_flop_counter"):
            result["onnx_flops"] = result.get("flops")
            result["flops"] = result["torch_flop_counter"]
            result["from"] = "torch FlopCounterMode (the ONNX graph has loops)"
    return result


def toolchain(out: Path, samples: Path, quick: bool) -> dict:
    res: dict = {}
    log("edgekit --help cold start")
    runs = [run_process([*EDGEKIT, "--help"])["wall_s"] for _ in range(3 if quick else 11)]
    res["help_s"] = {"first": runs[0], "median": statistics.median(runs[1:]), "min": min(runs), "max": max(runs),
                     "runs": len(runs)}
    runs = [run_process([sys.executable, "-c", "pass"])["wall_s"] for _ in range(5)]
    res["python_startup_s"] = statistics.median(runs)
    if quick:
        return res
    log("edgekit build: cold and no-op")
    cfg_dir = out / "build_bench"
    shutil.rmtree(cfg_dir, ignore_errors=True)
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "edgekit.toml").write_text(f"""[build]
out = "published"
jobs = 2

[[models]]
name = "digits"
source = "{samples / 'digits_keras.keras'}"
inputs = "{samples / 'digits_keras_val.npz'}"
calibration = "{samples / 'digits_keras_calib.npz'}"

  [[models.targets]]
  target = "tflite"

  [[models.targets]]
  target = "onnx"
""")
    # cold with one job first (the same work serially), then cold and no-op with jobs 2
    cold1 = run_process([*EDGEKIT, "build", "edgekit.toml", "--quiet", "--jobs", "1"], cwd=cfg_dir)
    shutil.rmtree(cfg_dir / "published", ignore_errors=True)
    cold = run_process([*EDGEKIT, "build", "edgekit.toml", "--quiet"], cwd=cfg_dir)
    noop = [run_process([*EDGEKIT, "build", "edgekit.toml", "--quiet"], cwd=cfg_dir) for _ in range(5)]
    res["build"] = {"config": "digits_keras -> tflite fp32 + onnx fp32 (parity-checked), jobs 2",
                    "cold_jobs1_s": cold1["wall_s"], "cold_jobs1_ok": cold1["code"] == 0,
                    "cold_s": cold["wall_s"], "cold_ok": cold["code"] == 0,
                    "noop_s": statistics.median(r["wall_s"] for r in noop),
                    "noop_min_s": min(r["wall_s"] for r in noop), "noop_max_s": max(r["wall_s"] for r in noop),
                    "noop_ok": all(r["code"] == 0 for r in noop), "peak_rss_mb": cold["peak_rss_mb"]}
    if cold["code"]:
        res["build"]["error"] = cold["stderr"][-800:]
    return res


def arm_all(specs: list[dict], results: dict, jobs: int = 2) -> None:
    """Instructions per inference under QEMU, `jobs` emulators at a time: the counts are exact
    whatever else runs, and the emulated milliseconds are labelled relative only anyway."""
    from concurrent.futures import ThreadPoolExecutor

    work = []
    for spec in specs:
        conversions = results["models"][spec["name"]]["conversions"]
        for target, quantize in spec.get("arm", []):
            c = next((c for c in conversions if c["target"] == target and c["quantize"] == quantize and c.get("ok")),
                     None)
            if c:
                work.append((spec, c))

    def one(item):
        spec, c = item
        log(f"arm64 {spec['name']}: {c['target']} {c['quantize']}")
        big = spec.get("big")
        r = child("arm", "edgekit.validators.arm.stages:measure", c["path"], warmup=1, iterations=2 if big else 10,
                  inputs=str(spec["inputs"]), timeout=1200)
        r.update({"model": spec["name"], "target": c["target"], "quantize": c["quantize"],
                  "precision": c.get("precision"), "concurrent": jobs > 1})
        return spec["name"], r

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, r in pool.map(one, work):
            results["models"][name].setdefault("arm", []).append(r)


def browser_all(specs: list[dict], results: dict, out: Path) -> None:
    """The Keras models in headless Chromium: the fp32 ONNX file in ONNX Runtime Web (wasm) and a
    TF.js conversion (timed here, with its size) in TF.js wasm and cpu; in-page performance.now()
    medians, one thread, the same warm-up and iteration counts as the host rows."""
    for spec in specs:
        if not spec.get("browser"):
            continue
        m = results["models"][spec["name"]]
        tfjs = _convert_one(spec, "tfjs", "none", out, False)
        onnx = next((c for c in m["conversions"] if c["target"] == "onnx" and c["quantize"] == "none" and c.get("ok")),
                    None)
        warmup, iterations = (5, 40) if spec.get("big") else (20, 200)
        runs = []
        for c in [x for x in (onnx, tfjs) if x and x.get("ok")]:
            log(f"browser {spec['name']}: {c['target']}")
            r = child("browser", "edgekit.validators.web.stages:measure", c["path"], arch="browser", warmup=warmup,
                      iterations=iterations, inputs=str(spec["inputs"]), timeout=1800)
            for row in r if isinstance(r, list) else [r]:
                runs.append({**row, "model": spec["name"], "target": c["target"]})
        m["browser"] = {"tfjs_conversion": tfjs, "runs": runs}


def web_available() -> tuple[bool, str]:
    try:
        from edgekit.validators.web.provision import missing_host_tools, read_manifest
    except ImportError:
        return False, "edgekit has no browser support on this branch (validators/web missing)"
    if missing_host_tools() or read_manifest() is None:
        return False, "the browser runtimes are not provisioned: run 'edgekit web setup' (make setup does)"
    return True, ""


def arm_available() -> tuple[bool, str]:
    try:
        from edgekit.validators.arm import provision
    except ImportError:
        return False, "edgekit has no ARM support on this branch (validators/arm missing)"
    if not provision.is_complete():
        return False, "the ARM runtime is not provisioned: run 'edgekit arm setup' (make setup does)"
    return True, ""


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one tiny model, few iterations (smoke test)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "out"), help="artifacts and working files")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--md", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--samples-dir", default=os.environ.get("EDGEKIT_SAMPLES_DIR", str(ROOT / "samples" / "build")))
    ap.add_argument("--only", nargs="*", help="model names to run (default: all)")
    ap.add_argument("--no-arm", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the Markdown (and the analysis) from an existing --json, measuring nothing")
    ap.add_argument("--repaired", action="store_true",
                    help="measure only the repaired-int8 rows (outlier_mlp: fp32, full int8, --keep-float auto) into "
                         "the existing --json, and rewrite the Markdown")
    ap.add_argument("--transformer", action="store_true",
                    help="only the transformer latency table (BERT at lengths 16/64/128, edgekit vs hand-made vs "
                         "floor): merged into --json and re-rendered into --md")
    args = ap.parse_args(argv)
    if args.transformer:
        from benchmarks import transformer

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        results = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
        results["transformer"] = transformer.run(Path(args.out_dir) / "transformer", log, child, run_process, EDGEKIT,
                                                reuse=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
        md = Path(args.md)  # only its own section changes: the rest of the file is another run's
        md.write_text(transformer.splice(md.read_text() if md.exists() else "", results["transformer"]))
        return 0
    if args.repaired:
        results = json.loads(Path(args.json).read_text())
        results["repaired"] = repaired_int8(Path(args.out_dir))
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
        # only this section changes: the rest of the file (hand-written sections too) stays as it is
        md = Path(args.md).read_text()
        section = "\n".join(report.repaired_section(results["repaired"]))
        head, sep, tail = md.partition(report.REPAIRED_TITLE)
        if sep:  # replace the previous section, up to the next heading
            tail = tail[tail.find("\n## ") + 1:] if "\n## " in tail else ""
            md = head + section + "\n" + tail
        else:
            head, sep, tail = md.partition("## Toolchain speed")
            md = head + section + "\n" + sep + tail
        Path(args.md).write_text(md)
        return 0
    if args.render_only:
        results = json.loads(Path(args.json).read_text())
        results["analysis"] = report.analyse(results)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
        Path(args.md).write_text(report.markdown(results))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t_start = time.perf_counter()
    out, samples = Path(args.out_dir), Path(args.samples_dir)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    threads_list = (1,) if quick else (1, 2)
    specs = [s for s in model_specs(samples, out, quick) if not args.only or s["name"] in args.only]
    results: dict = {"schema_version": SCHEMA_VERSION, "quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "machine": machine(), "loadavg_start": os.getloadavg(), "threads": list(threads_list),
                     "models": {}, "missing": []}
    if not (ROOT / "samples" / "mobilenet_torch.py").exists():
        results["missing"].append("PyTorch models (mobilenet_torch, digits_torch, lstm_torch): the PyTorch "
                                  "sources are not on this branch yet")
    log(f"building samples: {', '.join(s['name'] for s in specs)}")
    with phase("samples"):
        results["samples"] = build_samples(specs, samples, out)

    log("peak float32 FLOP/s (large matrix product)")
    with phase("peak FLOP/s"):
        results["peak"] = {str(t): child("peak", "benchmarks.workers:peak_flops", t, n=256 if quick else 2048,
                                         repeats=2 if quick else 7) for t in threads_list}

    arm_ok, arm_why = (False, "--no-arm / --quick") if (args.no_arm or quick) else arm_available()
    if not arm_ok:
        results["missing"].append(f"ARM (emulated): {arm_why}")
    for spec in specs:
        if spec.get("big") and spec.get("calibration"):
            # 8 calibration images instead of 32: PT2E calibration of a 224x224 net dominates the
            # int8 conversions' time, and the random-init MobileNets have no accuracy to keep
            import numpy as np

            small = out / f"{spec['name']}_calib8.npz"
            with np.load(spec["calibration"]) as d:
                np.savez(small, **{k: d[k][:8] for k in d.files})
            spec["calibration"] = small
        m: dict = {"family": spec["family"], "source": str(spec["source"]), "inputs": str(spec["inputs"])}
        results["models"][spec["name"]] = m
        with phase(f"{spec['name']}: conversions"):
            m["conversions"] = convert_all(spec, out, jobs=1 if quick else 2)
            m["hand_conversions"] = [] if quick else hand_convert_all(spec, out)
        with phase(f"{spec['name']}: FLOPs, latency, accuracy"):
            if spec.get("floor"):
                m["flops"] = flops_for(spec, m["conversions"]) if not quick else \
                    child("flops", "benchmarks.workers:onnx_flops", _quick_onnx(spec, out))
            big = spec.get("big")
            warmup, iterations = (1, 2) if quick else ((5, 40) if big else (20, 200))
            # two rounds for the microsecond-scale models, where a burst of load moves a median most
            m["latency"] = latency_all(spec, m["conversions"], m["hand_conversions"], threads_list, warmup,
                                       iterations, rounds=1 if quick or big else 2)
            if spec.get("accuracy"):
                m["accuracy"] = accuracy_all(spec, m["conversions"])
    with phase("toolchain speed"):
        results["toolchain"] = toolchain(out, samples, quick)
    if not quick:
        with phase("repaired int8 (outlier_mlp)"):
            results["repaired"] = repaired_int8(out)
    if arm_ok:
        with phase("ARM (emulated)"):
            arm_all(specs, results)
    web_ok, web_why = (False, "--no-browser / --quick") if (args.no_browser or quick) else web_available()
    if web_ok:
        with phase("browser (headless Chromium)"):
            browser_all(specs, results, out)
    else:
        results["missing"].append(f"browser (headless Chromium): {web_why}")
    results["phases"] = PHASES
    results["loadavg_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t_start
    results["analysis"] = report.analyse(results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    Path(args.md).write_text(report.markdown(results))
    log(f"wrote {args.md} and {args.json} in {results['wall_s'] / 60:.1f} min")
    return 0


# ----------------------------------------------------------------------------- repaired int8 (#15)
REPAIRED_PATHS = [("onnx", "outlier_mlp.onnx"), ("executorch", "outlier_mlp.pt2"), ("tflite", "outlier_mlp.pt2")]


def repaired_int8(out: Path, iterations: int = 200, rounds: int = 2) -> dict:
    """samples/outlier_mlp.py at fp32, full int8 and int8 with --keep-float auto, for ONNX, ExecuTorch
    and torch→TFLite: size, latency (edgekit bench, 1 thread, best of `rounds` medians), parity
    against the source (fp32) and the layers kept float. `benchmarks/run.py --repaired` runs only this."""
    work = out / "repaired"
    work.mkdir(parents=True, exist_ok=True)
    run_process([sys.executable, str(ROOT / "samples" / "make_samples.py"), "outlier_mlp"],
                env={"EDGEKIT_SAMPLES_DIR": str(work)})
    run_process([sys.executable, str(ROOT / "samples" / "outlier_mlp.py"), "--torch", str(work / "outlier_mlp.pt2")],
                cwd=ROOT / "samples")
    data = ["--calibration", str(work / "outlier_mlp_calib.npz"), "--inputs", str(work / "outlier_mlp_val.npz")]
    rows = []
    for target, source in REPAIRED_PATHS:
        src = "torch" if source.endswith(".pt2") else "onnx"
        for label, quantize, extra in (("fp32", "none", []), ("full int8", "int8", ["--keep-failed"]),
                                       ("int8, --keep-float auto", "int8", ["--keep-float", "auto"])):
            art = work / f"{src}.{target}.{label.split()[0].strip(',')}.{'kf.' if extra[:1] == ['--keep-float'] else ''}" \
                         f"{EXT[target].lstrip('.')}"
            log(f"  outlier_mlp {src}→{target} {label}")
            conv = run_process(EDGEKIT + ["convert", str(work / source), "--target", target, "--quantize", quantize,
                                          *data, "-o", str(art), *extra])
            row = {"source": src, "target": target, "label": label, "exit": conv["code"], "convert_s": conv["wall_s"]}
            report_file = art.with_name(art.name + ".report.json")
            if report_file.exists():
                res = json.loads(report_file.read_text())["result"]
                metrics = res["parity"]["outputs"][0]["metrics"]
                row.update(size_bytes=res["size_bytes"], passed=res["parity"]["passed"], cosine=metrics.get("cosine"),
                           snr_db=metrics.get("snr_db"), top1=metrics.get("top1"),
                           keep_float=(res["details"].get("keep_float") or {}).get("nodes"),
                           of_layers=(res["details"].get("keep_float") or {}).get("of_nodes"))
            rows.append(row)
            row["artifact"] = str(art)
    for _ in range(rounds):  # rounds alternate over every file: a burst of load hits them alike
        for row in rows:
            if not Path(row["artifact"]).exists():
                continue
            b = run_process(EDGEKIT + ["bench", row["artifact"], "--threads", "1", "-n", str(iterations), "--warmup", "20",
                                       "--json"])
            try:
                ms = json.loads(b["stdout"])["results"][0]["median_ms"]
            except (ValueError, KeyError, IndexError):
                continue
            row["median_ms"] = min(ms, row.get("median_ms", ms))
    return {"machine": machine(), "iterations": iterations, "rounds": rounds, "rows": rows,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _quick_onnx(spec: dict, out: Path) -> str:
    """--quick has no ONNX artifact of its own: a plain tf2onnx export for the FLOP count."""
    path = out / f"{spec['name']}.flops.onnx"
    run_process([sys.executable, "-m", "benchmarks.workers", "hand", "keras_onnx", str(spec["source"]), str(path)],
                cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
