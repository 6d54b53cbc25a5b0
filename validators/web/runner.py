"""`WebRunner`: the Runner interface, with inference done in the browser or in Node.js.

One `predict` is one driver run (starting Chromium costs about a second, so it is not paid per
batch): the inputs are written as raw little-endian binary files, one per input and batch, with
a job.json naming them; the harness (harness.js) loads the model in ONNX Runtime Web (wasm) or
TF.js (wasm or cpu backend), runs every batch, writes every output back as binary, then runs
warm-up and timed iterations measured with performance.now(). In the browser the files cross
through edgekit's own HTTP server on 127.0.0.1 (started here, stopped when the run ends); in
Node.js the harness reads them from the job folder.

The driver runs in its own process group with PDEATHSIG: a timeout, a hung browser or the
stage dying takes node and Chromium down, and any Chromium still holding the job's folder is
killed by pid before the folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgekit.errors import BadInput, StageTimeout
from edgekit.tensors import Signature, TensorSpec
from edgekit.validators.runners.base import Runner
from edgekit.validators.web import LATENCY_LABEL, NODE_LATENCY_LABEL, RUNTIMES

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.js"
DEFAULT_TIMEOUT = 600.0
_JS_DTYPES = {"float32", "int32", "int64", "uint8", "int8", "bool", "int16", "uint16", "float64"}


def artifact_kind(path: Path) -> str:
    """'onnx' or 'tfjs' (a TF.js graph model folder); anything else cannot run in the browser."""
    from edgekit.formats import detect

    found = detect(path)
    if found.name in RUNTIMES:
        return found.name
    raise BadInput(f"{path}: a {found.spec.description} cannot run in the browser or Node.js; only .onnx (ONNX "
                   "Runtime Web) and TF.js graph model folders (TF.js) can.",
                   hint="convert it with --target onnx or --target tfjs, or check it with --arch host")


def tfjs_signature(folder: Path) -> Signature:
    """Inputs and outputs of a TF.js graph model, from its model.json's signature."""
    try:
        doc = json.loads((Path(folder) / "model.json").read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{folder}: model.json is not readable JSON ({exc}).") from None
    sig = doc.get("signature") or {}

    def specs(part: dict) -> list[TensorSpec]:
        out = []
        for key, t in (part or {}).items():
            dims = (t.get("tensorShape") or {}).get("dim") or []
            shape = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims)
            dtype = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_INT64": "int64", "DT_BOOL": "bool",
                     "DT_UINT8": "uint8"}.get(t.get("dtype"), "float32")
            out.append(TensorSpec(t.get("name", key).split(":")[0], dtype, shape))
        return out

    inputs, outputs = specs(sig.get("inputs")), specs(sig.get("outputs"))
    if not inputs or not outputs:
        raise BadInput(f"{folder}: model.json has no signature (inputs/outputs); edgekit runs TF.js graph models "
                       "converted from a SavedModel signature.", hint="convert with: edgekit convert MODEL "
                       "--target tfjs")
    return Signature(inputs=inputs, outputs=outputs)


class _Server:
    """A loopback HTTP server for one job: /rt/ the npm packages, /web/ the harness page, /job/ the
    job folder (GET; PUT only under /job/out/). Bound to 127.0.0.1 on a free port."""

    def __init__(self, modules: Path, job: Path):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        roots = {"rt": modules.resolve(), "web": HERE, "job": job.resolve()}
        types = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                 ".html": "text/html; charset=utf-8", ".json": "application/json"}

        class Handler(BaseHTTPRequestHandler):
            def _path(self):
                parts = self.path.split("?", 1)[0].lstrip("/").split("/", 1)
                base = roots.get(parts[0])
                if base is None or len(parts) < 2:
                    return None
                p = (base / parts[1]).resolve()
                return p if p.is_relative_to(base) else None

            def do_GET(self):  # noqa: N802 (http.server's name)
                p = self._path()
                if p is None or not p.is_file():
                    self.send_error(404)
                    return
                data = p.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", types.get(p.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                # cross-origin isolated: performance.now() then ticks in 5 us, not 100 us
                self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):  # noqa: N802
                p = self._path()
                out = roots["job"] / "out"
                if p is None or not p.is_relative_to(out):
                    self.send_error(403)
                    return
                n = int(self.headers.get("Content-Length") or 0)
                out.mkdir(exist_ok=True)
                p.write_bytes(self.rfile.read(n))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _die_with_parent() -> None:
    import ctypes

    os.setsid()  # its own process group: killed as a whole on timeout
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_holders(folder: Path) -> list[int]:
    """Kill (SIGKILL, by pid) every process whose command line names `folder`: a Chromium that
    playwright started in a process group of its own and that outlived its driver."""
    killed = []
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return killed


