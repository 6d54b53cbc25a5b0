"""The stage child: what the parent gets back, and how the child ends.

The parent (CLI/build process) must not import a framework just to read a child's answer
(a framework's str subclass such as torch.__version__ in a result used to import torch
into the parent, ~2 s), and the child's fast exit must still run its cleanup."""

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
{body}
print("HEAVY=" + ",".join(sorted(m for m in ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "numpy") if m in sys.modules)))
"""


def _probe(body: str, cwd=None) -> list[str]:
    res = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, cwd=cwd,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY="):].split(",") if m]


@pytest.mark.torch
def test_framework_builtin_subclasses_come_back_as_builtins():
    body = ("from edgekit import isolation\n"
            "v = isolation.run('probe', 'torch.torch_version:TorchVersion', '1.2.3', timeout=600)\n"
            "assert type(v) is str and v == '1.2.3', (type(v), v)\n"
            "s = isolation.run('probe', 'torch:Size', [2, 3], timeout=600)\n"
            "assert type(s) is tuple and s == (2, 3), (type(s), s)\n")
    assert _probe(body) == []


TINY_PT2 = """
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
    def forward(self, x):
        return torch.relu(self.fc(x))
torch.manual_seed(0)
ep = torch.export.export(M().eval(), (torch.randn(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
torch.export.save(ep, "tiny.pt2")
"""


@pytest.mark.torch
def test_convert_keeps_frameworks_out_of_the_cli_process(tmp_path):
    subprocess.run([sys.executable, "-c", TINY_PT2], cwd=tmp_path, check=True, timeout=600)
    body = ("from edgekit.cli import main\n"
            "try:\n    main(['convert', 'tiny.pt2', '--target', 'onnx', '-o', 'tiny.onnx', '--json', '--quiet'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n")
    assert _probe(body, cwd=tmp_path) == []
    assert (tmp_path / "tiny.onnx").stat().st_size > 0
    assert (tmp_path / "tiny.onnx.report.json").exists()


SCRIPT = """
from edgekit.cli import main  # what the `edgekit` console script does
if __name__ == "__main__":
    from edgekit import isolation
    probe = "sorted(m for m in ('click', 'rich', 'edgekit.cli') if m in __import__('sys').modules)"
    print("CHILD=" + ",".join(isolation.run("probe", "builtins:eval", probe, timeout=120)))
"""


def test_child_does_not_rerun_the_cli_script(tmp_path):
    """spawn re-runs a main script in the child; the edgekit console script is skipped, so the
    child imports only what its stage needs (not click/rich/the CLI)."""
    script = tmp_path / "edgekit_script.py"
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("CHILD=")][-1]
    assert line == "CHILD=", line


def test_child_cleanup_still_runs_before_its_fast_exit(tmp_path):
    """atexit handlers registered in the child (weakref finalizers of temporary folders use
    the same hook) run even though the child skips the interpreter's teardown."""
    made = tmp_path / "made-at-exit"
    body = ("import os\nfrom edgekit import isolation\n"
            f"isolation.run('probe', 'atexit:register', os.mkdir, {str(made)!r}, timeout=120)\n")
    assert _probe(body) == []
    assert made.is_dir()



POOL_STAGE = """
import concurrent.futures
import time

KEEP = []


def stage():
    pool = concurrent.futures.ThreadPoolExecutor(2)  # kept alive, as a library's module-level pool is
    KEEP.append(pool)
    return pool.submit(sum, [1, 2]).result()
"""


def test_child_with_a_live_thread_pool_exits_at_once(tmp_path):
    """A stage that leaves a concurrent.futures pool alive must not keep its child waiting:
    the fast exit wakes such pools the way interpreter shutdown does. (Joining the pool's
    threads without waking them hung the child until the parent's 30 s kill.)"""
    (tmp_path / "pool_stage.py").write_text(POOL_STAGE)
    body = ("import time\nfrom edgekit import isolation\n"
            "t = time.monotonic()\n"
            "assert isolation.run('probe', 'pool_stage:stage', timeout=120) == 3\n"
            "assert time.monotonic() - t < 20, time.monotonic() - t\n")
    env_body = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n" + body
    assert _probe(env_body, cwd=tmp_path) == []
