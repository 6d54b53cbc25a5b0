"""The `edgekit arm` command group and the ARM options shared by validate/bench/convert.

Kept here so `edgekit.cli` only adds a few lines. Imports stay light (click, stdlib):
the CLI process imports this module at start-up.
"""

from __future__ import annotations

import time

import click

from edgekit.stagerun import print_notes, run_stage
from edgekit.validators.arm import ARCHES as ARM_ARCHES
from edgekit.validators.arm import CPUS, DEFAULT_CPU, EMULATED_LABEL
from edgekit.validators.web import ARCHES as WEB_ARCHES

ARCHES = ARM_ARCHES + WEB_ARCHES  # host, arm64 (QEMU), browser (headless Chromium), node (Node.js)


def arch_options(f):
    """--arch (repeatable), --arm-cpu, and the instruction budgets (absolute, or against a baseline)."""
    f = click.option("--arm-baseline", metavar="FILE",
                     help="A previous 'bench/validate --arch arm64 --json' output: fail (exit 1) when an artifact "
                          "now executes more than --max-arm-increase percent more instructions per inference.")(f)
    f = click.option("--max-arm-increase", type=click.FloatRange(min=0), default=1.0, show_default=True,
                     metavar="PCT", help="Allowed rise in percent over --arm-baseline.")(f)
    f = click.option("--max-arm-instructions", type=click.IntRange(min=1), metavar="N",
                     help="Fail (exit 1) when an arm64 run executes more than N instructions per inference "
                          "(deterministic, counted under emulation).")(f)
    f = click.option("--arm-cpu", type=click.Choice(CPUS), default=DEFAULT_CPU, show_default=True,
                     help="Emulated ARM core for --arch arm64.")(f)
    f = click.option("--arch", "arches", type=click.Choice(ARCHES), multiple=True,
                     help="Where the artifact runs: host (default), arm64 (emulated with QEMU; needs "
                          "'edgekit arm setup'), browser (headless Chromium: ONNX Runtime Web / TF.js) or node "
                          "(the same in Node.js; both need 'edgekit web setup'). Repeatable.")(f)
    return f


def wants_arm(arches) -> bool:
    return "arm64" in (arches or ())


def fmt_count(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3f} {unit}"
    return f"{n:.0f}"


def _counts(results: list[dict]) -> dict[str, float | None]:
    """artifact file name -> instructions per inference, for the arm64 entries of a result list."""
    out = {}
    for r in results:
        if r.get("arch") == "arm64":
            out[str(r.get("artifact", "?")).rsplit("/", 1)[-1]] = (r.get("arm") or r).get("instructions_per_inference")
    return out


def read_baseline(path: str | None) -> dict[str, float]:
    import json

    from edgekit.errors import BadInput

    if not path:
        return {}
    try:
        doc = json.loads(open(path).read())
        results = doc.get("results") or ([doc["result"]] if isinstance(doc.get("result"), dict) else [])
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise BadInput(f"--arm-baseline {path}: not a readable edgekit JSON report ({exc}).",
                       hint="save one with: edgekit bench ARTIFACT --arch arm64 --json > baseline.json") from None
    counts = {k: v for k, v in _counts(results).items() if v}
    if not counts:
        raise BadInput(f"--arm-baseline {path}: holds no arm64 instruction counts.",
                       hint="save one with: edgekit bench ARTIFACT --arch arm64 --json > baseline.json")
    return counts


class Gate:
    """--max-arm-instructions / --arm-baseline, judged before the JSON document is printed
    (its "ok" must agree with the exit code) and enforced after the tables."""

    def __init__(self, results: list[dict], limit: int | None, baseline: str | None = None,
                 max_increase: float = 1.0):
        self.error = gate_error(results, limit, baseline, max_increase)
        self.ok = self.error is None

    def enforce(self) -> None:
        if self.error:
            raise self.error