def sweep_stale_jobs() -> None:
    """Remove job folders left by a stage that was killed (timeout: SIGKILL, no clean-up) whose
    owner is gone; their driver and browser died with it (PDEATHSIG, closed pipe)."""
    for d in Path(tempfile.gettempdir()).glob("edgekit-web-*"):
        try:
            pid = int((d / "owner.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            kill_holders(d)
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


def run_job(job_dir: Path, mode: str, *, timeout: float | None = None) -> dict:
    """Run driver.js on a prepared job folder; returns result.json (raises on crash/timeout)."""
    from edgekit.validators.web.provision import require

    runtime = require(browser=mode == "browser")
    timeout = timeout or DEFAULT_TIMEOUT
    modules = runtime / "node_modules"
    env = {**os.environ, "TMPDIR": str(job_dir), "HOME": str(job_dir)}  # playwright's profile lands in the job
    args = ["node", str(DRIVER), "--mode", mode, "--job", str(job_dir), "--modules", str(modules),
            "--timeout", str(int(timeout * 1000))]
    t0 = time.monotonic()
    server = _Server(modules, job_dir) if mode == "browser" else None
    try:
        if server:
            server.__enter__()
            args += ["--url", f"{server.url}/web/page.html", "--chromium", shutil.which("chromium") or "chromium"]
        proc = subprocess.Popen(args, cwd=job_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_die_with_parent)
        try:
            out, err = proc.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise StageTimeout(f"the {mode} run took longer than {timeout + 30:g} s and was stopped (driver, "
                               "browser and server ended).", hint="raise --timeout") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            kill_holders(job_dir)
    finally:
        if server:
            server.__exit__(None, None, None)
    try:
        result = json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        tail = (err or b"").decode(errors="replace")[-2000:]
        raise BadInput(f"the {mode} stage crashed: the web driver exited with code {proc.returncode} and no result.",
                       details=tail or None) from None
    result["seconds"] = time.monotonic() - t0
    return result


class WebRunner(Runner):
    """An .onnx file (ONNX Runtime Web, wasm) or a TF.js graph model folder (TF.js, wasm or cpu)
    run by the same harness in headless Chromium (`mode` browser) or Node.js (`mode` node)."""

    runtime = "web"
    extra = "core"

    def load(self) -> "WebRunner":
        self.mode = self.options.get("mode") or "node"
        self.kind = artifact_kind(self.path)
        choices = RUNTIMES[self.kind]
        self.js_runtime = self.options.get("js_runtime") or choices[0]
        if self.js_runtime not in choices:
            raise BadInput(f"{self.path.name}: the {self.js_runtime} runtime cannot run it; "
                           f"choose one of {', '.join(choices)}.")
        if self.kind == "onnx":
            from edgekit.validators.runners.onnxrt import OnnxRuntimeRunner

            host = OnnxRuntimeRunner(self.path, threads=1)
            host.detected = getattr(self, "detected", None)
            self.host = host.load()  # the signature as onnxruntime reads it (the same graph)
            self.signature = self.host.signature
        else:
            self.host = None
            self.signature = tfjs_signature(self.path)
        self.runtime = self.js_runtime
        self.last_run: dict | None = None
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run([feeds])["outputs"][0]

    def predict(self, arrays: dict[str, np.ndarray], max_batch: int = 256, axes: dict | None = None
                ) -> dict[str, np.ndarray]:
        if any(a not in (0,) for a in (axes or {}).values()):
            raise BadInput(f"{self.path.name}: inputs batched on another axis than 0 (or scalar inputs) are not "
                           "supported by the web runtimes yet.", hint="check this model with --arch host")
        n = len(next(iter(arrays.values())))
        fixed = self.batch_size()
        step = fixed or max_batch
        batches, real = [], []
        for start in range(0, n, step):
            feeds = {k: v[start:start + step] for k, v in arrays.items()}
            count = len(next(iter(feeds.values())))
            if fixed and count < fixed:
                feeds = {k: np.concatenate([v] + [v[-1:]] * (fixed - count)) for k, v in feeds.items()}
            batches.append(feeds)
            real.append(count)
        opts = self.options
        iterations = int(opts.get("iterations", 0))
        if iterations:  # timed on one sample (batch 1, or the model's fixed batch), as host latency is
            batches.append({k: v[:1] for k, v in batches[0].items()} if not fixed else batches[0])
        res = self.run(batches, warmup=int(opts.get("warmup", 0)), iterations=iterations,
                       bench_batch=len(batches) - 1)
        chunks = [{k: v[:r] for k, v in out.items()} for out, r in zip(res["outputs"], real)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def timed_runs(self, feeds: dict[str, np.ndarray], warmup: int, iterations: int) -> tuple[float, list[float]]:
        """(first inference s, timed samples s), measured in the page / Node process (latency.measure)."""
        run = self.run([feeds], warmup=max(warmup, 1), iterations=iterations)
        return (run.get("first_inference_ms") or 0.0) / 1000.0, [s / 1000.0 for s in run["samples_ms"]]

    def version(self) -> str:
        run = self.last_run or {}
        if not run:  # not run yet: the pinned package the cache holds
            from edgekit.validators.web.provision import read_manifest

            npm = (read_manifest() or {}).get("npm") or {}
            return npm.get("onnxruntime-web" if self.kind == "onnx" else "@tensorflow/tfjs", "?")
        return f"{run.get('version', '?')} in {run.get('engine', self.mode)}"

    def op_counts(self) -> dict[str, int]:
        if self.host:
            return self.host.op_counts()
        from collections import Counter

        nodes = (self._model_json().get("modelTopology") or {}).get("node") or []
        return dict(Counter(n.get("op", "?") for n in nodes if n.get("op") not in ("Placeholder", "Const")))

    def precision(self) -> str:
        if self.host:
            return self.host.precision()
        # TF.js weights: float16, or uint8/uint16 affine quantization (dequantized at load)
        dtypes = {(w.get("quantization") or {}).get("dtype") for g in self._model_json().get("weightsManifest", [])
                  for w in g.get("weights", [])}
        return "dynamic" if dtypes & {"uint8", "uint16"} else "fp16" if "float16" in dtypes else "fp32"

    def _model_json(self) -> dict:
        try:
            return json.loads((self.path / "model.json").read_text())
        except (OSError, ValueError):
            return {}

    # -- one driver run -----------------------------------------------------------------
    def _feed_specs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in self.signature.inputs}

    def run(self, batches: list[dict[str, np.ndarray]], *, warmup: int = 0, iterations: int = 0,
            bench_batch: int = 0) -> dict:
        from edgekit.progress import progress

        specs = self._feed_specs()
        sweep_stale_jobs()
        work = Path(tempfile.mkdtemp(prefix="edgekit-web-"))
        (work / "owner.pid").write_text(str(os.getpid()))
        try:
            model_name = "model"
            if self.kind == "tfjs":
                shutil.copytree(self.path, work / model_name)
                model_rel = f"{model_name}/model.json"
            else:
                src = self.path.resolve()
                for f in [src, *src.parent.glob(f"{src.stem}*.data")]:  # with any ONNX external data
                    shutil.copy(f, work / f.name)
                model_rel = self.path.name
            (work / "in").mkdir()
            (work / "out").mkdir()
            job_batches = []
            for b, feeds in enumerate(batches):
                entries = []
                for i, (name, value) in enumerate(feeds.items()):
                    spec = specs.get(name)
                    want = spec.dtype if spec and spec.dtype in _JS_DTYPES else "float32"
                    arr = np.ascontiguousarray(np.asarray(value).astype(want))
                    file = f"in/b{b}_i{i}.bin"
                    arr.astype(arr.dtype.newbyteorder("<")).tofile(work / file)
                    entries.append({"name": name, "dtype": want, "shape": list(arr.shape), "file": file})
                job_batches.append(entries)
            job = {"runtime": self.js_runtime, "model": model_rel, "batches": job_batches,
                   "outputs": [o.name for o in self.signature.outputs] if self.kind == "tfjs" else [],
                   "bench": {"batch": bench_batch, "warmup": warmup, "iterations": iterations}}
            (work / "job.json").write_text(json.dumps(job))
            progress(f"running {self.path.name} in {self.js_runtime} ({self.mode})")
            result = run_job(work, self.mode, timeout=self.options.get("timeout"))
            if not result.get("ok"):
                extra = "\n".join(result.get("console") or [])
                raise BadInput(f"the {self.mode} stage failed ({result.get('stage')}) for {self.path.name} in "
                               f"{self.js_runtime}: {result.get('error')}", details=extra or None)
            outs: list[dict[str, np.ndarray]] = [{} for _ in batches]
            for o in result["outputs"]:
                dtype = {"float32": "float32", "int32": "int32", "int64": "int64", "bool": "uint8",
                         "uint8": "uint8", "int8": "int8", "float64": "float64"}.get(o["dtype"], "float32")
                arr = np.fromfile(work / o["file"], dtype=np.dtype(dtype).newbyteorder("<")).reshape(o["shape"])
                outs[o["batch"]][o["name"]] = arr.astype(dtype)
            # outputs by this runner's names, in the signature's order
            names = [s.name for s in self.signature.outputs]
            outs = [{n: d[n] if n in d else list(d.values())[i] for i, n in enumerate(names)} for d in outs]
            result["outputs"] = outs
            self.last_run = result
            return result
        finally:
            kill_holders(work)
            shutil.rmtree(work, ignore_errors=True)


def latency_label(mode: str) -> str:
    return LATENCY_LABEL if mode == "browser" else NODE_LATENCY_LABEL


def web_summary(runner) -> dict:
    """What a browser/Node run adds to a result: engine, runtime, in-page timings."""
    from edgekit.validators.latency import stats_ms

    run = runner.last_run or {}
    out = {"arch": runner.mode, "js_runtime": runner.js_runtime, "engine": run.get("engine"),
           "runtime_version": run.get("version"), "latency_label": latency_label(runner.mode),
           "load_ms": run.get("load_ms"), "driver_seconds": run.get("seconds")}
    if run.get("samples_ms"):
        out.update(stats_ms([s / 1000.0 for s in run["samples_ms"]]))
        out["first_inference_ms"] = run.get("first_inference_ms")
    return out
