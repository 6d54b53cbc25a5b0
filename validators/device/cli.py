"""`edgekit device check`, and what `validate/bench/convert --device ssh://…` run and print.

The device's private folder is created here, in the CLI process, and removed in a `finally`:
on success, on failure, on Ctrl-C and SIGTERM (which the CLI turns into KeyboardInterrupt)
alike. The stage child that uses it may be killed; its ssh client dies with it, and the
remote side then stops the runner and removes the folder by itself (see ssh.RUN).
"""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.validators.device import DEVICE_LABEL


def validate_on_devices(req, artifact, devices, *, precision, timeout, verbose) -> list[dict]:
    from edgekit.stagerun import run_stage
    from edgekit.validators.device.ssh import device_folder

    results = []
    for dev in devices:
        with device_folder(dev) as folder:
            results.append(run_stage("validate", "edgekit.validators.device.stages:validate_stage", req,
                                     str(artifact), dev, folder, precision=precision, timeout=timeout,
                                     verbose=verbose, crash_exit_code=2,
                                     title=f"validating {Path(artifact).name} on {dev.name}"))
    return results


def bench_on_devices(artifacts, devices, *, iterations, warmup, threads, inputs, trust, timeout, verbose) -> list[dict]:
    from edgekit.stagerun import run_stage
    from edgekit.validators.device.ssh import device_folder

    results = []
    for dev in devices:
        for a in artifacts:
            with device_folder(dev) as folder:
                results.append(run_stage("bench", "edgekit.validators.device.stages:measure", str(a), dev, folder,
                                         trust=trust, warmup=warmup, iterations=iterations, inputs=inputs,
                                         threads=threads, timeout=timeout, verbose=verbose, crash_exit_code=2,
                                         title=f"benchmarking {Path(a).name} on {dev.name}"))
    return results


def device_line(result: dict) -> str:
    d = result.get("device") or {}
    timing = (f"median {d['median_ms']:.3f} ms, p90 {d['p90_ms']:.3f}, p99 {d['p99_ms']:.3f} "
              f"(batch {d.get('batch')}, {d.get('iterations')} runs after {d.get('warmup')} warm-up; {DEVICE_LABEL}), "
              f"load {d.get('load_ms', 0):.0f} ms, peak RSS {d.get('peak_rss_mb') or 0:.0f} MB"
              if d.get("median_ms") is not None else "not timed")
    return (f"{d.get('device')} ({d.get('machine')}, {d.get('cpu')}, {d.get('os')}, Python {d.get('python')}, "
            f"{result.get('runtime_version')}): {timing}")


def show_validation(results: list[dict], artifact, source) -> None:
    from edgekit import ui
    from edgekit.report import parity_table

    for r in results:
        ui.show(parity_table(r["parity"], f"parity: {Path(artifact).name} ({r['runtime']}, real device) vs "
                                          f"{Path(source).name}"))
        ui.info(f"  device: {device_line(r)}")


def failed_line(results: list[dict]) -> str | None:
    from edgekit.report import failure_line

    bad = [r for r in results if not r["parity"]["passed"]]
    return "; ".join(f"parity failed on {r['device']['device']}: {failure_line(r['parity'])}" for r in bad) or None


def bench_table(results: list[dict], iterations: int, warmup: int):
    from edgekit import ui

    rows = [[Path(r["artifact"]).name, r["device"].removeprefix("ssh://"), f"{r.get('machine')}",
             f"{r['device_runtime']} {r['runtime_version'].split(' ')[0]}", r.get("threads") or 1,
             f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['min_ms']:.3f}",
             f"{r['first_inference_ms']:.1f}", f"{r['load_ms']:.0f}", f"{r.get('peak_rss_mb') or 0:.0f}",
             r.get("os_threads") or "-"] for r in results]
    return ui.table(f"latency on the device ({DEVICE_LABEL}; batch 1, {iterations} iterations after {warmup} "
                    "warm-up)", ["artifact", "device", "arch", "runtime", "threads", "device median ms", "p90",
                                 "p99", "min", "first ms", "load ms (with import)", "peak RSS MB", "OS threads"], rows)


@click.group("device")
def device_group():
    """Real boards over SSH: what a device has, and what it needs for edgekit.

    \b
    edgekit device check ssh://[user@]host[:port]
    """


@device_group.command("check")
@click.argument("url", metavar="ssh://[USER@]HOST[:PORT]")
@click.option("--ssh-config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Another ssh config file (ssh -F FILE).")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def check_cmd(url, ssh_config, json_out):
    """Connect to a device: arch, CPU, memory, Python, runtimes and their versions; what is
    missing, with the exact pip line pinned to this host's versions (exit 4 when something is)."""
    from edgekit import ui
    from edgekit.errors import EnvironmentProblem
    from edgekit.report import document
    from edgekit.validators.device import parse_devices, ssh

    ui.configure(json_mode=json_out)
    (dev,) = parse_devices([url], ssh_config)
    info = ssh.probe_device(dev)
    lack = ssh.missing(info)
    pins = ssh.host_versions()
    result = {"device": dev.to_dict(), "info": info, "missing": lack,
              "pip_install": ssh.pip_line(dev, lack) if lack else None, "host_versions": pins}
    if json_out:
        ui.emit_json(document("device check", not lack, result=result))
    pk = info.get("packages") or {}
    rows = [["device", f"ssh://{dev.name}"], ["arch", info.get("machine")],
            ["CPU", f"{info.get('cpu')} ({info.get('cpu_count')} cores)"],
            ["memory", f"{info.get('memory_mb')} MB ({info.get('memory_available_mb')} MB available)"],
            ["OS", f"{info.get('os')} (kernel {info.get('kernel')})"],
            ["Python", f"{info.get('python')} at {info.get('python_path')}"],
            ["temp folder", f"{info.get('tmpdir')} ({info.get('tmp_free_mb')} MB free)"]]
    for dist in ("numpy", "ai-edge-litert", "onnxruntime", "executorch"):
        have = pk.get(dist)
        host = pins.get(dist)
        note = "" if not have or not host or have == host else f" (host has {host})"
        rows.append([dist, (have + note) if have else "[bold red]missing[/]" if dist in lack else "not installed"])
    ui.show(ui.table(f"edgekit device check: {dev.name}", ["", ""], rows, show_header=False))
    if lack:
        raise EnvironmentProblem(f"{dev.name} lacks {', '.join(lack)} for edgekit's device runner.",
                                 hint=f"on the device, run: {ssh.pip_line(dev, lack)}")
    ui.info(f"[green]{dev.name} can run .tflite (LiteRT) and .onnx (onnxruntime) artifacts[/]")
