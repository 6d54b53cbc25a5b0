"""What every command (cli, validators/arm/cli) does with a stage: run it in a child
process behind a progress line, then print its notes. Imports stay light (the CLI's --help)."""

from __future__ import annotations


def run_stage(stage: str, target: str, *args, timeout: float, verbose: bool, title: str, **kwargs):
    from edgekit import isolation, ui

    with ui.stage(title) as on_progress:
        return isolation.run(stage, target, *args, timeout=timeout, on_progress=on_progress,
                             verbose=verbose, **kwargs)


def print_notes(notes: list[str]) -> None:
    from edgekit import ui
    from edgekit.pipeline import CALIBRATION_NOTE, RANDOM_WARNING

    for note in notes:
        if note in (RANDOM_WARNING, CALIBRATION_NOTE):
            ui.warn(note)
        else:
            ui.info(f"  note: {note}")
