"""The `edgekit` command line. Imports stay light: frameworks load only in child processes."""

from __future__ import annotations

import dataclasses
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
from edgekit.stagerun import print_notes, run_stage  # noqa: F401 (arm/cli's too)
from edgekit.targets import OUTPUT_KINDS, TARGETS, target_options  # light: data tables only
from edgekit.validators.arm import cli as arm  # light (click + stdlib): --arch options, `edgekit arm`
from edgekit.validators.device import device_options, parse_devices  # light: --device ssh://…

EXIT_CODE_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())

DEFAULT_TIMEOUTS = {"convert": 1800.0, "validate": 900.0, "bench": 900.0, "inspect": 300.0}


def _ui():
    from edgekit import ui

    return ui


def common_output(f):
    f = click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout (and nothing else there).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors (and the JSON document with --json).")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Show the frameworks' own output instead of capturing it.")(f)
    return f


def trust_options(f):
    f = click.option("--trust-pickle", is_flag=True,
                     help="Allow pickle-based model files (they run code when loaded). Only for files you trust.")(f)
    f = click.option("--trust-code", is_flag=True,
                     help="Allow Keras Lambda layers and other code in model configs. Only for files you trust.")(f)
    f = click.option("--trust-type", "trust_types", multiple=True, metavar="TYPE",
                     help="Allow one more type in a skops file (repeatable), e.g. --trust-type mylib.MyEstimator.")(f)
    return f


def signature_option(f):
    return click.option("--signature", "signature_name", metavar="NAME",
                        help="SavedModel sources: the signature to use (default: serving_default).")(f)


def tabular_options(f):
    f = click.option("--label-column", metavar="NAME",
                     help="With a CSV (or .npz) for --inputs: the column holding the true labels (for accuracy).")(f)
    return signature_option(f)


def text_options(f):
    f = click.option("--length", "text_length", type=click.IntRange(min=1), metavar="N",
                     help="With --tokenizer: pad and truncate to N tokens instead of the tokenizer's own length "
                          "(a dynamic-length model, or a fixed length chosen with --input-shape).")(f)
    f = click.option("--text-column", default="text", show_default=True, metavar="NAME",
                     help="With --tokenizer: the CSV column holding the texts.")(f)
    f = click.option("--tokenizer", metavar="FILE",
                     help="With a CSV of texts for --inputs: the model's tokenizer.json (Hugging Face tokenizers); "
                          "edgekit tokenizes --text-column into input_ids/attention_mask (the tokenizer's padding/"
                          "truncation) and reads the labels from --label-column (default: a 'label' column, if "
                          "any), so accuracy is text to label.")(f)
    return f


def check_text_options(tokenizer, text_column: str, text_length: int | None) -> None:
    if not tokenizer and (text_length or text_column != "text"):
        raise BadInput(f"{'--length' if text_length else '--text-column'} applies to texts: it needs --tokenizer "
                       "(the model's tokenizer.json) and a CSV of texts for --inputs.")


def source_model_options(f):
    f = click.option("--model-args", metavar="JSON",
                     help="Keyword arguments for --model-class as a JSON object, e.g. '{\"num_classes\": 10}'.")(f)
    f = click.option("--model-class", metavar="PKG.MOD:CLASS",
                     help="With a state_dict/.safetensors source: the model's class or factory, imported from "
                          "your Python path (current folder first).")(f)
    f = click.option("--input-shape", "input_shapes", multiple=True, metavar="SPEC",
                     help="Input shape for sources without a signature (TorchScript, model class + weights), "
                          "or to pin a source's dynamic axes (e.g. an ONNX image's H and W) for random inputs: "
                          "[NAME=]DIMS[:DTYPE], e.g. 1x3x224x224, x=1x16:int64, Nx3x224x224 (dynamic batch). "
                          "Repeat per input.")(f)
    return f


class Seconds(click.ParamType):
    """A time limit: a finite number of seconds > 0 (nan, inf, 0 and negatives would disable it)."""

    name = "SECONDS"

    def convert(self, value, param, ctx):
        import math

        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a finite number of seconds greater than 0.", param, ctx)
        return seconds


def layout_options(f):
    f = click.option("--output-kind", "output_kinds", multiple=True, metavar="NAME=KIND",
                     help=f"What output NAME computes, to judge it by what matters: {', '.join(OUTPUT_KINDS)} "
                          "(default: inferred, and the report says how). Repeatable.")(f)
    f = click.option("--batch-axis", "batch_axes", multiple=True, metavar="NAME=K",
                     help="The axis of input NAME that holds the samples in --inputs/--calibration, when it is "
                          "not the first (e.g. a recurrent state [2, N, 128]: state=1). Repeatable.")(f)
    return f


def _named(values, option: str, example: str, allowed=None) -> dict | None:
    """NAME=VALUE options -> {name: value}; a malformed one is a usage error (exit 2)."""
    out = {}
    for v in values or ():
        name, sep, value = v.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BadInput(f"{option} {v!r}: expected NAME=VALUE, e.g. {option} {example}.")
        value = value.strip()
        if allowed is int:
            if not value.isdigit():
                raise BadInput(f"{option} {v!r}: the axis must be a non-negative integer, e.g. {option} {example}.")
            value = int(value)
        elif allowed and value not in allowed:
            raise BadInput(f"{option} {v!r}: unknown kind '{value}'.", hint=f"kinds: {', '.join(allowed)}")
        out[name.strip()] = value
    return out or None


def timeout_option(stage: str):
    return click.option("--timeout", type=Seconds(), default=DEFAULT_TIMEOUTS[stage], show_default=True,
                        help="Seconds before the stage is stopped (exit 124).")


def tolerance_options(f):
    f = click.option("--atol", type=click.FloatRange(min=0), help="Absolute tolerance (overrides the precision preset).")(f)
    f = click.option("--rtol", type=click.FloatRange(min=0), help="Relative tolerance (overrides the precision preset).")(f)
    return f


