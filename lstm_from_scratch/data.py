"""Token ids -> training windows and batches; the train/validation split by file.

This file joins the two halves: it takes the integer ids made by ``music/vocab.py`` and makes the
time-major arrays ``nn/`` trains on. It imports neither half.

The task is next-token prediction: at every position the net sees a token and must predict the one after
it. So a window of ``seq_len`` inputs ``X[k]`` comes with targets ``Y[k]`` that are the *same* ids shifted
by one: ``Y[k, t] == X[k, t + 1]``, and ``Y[k, -1]`` is the token just after the window. A window needs
``seq_len + 1`` consecutive tokens.

Shapes: ``N`` tokens in a piece, ``W`` windows, ``T = seq_len`` steps, ``B`` windows in a batch.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

# One DataError for the whole project (errors.py), re-exported here: "the data cannot be used as asked",
# whether a folder has no usable files or a corpus is too short for one training window.
from lstm_from_scratch.errors import DataError

__all__ = [
    "DataError", "count_windows", "make_windows", "windows_from_sequences", "split_by_file",
    "num_batches", "iterate_batches", "Transposition", "unigram_baseline",
]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_ids(ids, what: str = "ids") -> np.ndarray:
    """Check that ``ids`` is a 1-D integer array-like ``(N,)`` and return it as int64."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise DataError(f"{what} must have shape (N,), got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{what} must be integer token ids, got dtype {ids.dtype}")
    return ids.astype(np.int64, copy=False)


def count_windows(num_tokens: int, seq_len: int, step: int = 1) -> int:
    """How many windows ``make_windows`` cuts from ``num_tokens`` tokens: 0 if fewer than ``seq_len + 1``."""
    seq_len = _positive_int(seq_len, "seq_len")
    step = _positive_int(step, "step")  # step 0 would divide by zero below
    if num_tokens < seq_len + 1:
        return 0
    return (num_tokens - seq_len - 1) // step + 1


def _too_small(num_tokens: int, seq_len: int, what: str) -> DataError:
    return DataError(
        f"{what} has {num_tokens} tokens, but one training window needs seq_len + 1 = {seq_len + 1} "
        f"(seq_len inputs plus the token after them as the last target). "
        f"Lower --seq-len to at most {max(num_tokens - 1, 1)}, or add more music."
    )


