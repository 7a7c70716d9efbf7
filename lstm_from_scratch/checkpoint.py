"""Checkpoints: one ``.npz`` file with every array, plus JSON metadata, written atomically.

A checkpoint holds named arrays (the model's parameters, the optimizer's state, ...) and a JSON-able
``meta`` dict (the model config, the vocabulary, the event-text settings, the epoch, the RNG state, the
loss history). Inside the ``.npz`` (a zip of ``.npy`` files) the metadata is the UTF-8 bytes of its
JSON text, a ``uint8`` array under the reserved name ``"__meta__"``.

Why this format:

- **No pickle.** Loading uses ``allow_pickle=False``, so opening a checkpoint from a stranger cannot run
  their code; object arrays are refused on saving and on loading.
- **Atomic writes** (``atomic.py``). We write a temporary file in the same folder, flush it to disk, then
  ``os.replace`` it over the target. A rename within one folder is atomic, so a crash mid-save leaves
  either the old checkpoint or the new one, never half of one.
- **Clear refusals.** Every problem on loading (no file, not a zip, cut short, no metadata, a newer
  format) raises ``CheckpointError`` with the file and the reason on one line, and
  ``check_compatible`` names the field (vocabulary, model config, ...) that does not match.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from lstm_from_scratch.atomic import atomic_write
from lstm_from_scratch.errors import LstmMusicError

FORMAT_VERSION = 1
META_KEY = "__meta__"
MISSING = object()  # marks a key absent from one side in check_compatible's messages


class CheckpointError(LstmMusicError):
    """A checkpoint that cannot be written, read or used. ``str(error)`` is ``f"{path}: {reason}"``."""

    def __init__(self, path, reason):
        super().__init__(None if path is None else str(path), reason)
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(reason).split())  # always one line

    def __str__(self):
        return self.reason if self.path is None else f"{self.path}: {self.reason}"


def save_checkpoint(path, arrays, meta):
    """Write ``arrays`` and ``meta`` to one ``.npz`` file at ``path`` (exactly; no suffix is added).

    ``arrays`` is ``{name: np.ndarray}`` of any shapes and numeric dtypes (names may contain ``/`` and
    ``.``, e.g. ``"m/0.lstm.Wx"``). ``meta`` is a JSON-serialisable dict; ``"format_version"`` is added.
    On any failure the temporary file is removed, an existing checkpoint at ``path`` is left as it was,
    and ``CheckpointError`` is raised.
    """
    path = Path(path)
    if META_KEY in arrays:
        raise CheckpointError(path, f"the array name {META_KEY!r} is reserved for the metadata")
    try:
        meta_text = json.dumps({**meta, "format_version": FORMAT_VERSION}, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"metadata is not JSON-serialisable ({error})") from error
    entries = {**arrays, META_KEY: np.frombuffer(meta_text.encode("utf-8"), dtype=np.uint8)}

    try:
        atomic_write(path, lambda file: _write_npz(file, entries))
    except OSError as error:
        if path.parent.is_dir():
            reason = f"could not write the checkpoint ({error.strerror or error})"
        else:
            reason = f"cannot create a file in {path.parent} ({error.strerror or error})"
        raise CheckpointError(path, reason) from error
    except (ValueError, TypeError) as error:  # e.g. an object array, refused by _write_npz
        raise CheckpointError(path, f"could not write the checkpoint ({error})") from error


def _write_npz(file, entries):
    # What np.savez does, minus its keyword-argument naming (an array called "file" would clash with
    # its first parameter), and with allow_pickle=False so that an object array is refused here.
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in entries.items():
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``; returns ``(arrays, meta)``.

    ``arrays`` is ``{name: np.ndarray}`` (dtypes and shapes as saved), ``meta`` the metadata dict
    including ``"format_version"``. Raises ``CheckpointError`` naming the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file" if not path.exists() else "not a file")
    arrays = read_npz(path)
    meta_bytes = arrays.pop(META_KEY, None)
    if meta_bytes is None:
        raise CheckpointError(path, f"no {META_KEY!r} entry: not a lstm_from_scratch checkpoint")
    if meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
        raise CheckpointError(path, f"the {META_KEY!r} entry is not UTF-8 bytes")
    try:
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(path, f"the metadata is not valid JSON ({error})") from error
    except RecursionError:  # json.loads on thousands of nested brackets
        raise CheckpointError(path, "the metadata is not usable JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, "the metadata is not a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(path, f"format version {version!r}, but this code reads version {FORMAT_VERSION}")
    return arrays, meta


def read_npz(path, error=CheckpointError, what="checkpoint"):
    """``{name: array}`` from the ``.npz`` file ``path``, read with ``allow_pickle=False``: a file a
    user may have received is never unpickled. Raises ``error(path, reason)`` (``what`` names the kind
    of file in the reason) for a file that is not a zip, is cut short, or holds a pickled array."""
    if not zipfile.is_zipfile(path):
        raise error(path, f"not a {what}: not an .npz (zip) file, or cut short")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as cause:
        if "pickle" in str(cause):
            raise error(path, f"holds a pickled (object) array; refused, {what}s never load pickles") from cause
        raise error(path, f"damaged array data ({cause})") from cause
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as cause:
        raise error(path, f"damaged or cut short ({cause or type(cause).__name__})") from cause


def check_compatible(meta, expected, path=None):
    """Raise ``CheckpointError`` unless ``meta[key] == value`` for every ``key, value`` in ``expected``.

    ``expected`` is, for example, ``{"vocabulary": vocab_tokens, "model_config": config}``. Values are
    compared as JSON would store them (tuples equal lists). The message names the first field that
    differs and how, and the file when ``path`` is given.
    """
    expected = json.loads(json.dumps(expected))
    for key, value in expected.items():
        if key not in meta:
            raise CheckpointError(path, f"checkpoint has no {key!r}, so it cannot be checked against this run")
        if meta[key] != value:
            raise CheckpointError(path, f"{key} differs: {_difference(meta[key], value)}")


def _difference(found, wanted):
    """A short description of how two JSON values differ: the checkpoint's vs this run's."""
    if isinstance(found, list) and isinstance(wanted, list):
        if len(found) != len(wanted):
            return f"the checkpoint has {len(found)} entries, this run has {len(wanted)}"
        index = next(i for i, (a, b) in enumerate(zip(found, wanted)) if a != b)
        return f"entry {index} is {_short(found[index])} in the checkpoint, {_short(wanted[index])} in this run"
    if isinstance(found, dict) and isinstance(wanted, dict):
        key = next(k for k in sorted(set(found) | set(wanted)) if found.get(k, MISSING) != wanted.get(k, MISSING))
        return (f"{key!r} is {_short(found.get(key, MISSING))} in the checkpoint, "
                f"{_short(wanted.get(key, MISSING))} in this run")
    return f"the checkpoint has {_short(found)}, this run has {_short(wanted)}"


def _short(value, limit=60):
    text = "missing" if value is MISSING else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