def _trust(trust_pickle: bool, trust_code: bool, trust_types: tuple = ()):
    from edgekit.loading import Trust

    return Trust(pickle=trust_pickle, code=trust_code, types=tuple(trust_types))


def _data_file(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{option} {path}: no such file.")
    if p.is_dir():
        raise BadInput(f"{option} {path}: is a folder; a .npz or .csv file is needed.")
    from edgekit.formats import detect

    found = detect(p)
    if found.name not in ("npz", "npy", "csv"):
        raise BadInput(f"{option} {path}: is a {found.spec.description}, not a .npz/.npy/.csv data file.")
    return str(p)


def _source(path: str) -> "object":
    """Detect a MODEL/ARTIFACT argument; data files (csv, npz, npy) are not models."""
    from edgekit.formats import detect

    found = detect(path)
    if found.spec.framework == "data":
        kind = "a text file (a CSV table)" if found.name == "csv" else f"a {found.spec.description}"
        raise BadInput(f"{path}: is {kind}, not a model.",
                       hint="data files go to --inputs/--calibration; pass the model file here")
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODE_HELP)
@click.version_option(__version__, prog_name="edgekit")
def cli():
    """edgekit: convert trained models to mobile and web formats (TFLite, ONNX, ONNX Runtime
    Mobile, TorchScript, ExecuTorch, TensorFlow.js) and prove they still compute the same thing,
    on the host, emulated arm64, in a browser or on your own board.

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
def declared_target_options(f):
    """The convert options targets add (each target's declaration, edgekit.targets)."""
    for _, o in reversed(target_options()):
        f = click.option(o.flag, o.key, is_flag=o.is_flag, default=False if o.is_flag else None, help=o.help,
                         type=click.Choice(o.choices) if o.choices else None)(f)
    return f


def check_target_options(given: dict, conv, target: str) -> None:
    """A target's option on a path that does not take it is refused, naming where it applies."""
    for t, o in target_options():
        if given.get(o.key) and o.key not in conv.options:
            raise BadInput(f"{o.flag} applies only to {o.applies or '--target ' + t.name}, not {target}.")


def default_output(source: Path, target_ext: str, precision: str) -> Path:
    stem = source.name.split(".")[0] if source.is_file() else source.name
    suffix = "" if precision == "fp32" else f".{precision}"
    return Path("build") / f"{stem}{suffix}{target_ext}"


@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("model", metavar="MODEL")
@click.option("--target", "-t", required=True, help=f"Output format: {', '.join(TARGETS)}.")
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8", "auto"]), default="none",
              show_default=True,
              help="fp16 weights, dynamic-range int8 weights, full int8 (needs --calibration), or auto (any target "
                   "with several precisions: the fastest candidate that passes parity, measured).")
@click.option("--calibration", metavar="FILE", help=".npz of representative inputs for --quantize int8.")
@click.option("--inputs", metavar="FILE",
              help=".npz (keyed by input name) or .csv (header = column names) of real inputs for the parity check.")
@source_model_options
@text_options
@click.option("--int8-io", is_flag=True, help="With --quantize int8 to TFLite: int8 inputs/outputs instead of float.")
@click.option("--keep-float", "keep_float", multiple=True, metavar="NAME[,NAME]|auto",
              help="With --quantize int8 to ONNX: keep these layers in float (names as 'edgekit debug' prints "
                   "them; repeatable), or auto: keep the most sensitive ones float until the int8 preset passes.")
@declared_target_options
@click.option("--no-transformer-fusion", is_flag=True,
              help="ONNX/ORT: keep the plain graph of a transformer (no onnxruntime.transformers.optimizer fusion).")
@click.option("-o", "--output", metavar="PATH", help="Output file (default: build/<model>[.<precision>].<ext>).")
@click.option("--no-validate", is_flag=True, help="Skip the parity check (not recommended).")
@click.option("--keep-failed", is_flag=True, help="Write the artifact even when parity fails (exit code is still 1).")
@click.option("--explain", is_flag=True,
              help="When parity fails, compare the layers right away (as 'edgekit debug' does): first divergence, "
                   "layers that lose the most, weights vs activations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random parity inputs.")
@click.option("--validate-arch", type=click.Choice(arm.ARCHES), multiple=True,
              help="Also check parity on arm64 (emulated; needs 'edgekit arm setup'), in the browser or in Node.js "
                   "(needs 'edgekit web setup'). Host parity always runs.")
@click.option("--arm-cpu", type=click.Choice(arm.CPUS), default=arm.DEFAULT_CPU, show_default=True,
              help="Emulated ARM core for --validate-arch arm64.")