def make_windows(ids, seq_len: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cut one piece's ids ``(N,)`` into windows ``X, Y``, each ``(W, seq_len)`` int64.

    Window ``k`` starts at token ``k * step``: ``X[k] = ids[k*step : k*step + seq_len]`` and
    ``Y[k] = ids[k*step + 1 : k*step + seq_len + 1]`` (targets = inputs shifted by one). With
    ``step = seq_len`` windows do not overlap; with ``step = 1`` there are the most windows.
    ``W = (N - seq_len - 1) // step + 1``. Raises ``DataError`` if ``N < seq_len + 1``.

    Memory: ``X`` and ``Y`` hold ``2 * W * seq_len`` int64 values, about ``16 * N * seq_len / step`` bytes.
    """
    seq_len = _positive_int(seq_len, "seq_len")
    step = _positive_int(step, "step")
    ids = _as_ids(ids)
    num_windows = count_windows(len(ids), seq_len, step)
    if num_windows == 0:
        raise _too_small(len(ids), seq_len, "the piece")
    # Every run of seq_len + 1 consecutive tokens, as a read-only view (no copy yet), then every
    # step-th one. Column 0..T-1 is the input, column 1..T the target: the shift by one in one place.
    runs = np.lib.stride_tricks.sliding_window_view(ids, seq_len + 1)[::step]
    return runs[:, :-1].copy(), runs[:, 1:].copy()


def windows_from_sequences(
    sequences: Sequence, seq_len: int, step: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Windows from several pieces, ``X, Y`` each ``(W, seq_len)`` int64, ``W`` summed over pieces.

    ``sequences`` is a list of id arrays, one ``(N_i,)`` per piece. Each piece is cut on its own, so no
    window ever spans the end of one piece and the start of the next (that join is not music anyone
    wrote). A piece shorter than ``seq_len + 1`` tokens gives no windows; if no piece is long enough,
    raises ``DataError`` saying how long the longest piece is and what ``seq_len`` would fit.
    """
    seq_len = _positive_int(seq_len, "seq_len")
    step = _positive_int(step, "step")
    pieces = [_as_ids(ids, f"piece {i}") for i, ids in enumerate(sequences)]
    long_enough = [ids for ids in pieces if count_windows(len(ids), seq_len, step) > 0]
    if not long_enough:
        longest = max((len(ids) for ids in pieces), default=0)
        total = sum(len(ids) for ids in pieces)
        raise _too_small(
            longest, seq_len, f"the longest of {len(pieces)} piece(s) ({total} tokens in all)"
        )
    windows = [make_windows(ids, seq_len, step) for ids in long_enough]
    return np.concatenate([x for x, _ in windows]), np.concatenate([y for _, y in windows])


def split_by_file(items: Sequence, val_fraction: float = 0.1, rng=0) -> tuple[list, list]:
    """Split whole pieces into ``(train, validation)`` lists, so validation never sees a training window.

    Windows from one piece overlap and share phrases, so splitting *windows* at random would let the net
    be graded on music it trained on. We split *pieces* instead.

    - ``items``: one entry per piece (id arrays, ``ChunkSequence`` objects, file names: anything).
    - ``val_fraction``: share of pieces for validation, ``0 <= val_fraction < 1``. With two or more pieces
      and ``val_fraction > 0`` at least one piece goes to each side. With a single piece validation is
      empty (there is nothing to hold out without cutting the piece); the trainer then reports no
      validation loss.
    - ``rng``: an ``np.random.Generator`` or an integer seed; the same seed gives the same split.

    Both lists keep the pieces' original order.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    items = list(items)
    count = len(items)
    if count < 2 or val_fraction == 0:
        return items, []
    num_val = min(max(1, round(val_fraction * count)), count - 1)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    val_positions = set(rng.choice(count, size=num_val, replace=False).tolist())
    train = [item for i, item in enumerate(items) if i not in val_positions]
    val = [item for i, item in enumerate(items) if i in val_positions]
    return train, val


def num_batches(num_windows: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches ``iterate_batches`` yields for ``num_windows`` windows."""
    batch_size = _positive_int(batch_size, "batch_size")
    if drop_last:
        return num_windows // batch_size
    return -(-num_windows // batch_size)


def iterate_batches(
    X: np.ndarray, Y: np.ndarray, batch_size: int, rng=None, drop_last: bool = False, shifts=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield time-major batches ``(inputs, targets)``, each ``(T, B)`` int64, covering every window once.

    ``X, Y`` are ``(W, T)`` from ``make_windows``. The windows are visited in the order of
    ``rng.permutation(W)`` (``rng`` an ``np.random.Generator``), so the same generator state gives the
    same batches; ``rng=None`` keeps the stored order (handy for validation). The last batch is smaller
    when ``W`` is not a multiple of ``batch_size``, unless ``drop_last`` leaves it out.

    ``shifts`` (with ``rng``) transposes every window as it is batched: see ``Transposition``. The
    shifts of the whole pass are drawn right after the order, before the first batch, so the same
    generator state gives the same batches, shifts included, also when batches are skipped.

    Batches are transposed to ``(T, B)`` because ``nn/`` is time-major: step ``t`` of every sequence in
    the batch is the contiguous row ``inputs[t]``.
    """
    batch_size = _positive_int(batch_size, "batch_size")
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or X.shape != Y.shape:
        raise DataError(f"X and Y must both be (W, T), got {X.shape} and {Y.shape}")
    count = len(X)
    order = np.arange(count) if rng is None else rng.permutation(count)
    semitones = None if shifts is None or rng is None else shifts.draw(order, rng)
    for batch in range(num_batches(count, batch_size, drop_last)):
        part = slice(batch * batch_size, (batch + 1) * batch_size)
        rows = order[part]
        inputs, targets = X[rows], Y[rows]
        if semitones is not None:
            inputs, targets = shifts.apply(inputs, semitones[part]), shifts.apply(targets, semitones[part])
        yield np.ascontiguousarray(inputs.T), np.ascontiguousarray(targets.T)


class Transposition:
    """Data augmentation on the fly: every window moved into a random key each time it is batched.

    A tune in another key is the same tune, so each window of a piece is drawn in a key chosen at
    random from ``low[w]..high[w]`` semitones (the shifts that keep that piece's pitches in MIDI's
    0..127, at most ``max_shift`` either way), each time a batch is made. Nothing is stored per key:
    memory stays the size of the original windows.

    - ``table`` (2 * max_shift + 1, V): ``table[s + max_shift, v]`` is the id of token v moved by s
      semitones (built by the code that knows what a token means, ``train.prepare_data``);
    - ``low``, ``high`` (W,): the shifts allowed for each window.
    """

    def __init__(self, table, low, high):
        self.table = np.asarray(table, dtype=np.int64)
        self.max_shift = (len(self.table) - 1) // 2
        self.low, self.high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)

    def draw(self, order, rng):
        """One shift per window, (W,), for the windows in ``order`` (W,): uniform in low..high."""
        low, high = self.low[order], self.high[order]
        return low + np.floor(rng.random(len(order)) * (high - low + 1)).astype(np.int64)

    def apply(self, ids, semitones):
        """ids (B, T) of B windows moved by ``semitones`` (B,): the same shape, other tokens."""
        return self.table[(semitones + self.max_shift)[:, None], ids]


def unigram_baseline(train_ids, val_targets, vocab_size: int) -> dict:
    """What a net that ignores context would score: a floor the trained net must beat.

    The "unigram" model predicts every token with its frequency in the training ids, add-one smoothed so
    no token has probability 0: ``p[v] = (count[v] + 1) / (N + V)``.

    - ``train_ids``: training ids, any shape, or a list of ``(N_i,)`` arrays (one per piece).
    - ``val_targets``: the targets to score, any shape (for example ``Y`` of the validation windows).
    - ``vocab_size``: ``V``.

    Returns a dict:

    - ``"cross_entropy"``: mean ``-ln p[target]`` in nats, comparable with the net's loss;
    - ``"accuracy"``: share of targets equal to the most frequent training token;
    - ``"most_frequent"``: that token's id, an int;
    - ``"uniform_cross_entropy"``: ``ln V``, the loss of a fresh net that guesses uniformly.

    The scores are floats; with no targets, ``"cross_entropy"`` and ``"accuracy"`` are ``None``.
    """
    vocab_size = _positive_int(vocab_size, "vocab_size")
    if isinstance(train_ids, (list, tuple)):
        pieces = [np.asarray(ids).ravel() for ids in train_ids]
        train_ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    train_ids = _as_ids(np.asarray(train_ids).ravel(), "train_ids")
    val_targets = _as_ids(np.asarray(val_targets).ravel(), "val_targets")
    for name, ids in (("train_ids", train_ids), ("val_targets", val_targets)):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise DataError(f"{name} holds ids outside 0 .. {vocab_size - 1}")
    counts = np.bincount(train_ids, minlength=vocab_size)
    probabilities = (counts + 1) / (counts.sum() + vocab_size)
    most_frequent = int(np.argmax(counts))
    result = {
        "cross_entropy": None,
        "accuracy": None,
        "most_frequent": most_frequent,
        "uniform_cross_entropy": float(np.log(vocab_size)),
    }
    if val_targets.size:
        result["cross_entropy"] = float(-np.mean(np.log(probabilities[val_targets])))
        result["accuracy"] = float(np.mean(val_targets == most_frequent))
    return result
