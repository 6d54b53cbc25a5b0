"""progress(): one line about what a stage is doing, for the CLI to show. Every converter,
runner and validator may call it; it depends on nothing. Inside a stage's child process
edgekit.isolation connects it to the parent; anywhere else it does nothing."""

from __future__ import annotations

from collections.abc import Callable

_sink: Callable[[str], None] | None = None


def connect(sink: Callable[[str], None] | None) -> None:
    """Send progress messages to `sink` (edgekit.isolation does this in a stage's child)."""
    global _sink
    _sink = sink


def progress(message: str) -> None:
    """Report progress from inside a stage; shown by the parent (no-op outside a child)."""
    if _sink is not None:
        try:
            _sink(message)
        except (OSError, ValueError):  # the parent is gone: nothing to tell
            pass
