"""Every option a message suggests exists on the command that can print it (issue 19, item 8:
`inspect` told users to pass --input-shape, which it did not have).

Read from the source: every `--flag` in a string literal of edgekit's modules. Messages raised
while a model file is opened (the loading policy, the source options, the runners' load paths)
can be printed by every command that opens one, so their flags must exist on all of them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from edgekit.cli import cli

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
OPENS_A_MODEL = ("convert", "validate", "inspect", "bench")
# functions that run while a user's model file is opened, by module
LOAD_TIME = {
    "toolchain/loading.py": {"check_policy", "skops_trusted_types", "scan_keras_config", "open_model"},
    "toolchain/sources.py": {"source_options"},
    "toolchain/tensors.py": {"specs_from_shapes", "check_shapes_against", "parse_input_shape", "parse_input_shapes"},
    **{f"validators/runners/{p.name}": {"load", "_load_pickle", "_import_model_class", "apply_weights",
                                        "load_weights"}
       for p in (ROOT / "validators" / "runners").glob("*.py")},
}
# flags of other programs, quoted in messages
FOREIGN = {"--upgrade", "--no-deps", "--index-url", "--extra-index-url"}


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--")}


def _commands() -> dict[str, set[str]]:
    out = {}
    for name, cmd in cli.commands.items():
        out[name] = _options(cmd)
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            out[f"{name} {sub_name}"] = _options(sub)
    return out


ERRORS = {"EdgekitError", "BadInput", "UnsafeModel", "ConversionFailed", "CheckFailed", "EnvironmentProblem",
          "StageTimeout", "InternalError", "upstream"}


def _strings(node, constants: dict):
    """String literals in an expression, following names of module-level string constants."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value
        elif isinstance(sub, ast.Name) and sub.id in constants:
            yield from _strings(constants[sub.id], {})


def _flags_in(path: Path):
    """(function, flag, line) for every --flag in the message or hint of an error edgekit raises."""
    tree = ast.parse(path.read_text())
    constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for call in ast.walk(fn):
            name = getattr(getattr(call, "func", None), "id", None) or getattr(getattr(call, "func", None), "attr", None)
            if not isinstance(call, ast.Call) or name not in ERRORS:
                continue
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                for text in _strings(arg, constants):
                    for flag in FLAG.findall(text):
                        yield fn.name, flag, call.lineno


def _sources():
    for folder in ("toolchain", "converters", "validators"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_every_suggested_flag_exists_on_some_command():
    known = set().union(*_commands().values()) | {"--help", "--version"}
    missing = [f"{p.relative_to(ROOT)}:{line} ({fn}) suggests {flag}"
               for p in _sources() for fn, flag, line in _flags_in(p)
               if flag not in known and flag not in FOREIGN]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("command", OPENS_A_MODEL)
def test_messages_printed_when_a_model_opens_name_only_options_of_that_command(command):
    have = _commands()[command]
    missing = []
    for rel, functions in LOAD_TIME.items():
        for fn, flag, line in _flags_in(ROOT / rel):
            if fn in functions and flag not in have and flag not in FOREIGN:
                missing.append(f"{rel}:{line} ({fn}) suggests {flag}")
    assert not missing, f"`edgekit {command}` lacks options its messages suggest:\n" + "\n".join(missing)
