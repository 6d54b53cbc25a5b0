"""Terminal output: progress, tables and errors on stderr; stdout is for results only.

With --json the CLI prints one JSON document on stdout and nothing else there; tables and
progress go to stderr (and are suppressed by --quiet).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table

import os as _os

# C0 controls but tab and newline, DEL, C1 controls: ANSI escape sequences, bells, carriage
# returns, terminal title/hyperlink sequences. Never printed from text (file names, messages).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_control(text: str) -> str:
    """`text` with every control character replaced by U+FFFD (visible, inert)."""
    return _CONTROL.sub("\ufffd", text)


def plain(value) -> str:
    """A user-supplied string (a file name, a model's tensor name) for use inside markup:
    printed as it is, never read as rich markup."""
    return escape(str(value))


class _SafeConsole(Console):
    """A Console that never lets text reach the terminal as control sequences.

    Every line edgekit prints goes through `_render_buffer`, where text segments still hold
    the text as given and the styling is rich's own (separate control segments and styles):
    stripping control characters there covers every message, table cell and progress line in
    one place. Markup that does not parse (a file named 'a[/]b.onnx' printed without `plain`)
    is printed as text instead of raising."""

    def _render_buffer(self, buffer):
        return super()._render_buffer(seg if seg.control else Segment(strip_control(seg.text), seg.style)
                                      for seg in buffer)

    def render_str(self, text, *args, **kwargs):
        try:
            return super().render_str(text, *args, **kwargs)
        except MarkupError:
            return super().render_str(text, *args, **{**kwargs, "markup": False})


# Rich falls back to 80 columns when not on a terminal (CI logs, pipes), which folds
# every table; logs are read in wide windows, so use a wider default there.
_WIDTH = None if sys.stderr.isatty() or "COLUMNS" in _os.environ else 160
err = _SafeConsole(stderr=True, highlight=False, width=_WIDTH)
out = _SafeConsole(highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in _os.environ else 160)

_state = {"json": False, "quiet": False, "emitted": False}


def configure(*, json_mode: bool = False, quiet: bool = False) -> None:
    _state["json"] = json_mode
    _state["quiet"] = quiet


def json_mode() -> bool:
    return _state["json"]


def results_console() -> Console:
    """Where tables go: stdout normally, stderr when stdout is reserved for JSON."""
    return err if _state["json"] else out


def show(renderable) -> None:
    if _state["quiet"] and not _state["json"]:
        return
    if _state["json"] and _state["quiet"]:
        return
    console = results_console()
    needed = getattr(renderable, "needed_width", 0)  # a compact table is never cut (report.compact_table)
    if needed > console.width:  # print it wider than the terminal rather than cut or fold it
        width = console.width
        console.width = needed
        try:
            console.print(renderable, crop=False)
        finally:
            console.width = width
    else:  # a line of text stays one line (a CI log must not fold it); tables lay themselves out
        console.print(renderable, soft_wrap=isinstance(renderable, str))


def info(message: str) -> None:
    # soft wrap: a long progress line stays one line in a CI log (the terminal wraps it for display)
    if not _state["quiet"]:
        err.print(message, soft_wrap=True)


def show_lines(lines: list[str]) -> None:
    """Plain-text lines (no markup) beside the tables, each one line, never wrapped by Rich."""
    from rich.markup import escape

    if _state["quiet"]:
        return
    for line in lines:
        results_console().print(escape(line), soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}")


def emit_json(doc: dict) -> None:
    """Print THE JSON document of this command (at most one per run)."""
    if _state["emitted"]:
        return
    _state["emitted"] = True
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def stage(title: str):
    """A spinner with elapsed time while a (child-process) stage runs; yields on_progress."""
    if _state["quiet"] or not err.is_terminal:
        t0 = time.monotonic()
        last = {"msg": None}

        def line(msg: str) -> None:
            if not _state["quiet"] and msg != last["msg"]:
                err.print(f"  [dim]{title}: {plain(msg)}[/]", soft_wrap=True)  # one line in a CI log
                last["msg"] = msg

        yield line
        if not _state["quiet"]:
            err.print(f"  [dim]{title}: done in {time.monotonic() - t0:.1f} s[/]")
        return
    t0 = time.monotonic()
    with err.status(f"{title}…") as status:
        def update(msg: str) -> None:
            status.update(f"{title}: {plain(msg)} [dim]({time.monotonic() - t0:.0f} s)[/]")

        yield update
    err.print(f"  [green]✓[/] {title} [dim]({time.monotonic() - t0:.1f} s)[/]")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(title: str | None, columns: list[str], rows: list[list], **kwargs) -> Table:
    t = Table(title=title, title_justify="left", **kwargs)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[("-" if v is None else str(v)) for v in r])
    return t


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("[green]✓[/]" if ok else "[bold red]✗[/]")


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)
