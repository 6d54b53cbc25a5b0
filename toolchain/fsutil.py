"""Atomic file-system operations: every output edgekit writes goes through here.

Files are written next to their destination, fsynced and renamed into place, so a reader
(or a killed run) sees the old file or the new one, never half of one. Folders of outputs
are swapped whole with renameat2(RENAME_EXCHANGE) where the kernel offers it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path

from edgekit.errors import BadInput


def check_output_path(out: Path) -> None:
    """Refuse outputs that could not be published atomically, before any work is done."""
    parent = out.parent
    if out.is_symlink():
        raise BadInput(f"{out}: is a symbolic link; edgekit does not write through links.",
                       hint="remove the link or choose another -o path")
    if out.is_dir():
        raise BadInput(f"{out}: is a folder.", hint="give a file name, e.g. -o build/model.tflite")
    if not parent.exists():
        raise BadInput(f"{parent}: the output folder does not exist.",
                       hint=f"create it (mkdir -p {parent}) or choose another -o")
    if not parent.is_dir():
        raise BadInput(f"{parent}: is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{parent}: the output folder is not writable.", hint="choose another -o path")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, out: Path) -> None:
    """fsync `staged`, then rename it over `out` (same file system)."""
    with open(staged, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(staged, out)
    fsync_dir(out.parent)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        publish(Path(tmp), path)
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
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
