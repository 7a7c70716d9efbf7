"""Atomic file writes: a reader of ``path`` sees the old file or the new one, never half of one.

Every file the package writes (checkpoints, vocabularies, MIDI, chunk text, WAV, figures, history)
goes through ``atomic_write``. The recipe, and why each step is there:

1. **Write a temporary file in the same folder as the target.** ``os.replace`` is an atomic rename
   only within one file system, and the target's own folder is certain to be on the target's file
   system (``/tmp`` may not be).
2. **Create it with ``O_EXCL`` and mode ``0o666``.** ``O_EXCL`` fails if the name exists, so the
   file is ours alone. Mode ``0o666`` lets the user's umask decide the permissions, as for any new
   file; ``tempfile.mkstemp`` would force ``0o600``, and a checkpoint or a figure that only its
   writer can read surprises everyone else.
3. **Flush and fsync the file, then ``os.replace`` it over the target.** Without the fsync, a power
   cut soon after the rename can leave the new name pointing at a file whose bytes never reached
   the disk. Then fsync the folder, where the system allows it, so the rename itself is on disk.
4. **On any failure (Ctrl-C included) remove the temporary file** and leave the target untouched.
   An ``OSError`` is raised again naming the *target*, the file the caller asked for: a message
   about ``.piece.mid.4242.9f1c.tmp`` would only puzzle the reader.

This module imports nothing from the project, so ``nn/`` and ``music/`` can both use it.
"""
import contextlib
import os
import secrets
from pathlib import Path


def atomic_write(path, write, mode="wb"):
    """Call ``write(file)`` on a fresh temporary file, then move it over ``path`` atomically.

    ``write`` receives the open file (binary for ``mode="wb"``; for ``mode="w"``, text written as
    UTF-8 with no newline translation), e.g. ``lambda file: figure.savefig(file, format="png")``.
    On any failure the temporary file is removed and ``path`` is left as it was. An ``OSError`` from
    the system (creating, writing, renaming) is raised again naming ``path``, with the same errno
    and so the same subclass (``PermissionError``, ...); anything else is raised unchanged.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _naming(error, path) from error
    try:
        if mode == "wb":
            file = os.fdopen(handle, "wb")
        else:
            file = os.fdopen(handle, "w", encoding="utf-8", newline="")
        with file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the rename makes them visible
        os.replace(temporary, path)
    except BaseException as error:  # even Ctrl-C: never leave the temporary file behind
        # On a read-only folder the removal can fail too; the first error is the one to report.
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path, data):
    """Write the bytes ``data`` to ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically as UTF-8, characters exactly as given (no newline
    translation; see ``atomic_write``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _naming(error, path):
    """``error`` again, naming ``path`` instead of the temporary file."""
    if error.errno is None:  # raised by code, e.g. OSError("disk full"): it names no file; keep its words
        return OSError(str(error))
    # OSError(errno, ...) builds the matching subclass (FileNotFoundError, PermissionError, ...).
    return OSError(error.errno, error.strerror, str(path))


def _fsync_folder(folder):
    # Make the rename itself durable. Not every system can open a folder (Windows cannot): best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
