"""The types of a target's declaration (edgekit.targets reads them from each target's module).

Kept apart from edgekit.targets, with no imports of edgekit, so that a target module can
import them while edgekit.targets imports that module to read its declaration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetOption:
    """A convert option a target adds to the CLI (e.g. `--script`): its value reaches the
    converter as `request.options[key]`; the CLI refuses it on paths that do not list `key`."""

    flag: str  # e.g. "--script"
    key: str  # e.g. "script": the click parameter and the converter's option name
    help: str
    choices: tuple[str, ...] = ()  # empty: a flag (is_flag) or free text
    is_flag: bool = False
    applies: str = ""  # for the refusal "FLAG applies only to ...": default "--target NAME"


@dataclass(frozen=True)
class Target:
    """A target's declaration: plain data, kept in the target's own module (TARGET_MODULES).

    Everything else reads it: the CLI's choices and options, `edgekit doctor`, format
    detection, the runners table, `inspect --security`, the arm64 runner, build's cache key
    and the README matrix test. A new fact about every target is one new field with a default.
    """

    name: str
    extension: str
    format: str  # name in edgekit.formats.FORMATS (the declaration adds its FormatSpec)
    runtime: str  # runner name in edgekit.validators.runners
    precisions: tuple[str, ...]  # what its converters may produce (checked by registry.register)
    description: str
    runner: str = ""  # "module:Class" of the runtime's runner ("" = the runtime is listed elsewhere)
    format_description: str = ""  # FormatSpec.description (what detection calls the file)
    framework: str = ""  # the format's framework family when the file is itself a source
    extensions: tuple[str, ...] = ()  # every extension of the format (default: (extension,))
    magic: bytes = b""  # regex of the flatbuffer file identifier (bytes 4..8), b"": detected elsewhere
    device_runtime: str | None = None  # what runs it on emulated arm64 (None: it cannot run there)
    no_device_runtime: str = ""  # why not, when that is the environment's limit (exit 4), not the file's
    capability: str = ""  # what the file can do when loaded (inspect --security)
    extra: str = "core"  # the pip extra its runtime comes with
    packages: tuple[str, ...] = ()  # whose versions go into a build's cache key for this target
    doctor: tuple[tuple[str, str], ...] = ()  # (package, purpose) lines of `edgekit doctor`
    options: tuple[TargetOption, ...] = ()  # convert options it adds to the CLI
    folder_file: str | None = None  # the artifact is a folder holding this file (tfjs: model.json)
    module: str = ""  # the declaring module (set by declared_targets)