def gate_error(results: list[dict], limit: int | None, baseline: str | None = None, max_increase: float = 1.0):
    """The CheckFailed naming every artifact over its instruction budget, or None."""
    from edgekit import ui
    from edgekit.errors import CheckFailed

    base = read_baseline(baseline)
    if not limit and not base:
        return None
    over, unknown = [], []
    for name, n in _counts(results).items():
        if n is None:
            unknown.append(name)
            continue
        if limit and n > limit:
            over.append(f"{name}: {fmt_count(n)} instructions/inference > {fmt_count(limit)}")
        if base and name not in base:
            ui.warn(f"--arm-baseline has no count for {name}; not compared")
        elif base and n > base[name] * (1 + max_increase / 100):
            over.append(f"{name}: {fmt_count(n)} instructions/inference, {(n / base[name] - 1) * 100:+.2f}% over "
                        f"the baseline {fmt_count(base[name])} (allowed +{max_increase:g}%)")
    if over:
        return CheckFailed("arm64 instruction budget exceeded: " + "; ".join(over) + ".",
                           hint="the count is deterministic: a rise means the model or runtime does more work")
    if unknown:
        return CheckFailed(f"instructions per inference could not be counted for {', '.join(unknown)}, so "
                           "the instruction budget cannot be checked.")
    return None


def arm_bench_table(results: list[dict], iterations: int, warmup: int):
    from edgekit import ui

    rows = [[r["artifact"].rsplit("/", 1)[-1], r["runtime"], r["cpu"], f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}",
             f"{r['min_ms']:.3f}", fmt_count(r.get("instructions_per_inference")),
             f"{r['first_inference_ms']:.1f}", f"{r['load_ms']:.0f}", ui.human_bytes(r["size_bytes"])]
            for r in results]
    return ui.table(f"latency on arm64 under QEMU ({EMULATED_LABEL}; batch 1, {iterations} iterations after "
                    f"{warmup} warm-up, 1 thread)",
                    ["artifact", "runtime", "cpu", "median ms", "p90", "min", "instr/inference", "first ms",
                     "load ms", "size"], rows)


def arm_summary(result: dict) -> str:
    arm = result.get("arm") or {}
    if result.get("error"):
        return f"arm64 ({arm.get('cpu')}): did not run"
    return (f"arm64 ({arm.get('cpu')}): instructions/inference {fmt_count(arm.get('instructions_per_inference'))}, "
            f"median {arm['median_ms']:.3f} ms ({EMULATED_LABEL})" if arm.get("median_ms") is not None else
            f"arm64 ({arm.get('cpu')}): ran under QEMU")


@click.group("arm")
def arm_group():
    """Emulated 64-bit ARM: set up and inspect the aarch64 runtime (QEMU).

    \b
    edgekit arm setup    provision it (idempotent; about a minute the first time)
    edgekit arm status   what is provisioned, versions and size
    """


@arm_group.command("setup")
@click.option("--force", is_flag=True, help="Rebuild even when a complete runtime is cached.")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def setup_cmd(force, json_out):
    """Provision the aarch64 runtime: qemu-user, an arm64 Python 3.11 sysroot, aarch64 wheels
    (numpy, onnxruntime, ai-edge-litert) and the instruction-counting plugin.

    Cached in $EDGEKIT_ARM_HOME or $XDG_CACHE_HOME/edgekit/arm (default ~/.cache/edgekit/arm),
    one folder per recipe version. Run it again any time: it does nothing when the runtime is
    complete. As root it installs qemu-user and gcc with apt-get; otherwise it prints the command.
    """
    from edgekit import ui
    from edgekit.report import document
    from edgekit.validators.arm.provision import setup

    ui.configure(json_mode=json_out)
    t0 = time.monotonic()

    def say(msg: str) -> None:
        ui.info(f"  [dim]arm setup ({time.monotonic() - t0:4.0f} s):[/] {msg}")

    result = setup(say, force=force)
    if json_out:
        ui.emit_json(document("arm setup", True, result=result))
    m = result["manifest"]
    if result["action"] == "none":
        ui.info(f"[green]arm64 runtime already provisioned[/] at {result['path']} — nothing to do "
                f"({result['seconds']:.1f} s)")
    else:
        done = (["installed " + " ".join(result["installed"])] if result["installed"] else []) + [
            f"{len(m['debs'])} arm64 packages", f"{len(m['wheels'])} wheels", "plugin compiled",
            "self-test passed"]
        ui.info(f"[green]arm64 runtime provisioned[/] at {result['path']} in {result['seconds']:.1f} s: "
                f"{', '.join(done)}; {ui.human_bytes(m['size_bytes'])}")
        if result.get("removed_old"):
            ui.info(f"  removed older runtime(s): {', '.join(result['removed_old'])}")


