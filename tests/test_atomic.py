"""Tests for atomic.py: the one place the project writes files (temp file, fsync, os.replace)."""
import ast
import errno
import os
import stat
from pathlib import Path

import pytest

from lstm_from_scratch import atomic
from lstm_from_scratch.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def files_in(folder):
    return sorted(entry.name for entry in Path(folder).iterdir())


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def test_bytes_text_and_callable_write_exactly_what_they_are_given(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\xffMThd")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\xffMThd"
    # Text is UTF-8 with no newline translation: "\r\n" and "\n" stay as they are on every system.
    atomic_write_text(tmp_path / "b.txt", "épée\r\nline two\n")
    assert (tmp_path / "b.txt").read_bytes() == "épée\r\nline two\n".encode("utf-8")
    atomic_write(tmp_path / "c.bin", lambda file: (file.write(b"one "), file.write(b"two")))
    assert (tmp_path / "c.bin").read_bytes() == b"one two"
    atomic_write(str(tmp_path / "d.txt"), lambda file: file.write("ü\n"), mode="w")  # str paths too
    assert (tmp_path / "d.txt").read_bytes() == "ü\n".encode("utf-8")
    assert files_in(tmp_path) == ["a.bin", "b.txt", "c.bin", "d.txt"]  # no temporary file left


def test_overwrite_replaces_the_whole_file(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "a long first version\n")
    atomic_write_text(path, "short\n")
    assert path.read_text() == "short\n"


def test_the_temporary_file_is_a_hidden_sibling_of_the_target(tmp_path):
    # Same folder, so os.replace stays within one file system and is a true atomic rename.
    seen = []
    atomic_write(tmp_path / "piece.mid", lambda file: seen.append(files_in(tmp_path)))
    (name,) = seen[0]
    assert name.startswith(".piece.mid.") and name.endswith(".tmp")


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_permissions_follow_the_umask_not_0600(tmp_path, umask, mask):
    umask(mask)
    for name, write in [("a.bin", lambda path: atomic_write_bytes(path, b"x")),
                        ("b.txt", lambda path: atomic_write_text(path, "x"))]:
        write(tmp_path / name)
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("old")

    def write_then_fail(file):
        file.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/.vocab.json.1.ab.tmp")

    with pytest.raises(OSError) as caught:
        atomic_write(path, write_then_fail)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path) and ".tmp" not in str(caught.value)
    assert path.read_text() == "old"
    assert files_in(tmp_path) == ["vocab.json"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, ValueError])
def test_other_exceptions_pass_unchanged_and_clean_up(tmp_path, interrupt):
    path = tmp_path / "last.npz"
    path.write_bytes(b"old")

    def write_then_stop(file):
        file.write(b"new")
        raise interrupt("stop")

    with pytest.raises(interrupt, match="stop"):  # Ctrl-C stays Ctrl-C; the caller wraps the rest
        atomic_write(path, write_then_stop)
    assert path.read_bytes() == b"old"
    assert files_in(tmp_path) == ["last.npz"]


def test_a_failed_rename_names_the_target_and_keeps_its_kind(tmp_path, monkeypatch):
    path = tmp_path / "out.mid"
    path.write_bytes(b"old")

    def failing_replace(source, target):  # what a read-only folder gives: both names in the error
        raise PermissionError(errno.EACCES, "Permission denied", source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(PermissionError) as caught:
        atomic_write_bytes(path, b"new")
    assert str(path) in str(caught.value) and ".tmp" not in str(caught.value)
    assert caught.value.filename2 is None
    assert path.read_bytes() == b"old"
    assert files_in(tmp_path) == ["out.mid"]


def test_a_missing_folder_names_the_target(tmp_path):
    path = tmp_path / "no" / "such" / "x.wav"
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write_bytes(path, b"x")
    assert caught.value.filename == str(path)


def test_a_read_only_folder_reports_the_first_error_not_the_cleanup(tmp_path, monkeypatch):
    # On a read-only folder creating the temporary file fails, and so would any removal.
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "unlink", read_only)
    path = tmp_path / "x.png"
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(path, b"x")
    assert caught.value.errno == errno.EROFS and caught.value.filename == str(path)


def test_a_failing_removal_does_not_hide_the_write_error(tmp_path, monkeypatch):
    def no_unlink(name):
        raise PermissionError(errno.EACCES, "Permission denied", name)

    def write_then_fail(file):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "unlink", no_unlink)
    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "x.bin", write_then_fail)
    assert caught.value.errno == errno.EIO and caught.value.filename == str(tmp_path / "x.bin")


def test_an_oserror_without_errno_keeps_its_words(tmp_path):
    def fail(file):
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match=r"^disk full \(simulated\)$"):
        atomic_write(tmp_path / "x.bin", fail)
    assert files_in(tmp_path) == []


def test_the_file_and_then_its_folder_are_fsynced(tmp_path, monkeypatch):
    kinds = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        mode = os.fstat(fd).st_mode
        kinds.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_bytes(tmp_path / "x.bin", b"x")
    assert kinds[0] == "file"
    if os.name == "posix":  # Windows cannot open a folder; there the folder step is skipped
        assert kinds == ["file", "folder"]


def test_a_folder_that_cannot_be_fsynced_is_not_an_error(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def no_folder_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", no_folder_fsync)
    atomic_write_bytes(tmp_path / "x.bin", b"x")  # best effort: the file is written all the same
    assert (tmp_path / "x.bin").read_bytes() == b"x"


def test_only_binary_or_text_write_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        atomic_write(tmp_path / "x", lambda file: None, mode="ab")
    assert files_in(tmp_path) == []


def test_atomic_imports_nothing_from_the_project():
    # nn/ and music/ both use it, and must never import each other through it.
    tree = ast.parse(Path(atomic.__file__).read_text(encoding="utf-8"))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "." for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not any(name.startswith(("lstm_from_scratch", ".")) for name in imported)


def test_events_still_offers_atomic_write_bytes():
    from lstm_from_scratch.music import events
    assert events.atomic_write_bytes is atomic_write_bytes
