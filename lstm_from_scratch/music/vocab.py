"""Chunk <-> index: the vocabulary that turns event text into integer ids for the net.

A *chunk* is one event token such as ``"0_no_60_80"`` (see ``music/events.py``). The net only sees
integers, so each distinct chunk gets an id in ``0 .. V-1`` where ``V = len(vocab)``.

Sort order (why ids are meaningful)
-----------------------------------
``Vocabulary.build`` sorts event chunks by their *numbers*, not as plain strings: by
``(delta, kind, pitch, velocity)`` with every number parsed as an integer. A plain string sort would put
``"10_no_60_80"`` before ``"2_no_60_80"``, which means nothing musically. With the numeric order:

- all chunks with delta 0 (notes struck together, i.e. chords) come first, then delta 1, 2, ...;
- within a delta, note-offs (``nf``) come before note-ons (``no``), as they do in time;
- within those, pitch rises, then velocity rises.

So neighbouring ids are neighbouring events, and a plot of one-hot inputs, an embedding or the output
probabilities over ids can be read by eye. Chunks that are not event text (for example a special token
another part might add) sort after all event chunks, in plain string order. The order depends only on the
*set* of chunks, never on the order they were seen in, so the same corpus always gives the same ids.

``Vocabulary(tokens)`` itself keeps the order it is given: that is how a saved vocabulary (or the one in a
checkpoint) comes back with exactly the same ids.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from lstm_from_scratch.atomic import atomic_write_text
from lstm_from_scratch.errors import LstmMusicError

FORMAT_NAME = "lstm_from_scratch.vocabulary"
FORMAT_VERSION = 1


class VocabularyError(LstmMusicError):
    """A vocabulary cannot be built, read, written or used as asked."""


class UnknownTokenError(VocabularyError):
    """A chunk is not in the vocabulary. Carries ``token`` and its ``position`` in the input (or None)."""

    def __init__(self, token: str, position: int | None, vocab_size: int, source: str | None = None):
        # Keep every argument in args (as the other project errors do), so the error survives copying.
        super().__init__(token, position, vocab_size, source)
        self.token = token
        self.position = position
        self.vocab_size = vocab_size
        self.source = source

    def __str__(self) -> str:
        where = "" if self.position is None else f" at position {self.position}"
        where += f" of {self.source}" if self.source else ""
        return (
            f"chunk {self.token!r}{where} is not in the vocabulary ({self.vocab_size} chunks). "
            f"Build the vocabulary from a corpus that contains it, "
            f"or encode with unknown='skip' to drop unknown chunks."
        )


def sort_key(token: str) -> tuple:
    """The key ``Vocabulary.build`` sorts by: ``(delta, kind, pitch, velocity)`` parsed as numbers.

    ``"12_no_60_80"`` -> ``(0, 12, "no", 60, 80, "12_no_60_80")``. The leading 0 puts event chunks before
    anything that does not parse (key ``(1, token)``); the token itself at the end breaks the tie between
    spellings that parse to the same numbers (``"01_no_60_80"`` and ``"1_no_60_80"``), so the order is total.
    """
    parts = token.split("_")
    if len(parts) >= 3:
        try:
            delta = int(parts[0])
            numbers = tuple(int(part) for part in parts[2:])
        except ValueError:
            pass
        else:
            return (0, delta, parts[1], *numbers, token)
    return (1, token)


def _chunks_of(sequence) -> tuple[list[str], str | None]:
    """Accept a plain list of chunks or a ``ChunkSequence`` (anything with ``.chunks``, maybe ``.name``)."""
    if hasattr(sequence, "chunks"):
        return list(sequence.chunks), getattr(sequence, "name", None)
    if isinstance(sequence, str):
        # Iterating a string gives characters, never chunks: almost always a caller's mistake.
        raise VocabularyError(
            f"expected a sequence of chunks, got the single string {sequence[:40]!r}; "
            f"wrap it in a list"
        )
    return list(sequence), None


class Vocabulary:
    """A fixed list of distinct chunks; a chunk's id is its position in the list.

    ``Vocabulary(tokens)`` keeps the given order. Use ``Vocabulary.build(sequences)`` to make one from a
    corpus with the documented, deterministic sort order (see the module docstring).
    """

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise VocabularyError(
                    f"vocabulary entry {position} is {token!r} ({type(token).__name__}), not a string"
                )
        if not tokens:
            raise VocabularyError("a vocabulary needs at least one chunk, got none")
        index = {token: position for position, token in enumerate(tokens)}
        if len(index) != len(tokens):
            duplicates = sorted(token for token, n in Counter(tokens).items() if n > 1)
            raise VocabularyError(f"vocabulary chunks must be distinct; repeated: {duplicates[:5]}")
        self._tokens = tuple(tokens)
        self._index = index

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> "Vocabulary":
        """Every chunk seen at least ``min_count`` times across ``sequences``, sorted by ``sort_key``.

        ``sequences`` is an iterable of pieces; each piece is a list of chunks or a ``ChunkSequence``.
        Rare chunks (count below ``min_count``) are left out; encode with ``unknown="skip"`` to drop them.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise VocabularyError(f"min_count must be an integer >= 1, got {min_count!r}")
        counts: Counter = Counter()
        for sequence in sequences:
            counts.update(_chunks_of(sequence)[0])
        kept = [token for token, n in counts.items() if n >= min_count]
        if not kept:
            raise VocabularyError(
                f"no chunk occurs at least {min_count} time(s) in the {sum(counts.values())} chunks "
                f"given; add pieces or lower min_count"
            )
        return cls(sorted(kept, key=sort_key))

    # -- looking things up -------------------------------------------------------------------------

    @property
    def tokens(self) -> tuple[str, ...]:
        """All chunks, in id order: ``tokens[i]`` is the chunk with id ``i``."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token) -> bool:
        return token in self._index

    def __iter__(self):
        return iter(self._tokens)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens

    def __repr__(self) -> str:
        preview = ", ".join(repr(t) for t in self._tokens[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"Vocabulary({len(self)} chunks: {preview}{more})"

    def index(self, token: str) -> int:
        """The id of ``token``; raises ``UnknownTokenError`` (never a bare ``KeyError``)."""
        try:
            return self._index[token]
        except KeyError:
            raise UnknownTokenError(token, None, len(self)) from None

    # -- encoding and decoding ----------------------------------------------------------------------

    def encode(self, chunks, unknown: str = "error") -> np.ndarray:
        """Chunks -> ids, an int64 array of shape ``(N,)``.

        ``chunks`` is a list of chunk strings or a ``ChunkSequence``. ``unknown`` says what to do with a
        chunk that is not in the vocabulary:

        - ``"error"`` (default): raise ``UnknownTokenError`` naming the chunk and its position;
        - ``"skip"``: leave it out, so the result can be shorter than the input. To learn how many were
          left out, call ``encode_skipping(chunks)`` instead, which also returns that count.
        """
        if unknown == "skip":
            return self.encode_skipping(chunks)[0]
        if unknown != "error":
            raise VocabularyError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        tokens, name = _chunks_of(chunks)
        ids = np.empty(len(tokens), dtype=np.int64)
        for position, token in enumerate(tokens):
            try:
                ids[position] = self._index[token]
            except KeyError:
                raise UnknownTokenError(token, position, len(self), name) from None
        return ids

    def encode_skipping(self, chunks) -> tuple[np.ndarray, int]:
        """Chunks -> ``(ids, num_skipped)``: ids ``(N - num_skipped,)`` int64 of the known chunks, in order."""
        tokens, _ = _chunks_of(chunks)
        known = [self._index[token] for token in tokens if token in self._index]
        return np.asarray(known, dtype=np.int64), len(tokens) - len(known)

    def decode(self, ids) -> list[str]:
        """Ids -> chunks. ``ids`` is any integer array-like of shape ``(N,)``; returns ``N`` strings.

        Raises ``VocabularyError`` for an id outside ``0 .. V-1`` (negative ids are *not* counted from
        the end, as NumPy indexing would) and for non-integer ids.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise VocabularyError(f"decode expects ids of shape (N,), got shape {ids.shape}")
        if ids.size == 0:
            return []
        if not np.issubdtype(ids.dtype, np.integer):
            raise VocabularyError(f"decode expects integer ids, got dtype {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self)))
        if bad.size:
            first = int(bad[0])
            raise VocabularyError(
                f"id {int(ids[first])} at position {first} is outside the vocabulary "
                f"(valid ids are 0 .. {len(self) - 1}); were these ids made with another vocabulary?"
            )
        return [self._tokens[i] for i in ids.tolist()]

    # -- JSON and files ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict: ``{"format", "version", "tokens"}``. The checkpoint stores this."""
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data, source: str = "vocabulary data") -> "Vocabulary":
        """The inverse of ``to_dict``; ``source`` names where the data came from, for error messages."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise VocabularyError(f"{source} is not a saved vocabulary (no format {FORMAT_NAME!r})")
        if data.get("version") != FORMAT_VERSION:
            raise VocabularyError(
                f"{source} has vocabulary format version {data.get('version')!r}; "
                f"this code reads version {FORMAT_VERSION}"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise VocabularyError(f"{source} has no list of tokens")
        try:
            return cls(tokens)
        except VocabularyError as error:
            raise VocabularyError(f"{source}: {error}") from None

    def to_json(self) -> str:
        """The vocabulary as JSON text (see ``to_dict``)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text, source: str = "vocabulary JSON") -> "Vocabulary":
        """The inverse of ``to_json``. Also accepts the already-parsed dict from ``to_dict``."""
        if isinstance(text, dict):
            return cls.from_dict(text, source)
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise VocabularyError(f"{source} is not valid JSON: {error}") from None
        return cls.from_dict(data, source)

    def save(self, path) -> None:
        """Write the vocabulary as JSON to ``path``, atomically (temp file in the same folder, then rename).

        A crash mid-write leaves the old file (or none), never half a vocabulary.
        """
        path = Path(path)
        try:
            atomic_write_text(path, self.to_json())
        except OSError as error:
            raise VocabularyError(f"cannot write vocabulary {path}: {error.strerror or error}") from None

    @classmethod
    def load(cls, path) -> "Vocabulary":
        """Read a vocabulary written by ``save``; clear ``VocabularyError`` for a missing or bad file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise VocabularyError(f"vocabulary file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise VocabularyError(f"cannot read vocabulary file {path}: {error}") from None
        return cls.from_json(text, source=f"vocabulary file {path}")
