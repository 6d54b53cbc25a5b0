"""The `edgekit web` command group (setup, status). Imports stay light (click, stdlib)."""

from __future__ import annotations

import time

import click


@click.group("web")
def web_group():
    """The browser and Node.js as runtimes: set up and inspect them.

    \b
    edgekit web setup    provision them (idempotent; Debian's chromium, pinned npm packages)
    edgekit web status   what is provisioned, versions and size
    """


@web_group.command("setup")
@click.option("--force", is_flag=True, help="Rebuild even when a complete runtime is cached.")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def setup_cmd(force, json_out):
    """Provision the web runtimes: Debian's chromium and Node.js (apt-get, as root), the pinned npm
    packages (onnxruntime-web, @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, playwright-core)
    and the TensorFlow.js converter.

    Cached in $EDGEKIT_WEB_HOME or $XDG_CACHE_HOME/edgekit/web (default ~/.cache/edgekit/web), one
    folder per recipe version. Run it again any time: it does nothing when the runtime is complete.
    Not root and something missing from the system: exit 4 with the command to run.
    """
    from edgekit import ui
    from edgekit.report import document
    from edgekit.validators.web.provision import setup

    ui.configure(json_mode=json_out)
    t0 = time.monotonic()

    def say(msg: str) -> None:
        ui.info(f"  [dim]web setup ({time.monotonic() - t0:4.0f} s):[/] {msg}")

    result = setup(say, force=force)
    if json_out:
        ui.emit_json(document("web setup", True, result=result))
    m = result["manifest"]
    if result["action"] == "none":
        ui.info(f"[green]web runtimes already provisioned[/] at {result['path']} — nothing to do "
                f"({result['seconds']:.1f} s)")
    else:
        done = (["installed " + " ".join(result["installed"])] if result["installed"] else []) + [
            ", ".join(f"{k} {v}" for k, v in m["npm"].items()), f"tensorflowjs {m['tensorflowjs']}",
            "self-test passed"]
        ui.info(f"[green]web runtimes provisioned[/] at {result['path']} in {result['seconds']:.1f} s: "
                f"{'; '.join(done)}; {ui.human_bytes(m['size_bytes'])}")


@web_group.command("status")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
def status_cmd(json_out):
    """Show what is provisioned for the browser and Node.js (exit 4 if incomplete)."""
    from edgekit import ui
    from edgekit.errors import EnvironmentProblem
    from edgekit.report import document
    from edgekit.validators.arm.provision import install_command
    from edgekit.validators.web.provision import status

    ui.configure(json_mode=json_out)
    s = status()
    if json_out:
        ui.emit_json(document("web status", s["complete"] and not s["missing_host_packages"], result=s))
    m = s["manifest"] or {}
    rows = [["runtime folder", s["path"]], ["recipe version", s["version"]],
            ["state", "complete" if s["complete"] else ("INCOMPLETE (not usable)" if s["present"] else "not set up")],
            ["size", ui.human_bytes(s["size_bytes"])], ["chromium", s["chromium"] or "not installed"],
            ["node", s["node"] or "not installed"]]
    if m:
        rows += [["npm packages", ", ".join(f"{k} {v}" for k, v in m["npm"].items())],
                 ["converter", f"tensorflowjs {m['tensorflowjs']} (no dependencies; uses edgekit's TensorFlow)"],
                 ["built", f"{m.get('created')} in {m.get('build_seconds')} s"]]
    if s["other_folders"]:
        rows.append(["other folders", ", ".join(s["other_folders"])])
    ui.show(ui.table("edgekit web status", ["", ""], rows, show_header=False))
    if s["missing_host_packages"]:
        raise EnvironmentProblem(f"missing host packages: {' '.join(s['missing_host_packages'])}.",
                                 hint=f"run edgekit web setup as root, or: "
                                      f"{install_command(s['missing_host_packages'])}")
    if not s["complete"]:
        raise EnvironmentProblem("the web runtimes are not provisioned.", hint="run: edgekit web setup")
