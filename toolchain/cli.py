"""The `edgekit` command line. Imports stay light: frameworks load only in child processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import click

from edgekit import __version__
from edgekit.errors import EXIT_CODES, BadInput, CheckFailed, EdgekitError, EXIT_INTERNAL

EXIT_CODE_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())

DEFAULT_TIMEOUTS = {"convert": 1800.0, "validate": 900.0, "bench": 900.0, "inspect": 300.0}


def _ui():
    from edgekit import ui

    return ui


def common_output(f):
    f = click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout (and nothing else there).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print only errors (and the JSON document with --json).")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Show the frameworks' own output instead of capturing it.")(f)
    return f


def trust_options(f):
    f = click.option("--trust-pickle", is_flag=True,
                     help="Allow pickle-based model files (they run code when loaded). Only for files you trust.")(f)
    f = click.option("--trust-code", is_flag=True,
                     help="Allow Keras Lambda layers and other code in model configs. Only for files you trust.")(f)
    return f


def source_model_options(f):
    f = click.option("--model-args", metavar="JSON",
                     help="Keyword arguments for --model-class as a JSON object, e.g. '{\"num_classes\": 10}'.")(f)
    f = click.option("--model-class", metavar="PKG.MOD:CLASS",
                     help="With a state_dict/.safetensors source: the model's class or factory, imported from "
                          "your Python path (current folder first).")(f)
    f = click.option("--input-shape", "input_shapes", multiple=True, metavar="SPEC",
                     help="Input shape for sources without a signature (TorchScript, model class + weights): "
                          "[NAME=]DIMS[:DTYPE], e.g. 1x3x224x224, x=1x16:int64, Nx3x224x224 (dynamic batch). "
                          "Repeat per input.")(f)
    return f


def timeout_option(stage: str):
    return click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUTS[stage], show_default=True,
                        help="Seconds before the stage is stopped (exit 124).")


def tolerance_options(f):
    f = click.option("--atol", type=click.FloatRange(min=0), help="Absolute tolerance (overrides the precision preset).")(f)
    f = click.option("--rtol", type=click.FloatRange(min=0), help="Relative tolerance (overrides the precision preset).")(f)
    return f


def _trust(trust_pickle: bool, trust_code: bool):
    from edgekit.loading import Trust

    return Trust(pickle=trust_pickle, code=trust_code)


def _run_stage(stage: str, target: str, *args, timeout: float, verbose: bool, title: str, **kwargs):
    from edgekit import isolation

    with _ui().stage(title) as on_progress:
        return isolation.run(stage, target, *args, timeout=timeout, on_progress=on_progress,
                             verbose=verbose, **kwargs)


def _data_file(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{option} {path}: no such file.")
    if p.is_dir():
        raise BadInput(f"{option} {path}: is a folder; a .npz file is needed.")
    from edgekit.formats import detect

    found = detect(p)
    if found.name not in ("npz", "npy"):
        raise BadInput(f"{option} {path}: is a {found.spec.description}, not a .npz/.npy data file.")
    return str(p)


def _source(path: str) -> "object":
    from edgekit.formats import detect

    return detect(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODE_HELP)
@click.version_option(__version__, prog_name="edgekit")
def cli():
    """edgekit: convert trained models to mobile formats (TFLite, ONNX, TorchScript,
    ExecuTorch) and prove they still compute the same thing.

    \b
    Examples:
      edgekit convert model.keras --target tflite
      edgekit convert model.keras --target tflite --quantize int8 --calibration calib.npz
      edgekit validate model.keras build/model.tflite --inputs val.npz
      edgekit bench build/model.tflite build/model.onnx
      edgekit inspect build/model.tflite
      edgekit doctor

    Model files are programs: edgekit loads them in a child process with a time limit,
    and refuses pickles and code-carrying configs unless you pass --trust-pickle/--trust-code.
    """


# ----------------------------------------------------------------------------- convert
def default_output(source: Path, target_ext: str, precision: str) -> Path:
    stem = source.name.split(".")[0] if source.is_file() else source.name
    suffix = "" if precision == "fp32" else f".{precision}"
    return Path("build") / f"{stem}{suffix}{target_ext}"


def check_output_path(out: Path) -> None:
    """Refuse outputs we could not publish atomically, before any work is done."""
    parent = out.parent
    if out.is_symlink():
        raise BadInput(f"{out}: is a symbolic link; edgekit does not write through links.",
                       hint="remove the link or choose another -o path")
    if out.is_dir():
        raise BadInput(f"{out}: is a folder.", hint="give a file name, e.g. -o build/model.tflite")
    if not parent.exists():
        raise BadInput(f"{parent}: the output folder does not exist.", hint=f"create it (mkdir -p {parent}) or choose another -o")
    if not parent.is_dir():
        raise BadInput(f"{parent}: is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{parent}: the output folder is not writable.", hint="choose another -o path")


def publish(staged: Path, out: Path) -> None:
    """fsync then rename into place: readers see the old file or the new one, never half."""
    with open(staged, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(staged, out)
    dfd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json_atomic(path: Path, doc: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, default=str)
        os.chmod(tmp, 0o644)
        publish(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("model", metavar="MODEL")
@click.option("--target", "-t", required=True, help="Output format: tflite, onnx, torchscript, executorch.")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8"]), default="none", show_default=True,
              help="fp16 weights, dynamic-range int8 weights, or full int8 (needs --calibration).")
@click.option("--calibration", metavar="FILE", help=".npz of representative inputs for --quantize int8.")
@click.option("--inputs", metavar="FILE", help=".npz of real inputs for the parity check (keyed by input name).")
@source_model_options
@click.option("--script", is_flag=True, help="TorchScript target: torch.jit.script instead of trace.")
@click.option("--int8-io", is_flag=True, help="With --quantize int8 to TFLite: int8 inputs/outputs instead of float.")
@click.option("-o", "--output", metavar="PATH", help="Output file (default: build/<model>[.<precision>].<ext>).")
@click.option("--no-validate", is_flag=True, help="Skip the parity check (not recommended).")
@click.option("--keep-failed", is_flag=True, help="Write the artifact even when parity fails (exit code is still 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random parity inputs.")
@tolerance_options
@trust_options
@timeout_option("convert")
@common_output
def convert(model, target, quantize, calibration, inputs, input_shapes, model_class, model_args, script, int8_io,
            output, no_validate, keep_failed, seed, atol, rtol, trust_pickle, trust_code, timeout, json_out, quiet,
            verbose):
    """Convert MODEL to --target, then check parity against MODEL on the host.

    The artifact is written only after the check passes (use --keep-failed to keep a
    failing one for inspection). A report is written next to it as <artifact>.report.json.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.converters.registry import lookup
    from edgekit.report import document, parity_cells, parity_table
    from edgekit.targets import get_target, precision_of

    tgt = get_target(target)
    found = _source(model)
    conv = lookup(found.spec.framework, target, quantize)
    from edgekit.sources import source_options

    src_options = source_options(found, input_shapes, model_class, model_args)
    if script and "script" not in conv.options:
        raise BadInput(f"--script applies only to --target torchscript from PyTorch sources, not {target}.")
    if quantize in conv.needs_calibration and not calibration:
        raise BadInput(f"--quantize {quantize} needs --calibration: a .npz of a few hundred representative inputs.",
                       hint="e.g. --calibration calib.npz (keyed by input name; a single-input model may use any key)")
    if int8_io and not (quantize == "int8" and "int8_io" in conv.options):
        raise BadInput("--int8-io applies only to --quantize int8 on paths that support it "
                       f"({found.spec.framework}→{target} {'does' if 'int8_io' in conv.options else 'does not'}).")
    calibration = _data_file(calibration, "--calibration")
    inputs = _data_file(inputs, "--inputs")
    precision = precision_of(quantize)
    out = Path(output) if output else default_output(Path(model), tgt.extension, precision)
    if output and out.is_dir():
        out = out / default_output(Path(model), tgt.extension, precision).name
    if not output:
        out.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(out)

    staging = Path(tempfile.mkdtemp(prefix=".edgekit-", dir=out.parent))
    try:
        staged = staging / out.name
        result = _run_stage("convert", "edgekit.pipeline:convert_stage", str(model), target, quantize, str(staged),
                            calibration=calibration, inputs=inputs, validate=not no_validate,
                            tolerance={"atol": atol, "rtol": rtol}, trust=_trust(trust_pickle, trust_code),
                            options={"int8_io": int8_io, "script": script}, source_options=src_options,
                            seed=seed, timeout=timeout, verbose=verbose,
                            title=f"converting {Path(model).name} → {target} ({precision})")
        parity = result.get("parity")
        passed = parity is None or parity["passed"]
        written = passed or keep_failed
        result["output"] = str(out) if written else None
        doc = document("convert", passed, result=result)
        if written:
            publish(staged, out)
            write_json_atomic(out.with_name(out.name + ".report.json"), doc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if json_out:
        ui.emit_json(doc)
    summary = ui.table("edgekit convert", ["source", "target", "precision", "artifact", "size", "convert s",
                                           "parity", "max abs", "cosine", "top-1"],
                       [[Path(model).name, target, result["precision"], result["output"] or "(not written)",
                         ui.human_bytes(result["size_bytes"]), f"{result['convert_seconds']:.1f}",
                         *parity_cells(parity)[:4]]])
    if parity:
        ui.show(parity_table(parity, "parity (host)"))
    ui.show(summary)
    _print_notes(result["notes"] + (parity["notes"] if parity else []))
    if no_validate:
        ui.warn("parity was not checked (--no-validate): nothing proves this artifact computes what the model does.")
    if not passed:
        kept = f" It was kept at {out} (--keep-failed)." if keep_failed else \
            " The artifact was not written (pass --keep-failed to keep it for inspection)."
        raise CheckFailed(f"parity failed for {target} ({result['precision']}): "
                          f"{_failure_line(parity)}.{kept}",
                          hint="try a higher precision (--quantize fp16/none), more calibration data, or "
                               "--atol/--rtol if the difference is acceptable")
    if not json_out:
        ui.info(f"[green]wrote[/] {out}")


def _print_notes(notes: list[str]) -> None:
    from edgekit.pipeline import RANDOM_WARNING

    ui = _ui()
    for note in notes:
        if note == RANDOM_WARNING:
            ui.warn(note)
        else:
            ui.info(f"  note: {note}")


def _failure_line(parity: dict) -> str:
    parts = []
    for o in parity["outputs"]:
        if not o["passed"]:
            from edgekit.validators.parity import Check

            bad = [Check(**c).describe() for c in o["checks"] if not c["ok"]]
            parts.append(f"output '{o['name']}': " + ", ".join(bad))
    acc = parity.get("accuracy")
    if acc and not acc.get("ok", True):
        parts.append(f"accuracy {acc['delta'] * 100:+.2f} points")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- validate
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("source", metavar="SOURCE")
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--inputs", metavar="FILE", help=".npz of real inputs (keyed by input name; '_labels' for accuracy).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "dynamic", "int8"]), default="auto",
              show_default=True, help="Tolerance preset; auto reads it from the artifact.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@source_model_options
