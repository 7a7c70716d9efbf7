"""File names made from names we did not choose: piece names, chorale names.

A piece's name comes from a MIDI file's path or a chunk text header, so it may hold anything:
slashes, spaces, ``..``, characters a file system refuses. Every command that writes one file per
piece builds the file name here, so the rule lives in one place.
"""
import re
from pathlib import Path

MAX_NAME_LENGTH = 100  # characters: far below every file system's limit, long enough to recognise
_UNSAFE = re.compile(r"[^\w.+-]+")  # \w: letters and digits of any script, and "_"
_MIDI_SUFFIX = re.compile(r"\.midi?$", re.IGNORECASE)


def safe_file_name(name, default="piece"):
    """``name`` as one harmless part of a file name: ``"bach/bwv66.6"`` -> ``"bach_bwv66.6"``.

    Every run of characters other than letters, digits, ``.``, ``+``, ``-`` and ``_`` becomes one
    ``_`` (so no ``/`` can reach another folder); leading and trailing dots and underscores go (no
    hidden files, no ``..``); at most ``MAX_NAME_LENGTH`` characters. An empty result is ``default``.
    """
    text = _UNSAFE.sub("_", str(name)).strip("._")
    return text[:MAX_NAME_LENGTH].rstrip("._") or default


def piece_paths(out, names):
    """One output path per piece: ``[out]`` for one piece, else ``OUT-NAME.suffix`` beside ``out``.

    ``names`` are the pieces' stored names (a MIDI suffix in a name is left out, so ``"a.mid"``
    gives ``OUT-a.mid``), made safe with ``safe_file_name``. The stem of ``out`` stays in front, so
    the files are easy to find together and never replace the MIDI files the pieces came from.
    Names that come out the same are numbered: ``OUT-a.mid``, ``OUT-a-2.mid``.
    """
    out = Path(out)
    if len(names) == 1:
        return [out]
    paths, taken = [], set()
    for name in names:
        stem = f"{out.stem}-{safe_file_name(_MIDI_SUFFIX.sub('', str(name).strip()))}"
        candidate, number = stem, 1
        while candidate.lower() in taken:  # (lower: some file systems ignore letter case)
            number += 1
            candidate = f"{stem}-{number}"
        taken.add(candidate.lower())
        paths.append(out.with_name(candidate + out.suffix))
    return paths
