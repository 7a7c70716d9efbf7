"""Music statistics: numbers that say whether generated pieces sound like the pieces trained on.

A loss says how well the net predicts; these say what its music is like. Each one is measured the
same way on generated pieces and on training pieces, so that the two can be held side by side.
This file knows nothing of the net: it reads notes and chunks.

A note is anything with ``start`` and ``end`` (seconds), ``pitch`` (MIDI 0..127) and ``velocity``
attributes, such as ``events.Note``, or a plain ``(start, end, pitch, velocity)`` tuple. ``notes``
is a list of them, N notes. Time is in seconds, so compare pieces decoded at the same tempo
(``events.chunks_to_notes`` uses 120 beats per minute unless told otherwise): the net never sees a
tempo, only beats.

The statistics, with the libraries that define them in the same spirit (read, not copied):

- ``pitch_class_histogram``: the share of notes on each of the 12 pitch classes C, C#, ..., B
  (muspy's chroma histogram); ``histogram_distance`` and ``key_free_distance`` compare two of them.
- ``notes_per_second``: how busy the music is.
- ``polyphony``: how many notes sound at once, on average, while any sounds (muspy's ``polyphony``).
- ``pitch_range``: highest minus lowest pitch, in semitones (muspy's and pypianoroll's ``pitch_range``).
- ``note_lengths``: how long each note is held.
- ``loop_share``: the share of chunks inside a short pattern repeated back to back, the "one note
  over and over" a stuck net plays.
- ``in_scale_rate``: the share of notes in the piece's best-fitting major scale (muspy's
  ``scale_consistency``, from C-RNN-GAN; pypianoroll's ``in_scale_rate`` for a fixed key).

``piece_statistics`` gathers the single numbers in one dict, ``STATISTICS`` describes them.
"""
import math

import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# The pitch classes of C major: C D E F G A B. Every major scale is this pattern moved up; each
# natural minor scale holds the same seven pitch classes as a major one (A minor = C major), so the
# twelve major scales cover the minor keys too.
MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
# A loop: a pattern of at most LOOP_MAX_PERIOD chunks played LOOP_MIN_REPEATS times or more in a
# row. Eight chunks hold four notes (each note is an on and an off chunk); a phrase repeated twice is
# music, the same few notes four times in a row is a net that got stuck.
LOOP_MAX_PERIOD = 8
LOOP_MIN_REPEATS = 4

# The single numbers ``piece_statistics`` returns: key -> (label, unit, format), in table order.
STATISTICS = {
    "notes_per_second": ("notes per second", "", "{:.1f}"),
    "polyphony": ("polyphony", "notes at once", "{:.2f}"),
    "pitch_range": ("pitch range", "semitones", "{:.0f}"),
    "median_note_length": ("median note length", "seconds", "{:.2f}"),
    "loop_share": ("in repeated loops", "of the chunks", "{:.0%}"),
    "in_scale_rate": ("in scale", "of the notes", "{:.0%}"),
    "pitch_class_distance": ("pitch classes vs corpus", "0 = same, 1 = disjoint", "{:.2f}"),
}


def note_array(notes):
    """Notes -> a float array ``(N, 4)`` of ``start, end, pitch, velocity`` (``(0, 4)`` for none)."""
    rows = [(note.start, note.end, note.pitch, note.velocity) if hasattr(note, "pitch") else tuple(note)
            for note in notes]
    array = np.array(rows, dtype=np.float64).reshape(-1, 4)
    if len(array) and not (np.all(np.isfinite(array)) and np.all(array[:, 1] >= array[:, 0])):
        raise ValueError("notes need finite numbers and end >= start")
    return array


def pitch_class_histogram(notes):
    """The share of notes on each pitch class, ``(12,)`` summing to 1: index 0 is C, 1 is C#, ...

    Every note counts once, however long it lasts (as muspy counts). No notes give all zeros.
    """
    pitches = note_array(notes)[:, 2].astype(np.int64)
    counts = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def histogram_distance(p, q):
    """The total variation distance between two histograms ``(K,)``: half the sum of ``|p - q|``.

    0 when they are the same, 1 when they share nothing. It is the share of notes that would have
    to move to another bin to turn one histogram into the other: easy to say, easy to check.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return 0.5 * float(np.abs(p - q).sum())


def key_free_distance(p, q):
    """``(distance, shift)``: the smallest ``histogram_distance`` of pitch-class histogram ``p``,
    moved up by ``shift`` semitones (0..11), to ``q``.

    A tune in G is as much like a corpus in C as the same tune in C, so we compare in the key that
    fits best. Ties go to the smallest shift.
    """
    distances = [histogram_distance(np.roll(p, shift), q) for shift in range(12)]
    shift = int(np.argmin(distances))
    return distances[shift], shift


def duration(notes):
    """Seconds from the first note's start to the last note's end (0 for no notes)."""
    array = note_array(notes)
    return float(array[:, 1].max() - array[:, 0].min()) if len(array) else 0.0


def notes_per_second(notes):
    """Notes started per second of the piece (``duration``); 0 for no notes."""
    seconds = duration(notes)
    return len(note_array(notes)) / seconds if seconds > 0 else 0.0


def sounding_seconds(notes):
    """Seconds during which at least one note sounds: the length of the union of the notes' spans."""
    array = note_array(notes)
    total, covered_until = 0.0, -math.inf
    for start, end in sorted(zip(array[:, 0], array[:, 1])):
        start = max(start, covered_until)  # the part already counted is not counted twice
        if end > start:
            total += end - start
            covered_until = end
    return total


