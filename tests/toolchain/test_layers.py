"""Imports point one way (ARCHITECTURE.md): core <- validators <- converters <- pipeline/build <- cli.
Every `import`/`from ... import` of an edgekit module, at the top or inside a function, is
read from the source; a module may import its own layer or a lower one, never a higher one,
and never another module's private (_underscore) name."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"toolchain": "edgekit", "converters": "edgekit.converters", "validators": "edgekit.validators"}

CORE, VALIDATORS, CONVERTERS, PIPELINE, CLI = range(5)
NAMES = ["core", "validators", "converters", "pipeline/build", "cli"]
# the layer of every module not under validators/ or converters/ (those default to their folder)
LAYERS = {
    "edgekit": CORE, "edgekit.errors": CORE, "edgekit.formats": CORE, "edgekit.tensors": CORE,
    "edgekit.targets": CORE, "edgekit.target_decl": CORE, "edgekit.fsutil": CORE, "edgekit.isolation": CORE,
    "edgekit.progress": CORE,
    "edgekit.scan": CORE, "edgekit.text": CORE,
    "edgekit.sources": CORE, "edgekit.config": CORE, "edgekit.ui": CORE, "edgekit.converters": CORE,
    "edgekit.loading": VALIDATORS, "edgekit.request": VALIDATORS,  # open_model picks a runner
    "edgekit.pipeline": PIPELINE, "edgekit.build": PIPELINE, "edgekit.report": PIPELINE, "edgekit.doctor": PIPELINE,
    "edgekit.validators.arm.stages": PIPELINE,  # the stage behind validate --arch arm64
    "edgekit.validators.device.stages": PIPELINE,  # the stages behind --device ssh://…
    "edgekit.validators.web.stages": PIPELINE,  # validate/bench --arch browser/node
    "edgekit.cli": CLI, "edgekit.__main__": CLI, "edgekit.stagerun": CLI, "edgekit.validators.arm.cli": CLI,
    "edgekit.validators.device.cli": CLI, "edgekit.validators.web.cli": CLI,
}


def modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in PACKAGES.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


def layer(name: str) -> int:
    if name in LAYERS:
        return LAYERS[name]
    if name.startswith("edgekit.converters."):
        return CONVERTERS
    if name.startswith("edgekit.validators"):
        return VALIDATORS
    raise AssertionError(f"{name}: give it a layer in tests/toolchain/test_layers.py and ARCHITECTURE.md")


def imports(path: Path, known: dict[str, Path]):
    """(imported module, name or None, line) for every edgekit import in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgekit":
            for a in node.names:
                full = f"{node.module}.{a.name}"
                yield (full, None, node.lineno) if full in known else (node.module, a.name, node.lineno)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "edgekit":
                    yield a.name, None, node.lineno


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_no_module_imports_a_higher_layer():
    known = modules()
    bad = []
    for name, path in known.items():
        for target, _, line in imports(path, known):
            if target in known and layer(target) > layer(name):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {name} ({NAMES[layer(name)]}) imports "
                           f"{target} ({NAMES[layer(target)]})")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_private_name():
    known = modules()
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {target}.{what}"
           for name, path in known.items() for target, what, line in imports(path, known)
           if what and what.startswith("_") and not what.startswith("__") and target != name]
    assert not bad, "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    """The rule itself can fail: a core module importing the CLI is flagged."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from edgekit.cli import run_stage\n")
    known = modules()
    (target, what, _), = list(imports(f, known))
    assert layer(target) > layer("edgekit.errors") and what == "run_stage"


def import_loops(known: dict[str, Path]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (at any level:
    a function-level import that only dodges a loop is still a loop)."""
    graph = {n: {t for t, _, _ in imports(p, known) if t in known and t != n} for n, p in known.items()}
    loops, seen = [], set()
    for start in graph:
        if start in seen:
            continue
        reach = {start}  # the modules reachable from start that reach start back
        stack = list(graph[start])
        down = set()
        while stack:
            m = stack.pop()
            if m not in down:
                down.add(m)
                stack.extend(graph[m])
        reach |= {m for m in down if _reaches(graph, m, start)}
        if len(reach) > 1:
            loops.append(sorted(reach))
            seen |= reach
    return loops


def _reaches(graph, a: str, b: str) -> bool:
    stack, seen = [a], set()
    while stack:
        m = stack.pop()
        if m == b:
            return True
        if m not in seen:
            seen.add(m)
            stack.extend(graph[m])
    return False


def test_no_import_loops():
    assert import_loops(modules()) == []


def test_import_loops_are_seen(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text("from edgekit.b import x\n")
    b.write_text("def f():\n    from edgekit.a import y\n")
    c.write_text("from edgekit import a\n")
    assert import_loops({"edgekit.a": a, "edgekit.b": b, "edgekit.c": c}) == [["edgekit.a", "edgekit.b"]]
