"""edgekit.fsutil: atomic writes, folder swaps, name limits and OS errors as user errors."""

from __future__ import annotations

import errno
import os

import pytest

from edgekit.errors import BadInput, EnvironmentProblem
from edgekit.fsutil import (check_name_length, check_output_path, is_no_space, is_plain_file, link_or_copy, os_error,
                            replace_dir, write_text_atomic)


def test_write_text_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    write_text_atomic(link, "new")
    assert victim.read_text() == "keep"
    assert not link.is_symlink() and link.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "victim.txt"]  # no temp file left


def test_replace_dir_swaps_whole_folders(tmp_path):
    out, staged = tmp_path / "out", tmp_path / "staged"
    out.mkdir()
    (out / "old.onnx").write_text("old")
    staged.mkdir()
    (staged / "new.onnx").write_text("new")
    replace_dir(staged, out)
    assert [p.name for p in out.iterdir()] == ["new.onnx"] and not staged.exists()
    again = tmp_path / "again"
    again.mkdir()
    replace_dir(again, tmp_path / "fresh")  # no old folder: a plain rename
    assert (tmp_path / "fresh").is_dir()


def test_plain_files_links_and_copies(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x")
    link = tmp_path / "l.bin"
    link.symlink_to(f)
    assert is_plain_file(f) and not is_plain_file(link) and not is_plain_file(tmp_path / "missing")
    link_or_copy(f, tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == b"x" and os.stat(tmp_path / "b.bin").st_ino == os.stat(f).st_ino


def test_os_errors_the_user_can_act_on():
    full = os_error(OSError(errno.ENOSPC, "No space left on device"), "out/m.onnx")
    assert isinstance(full, EnvironmentProblem) and is_no_space(full) and "out/m.onnx" in full.message
    assert isinstance(os_error(OSError(errno.ENAMETOOLONG, "File name too long"), "x"), BadInput)
    assert isinstance(os_error(OSError(errno.EROFS, "Read-only file system"), "x"), BadInput)
    assert os_error(OSError(errno.EBADF, "Bad file descriptor"), "x") is None  # a bug, not the user's


def test_output_path_checks(tmp_path):
    with pytest.raises(BadInput, match="bytes per name"):
        check_name_length(tmp_path / ("m" * 250 + ".onnx"), (".report.json",))
    with pytest.raises(BadInput, match="does not exist"):
        check_output_path(tmp_path / "missing" / "m.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(BadInput, match="is a folder"):
        check_output_path(tmp_path / "dir.onnx")
    (tmp_path / "m.onnx.report.json").mkdir()
    with pytest.raises(BadInput, match="not a regular file"):
        check_output_path(tmp_path / "m.onnx")
    check_output_path(tmp_path / "ok.onnx")
