"""Real boards over SSH: `--device ssh://[user@]host[:port][?python=PATH&tmpdir=DIR]`.

- `Device` (here): the parsed address, plus the ssh config file (`--ssh-config`, `ssh -F`).
- `ssh`: the system OpenSSH client (BatchMode, the user's known_hosts, never auto-accepting a
  key), a private folder on the device (created and removed by the CLI process, so Ctrl-C
  removes it too), copies checked by SHA-256, the device probe and the pip line for it.
- `runner.DeviceRunner`: the `Runner` whose inference is `validators/arm/device_runner.py`
  run on the device with the device's own Python and runtime.
- `stages`: the child-process stages behind `validate/bench/convert --device`.
- `cli`: `edgekit device check`, and the CLI's --device tables.

What crosses the network: the device runner (from edgekit's package), the artifact and the
inputs (.npz) to the device; the outputs (.npz) and a JSON report back. Nothing else.
Importing this package is cheap (stdlib only): the CLI imports it to declare options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DEVICE_LABEL = "measured on the device"
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$|^\[[0-9A-Fa-f:.]+\]$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
QUERY_KEYS = ("python", "tmpdir")


@dataclass(frozen=True)
class Device:
    """An SSH device as plain data (pickled to stage children)."""

    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    tmpdir: str | None = None  # where the private folder is created (default: the device's $TMPDIR or /tmp)
    ssh_config: str | None = None

    @property
    def name(self) -> str:
        """user@host:port as given (for messages and reports; no credentials are ever part of it)."""
        return f"{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    def to_dict(self) -> dict:
        return {"device": f"ssh://{self.name}", "python": self.python, "tmpdir": self.tmpdir,
                "ssh_config": self.ssh_config}


def parse_device(url: str, *, ssh_config: str | None = None, python: str | None = None,
                 tmpdir: str | None = None) -> Device:
    """`ssh://[user@]host[:port][?python=PATH&tmpdir=DIR]` -> Device, or BadInput (exit 2)."""
    from edgekit.errors import BadInput

    hint = "e.g. --device ssh://pi@raspberrypi.local or ssh://board:2222?python=/opt/venv/bin/python"
    parts = urlsplit(url or "")
    if parts.scheme != "ssh" or not parts.hostname:
        raise BadInput(f"--device {url!r}: not an ssh:// address.", hint=hint)
    if parts.password is not None:
        raise BadInput(f"--device ssh://…: a password in the address is refused (it would end up in shell history "
                       "and logs).", hint="use an SSH key (ssh-copy-id) and your ssh config; edgekit never "
                                          "asks for passwords")
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    user = unquote(parts.username) if parts.username else None
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"--device {url!r}: the port is not a number in 1-65535.", hint=hint) from None
    if not _HOST.match(host) or (user is not None and not _USER.match(user)) or parts.path not in ("", "/"):
        raise BadInput(f"--device {url!r}: not a host name, [user@]host[:port] with letters, digits, '.', '-'.",
                       hint=hint)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise BadInput(f"--device {url!r}: unknown option(s) {', '.join(unknown)}.",
                       hint=f"options: {', '.join(QUERY_KEYS)}")
    python = python or (query.get("python") or [None])[-1] or "python3"
    tmpdir = tmpdir or (query.get("tmpdir") or [None])[-1]
    for key, value in (("python", python), ("tmpdir", tmpdir)):
        if value is not None and (not value or "\n" in value or "\0" in value):
            raise BadInput(f"--device {url!r}: {key}= is empty or has a line break.", hint=hint)
    return Device(host=host, user=user, port=port, python=python, tmpdir=tmpdir, ssh_config=ssh_config)


def device_options(f):
    """--device URL (repeatable) and --ssh-config FILE."""
    import click

    f = click.option("--ssh-config", metavar="FILE", type=click.Path(dir_okay=False),
                     help="Another ssh config file for --device (ssh -F FILE), e.g. in CI.")(f)
    f = click.option("--device", "devices", multiple=True, metavar="ssh://[USER@]HOST[:PORT]",
                     help="Also run on a real board over SSH (your ssh config, keys and known_hosts; BatchMode). "
                          "Options: ?python=PATH (the device's Python, e.g. a venv), &tmpdir=DIR. Repeatable.")(f)
    return f


def parse_devices(urls, ssh_config: str | None) -> tuple[Device, ...]:
    from pathlib import Path

    from edgekit.errors import BadInput

    if ssh_config and not Path(ssh_config).is_file():
        raise BadInput(f"--ssh-config {ssh_config}: no such file.")
    if ssh_config and not urls:
        raise BadInput("--ssh-config applies to --device ssh://… only.")
    cfg = str(Path(ssh_config).resolve()) if ssh_config else None
    return tuple(parse_device(u, ssh_config=cfg) for u in dict.fromkeys(urls or ()))