@device_options
@tolerance_options
@layout_options
@tabular_options
@trust_options
@timeout_option("convert")
@common_output
def convert(model, target, quantize, calibration, inputs, input_shapes, model_class, model_args, tokenizer,
            text_column, text_length, int8_io, keep_float, no_transformer_fusion, output, no_validate, keep_failed,
            explain, seed, validate_arch, arm_cpu, devices, ssh_config, atol, rtol, batch_axes, output_kinds,
            label_column, signature_name, trust_pickle, trust_code, trust_types, timeout, json_out, quiet, verbose,
            **target_opts):
    """Convert MODEL to --target, then check parity against MODEL on the host.

    The artifact is written only after the check passes (use --keep-failed to keep a
    failing one for inspection). A report is written next to it as <artifact>.report.json.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.converters.registry import lookup
    from edgekit.fsutil import check_output_path, publish, write_text_atomic
    from edgekit.report import convert_summary, document, failure_line, parity_table
    from edgekit.targets import get_target, precision_of

    tgt = get_target(target)
    check_text_options(tokenizer, text_column, text_length)
    found = _source(model)
    if found.spec.pickle_based:  # refuse before anything else: the pickle's imports are read, never run
        from edgekit.loading import check_policy

        check_policy(found, _trust(trust_pickle, trust_code, trust_types))
    conv = lookup(found.spec.framework, target, quantize)
    from edgekit.request import SourceRequest

    req_options = dict(input_shapes=input_shapes, model_class=model_class, model_args=model_args,
                       trust=_trust(trust_pickle, trust_code, trust_types), signature=signature_name,
                       label_column=label_column, tolerance={"atol": atol, "rtol": rtol}, seed=seed)
    base_req = SourceRequest.from_cli(model, found, **req_options)  # fails fast, before data files
    check_target_options(target_opts, conv, target)
    if quantize in conv.needs_calibration and not calibration:
        raise BadInput(f"--quantize {quantize} needs --calibration: a .npz of a few hundred representative inputs.",
                       hint="e.g. --calibration calib.npz (keyed by input name; a single-input model may use any key)")
    if int8_io and not (quantize == "int8" and "int8_io" in conv.options):
        raise BadInput("--int8-io applies only to --quantize int8 on paths that support it "
                       f"({found.spec.framework}→{target} {'does' if 'int8_io' in conv.options else 'does not'}).")
    keep = keep_float_names(keep_float, target, quantize, int8_io)
    devices = parse_devices(devices, ssh_config)
    calibration = _data_file(calibration, "--calibration")
    inputs = _data_file(inputs, "--inputs")
    batch_axis = _named(batch_axes, "--batch-axis", "state=1", int)
    kinds = _named(output_kinds, "--output-kind", "output0=detection", OUTPUT_KINDS)
    req = dataclasses.replace(base_req, inputs=inputs, calibration=calibration, batch_axis=batch_axis,
                              output_kinds=kinds)
    precision = precision_of(quantize)
    out = Path(output) if output else default_output(Path(model), tgt.extension, precision)
    if output and out.is_dir() and not (tgt.folder_file and (out / tgt.folder_file).is_file()):
        out = out / default_output(Path(model), tgt.extension, precision).name
    if not output:
        out.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(out, folder=tgt.folder_file or False)

    try:
        staging = Path(tempfile.mkdtemp(prefix=".edgekit-", dir=out.parent))
    except OSError as exc:
        raise BadInput(f"{out.parent}: cannot write in the output folder ({exc.strerror}).",
                       hint="choose another -o path") from None
    try:
        staged = staging / out.name
        text_record = None
        if tokenizer:  # text in: the CSV's texts become the model's ids (and its label column the labels)
            from edgekit.text import tokenized_request

            req, text_record = tokenized_request(req, tokenizer, text_column, staging, text_length)
        elif inputs and inputs.endswith(".npz") and Path(model).suffix in (".pt2", ".onnx", ".keras"):
            from edgekit.tensors import read_npz
            from edgekit.text import check_ids

            check_ids(model, read_npz(Path(inputs)), inputs)
        result = run_stage("convert", "edgekit.pipeline:convert_stage", req, target, quantize, str(staged),
                           validate=not no_validate,
                           options={"int8_io": int8_io, "keep_float": keep,
                                    "transformer_fusion": not no_transformer_fusion, **target_opts},
                           timeout=timeout, verbose=verbose,
                           title=f"converting {ui.plain(Path(model).name)} → {target} ({precision})")
        if text_record:
            from edgekit.text import relabel

            result["parity"] = relabel(result.get("parity"), req.inputs, text_record)
        parity = result.get("parity")
        passed = parity is None or parity["passed"]
        if passed and parity is not None and "arm64" in validate_arch:
            result["arm64"] = arm.convert_arm_check(req, staged, result["precision"], arm_cpu=arm_cpu,
                                                    timeout=timeout, verbose=verbose)
            passed = result["arm64"]["parity"]["passed"]
        if passed and parity is not None:  # --validate-arch browser/node (edgekit.validators.web)
            result["web"] = arm.convert_web_check(req, staged, result["precision"], validate_arch, timeout=timeout,
                                                  verbose=verbose)
            passed = all(r["parity"]["passed"] for r in result["web"])
        if explain and parity is not None and not parity["passed"]:
            result["explain"] = explain_failure(req, staged, result["precision"], timeout, verbose)
        if passed and parity is not None and devices:
            from edgekit.validators.device.cli import validate_on_devices

            result["devices"] = validate_on_devices(req, staged, devices, precision=result["precision"],
                                                    timeout=timeout, verbose=verbose)
            passed = all(r["parity"]["passed"] for r in result["devices"])
        written = passed or keep_failed
        result["output"] = str(out) if written else None
        if text_record:
            from edgekit.text import tokenizer_note

            result["tokenizer"] = text_record
            result["notes"].append(tokenizer_note(text_record))
        doc = document("convert", passed, result=result)
        if written:  # every other file is written first; the artifact is published last
            report = out.with_name(out.name + ".report.json")
            write_text_atomic(staging / report.name, json.dumps(doc, indent=2, default=str))
            publish(staging / report.name, report)
            try:
                publish(staged, out)
            except BaseException:
                report.unlink(missing_ok=True)  # no report for an artifact that is not there
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if json_out:
        ui.emit_json(doc)
    summary = convert_summary(Path(model).name, target, result, parity, ui.results_console().width)
    if parity:
        ui.show(parity_table(parity, "parity (host)"))
    arm.show_result(result.get("arm64"))
    arm.show_web_results(result.get("web") or [])
    if result.get("devices"):
        from edgekit.validators.device.cli import show_validation

        show_validation(result["devices"], out, model)
    ui.show(summary)
    from edgekit.report import quantization_tables

    for t in quantization_tables(result.get("details") or {}):
        ui.show(t)
    print_notes(result["notes"] + (parity["notes"] if parity else []))
    show_explain(result.get("explain"))
    for w in result.get("warnings", []):
        ui.warn(f"[bold red]QUANTIZED MODEL IS SLOWER:[/] {w}")
    if no_validate:
        ui.warn("parity was not checked (--no-validate): nothing proves this artifact computes what the model does.")
    if not passed:
        kept = f" It was kept at {out} (--keep-failed)." if keep_failed else \
            " The artifact was not written (pass --keep-failed to keep it for inspection)."
        failed = next(p for p in [parity, (result.get("arm64") or {}).get("parity")] +
                      [r["parity"] for r in result.get("web") or ()] +
                      [r["parity"] for r in result.get("devices") or ()] if p and not p["passed"])
        raise CheckFailed(f"parity failed for {target} ({result['precision']}, {failed['arch']}): "
                          f"{failure_line(failed)}.{kept}",
                          hint=debug_hint(model, out if keep_failed else None, inputs or calibration, target,
                                          result["precision"], keep) +
                               "try a higher precision (--quantize fp16/none), more calibration data, or "
                               "--atol/--rtol if the difference is acceptable")
    if not json_out:
        ui.info(f"[green]wrote[/] {ui.plain(out)}")


def keep_float_names(values, target: str, quantize: str, int8_io: bool = False) -> list[str] | None:
    """--keep-float NAME[,NAME] (repeatable) or auto -> a list of names, or ["auto"]."""
    names = [n.strip() for v in values or () for n in v.split(",") if n.strip()]
    if not names:
        return None
    from edgekit.config import KEEP_FLOAT_TARGETS

    if quantize != "int8" or target not in KEEP_FLOAT_TARGETS or (target == "tflite" and int8_io):
        raise BadInput(f"--keep-float applies to --quantize int8 with --target onnx, executorch or tflite (without "
                       f"--int8-io), not --quantize {quantize} --target {target}"
                       f"{' --int8-io' if int8_io else ''}.")
    if "auto" in names and len(names) > 1:
        raise BadInput("--keep-float auto chooses the layers itself: give either auto or layer names.")
    return names


def explain_failure(req, artifact, precision: str | None, timeout, verbose) -> dict:
    """--explain: `edgekit debug`'s comparison of a failing artifact, with the weights-vs-activations
    split of its worst layer; {"error": why} when the layers cannot be compared."""
    ui = _ui()
    try:
        return run_stage("validate", "edgekit.pipeline:debug_stage", req.source, str(artifact),
                         inputs=req.inputs or req.calibration, precision=precision, trust=req.trust, seed=req.seed,
                         source_options=req.source_options, batch_axis=req.batch_axis, signature=req.signature,
                         split=True, timeout=timeout, verbose=verbose,
                         title=f"--explain: comparing the layers of {ui.plain(Path(artifact).name)} with "
                               f"{ui.plain(Path(req.source).name)}")
    except EdgekitError as exc:
        return {"error": " ".join(str(exc.message).split())}


def show_explain(found: dict | None) -> None:
    if not found:
        return
    ui = _ui()
    if "error" in found:
        ui.warn(f"--explain: the layers could not be compared: {found['error']}")
        return
    from edgekit.validators.debug import render

    for part in render(found):
        ui.show(part)


def debug_hint(model, artifact, inputs, target: str, precision: str, keep: list | None = None) -> str:
    """The next step after a failed parity check: the exact `edgekit debug` command (ONNX, TFLite, ExecuTorch)."""
    if target not in ("onnx", "tflite", "executorch"):
        return ""
    data = f" --inputs {inputs}" if inputs else ""
    step = (f"see which layer diverges: edgekit debug {model} {artifact}{data}" if artifact else
            f"see which layer diverges: rerun with --keep-failed, then edgekit debug {model} ARTIFACT{data}")
    fix = ("; keep the sensitive layers float: --keep-float auto" if not keep else
           "; keep more layers float by name (--keep-float NAME,…, names from debug)") \
        if precision == "int8" else ""
    return f"{step}{fix}; or "


# ----------------------------------------------------------------------------- validate
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("source", metavar="SOURCE")
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--inputs", metavar="FILE",
              help=".npz of real inputs (keyed by input name; '_labels' for accuracy) or .csv (header = column names).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "dynamic", "int8"]), default="auto",
              show_default=True, help="Tolerance preset; auto reads it from the artifact.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@source_model_options
@text_options
@tolerance_options
@layout_options
@tabular_options
@trust_options
@arm.arch_options
@device_options
@click.option("--explain", is_flag=True,
              help="When parity fails, compare the layers right away (as 'edgekit debug' does): first divergence, "
                   "layers that lose the most, weights vs activations.")
@timeout_option("validate")
@common_output
def validate(source, artifact, inputs, precision, seed, input_shapes, model_class, model_args, tokenizer, text_column,
             text_length, atol, rtol, batch_axes, output_kinds, label_column, signature_name, trust_pickle, trust_code,
             trust_types, arches, arm_cpu, max_arm_instructions, max_arm_increase, arm_baseline, devices, ssh_config,
             explain, timeout, json_out, quiet, verbose):
    """Check that ARTIFACT computes what SOURCE computes (exit 1 if it does not).

    Both run on the same inputs (--inputs, or seeded random ones with a warning); every
    output is compared by max/mean abs error, max relative error, cosine similarity, SNR
    and top-1 agreement, and judged by the precision's tolerance preset.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document, failure_line, parity_table

    from edgekit.request import SourceRequest

    check_text_options(tokenizer, text_column, text_length)
    base_req = SourceRequest.from_cli(source, _source(source), input_shapes=input_shapes, model_class=model_class,
                                      model_args=model_args, trust=_trust(trust_pickle, trust_code, trust_types),
                                      signature=signature_name, label_column=label_column,
                                      tolerance={"atol": atol, "rtol": rtol}, seed=seed)
    _source(artifact)
    inputs = _data_file(inputs, "--inputs")
    batch_axis = _named(batch_axes, "--batch-axis", "state=1", int)
    kinds = _named(output_kinds, "--output-kind", "output0=detection", OUTPUT_KINDS)
    req = dataclasses.replace(base_req, inputs=inputs, batch_axis=batch_axis, output_kinds=kinds)
    arches = arm.check_arch_args(arches, max_arm_instructions, arm_baseline)
    devices = parse_devices(devices, ssh_config)
    with tempfile.TemporaryDirectory(prefix="edgekit-text-") as tmp:
        text_record = None
        if tokenizer:  # text in: the CSV's texts become the ids of both models, its label column the labels
            from edgekit.text import check_ids, tokenized_request

            req, text_record = tokenized_request(req, tokenizer, text_column, Path(tmp), text_length)
            if Path(artifact).suffix == ".onnx":  # the artifact's own embedding table, too
                from edgekit.tensors import read_npz

                check_ids(artifact, read_npz(Path(req.inputs)), inputs, text_record["vocab_size"])
        if devices:
            return validate_devices(req, artifact, devices, arches, precision, timeout, verbose, json_out)
        if arches != ("host",):
            return arm.validate_arches(req, artifact, arches, arm_cpu, max_arm_instructions,
                                       precision=None if precision == "auto" else precision, timeout=timeout,
                                       verbose=verbose, json_out=json_out, arm_baseline=arm_baseline,
                                       max_arm_increase=max_arm_increase)
        result = run_stage("validate", "edgekit.pipeline:validate_stage", req, str(artifact),
                            precision=None if precision == "auto" else precision, timeout=timeout, verbose=verbose,
                            title=f"validating {ui.plain(Path(artifact).name)} against {ui.plain(Path(source).name)}",
                            crash_exit_code=2)
        if explain and not result["parity"]["passed"]:  # while the tokenized inputs still exist
            result["explain"] = explain_failure(req, artifact, result.get("precision"), timeout, verbose)
    if text_record:  # the data is the CSV, not the temporary file of its ids
        from edgekit.text import relabel, tokenizer_note

        result = {**relabel(result, req.inputs, text_record), "tokenizer": text_record}
        result["parity"]["notes"].insert(0, tokenizer_note(text_record))
    parity = result["parity"]
    if json_out:
        ui.emit_json(document("validate", parity["passed"], result=result))
    ui.show(parity_table(parity, f"parity: {ui.plain(Path(artifact).name)} ({result['runtime']}) vs {ui.plain(Path(source).name)}"))
    print_notes(parity["notes"])
    lat = result.get("latency")
    if lat:
        ui.info(f"  note: latency on this CPU (median, batch 1, {result['runtime']}): source {lat['source_ms']:.3f} ms, "
                f"artifact {lat['artifact_ms']:.3f} ms ({lat['ratio']:.2f}x)")
        if lat.get("warning"):
            ui.warn(f"[bold red]QUANTIZED MODEL IS SLOWER:[/] {lat['warning']}")
    show_explain(result.get("explain"))
    if not parity["passed"]:
        raise CheckFailed(f"parity failed: {failure_line(parity)}.",
                          hint=debug_hint(source, artifact, inputs, _source(artifact).name,
                                          result.get("precision") or "", None).removesuffix("; or ") or None)
    ui.info("[green]parity passed[/]")