@tolerance_options
@trust_options
@timeout_option("validate")
@common_output
def validate(source, artifact, inputs, precision, seed, input_shapes, model_class, model_args, atol, rtol,
             trust_pickle, trust_code, timeout, json_out, quiet, verbose):
    """Check that ARTIFACT computes what SOURCE computes (exit 1 if it does not).

    Both run on the same inputs (--inputs, or seeded random ones with a warning); every
    output is compared by max/mean abs error, max relative error, cosine similarity, SNR
    and top-1 agreement, and judged by the precision's tolerance preset.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document, parity_table

    from edgekit.sources import source_options

    src_options = source_options(_source(source), input_shapes, model_class, model_args)
    _source(artifact)
    inputs = _data_file(inputs, "--inputs")
    result = _run_stage("validate", "edgekit.pipeline:validate_stage", str(source), str(artifact), inputs=inputs,
                        source_options=src_options,
                        precision=None if precision == "auto" else precision, tolerance={"atol": atol, "rtol": rtol},
                        trust=_trust(trust_pickle, trust_code), seed=seed, timeout=timeout, verbose=verbose,
                        title=f"validating {Path(artifact).name} against {Path(source).name}",
                        crash_exit_code=2)
    parity = result["parity"]
    if json_out:
        ui.emit_json(document("validate", parity["passed"], result=result))
    ui.show(parity_table(parity, f"parity: {Path(artifact).name} ({result['runtime']}) vs {Path(source).name}"))
    _print_notes(parity["notes"])
    if not parity["passed"]:
        raise CheckFailed(f"parity failed: {_failure_line(parity)}.")
    ui.info("[green]parity passed[/]")


# ----------------------------------------------------------------------------- bench
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--iterations", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for the runtime (default: the runtime's own choice).")
@click.option("--inputs", metavar="FILE", help=".npz of inputs (default: seeded random inputs).")
@trust_options
@timeout_option("bench")
@common_output
def bench(artifacts, iterations, warmup, threads, inputs, trust_pickle, trust_code, timeout, json_out, quiet, verbose):
    """Measure the latency of one or more artifacts on the host CPU.

    Each artifact runs in its own child process: load time, first inference, then
    --warmup untimed and --iterations timed single-batch inferences.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document

    for a in artifacts:
        _source(a)
    inputs = _data_file(inputs, "--inputs")
    results = []
    for a in artifacts:
        results.append(_run_stage("bench", "edgekit.validators.latency:measure", str(a),
                                  trust=_trust(trust_pickle, trust_code), threads=threads, warmup=warmup,
                                  iterations=iterations, inputs=inputs, timeout=timeout, verbose=verbose,
                                  title=f"benchmarking {Path(a).name}", crash_exit_code=2))
    if json_out:
        ui.emit_json(document("bench", True, results=results))
    rows = [[Path(r["artifact"]).name, r["runtime"], r["threads_requested"] or "default", f"{r['median_ms']:.3f}",
             f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['min_ms']:.3f}", f"{r['std_ms']:.3f}",
             f"{r['first_inference_ms']:.1f}", f"{r['load_ms']:.0f}", ui.human_bytes(r["size_bytes"]),
             f"{r['peak_rss_mb']:.0f}"] for r in results]
    ui.show(ui.table(f"latency on the host CPU (batch 1, {iterations} iterations after {warmup} warm-up)",
                     ["artifact", "runtime", "threads", "median ms", "p90", "p99", "min", "std", "first ms",
                      "load ms", "size", "peak RSS MB"], rows))


