"""A target is one module (edgekit.targets.TARGET_MODULES): its declaration is read by the CLI,
doctor, detection, runners, inspect --security, the arm64 runner and build's cache key, so a
target's name and identifiers appear in its own module and in the list only."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from edgekit.targets import TARGET_MODULES, TARGETS

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("toolchain", "converters", "validators")
# the built-in targets are also source formats, read by other features on purpose (inspect and
# debug read .tflite/.onnx, the torch sources make TorchScript and ExecuTorch, keep-float edits
# ONNX and TFLite graphs), so their names appear elsewhere; every other target must be one module
SOURCE_FORMATS_TOO = {"tflite", "onnx", "torchscript", "executorch"}


def _module_file(module: str) -> Path:
    pkg, _, name = module.rpartition(".")
    folder = {"edgekit": "toolchain", "edgekit.converters": "converters"}[pkg]
    return ROOT / folder / f"{name}.py"


def mentions(path: Path, name: str) -> list[str]:
    """Lines where `name` is used as a target's identifier: in a string (`"ort"`, `".ort"`,
    `"--ort-style"`, `"onnxruntime_ort"`), as a code name (`ORT_STYLES`, `ort_op_counts`,
    `OrtFormatRunner`) or in an import of its module. Comments and a module's attribute access
    (`onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL`, another library's constant) are not."""
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")
    camel = re.compile(rf"^_?{re.escape(name.capitalize())}[A-Z_]")
    text = path.read_text()
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found, prev = [], None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and word.search(tok.string):
            found.append(f"{where}:{tok.start[0]}: {tok.string[:60]}")
        elif tok.type == tokenize.NAME and not (prev and prev.string == "."):
            if re.search(rf"(?i)(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", tok.string) or camel.match(tok.string):
                found.append(f"{where}:{tok.start[0]}: {tok.string}")
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            prev = tok
    for node in ast.walk(ast.parse(text)):
        mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found += [f"{where}:{node.lineno}: import {m}" for m in mods if word.search(m.split(".")[-1])
                  and m.startswith("edgekit.")]
    return found


def runtime_package(target) -> Path | None:
    """The package of a runtime that a target brings (tfjs: validators/web, the JS runtimes in
    Node.js and Chromium), which may name the formats it runs; None for a runtime in the
    target's module or one that Python packages provide."""
    module = target.runner.partition(":")[0].split(".")
    if len(module) >= 4 and module[:2] == ["edgekit", "validators"] and module[2] != "runners":
        return ROOT / "validators" / module[2]
    return None


ONE_MODULE = sorted(set(TARGETS) - SOURCE_FORMATS_TOO)


@pytest.mark.parametrize("name", ONE_MODULE)
def test_a_target_appears_in_its_own_module_only(name):
    own = _module_file(TARGETS[name].module)
    allowed = {own, ROOT / "toolchain" / "targets.py"}  # its module, and its line in TARGET_MODULES
    runtime = runtime_package(TARGETS[name])
    assert own.is_file()
    assert mentions(own, name), "the check must see the target in its own module"
    bad = [m for folder in FOLDERS for f in sorted((ROOT / folder).rglob("*.py"))
           if f not in allowed and not (runtime and f.is_relative_to(runtime)) for m in mentions(f, name)]
    assert not bad, f"target '{name}' leaks out of {own.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_the_check_sees_a_leak(tmp_path):
    leak = tmp_path / "leak.py"
    leak.write_text('import onnxruntime\nX = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL  # ort\n'
                    'if target == "ort":\n    pass\nfrom edgekit.converters.ort import ORT_STYLES\n'
                    'flag = "--ort-style"\nclass OrtFormatRunner: pass\n')
    found = mentions(leak, "ort")
    assert [f.split(":")[1] for f in found] == ["3", "5", "6", "7", "5"], found
    assert ONE_MODULE, "at least one target must be checked"


def test_every_target_module_declares_a_complete_target():
    assert len(TARGET_MODULES) == len(TARGETS)
    for t in TARGETS.values():
        assert t.module in TARGET_MODULES and _module_file(t.module).is_file()
        assert (t.extension.startswith(".") or t.folder_file) and t.format_description and t.framework and t.capability
        assert t.runner.count(":") == 1, f"{t.name}: runner is 'module:Class'"
        assert set(t.precisions) <= {"fp32", "fp16", "dynamic", "int8"}


def test_every_reader_knows_every_target():
    from edgekit.build import library_versions
    from edgekit.cli import cli
    from edgekit.doctor import PURPOSE
    from edgekit.formats import FORMATS
    from edgekit.loading import security_report  # noqa: F401 (its table is built at import)
    from edgekit.validators.runners import RUNNERS, runner_class

    convert = cli.commands["convert"]
    flags = {opt for p in convert.params for opt in p.opts}
    for t in TARGETS.values():
        assert FORMATS[t.format].runtime == t.runtime and t.extension in FORMATS[t.format].extensions
        assert RUNNERS[t.runtime] == t.runner
        assert runner_class(t.runtime).__name__ == t.runner.split(":")[1]
        assert all(o.flag in flags for o in t.options)
        assert all(line in PURPOSE[p] for p, line in t.doctor)
        assert set(t.packages) <= set(library_versions("core", t.name))
    assert f"{', '.join(TARGETS)}" in next(p for p in convert.params if p.name == "target").help


def test_a_targets_option_is_refused_on_other_targets(tmp_path):
    """The CLI's generic check of a declared option (--script is torchscript's)."""
    from conftest import assert_user_error, run_cli
    from tiny_onnx import matmul_onnx

    model = matmul_onnx(tmp_path / "m.onnx")
    res = run_cli("convert", model, "--target", "onnx", "--script", "-o", tmp_path / "x.onnx")
    assert_user_error(res, 2, "--script applies only to --target torchscript from PyTorch sources, not onnx")