def validate_devices(req, artifact, devices, arches, precision, timeout, verbose, json_out) -> None:
    """`edgekit validate --device ssh://…`: parity (and device latency) on each device."""
    from edgekit.report import document
    from edgekit.validators.device.cli import failed_line, show_validation, validate_on_devices

    ui = _ui()
    if arches != ("host",):
        raise BadInput("--device and --arch are checked in separate runs (a real device's figures are never "
                       "shown beside emulated ones).", hint="run validate once with --arch, once with --device")
    results = validate_on_devices(req, artifact, devices, precision=None if precision == "auto" else precision,
                                  timeout=timeout, verbose=verbose)
    failed = failed_line(results)
    if json_out:
        ui.emit_json(document("validate", failed is None, results=results))
    show_validation(results, artifact, req.source)
    print_notes(list(dict.fromkeys(n for r in results for n in r["parity"]["notes"])))
    if failed:
        raise CheckFailed(failed + ".")
    ui.info(f"[green]parity passed[/] on {', '.join(r['device']['device'] for r in results)}")


# ----------------------------------------------------------------------------- debug
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("source", metavar="SOURCE")
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--inputs", metavar="FILE", help=".npz (keyed by input name) or .csv of real inputs (default: random).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "dynamic", "int8"]), default="auto",
              show_default=True, help="Sets the SNR floor that marks divergence; auto reads it from the artifact.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@source_model_options