@arm_group.command("status")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def status_cmd(json_out):
    """Show what is provisioned for ARM emulation: where, versions, size (exit 4 if incomplete)."""
    from edgekit import ui
    from edgekit.errors import EnvironmentProblem
    from edgekit.report import document
    from edgekit.validators.arm.provision import install_command, status

    ui.configure(json_mode=json_out)
    s = status()
    if json_out:
        ui.emit_json(document("arm status", s["complete"] and not s["missing_host_packages"], result=s))
    m = s["manifest"] or {}
    p = m.get("probe", {})
    rows = [["runtime folder", s["path"]], ["recipe version", s["version"]],
            ["state", "complete" if s["complete"] else ("INCOMPLETE (not usable)" if s["present"] else "not set up")],
            ["size", ui.human_bytes(s["size_bytes"])], ["qemu", s["qemu"] or "not installed"],
            ["gcc", s["gcc"] or "not installed"]]
    if m:
        rows += [["guest", f"{p.get('machine')} Python {p.get('python')}"],
                 ["wheels", ", ".join(f"{k} {v}" for k, v in m["wheels"].items())],
                 ["debs", f"{len(m['debs'])} bookworm arm64 packages"],
                 ["plugin", f"libinsn.so (self-test loop: {p.get('probe_loop_instructions')} instructions)"],
                 ["built", f"{m.get('created')} in {m.get('build_seconds')} s"]]
    if s["other_folders"]:
        rows.append(["other folders", ", ".join(s["other_folders"])])
    ui.show(ui.table("edgekit arm status", ["", ""], rows, show_header=False))
    if s["missing_host_packages"]:
        raise (EnvironmentProblem(
            f"missing host packages: {' '.join(s['missing_host_packages'])}.",
            hint=f"run edgekit arm setup as root, or: {install_command(s['missing_host_packages'])}"))
    if not s["complete"]:
        raise (EnvironmentProblem("the arm64 runtime is not provisioned.", hint="run: edgekit arm setup"))


# ----------------------------------------------------------------------------- command bodies
def check_arch_args(arches, max_arm_instructions, arm_baseline=None) -> tuple:
    from edgekit.errors import BadInput

    arches = tuple(dict.fromkeys(arches or ("host",)))
    for flag, value in (("--max-arm-instructions", max_arm_instructions), ("--arm-baseline", arm_baseline)):
        if value and "arm64" not in arches:
            raise BadInput(f"{flag} needs --arch arm64 (instructions are counted under emulation).")
    read_baseline(arm_baseline)  # a bad baseline file is reported before any work
    return arches


def validate_arches(req, artifact, arches, arm_cpu, max_arm_instructions, *, precision, timeout, verbose, json_out,
                    arm_baseline=None, max_arm_increase=1.0) -> None:
    """`edgekit validate --arch ...`: one parity table per architecture, then the gate."""
    from pathlib import Path

    from edgekit import ui
    from edgekit.report import failure_line
    from edgekit.errors import CheckFailed
    from edgekit.report import document, parity_table

    source = req.source
    out = run_stage("validate", "edgekit.pipeline:validate_stage", req, str(artifact),
                     arches=arches, cpu=arm_cpu, precision=precision, timeout=timeout, verbose=verbose,
                     crash_exit_code=2,
                     title=f"validating {Path(artifact).name} against {Path(source).name} on {' + '.join(arches)}")
    results = out["results"]
    gate = Gate(results, max_arm_instructions, arm_baseline, max_arm_increase)
    ok = all(r["parity"]["passed"] for r in results) and gate.ok
    if json_out:
        ui.emit_json(document("validate", ok, results=results))
    for r in results:
        where = {"host": "host", "arm64": f"emulated {(r.get('arm') or {}).get('cpu')}"}.get(
            r["arch"], (r.get("web") or {}).get("engine") or r["arch"])
        ui.show(parity_table(r["parity"], f"parity: {Path(artifact).name} ({r['runtime']}, {where}) vs "
                                          f"{Path(source).name}"))
        if r["arch"] == "arm64":
            ui.info(arm_summary(r))
        elif r.get("web"):
            ui.info(web_summary_line(r))
    print_notes(list(dict.fromkeys(n for r in results for n in r["parity"]["notes"])))
    failed = [r for r in results if not r["parity"]["passed"]]
    if failed:
        raise (CheckFailed("; ".join(f"parity failed on {r['arch']}: {failure_line(r['parity'])}"
                                               for r in failed) + "."))
    gate.enforce()
    ui.info(f"[green]parity passed[/] on {', '.join(r['arch'] for r in results)}")


