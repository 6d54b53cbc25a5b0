"""Run a stage (load, convert, validate, bench, inspect) in a child process.

Model files are programs and their parsers can crash, so the parent never loads one: it
starts a fresh interpreter (multiprocessing "spawn"), which runs one function with a
wall-clock timeout and a memory limit, sends back a result or an error, and may send
progress messages on the way. A child killed by a signal, running out of memory or out
of time becomes a clean `EdgekitError` naming the stage.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from edgekit.progress import connect, progress  # noqa: F401  (isolation.progress: the old home)
from edgekit.errors import (EdgekitError, InternalError, StageTimeout, ConversionFailed,
                            BadInput, EXIT_CONVERSION, from_dict)

def memory_limit_mb() -> int | None:
    """EDGEKIT_MEMORY_MB, else 80% of physical memory: a runaway stage is stopped before the
    kernel's OOM killer picks a victim (perhaps the CLI, or another build job)."""
    env = os.environ.get("EDGEKIT_MEMORY_MB")
    if env is not None and env.strip():
        try:
            value = int(env.strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise BadInput(f"EDGEKIT_MEMORY_MB={env[:40]!r}: expected a whole number of megabytes greater than 0.",
                           hint="e.g. EDGEKIT_MEMORY_MB=4096, or unset it for 80% of physical memory")
        return value
    try:
        with open("/proc/meminfo") as fh:
            total_kb = int(fh.readline().split()[1])
        return int(total_kb / 1024 * 0.8)
    except (OSError, ValueError, IndexError):
        return None


_DEFAULT = object()  # memory_mb not given: read EDGEKIT_MEMORY_MB when the stage starts

_conn = None  # the child's end of the pipe, set only inside a child
_active: set = set()  # live child processes of this (parent) process
_active_lock = threading.Lock()
_main_lock = threading.Lock()


def kill_all() -> None:
    """Stop every running stage (used when a build is interrupted)."""
    with _active_lock:
        procs = list(_active)
    for proc in procs:
        _kill(proc)


# Modules whose objects the parent may unpickle as they are: the standard library it has
# already imported, numpy and edgekit's own plain types. Anything else in a result (a
# framework's str subclass such as torch.__version__, a torch.Size) is sent as its builtin
# base type, so the parent never imports a framework just to read a child's answer.
_PARENT_SAFE_MODULES = ("builtins", "collections", "pathlib", "numpy", "edgekit")


class _PlainPickler(ForkingPickler):
    def reducer_override(self, obj):
        root = type(obj).__module__.partition(".")[0]
        if root in _PARENT_SAFE_MODULES:
            return NotImplemented
        for base in (str, bytes, int, float, complex, tuple, list, dict):
            if isinstance(obj, base):
                return base, (base(obj),)
        return NotImplemented


def _send(conn, message) -> None:
    """conn.send, with framework-defined builtin subclasses reduced to their base types."""
    conn.send_bytes(_PlainPickler.dumps(message))


def quiet_frameworks() -> None:
    """Environment that keeps TensorFlow/absl/XLA from flooding the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # never weaken torch.load
    os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this child die (SIGKILL) when its parent does, so that a stage never outlives the
    CLI and its limits (the CLI may itself be SIGKILLed, and then it kills nobody). If the
    parent died before this call, the signal will never come: exit now."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent-pid check below still runs
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_main(conn, target: str, args: tuple, kwargs: dict, log_path: str | None,
                parent_pid: int | None = None) -> None:
    global _conn
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _conn = conn
    connect(lambda message: _send(conn, ("progress", message)))
    quiet_frameworks()
    if log_path:
        # Framework chatter (C++ logs, converter prints) goes to a log the parent can show
        # on failure; stdout must stay clean for --json.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    else:
        os.dup2(2, 1)
    try:
        module, _, name = target.partition(":")
        fn = getattr(importlib.import_module(module), name)
        result = fn(*args, **kwargs)
        _send(conn, ("ok", result))
    except EdgekitError as exc:
        _send(conn, ("error", exc.to_dict()))
    except OSError as exc:  # a full disk or a too-long name is the user's to fix, not a bug
        from edgekit.fsutil import os_error

        err = os_error(exc, exc.filename or "a file the stage writes")
        _send(conn, ("error", err.to_dict()) if err else ("bug", traceback.format_exc()))
    except MemoryError:
        _send(conn, ("error", BadInput("ran out of memory (the memory limit was reached).",
                                       hint="raise the limit with EDGEKIT_MEMORY_MB or use a smaller input").to_dict()))
    except BaseException:  # a bug: carry the traceback to the parent
        _send(conn, ("bug", traceback.format_exc()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()
    _exit_now()


def _exit_now() -> None:
    """End the child once its answer is sent, without the interpreter's teardown.

    Tearing down a process that imported torch/TensorFlow (freeing every module, running
    their C++ static destructors) takes a second or more, and the parent would wait for
    it. The cleanup that matters still runs: other non-daemon threads are joined, atexit
    handlers run (weakref finalizers: temporary folders; multiprocessing: its own
    children), and C stdio buffers are flushed so the stage's log stays complete."""
    import atexit
    import ctypes

    # what the interpreter's own shutdown does first: wake the pools that registered a
    # threading exit hook (concurrent.futures workers wait on their queue until told), then
    # join the non-daemon threads; a plain join loop would wait forever on such a worker
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    os._exit(0)


@contextlib.contextmanager
def _without_main_script():
    """Start a child without re-running the parent's main *script* in it.

    spawn re-executes a main script (by path) in every child so that objects pickled by
    reference to __main__ resolve; for the `edgekit` console script that imports the whole
    CLI (click, rich, every command) into the child for nothing: the child's target is
    this module's `_child_main` and its arguments are plain data. Only edgekit's own
    console script is skipped (another script may pass objects defined in it); modules run
    with -m (`python -m edgekit`) are already skipped by multiprocessing itself."""
    main = sys.modules.get("__main__")
    cli = sys.modules.get("edgekit.cli")
    if main is None or cli is None or getattr(main, "__spec__", None) is not None \
            or not hasattr(main, "__file__") or getattr(main, "main", None) is not getattr(cli, "main", None):
        yield
        return
    with _main_lock:
        path = main.__file__
        del main.__file__
        try:
            yield
        finally:
            main.__file__ = path


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _log_tail(log_path: str | None, lines: int = 25) -> str | None:
    if not log_path or not os.path.exists(log_path):
        return None
    with open(log_path, errors="replace") as fh:
        text = fh.read().splitlines()
    keep = [ln for ln in text if ln.strip()][-lines:]
    return "\n".join(keep) or None


def run(stage: str, target: str, *args, timeout: float | None = None,
        memory_mb: int | None = _DEFAULT, on_progress: Callable[[str], None] | None = None,
        crash_exit_code: int = EXIT_CONVERSION, verbose: bool = False, **kwargs):
    """Run `module:function(*args, **kwargs)` in a child process and return its result.

    stage: a name for messages ("convert", "validate", ...).
    timeout: seconds of wall clock; past it the child is killed and StageTimeout raised.
    memory_mb: resident-memory limit; past it the child is killed.
    crash_exit_code: the exit code a crash (death by signal) maps to.
    """
    if memory_mb is _DEFAULT:
        memory_mb = memory_limit_mb()
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    log_dir = tempfile.mkdtemp(prefix="edgekit-log-")
    log_path = None if verbose else os.path.join(log_dir, f"{stage}.log")
    proc = ctx.Process(target=_child_main, args=(child_conn, target, args, kwargs, log_path, os.getpid()),
                       name=f"edgekit-{stage}", daemon=True)
    start = time.monotonic()
    peak = 0.0
    try:
        with _without_main_script():
            proc.start()
        with _active_lock:
            _active.add(proc)
        child_conn.close()
        message = None
        while True:
            if parent_conn.poll(0.1):
                try:
                    kind, payload = parent_conn.recv()
                except EOFError:
                    break
                if kind == "progress":
                    if on_progress:
                        on_progress(payload)
                    continue
                message = (kind, payload)
                break
            if not proc.is_alive():
                # drain anything sent just before exit
                if parent_conn.poll(0):
                    continue
                break
            if timeout and time.monotonic() - start > timeout:
                _kill(proc)
                raise StageTimeout(f"the {stage} stage ran past its time limit of {timeout:g} s and was stopped.",
                                   hint="raise it with --timeout if the model is simply large",
                                   details=_log_tail(log_path))
            if memory_mb:
                peak = max(peak, _rss_mb(proc.pid))
                if peak > memory_mb:
                    _kill(proc)
                    raise BadInput(f"the {stage} stage used more than {memory_mb} MB of memory and was stopped.",
                                   hint="raise the limit with EDGEKIT_MEMORY_MB, or check the model's declared sizes",
                                   details=_log_tail(log_path))
        proc.join(timeout=30)
        if message is None:
            code = proc.exitcode
            if code is not None and code < 0:
                signame = signal.Signals(-code).name
                err = BadInput if crash_exit_code == 2 else ConversionFailed
                raise err(f"the {stage} stage crashed ({signame}) — the runtime or converter died while "
                          f"processing the file.",
                          hint="the file may be corrupt or hit a bug in the library; run with --verbose to see its output",
                          details=_log_tail(log_path))
            raise InternalError(f"the {stage} stage exited (code {code}) without a result.",
                                details=_log_tail(log_path))
        kind, payload = message
        if kind == "ok":
            return payload
        if kind == "error":
            err = from_dict(payload)
            if err.details is None and isinstance(err, ConversionFailed):
                err.details = _log_tail(log_path)
            raise err
        raise InternalError(f"bug in the {stage} stage:\n{payload}", details=_log_tail(log_path))
    except KeyboardInterrupt:  # also SIGTERM: cli.main turns it into a KeyboardInterrupt
        _kill(proc)
        raise
    finally:
        if proc.is_alive():
            _kill(proc)
        with _active_lock:
            _active.discard(proc)
        parent_conn.close()
        for f in Path(log_dir).glob("*"):
            f.unlink(missing_ok=True)
        os.rmdir(log_dir)


def _kill(proc) -> None:
    try:
        proc.kill()
    except (OSError, AttributeError):
        pass
    proc.join(timeout=10)
