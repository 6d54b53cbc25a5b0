"""Atomic file-system operations: every output edgekit writes goes through here.

Files are written next to their destination, fsynced and renamed into place, so a reader
(or a killed run) sees the old file or the new one, never half of one. Folders of outputs
are swapped whole with renameat2(RENAME_EXCHANGE) where the kernel offers it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from edgekit.errors import BadInput, EdgekitError, EnvironmentProblem

# Errors of the machine, not of the command: the disk (or a quota, or RLIMIT_FSIZE) is full.
# They map to exit 4 (environment): the inputs are fine and the same command succeeds once
# there is room, like a missing extra that gets installed.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NO_SPACE_HINT = "free some disk space (or raise the quota/file-size limit) and run again"


def is_no_space(err: EdgekitError) -> bool:
    """The error `os_error` makes of a full disk (also when it comes back from a stage)."""
    return isinstance(err, EnvironmentProblem) and err.hint == NO_SPACE_HINT


def os_error(exc: OSError, what: str) -> EdgekitError | None:
    """The clean user error for an OSError that the user can act on (full disk, name too
    long, read-only file system), or None for one that is a bug. `what` names the file."""
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE_ERRNOS:
        return EnvironmentProblem(f"{what}: cannot write: {reason}. Nothing was published.",
                                  hint=NO_SPACE_HINT)
    if exc.errno == errno.ENAMETOOLONG:
        return BadInput(f"{what}: the file name is too long for the file system ({reason}).",
                        hint="choose a shorter output name")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return BadInput(f"{what}: {reason}.", hint="check the file's permissions, or choose another path")
    return None


def check_name_length(path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, a file name the file system cannot hold (ENAMETOOLONG),
    counting the longest name edgekit derives from it (e.g. <name>.report.json)."""
    folder = path.parent if path.parent.exists() else Path(".")
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(("",) + tuple(suffixes), key=len)
    size = len(os.fsencode(path.name + longest))
    if size > limit:
        shown = f"{path.name[:40]}…{path.name[-12:]}" if len(path.name) > 60 else path.name
        raise BadInput(f"{shown}: the output name{' with ' + longest if longest else ''} is {size} bytes long; "
                       f"this file system allows {limit} bytes per name.", hint="choose a shorter output name")


def check_output_path(out: Path, folder: bool = False) -> None:
    """Refuse outputs that could not be published atomically, before any work is done.
    `folder`: the artifact is a folder (an existing one is replaced, if it holds `folder`'s file)."""
    check_name_length(out, (".report.json",))
    parent = out.parent
    if out.is_symlink():
        raise BadInput(f"{out}: is a symbolic link; edgekit does not write through links.",
                       hint="remove the link or choose another -o path")
    if out.is_dir() and not (folder and (out / str(folder)).is_file()):
        raise BadInput(f"{out}: is a folder" + (f" without {folder} (not a previous artifact)." if folder else "."),
                       hint="give a new name for the folder" if folder else
                       "give a file name, e.g. -o build/model.tflite")
    if folder and out.exists() and not out.is_dir():
        raise BadInput(f"{out}: is a file; this target writes a folder.", hint="give a new name for the folder")
    if not parent.exists():
        raise BadInput(f"{parent}: the output folder does not exist.",
                       hint=f"create it (mkdir -p {parent}) or choose another -o")
    if not parent.is_dir():
        raise BadInput(f"{parent}: is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{parent}: the output folder is not writable.", hint="choose another -o path")
    report = out.with_name(out.name + ".report.json")
    if os.path.lexists(report) and not stat.S_ISREG(os.lstat(report).st_mode):
        raise BadInput(f"{report}: exists and is not a regular file (a folder or a link); edgekit writes the "
                       "artifact's report there.", hint="remove it or choose another -o path")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, out: Path) -> None:
    """fsync `staged`, then rename it over `out` (same file system); a folder artifact (TF.js:
    model.json + shards) replaces `out` in one step."""
    if staged.is_dir() and not staged.is_symlink():
        for f in staged.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        replace_dir(staged, out)
        return
    with open(staged, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(staged, out)
    fsync_dir(out.parent)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to a new temporary file beside `path` and rename it over `path`: a link
    at `path` is replaced, never written through."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        publish(Path(tmp), path)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file: name the one being written
            exc.filename = str(path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). Returns False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: the file system cannot do it
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def replace_dir(staged: Path, out: Path) -> None:
    """Put the folder `staged` at `out` in one step; the old `out` is removed afterwards."""
    fsync_dir(staged)
    if not out.exists():
        os.rename(staged, out)
    elif exchange(staged, out):
        shutil.rmtree(staged, ignore_errors=True)  # `staged` now holds the old tree
    else:  # fallback: a short window where `out` is missing, never a half-written one
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(staged, out)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(out.parent)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (or copy) the regular file `src` to `dst`; never through a symbolic link. A
    folder artifact (a TF.js model) is recreated at `dst` with its files linked the same way."""
    if src.is_dir() and not src.is_symlink():
        os.mkdir(dst)
        for f in sorted(src.iterdir()):
            link_or_copy(f, dst / f.name)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise
        shutil.copy2(src, dst, follow_symlinks=False)


def is_plain_file(path: Path) -> bool:
    """A regular file, not a link to one (lstat): what edgekit may reuse from a folder."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def open_lock_file(path: Path):
    """Open (create) a lock file for reading and writing without following a symbolic link
    at `path` and without truncating anything: a link or a non-regular file there is refused."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadInput(f"{path}: the lock file is a symbolic link; edgekit does not write through links.",
                           hint="remove the link (it is edgekit's lock file) or choose another output folder") from None
        err = os_error(exc, str(path))
        if err:
            raise err from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise BadInput(f"{path}: the lock file is not a plain file of its own (a device, FIFO or hard link).",
                       hint="remove it (it is edgekit's lock file) or choose another output folder")
    return os.fdopen(fd, "r+")