# ----------------------------------------------------------------------------- inspect
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("artifact", metavar="ARTIFACT")
@trust_options
@timeout_option("inspect")
@common_output
def inspect(artifact, trust_pickle, trust_code, timeout, json_out, quiet, verbose):
    """Show what ARTIFACT is: format, size, inputs/outputs (with quantization) and operators."""
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document, signature_table

    _source(artifact)
    result = _run_stage("inspect", "edgekit.pipeline:inspect_stage", str(artifact),
                        trust=_trust(trust_pickle, trust_code), timeout=timeout, verbose=verbose,
                        title=f"inspecting {Path(artifact).name}", crash_exit_code=2)
    if json_out:
        ui.emit_json(document("inspect", True, result=result))
    ui.show(ui.table(None, ["file", "format", "size", "precision", "runtime"],
                     [[artifact, result["description"], ui.human_bytes(result["size_bytes"]), result["precision"],
                       f"{result['runtime']} {result['runtime_version']}"]]))
    ui.show(signature_table(result["signature"], "inputs and outputs"))
    ops = sorted(result["operators"].items(), key=lambda kv: (-kv[1], kv[0]))
    ui.show(ui.table(f"operators ({sum(result['operators'].values())} in all)", ["operator", "count"],
                     [[k, v] for k, v in ops]))