def web_summary_line(result: dict) -> str:
    w = result.get("web") or {}
    if w.get("median_ms") is None:
        return f"{result['arch']} ({result['runtime']}): ran in {w.get('engine')}"
    return (f"{result['arch']} ({result['runtime']}, {w.get('runtime_version')}): median {w['median_ms']:.3f} ms "
            f"in-page over {w['iterations']} runs, load {w.get('load_ms') or 0:.0f} ms ({w.get('latency_label')})")


def bench_web(artifacts, arches, *, iterations, warmup, inputs, trust, timeout, verbose) -> list[dict]:
    from pathlib import Path

    return [r for arch in arches if arch in WEB_ARCHES for a in artifacts
            for r in run_stage("bench", "edgekit.validators.web.stages:measure", str(a), arch=arch, trust=trust,
                               warmup=warmup, iterations=iterations, inputs=inputs, timeout=timeout,
                               verbose=verbose, title=f"benchmarking {Path(a).name} in {arch}", crash_exit_code=2)]


def web_bench_table(results: list[dict], iterations: int, warmup: int):
    from edgekit import ui

    rows = [[r["artifact"].rsplit("/", 1)[-1], r["arch"], r["runtime"], str(r.get("engine")), f"{r['median_ms']:.3f}",
             f"{r['p90_ms']:.3f}", f"{r['min_ms']:.3f}", f"{r['first_inference_ms'] or 0:.1f}",
             f"{r['load_ms'] or 0:.0f}", ui.human_bytes(r["size_bytes"])] for r in results]
    return ui.table(f"latency in the browser / Node.js (in-page performance.now(), batch 1, {iterations} iterations "
                    f"after {warmup} warm-up, 1 thread, this machine)",
                    ["artifact", "arch", "runtime", "engine", "median ms", "p90", "min", "first ms", "load ms",
                     "size"], rows)


def bench_arm(artifacts, arm_cpu, *, iterations, warmup, inputs, trust, timeout, verbose) -> list[dict]:
    from pathlib import Path


    return [run_stage("bench", "edgekit.validators.arm.stages:measure", str(a), cpu=arm_cpu, trust=trust,
                       warmup=warmup, iterations=iterations, inputs=inputs, timeout=timeout, verbose=verbose,
                       title=f"benchmarking {Path(a).name} on emulated arm64 ({arm_cpu})", crash_exit_code=2)
            for a in artifacts]


def convert_arm_check(req, staged, precision, *, arm_cpu, timeout, verbose) -> dict:
    """`convert --validate-arch arm64`: parity of the staged artifact on emulated arm64."""
    from pathlib import Path


    out = run_stage("validate", "edgekit.pipeline:validate_stage", req, str(staged),
                     arches=("arm64",), cpu=arm_cpu, precision=precision, timeout=timeout, verbose=verbose,
                     crash_exit_code=2, title=f"checking {Path(staged).name} on emulated arm64 ({arm_cpu})")
    return out["results"][0]


def convert_web_check(req, staged, precision, arches, *, timeout, verbose) -> list[dict]:
    """`convert --validate-arch browser/node`: parity of the staged artifact in each JS runtime."""
    from pathlib import Path


    web = tuple(a for a in arches if a in WEB_ARCHES)
    if not web:
        return []
    out = run_stage("validate", "edgekit.pipeline:validate_stage", req, str(staged), arches=web,
                    precision=precision, timeout=timeout, verbose=verbose, crash_exit_code=2,
                    title=f"checking {Path(staged).name} in {' + '.join(web)}")
    return out["results"]


def show_web_results(results: list[dict]) -> None:
    from edgekit import ui
    from edgekit.report import parity_table

    for r in results:
        ui.show(parity_table(r["parity"], f"parity ({r['arch']}: {r['runtime']}, {(r.get('web') or {}).get('engine')})"))
        ui.info(web_summary_line(r))


def show_result(result: dict | None) -> None:
    """The arm64 parity table and counts of one validation result (no-op for None)."""
    from edgekit import ui
    from edgekit.report import parity_table

    if result:
        ui.show(parity_table(result["parity"], f"parity (arm64, emulated {result['arm']['cpu']})"))
        ui.info(arm_summary(result))
