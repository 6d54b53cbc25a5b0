"""The one user-facing error family and the exit codes it maps to.

An `EdgekitError` is something the user can fix (bad input, a failed check, a missing
extra); the CLI prints it as one paragraph with a hint and no traceback. Any other
exception is a bug in edgekit and keeps its traceback (exit 5).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_CONVERSION = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERNAL = 5
EXIT_TIMEOUT = 124

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "a check failed (parity, latency budget, accuracy budget)",
    EXIT_USAGE: "usage error or bad input (unreadable, unsafe, wrong shape, unknown format)",
    EXIT_CONVERSION: "conversion failed (unsupported op, converter error)",
    EXIT_ENVIRONMENT: "environment: a missing extra, QEMU or the ARM sysroot, a full disk",
    EXIT_INTERNAL: "internal error (a bug in edgekit; please report it)",
    EXIT_TIMEOUT: "a stage exceeded its time limit",
    130: "interrupted (Ctrl-C); 143: terminated (SIGTERM); 129: hung up (SIGHUP): stages stopped, temporary files removed",
}


class EdgekitError(Exception):
    """Base of every error the user can act on. `hint` says what to do next."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
            "exit_code": self.exit_code,
        }

    def __reduce__(self):  # keeps subclasses picklable across processes
        return (type(self), (self.message, self.hint, self.details))


class CheckFailed(EdgekitError):
    """A parity, accuracy or latency check did not pass."""

    exit_code = EXIT_CHECK_FAILED


class BadInput(EdgekitError):
    """Usage error or bad input: unreadable, unsafe, wrong shape, unknown format."""

    exit_code = EXIT_USAGE


class UnsafeModel(BadInput):
    """The file could run code when loaded and the user did not say it is trusted."""


class ConversionFailed(EdgekitError):
    """The converter could not produce an artifact (unsupported op, converter error)."""

    exit_code = EXIT_CONVERSION


class EnvironmentProblem(EdgekitError):
    """Something edgekit needs is not installed: an extra, QEMU, the ARM sysroot."""

    exit_code = EXIT_ENVIRONMENT


class StageTimeout(EdgekitError):
    """A stage ran past its wall-clock limit and was stopped."""

    exit_code = EXIT_TIMEOUT


class InternalError(EdgekitError):
    """A bug, usually raised in a child process and carried to the parent."""

    exit_code = EXIT_INTERNAL


_BY_NAME = {cls.__name__: cls for cls in (
    EdgekitError, CheckFailed, BadInput, UnsafeModel, ConversionFailed,
    EnvironmentProblem, StageTimeout, InternalError)}


def from_dict(data: dict) -> EdgekitError:
    """Rebuild an error sent from a child process."""
    cls = _BY_NAME.get(data.get("type", ""), EdgekitError)
    return cls(data["message"], data.get("hint"), data.get("details"))


def missing_extra(module: str, extra: str) -> EnvironmentProblem:
    """The error for an optional framework that is not installed."""
    return EnvironmentProblem(
        f"'{module}' is not installed, and this step needs it.",
        hint=f"install the extra: pip install 'edgekit[{extra}]'  (or run 'edgekit doctor' to see what is missing)",
    )


def require(module: str, extra: str):
    """Import an optional heavy module, or raise the environment error naming its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module is there but broken: a real bug, keep the traceback
        raise missing_extra(module, extra) from None


class upstream:
    """Context manager (and decorator) around one call into a converter library: an exception
    raised *by the library* becomes ConversionFailed (exit 3) naming the library and the step,
    e.g. "onnxruntime quantize_static: ValueError: ...". This is the one rule for every converter.

    An EdgekitError passes unchanged. An exception raised by edgekit's own code (in the block, or
    in a callback edgekit handed to the library, such as a calibration reader) is a bug in edgekit
    and passes unchanged too (exit 5, with its traceback); see _raised_by_library.
    `packages` are the top-level modules that count as the library (default: `library` with
    '-' as '_'); `error(exc)` may build the ConversionFailed in a converter's own words.
    """

    def __init__(self, library: str, step: str, *, packages: tuple[str, ...] | None = None,
                 hint: str | None = None, error=None):
        self.library = library
        self.step = step
        self.packages = tuple(packages or (library.replace("-", "_"),))
        self.hint = hint
        self.error = error  # optional exc -> EdgekitError, for a converter's own wording (naming operators)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, (EdgekitError, KeyboardInterrupt, SystemExit, MemoryError)):
            return False
        if not isinstance(exc, Exception) or not self._raised_by_library(tb):
            return False
        if self.error is not None:
            raise self.error(exc) from None
        head = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ConversionFailed(
            f"{self.library} {self.step}: {type(exc).__name__}" + (f": {head}" if head else ""),
            hint=self.hint or f"the converter library ({self.library}) failed on this model; try another "
                              "--quantize/--target, or report it upstream with the model",
            details=_traceback_text(exc)) from None

    def __call__(self, func):
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with upstream(self.library, self.step, packages=self.packages, hint=self.hint, error=self.error):
                return func(*args, **kwargs)

        return wrapper

    def _raised_by_library(self, tb) -> bool:
        """Who raised it: the innermost frame that is not the standard library or numpy (helpers
        anyone calls). edgekit's own code -> a bug; the library, or code it ran (the user's model,
        a library it uses) -> upstream."""
        import sys

        frames = []
        tb = tb.tb_next if tb is not None else None  # skip the frame holding the `with`
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):
            root = (frame.f_globals.get("__name__") or "").split(".")[0]
            if root in self.packages:
                return True
            if root == "edgekit":
                return False
            if root in sys.stdlib_module_names or root in ("numpy", "__main__", ""):
                continue
            return True
        return False


def _traceback_text(exc: BaseException) -> str:
    """Where in the library it failed: the innermost frames and the exception, for `details`."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = [f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames]
    return "\n".join(where + traceback.format_exception_only(type(exc), exc))[-2000:]