# ----------------------------------------------------------------------------- doctor
@cli.command(epilog=EXIT_CODE_HELP)
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def doctor(json_out):
    """Show which frameworks and runtimes are installed, and how to get what is missing."""
    ui = _ui()
    ui.configure(json_mode=json_out)
    from edgekit.doctor import collect
    from edgekit.report import document

    report = collect()
    if json_out:
        ui.emit_json(document("doctor", report["ok"], result=report))
    rows = [[p["package"], p["extra"], ui.mark(p["installed"] is not None), p["installed"] or "missing",
             p["pinned"], p["purpose"]] for p in report["packages"]]
    ui.show(ui.table(f"edgekit {__version__} on Python {report['python']} ({report['machine']})",
                     ["package", "extra", "", "installed", "pinned", "used for"], rows))
    paths = ", ".join(f"{s}→{t}" for s, t in report["paths_available"]) or "none"
    ui.show(f"conversion paths available now: {paths}")
    for hint in report["hints"]:
        ui.warn(hint)
    if not report["ok"]:
        raise EdgekitError("the core dependencies are incomplete.", hint=report["hints"][0] if report["hints"] else None)


# ----------------------------------------------------------------------------- entry
def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors as one paragraph and their exit code, bugs with a traceback."""
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except EdgekitError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except Exception:
        traceback.print_exc()
        click.echo("edgekit: internal error (a bug): please report it with the traceback above.", err=True)
        sys.exit(EXIT_INTERNAL)


def _print_error(exc: EdgekitError) -> None:
    from edgekit import ui

    if ui.json_mode():
        from edgekit.report import document

        ui.emit_json(document("error", False, error=exc.to_dict()))
    label = "check failed" if isinstance(exc, CheckFailed) else "error"
    ui.err.print(f"[bold red]{label}:[/] {exc.message}", soft_wrap=False)
    if exc.hint:
        ui.err.print(f"  [cyan]what to do:[/] {exc.hint}")
    if exc.details:
        ui.err.print("  [dim]details (last lines of the stage's output):[/]")
        for line in exc.details.splitlines()[-15:]:
            ui.err.out(f"    {line}", highlight=False)
