"""The CLI must stay light: no ML framework is imported by `import edgekit` or `--help`."""

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "keras", "onnxruntime", "executorch", "litert_torch", "ai_edge_litert",
         "sklearn", "skl2onnx", "tf2onnx", "onnx")

PROBE = """
import sys, importlib, runpy
{body}
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def _loaded(body: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY="):].split(",") if m]


def test_import_edgekit_loads_no_framework():
    assert _loaded("import edgekit, edgekit.cli, edgekit.errors, edgekit.formats") == []


def test_help_loads_no_framework():
    body = ("from edgekit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "for cmd in ('convert', 'validate', 'bench', 'inspect', 'doctor'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit as e:\n        assert e.code == 0, e.code\n")
    assert _loaded(body) == []


def test_registry_lookup_loads_no_framework():
    body = "from edgekit.converters.registry import paths\nassert paths()"
    assert _loaded(body) == []


def test_help_lists_commands_and_exit_codes(cli):
    res = cli("--help")
    assert res.code == 0
    for word in ("convert", "validate", "bench", "inspect", "doctor", "124", "Exit codes"):
        assert word in res.stdout
    res = cli("--version")
    assert res.code == 0 and "edgekit" in res.stdout


def test_python_dash_m_works(cli):
    assert cli("doctor").code == 0