@click.option("--batch-axis", "batch_axes", multiple=True, metavar="NAME=K",
              help="The axis of input NAME that holds the samples in --inputs, when it is not the first.")
@signature_option
@trust_options
@timeout_option("validate")
@common_output
def debug(source, artifact, inputs, precision, seed, input_shapes, model_class, model_args, batch_axes,
          signature_name, trust_pickle, trust_code, trust_types, timeout, json_out, quiet, verbose):
    """Compare ARTIFACT with SOURCE layer by layer: where does it stop computing the same thing?

    Every intermediate tensor of the artifact is matched to the float graph (ONNX: by name, against
    SOURCE or SOURCE converted to fp32 ONNX; TFLite: against SOURCE's fp32 TFLite conversion;
    ExecuTorch: every XNNPACK node's output, against SOURCE's torch.export nodes by nn.Module
    path) and compared on the same inputs: cosine, SNR,
    per-channel SNR, max abs error, the activation scale/zero-point and the weights' SNR of
    quantized layers. Prints the table in graph order, the first layer that diverges and the
    layers that lose the most; the `node` names are what --keep-float takes.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document
    from edgekit.sources import source_options

    src_options = source_options(_source(source), input_shapes, model_class, model_args)
    _source(artifact)
    inputs = _data_file(inputs, "--inputs")
    batch_axis = _named(batch_axes, "--batch-axis", "state=1", int)
    result = run_stage("validate", "edgekit.pipeline:debug_stage", str(source), str(artifact), inputs=inputs,
                        precision=None if precision == "auto" else precision, seed=seed,
                        trust=_trust(trust_pickle, trust_code, trust_types), source_options=src_options,
                        batch_axis=batch_axis, signature=signature_name, timeout=timeout, verbose=verbose,
                        title=f"comparing the layers of {ui.plain(Path(artifact).name)} with {ui.plain(Path(source).name)}")
    if json_out:
        ui.emit_json(document("debug", True, result=result))
    from edgekit.validators.debug import render

    for part in render(result):
        ui.show(part)
    print_notes(result["notes"])


# ----------------------------------------------------------------------------- bench
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--iterations", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for the runtime (default: the runtime's own choice).")
@click.option("--inputs", metavar="FILE", help=".npz of inputs (default: seeded random inputs).")
@source_model_options
@signature_option
@trust_options
@arm.arch_options
@device_options
@timeout_option("bench")
@common_output
def bench(artifacts, iterations, warmup, threads, inputs, input_shapes, model_class, model_args, signature_name,
          trust_pickle, trust_code, trust_types, arches, arm_cpu, max_arm_instructions, max_arm_increase, arm_baseline,
          devices, ssh_config, timeout, json_out, quiet, verbose):
    """Measure the latency of one or more artifacts on the host CPU (and/or emulated arm64).

    Each artifact runs in its own child process: load time, first inference, then
    --warmup untimed and --iterations timed single-batch inferences. With --arch arm64 it
    runs under QEMU: the latency there is emulated (relative only, not device speed), and
    the executed ARM instructions per inference are counted (deterministic; gate on them
    with --max-arm-instructions).
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document
    from edgekit.request import SourceRequest
    from edgekit.sources import SHAPE_SOURCES, WEIGHT_FORMATS

    trust = _trust(trust_pickle, trust_code, trust_types)
    reqs = {}
    for a in artifacts:  # --input-shape/--model-class describe the artifacts that need them
        found = _source(a)
        needs = found.spec.framework in SHAPE_SOURCES or found.name in WEIGHT_FORMATS
        shapes = dict(input_shapes=input_shapes, model_class=model_class, model_args=model_args) if needs else {}
        reqs[a] = SourceRequest.from_cli(a, found, trust=trust, signature=signature_name, **shapes)
    inputs = _data_file(inputs, "--inputs")
    arches = arm.check_arch_args(arches, max_arm_instructions, arm_baseline)
    devices = parse_devices(devices, ssh_config)
    results = []
    for a in artifacts if "host" in arches else ():
        req = reqs[a]
        results.append(run_stage("bench", "edgekit.validators.latency:measure", req.source, trust=req.trust,
                                  threads=threads, warmup=warmup, options=req.open_options(), iterations=iterations,
                                  inputs=inputs, timeout=timeout, verbose=verbose,
                                  title=f"benchmarking {ui.plain(Path(a).name)}", crash_exit_code=2))
    arm_results = arm.bench_arm(artifacts, arm_cpu, iterations=iterations, warmup=warmup, inputs=inputs,
                                trust=trust, timeout=timeout,
                                verbose=verbose) if "arm64" in arches else []
    web_results = arm.bench_web(artifacts, arches, iterations=iterations, warmup=warmup, inputs=inputs,
                                trust=_trust(trust_pickle, trust_code, trust_types), timeout=timeout, verbose=verbose)
    device_results = []
    if devices:
        from edgekit.validators.device.cli import bench_on_devices, bench_table

        device_results = bench_on_devices(artifacts, devices, iterations=iterations, warmup=warmup, threads=threads,
                                          inputs=inputs, trust=_trust(trust_pickle, trust_code, trust_types),
                                          timeout=timeout, verbose=verbose)
    gate = arm.Gate(arm_results, max_arm_instructions, arm_baseline, max_arm_increase)
    if json_out:
        ui.emit_json(document("bench", gate.ok, results=results + arm_results + web_results + device_results))
    rows = [[Path(r["artifact"]).name, r["runtime"], r["threads_requested"] or "default", f"{r['median_ms']:.3f}",
             f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['min_ms']:.3f}", f"{r['std_ms']:.3f}",
             f"{r['first_inference_ms']:.1f}", f"{r['load_ms']:.0f}", ui.human_bytes(r["size_bytes"]),
             f"{r['peak_rss_mb']:.0f}"] for r in results]
    if results:
        ui.show(ui.table(f"latency on the host CPU (batch 1, {iterations} iterations after {warmup} warm-up)",
                         ["artifact", "runtime", "threads", "median ms", "p90", "p99", "min", "std", "first ms",
                          "load ms", "size", "peak RSS MB"], rows))
    if arm_results:
        ui.show(arm.arm_bench_table(arm_results, iterations, warmup))
    if web_results:
        ui.show(arm.web_bench_table(web_results, iterations, warmup))
    if device_results:
        ui.show(bench_table(device_results, iterations, warmup))
    gate.enforce()