def polyphony(notes):
    """The mean number of notes sounding at once, over the time when any sounds.

    The sum of all note lengths divided by ``sounding_seconds``: a melody gives 1, a held
    three-note chord 3; silences do not pull it down. NaN for no notes.
    """
    array = note_array(notes)
    sounding = sounding_seconds(array)
    return float((array[:, 1] - array[:, 0]).sum() / sounding) if sounding > 0 else math.nan


def pitch_range(notes):
    """Highest pitch minus lowest, in semitones; NaN for no notes."""
    pitches = note_array(notes)[:, 2]
    return float(pitches.max() - pitches.min()) if len(pitches) else math.nan


def note_lengths(notes):
    """Each note's length in seconds, ``(N,)``."""
    array = note_array(notes)
    return array[:, 1] - array[:, 0]


def in_scale_rate(notes):
    """``(rate, tonic)``: the share of notes in the major scale that holds the most of them, and that
    scale's tonic (0 = C, ..., 11 = B; ties go to the lowest). ``(nan, None)`` for no notes.

    A C major scale gives 1.0 (tonic 0); all twelve pitch classes once each give 7/12. A net
    that has learned keys plays mostly inside one; random notes land in a scale 7 times out of 12.
    """
    pitches = note_array(notes)[:, 2].astype(np.int64)
    if len(pitches) == 0:
        return math.nan, None
    counts = np.bincount(pitches % 12, minlength=12)  # whole numbers: ties stay exact ties
    inside = [int(counts[np.roll(MAJOR_SCALE, tonic)].sum()) for tonic in range(12)]
    tonic = int(np.argmax(inside))
    return inside[tonic] / len(pitches), tonic


def loop_positions(chunks, max_period=LOOP_MAX_PERIOD, min_repeats=LOOP_MIN_REPEATS):
    """A bool array ``(N,)``: True for each chunk inside a loop.

    ``chunks`` is a sequence of N tokens (chunk strings or ids). A loop is a stretch where a pattern
    of ``p <= max_period`` chunks is played ``min_repeats`` times or more in a row, that is a stretch
    of at least ``min_repeats * p`` chunks where every chunk equals the one ``p`` before it.
    "a b a b a b a b c" has the loop "a b" four times: its first 8 chunks are in it.
    """
    tokens = np.unique(np.asarray(chunks), return_inverse=True)[1].reshape(-1)  # any tokens -> ints
    inside = np.zeros(len(tokens), dtype=bool)
    for period in range(1, max_period + 1):
        if len(tokens) <= period:
            break
        same = np.concatenate(([False], tokens[period:] == tokens[:-period], [False]))
        # Runs of True in `same`: same[k + 1] says chunk k + period repeats chunk k.
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        for first, stop in zip(edges[::2], edges[1::2]):
            covered = stop - first + period  # the run's chunks, with the first pattern before them
            if covered >= min_repeats * period:
                inside[first:stop + period] = True
    return inside


def loop_share(chunks, max_period=LOOP_MAX_PERIOD, min_repeats=LOOP_MIN_REPEATS):
    """The share of chunks inside a loop (see ``loop_positions``); 0 for no chunks."""
    inside = loop_positions(chunks, max_period, min_repeats)
    return float(inside.mean()) if len(inside) else 0.0


def piece_statistics(notes, chunks, corpus_histogram=None):
    """The single numbers of ``STATISTICS`` for one piece, as a dict of floats (NaN where undefined).

    ``notes`` and ``chunks`` are the same piece, as notes and as its chunk tokens.
    ``corpus_histogram`` ``(12,)``: the pitch-class histogram to measure ``pitch_class_distance``
    against (with ``key_free_distance``); without it that entry is NaN.
    """
    array = note_array(notes)
    lengths = note_lengths(array)
    histogram = pitch_class_histogram(array)
    distance = math.nan
    if corpus_histogram is not None and histogram.any():
        distance = key_free_distance(histogram, corpus_histogram)[0]
    return {
        "notes_per_second": notes_per_second(array),
        "polyphony": polyphony(array),
        "pitch_range": pitch_range(array),
        "median_note_length": float(np.median(lengths)) if len(lengths) else math.nan,
        "loop_share": loop_share(chunks),
        "in_scale_rate": in_scale_rate(array)[0],
        "pitch_class_distance": distance,
    }