# ----------------------------------------------------------------------------- inspect
@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("artifact", metavar="ARTIFACT")
@click.option("--security", is_flag=True,
              help="Report what the file could do if loaded and what edgekit's policy decides, without loading it.")
@source_model_options
@signature_option
@trust_options
@timeout_option("inspect")
@common_output
def inspect(artifact, security, input_shapes, model_class, model_args, signature_name, trust_pickle, trust_code,
            trust_types, timeout, json_out, quiet, verbose):
    """Show what ARTIFACT is: format, size, inputs/outputs (with quantization) and operators.

    With --security: what the file would be allowed to do and why (it is not loaded).
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit.report import document, signature_table

    found = _source(artifact)
    if security:
        rep = run_stage("inspect", "edgekit.pipeline:security_stage", str(artifact),
                         trust=_trust(trust_pickle, trust_code, trust_types), timeout=timeout, verbose=verbose,
                         title=f"checking {ui.plain(Path(artifact).name)}", crash_exit_code=2)
        if json_out:
            ui.emit_json(document("inspect --security", True, result=rep))
        rows = [["format", f"{rep['description']} (detected by {rep['detected_by']})"],
                ["what it can do", rep["capability"]], *[["finding", f] for f in rep["findings"]],
                ["edgekit's decision", ("[green]allowed[/]: " if rep["allowed"] else "[bold red]refused[/]: ")
                 + rep["reason"]]]
        if rep.get("hint"):
            rows.append(["to allow it", rep["hint"]])
        ui.show(ui.table(f"security: {ui.plain(artifact)}", ["", ""], rows, show_header=False))
        return
    from edgekit.request import SourceRequest

    req = SourceRequest.from_cli(artifact, found, input_shapes=input_shapes, model_class=model_class,
                                 model_args=model_args, trust=_trust(trust_pickle, trust_code, trust_types),
                                 signature=signature_name)
    result = run_stage("inspect", "edgekit.pipeline:inspect_stage", req.source, source_options=req.open_options(),
                        trust=req.trust, timeout=timeout, verbose=verbose,
                        title=f"inspecting {ui.plain(Path(artifact).name)}", crash_exit_code=2)
    if json_out:
        ui.emit_json(document("inspect", True, result=result))
    ui.show(ui.table(None, ["file", "format", "size", "precision", "runtime"],
                     [[ui.plain(artifact), result["description"], ui.human_bytes(result["size_bytes"]), result["precision"],
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
    web = report["web"]
    ui.show("browser/Node.js runtimes (edgekit web status): " + (
        f"provisioned ({', '.join(f'{k} {v}' for k, v in (web['npm'] or {}).items())}; chromium {web['chromium']}, "
        f"node {web['node']})" if web["complete"] and not web["missing_host_packages"] else "not provisioned"))
    for hint in report["hints"]:
        ui.warn(hint)
    if not report["ok"]:
        raise EdgekitError("the core dependencies are incomplete.", hint=report["hints"][0] if report["hints"] else None)


# ----------------------------------------------------------------------------- build
class _JobProgress:
    """Live progress for parallel build jobs: a line per job as it starts and finishes."""

    def __init__(self, total: int):
        import threading

        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.t0: dict[str, float] = {}

    def start(self, job):
        import time

        ui = _ui()
        self.t0[job.id] = time.monotonic()
        ui.info(f"  [dim]▶[/] {job.id}")
        last = {"msg": None}

        def cb(msg: str) -> None:
            if msg != last["msg"] and (ui.err.is_terminal or not msg.startswith(("running", "loading"))):
                last["msg"] = msg
                ui.info(f"    [dim]{job.id}: {ui.plain(msg)}[/]")

        return cb

    def _end(self, job, mark: str, after: str = "") -> None:
        import time

        with self.lock:
            self.done += 1
            n = self.done
        _ui().info(f"  {mark} {job.id} [dim]({time.monotonic() - self.t0[job.id]:.1f} s) [{n}/{self.total}][/]{after}")

    def finish(self, job, entry, problems) -> None:
        self._end(job, "[bold red]✗[/]" if problems else "[green]✓[/]")

    def fail(self, job, exc) -> None:
        # the whole message is printed once, below the summary table
        if job.spec.expect == "refused" and exc.exit_code == 3:
            self._end(job, "[yellow]–[/]", " refused, as expected")
        else:
            self._end(job, "[bold red]✗[/]", f" {type(exc).__name__}")


def _parse_shard(spec: str | None):
    if not spec:
        return None
    import re

    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise BadInput(f"--shard {spec}: expected I/N with 1 <= I <= N, e.g. --shard 1/2.")
    return int(m.group(1)), int(m.group(2))


@cli.command(epilog=EXIT_CODE_HELP)
@click.argument("config", default="edgekit.toml", metavar="[CONFIG]")
@click.option("--out", "out_dir", metavar="DIR", help="Output folder (default: [build] out in the config).")
@click.option("--only", multiple=True, metavar="NAME", help="Build only these models (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Jobs in parallel (default: [build] jobs, else cores).")
@click.option("--shard", metavar="I/N", help="Build only shard I of N (deterministic split, for CI matrices).")
@click.option("--check", "check_only", is_flag=True,
              help="CI gate: rebuild nothing; verify every artifact's hash and cache key and re-run parity.")
@click.option("--force", is_flag=True, help="Rebuild every job even if its cache key is unchanged.")
@click.option("--reports", "reports_dir", metavar="DIR",
              help="With --check: write junit.xml, summary.md, report.json and report.html here.")
@common_output
def build(config, out_dir, only, jobs, shard, check_only, force, reports_dir, json_out, quiet, verbose):
    """Build every model x target in CONFIG (edgekit.toml): convert, check parity, time,
    and publish the artifacts with a manifest.json for the app and reports for CI.

    \b
    Incremental: a job whose source, data, options and library versions are unchanged is
    skipped. Atomic: the new output folder is assembled beside the old one and swapped in
    one step, manifest last, so a killed build leaves the previous outputs intact.
    Reports in the output folder: junit.xml, summary.md, report.json, report.html.
    """
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit import build as builder
    from edgekit import config as cfgmod
    from edgekit.report import (build_table, document, length_lines, problem_lines, summary_markdown,
                                write_build_reports)

    cfg = cfgmod.load(config, out=out_dir)
    plan = builder.plan(cfg, tuple(only), _parse_shard(shard))
    workers = jobs or cfg.jobs or os.cpu_count() or 1
    if not plan:
        raise BadInput("nothing to build: the selection (--only/--shard) matches no job.")
    progress = None if quiet else _JobProgress(len(plan))
    if check_only:
        ui.info(f"checking {len(plan)} artifacts in {cfg.out} against {cfg.path}")
        result = builder.check(cfg, plan, workers=workers, verbose=verbose, ui_progress=progress)
        if reports_dir:
            Path(reports_dir).mkdir(parents=True, exist_ok=True)
            write_build_reports(Path(reports_dir), result)
        title = "edgekit build --check"
    else:
        ui.info(f"building {len(plan)} jobs from {cfg.path} into {cfg.out} ({workers} in parallel)")
        result = builder.build(cfg, plan, workers=workers, force=force, verbose=verbose, ui_progress=progress)
        title = "edgekit build"
    if json_out:
        from edgekit.report import build_row

        ui.emit_json(document("build --check" if check_only else "build", result.ok, output=str(cfg.out),
                              seconds=result.seconds,
                              jobs=[{k: v for k, v in build_row(r).items() if k != "cells"} for r in result.rows]))
    ui.show(build_table(result, title, width=ui.results_console().width))
    ui.show_lines(problem_lines(result))
    ui.show_lines(length_lines(result))
    counts = {}
    for r in result.rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{v} {k}{' as expected' if k == 'refused' else ''}" for k, v in counts.items())
    if not check_only and set(counts) <= {"cached"}:
        ui.info(f"up to date: {summary} in {result.seconds:.2f} s (nothing changed; --force rebuilds)")
    else:
        ui.info(f"{summary} in {result.seconds:.1f} s · manifest: {cfg.out / 'manifest.json'}")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(summary_markdown(result, title))
    if not result.ok:
        bad = [r["id"] for r in result.rows if r["status"] == "failed"]
        hint = ("stale or altered artifacts: run 'edgekit build' and commit/publish the result" if check_only
                else "see the table above and the reports; failing artifacts are not published")
        raise CheckFailed(f"{len(bad)} of {len(result.rows)} jobs failed: {', '.join(bad)}.", hint=hint)


@cli.command("merge-reports", epilog=EXIT_CODE_HELP)
@click.argument("shards", nargs=-1, required=True, metavar="SHARD_DIR...")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Where to publish the merged folder.")
@common_output
def merge_reports(shards, out_dir, json_out, quiet, verbose):
    """Join the output folders of `edgekit build --shard I/N` runs into one folder with
    one manifest.json and one set of reports."""
    ui = _ui()
    ui.configure(json_mode=json_out, quiet=quiet)
    from edgekit import build as builder
    from edgekit.report import document

    manifest = builder.merge(Path(out_dir), [Path(s) for s in shards])
    if json_out:
        ui.emit_json(document("merge-reports", not manifest["failures"], output=out_dir,
                              artifacts=len(manifest["artifacts"]), failures=len(manifest["failures"])))
    ui.info(f"merged {len(shards)} shards: {len(manifest['artifacts'])} artifacts, "
            f"{len(manifest['failures'])} failures → {out_dir}")
    if manifest["failures"]:
        raise CheckFailed(f"{len(manifest['failures'])} jobs failed in the shards.")


# ----------------------------------------------------------------------------- arm
cli.add_command(arm.arm_group)
from edgekit.validators.device.cli import device_group  # noqa: E402 (light: click only)
cli.add_command(device_group)

from edgekit.validators.web.cli import web_group  # noqa: E402  (light: click + stdlib)

cli.add_command(web_group)


# ----------------------------------------------------------------------------- entry
_signals = {"terminated": 0}  # the signal that ended the run (SIGTERM, SIGHUP), 0 if none


def _on_terminate(signum, frame) -> None:
    """SIGTERM (and SIGHUP: the terminal went away) end the CLI the way Ctrl-C does: the
    KeyboardInterrupt unwinds through the same cleanup (stages killed, staging folders and
    stage logs removed), then exit 128 + the signal (143, 129). A second signal during that
    cleanup is ignored so that the cleanup completes."""
    if _signals["terminated"]:
        return
    _signals["terminated"] = signum
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors as one paragraph and their exit code, bugs with a traceback."""
    import signal

    signal.signal(signal.SIGTERM, _on_terminate)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # nohup (SIG_IGN) is respected
        signal.signal(signal.SIGHUP, _on_terminate)
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort
        if _signals["terminated"]:
            click.echo("terminated", err=True)
            sys.exit(128 + _signals["terminated"])
        click.echo("aborted" if isinstance(exc, click.exceptions.Abort) else "interrupted", err=True)
        sys.exit(130)
    except EdgekitError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except OSError as exc:
        from edgekit.fsutil import os_error

        err = os_error(exc, exc.filename or "an output file")
        if err is None:
            traceback.print_exc()
            click.echo("edgekit: internal error (a bug): please report it with the traceback above.", err=True)
            sys.exit(EXIT_INTERNAL)
        _print_error(err)
        sys.exit(err.exit_code)
    except Exception as exc:
        traceback.print_exc()
        click.echo("edgekit: internal error (a bug): please report it with the traceback above.", err=True)
        _json_error({"type": "InternalError", "message": f"{type(exc).__name__}: {exc}"[:2000],
                     "hint": "a bug in edgekit: please report it with the traceback on stderr", "details": None,
                     "exit_code": EXIT_INTERNAL})
        sys.exit(EXIT_INTERNAL)


def _json_error(error: dict) -> None:
    """Under --json every failure is still one JSON document on stdout."""
    from edgekit import ui

    if ui.json_mode():
        from edgekit.report import document

        ui.emit_json(document("error", False, error=error))


def _print_error(exc: EdgekitError) -> None:
    from edgekit import ui

    _json_error(exc.to_dict())
    from rich.markup import escape

    label = "check failed" if isinstance(exc, CheckFailed) else "error"
    ui.err.print(f"[bold red]{label}:[/] {escape(exc.message)}", soft_wrap=True)  # one line in CI logs
    if exc.hint:
        ui.err.print(f"  [cyan]what to do:[/] {escape(exc.hint)}", soft_wrap=True)
    if exc.details:
        ui.err.print("  [dim]details (last lines of the stage's output):[/]")
        for line in exc.details.splitlines()[-15:]:
            ui.err.out(f"    {line}", highlight=False)
