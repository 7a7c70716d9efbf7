"""music/stats.py: each statistic on small pieces whose answer is worked out by hand."""
import math

import numpy as np
import pytest

from lstm_from_scratch.music import stats
from lstm_from_scratch.music.events import Note, chunks_to_notes

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]  # C4 D E F G A B C5


def scale(pitches=C_MAJOR, length=0.5):
    """One note after another, each `length` seconds, no gaps: a melody."""
    return [Note(k * length, (k + 1) * length, pitch, 80) for k, pitch in enumerate(pitches)]


def chord(pitches=(60, 64, 67), seconds=2.0):
    """Notes that start together and are held together."""
    return [Note(0.0, seconds, pitch, 80) for pitch in pitches]


def test_pitch_class_histogram_of_a_c_major_scale():
    # Eight notes: C twice (C4 and C5), D E F G A B once each; no sharps.
    expected = np.array([2, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]) / 8
    assert np.allclose(stats.pitch_class_histogram(scale()), expected)
    assert np.allclose(stats.pitch_class_histogram([(0, 1, 61, 80), (1, 2, 73, 80)]), np.eye(12)[1])  # tuples too
    assert not stats.pitch_class_histogram([]).any()


def test_histogram_distance_same_disjoint_and_half():
    c, d = np.eye(12)[0], np.eye(12)[2]
    assert stats.histogram_distance(c, c) == 0
    assert stats.histogram_distance(c, d) == 1  # no note in common
    assert stats.histogram_distance(c, (c + d) / 2) == pytest.approx(0.5)  # half the notes must move


def test_key_free_distance_moves_a_piece_to_the_key_that_fits():
    in_c = stats.pitch_class_histogram(scale())
    in_d = stats.pitch_class_histogram(scale([pitch + 2 for pitch in C_MAJOR]))
    # By hand: C 0 against 2/8, C# 1/8 against 0, D 2/8 against 1/8, F 0 against 1/8, F# 1/8
    # against 0; the differences add up to 6/8, half of that is 3/8.
    assert stats.histogram_distance(in_d, in_c) == pytest.approx(3 / 8)
    distance, shift = stats.key_free_distance(in_d, in_c)
    assert distance == pytest.approx(0) and shift == 10  # D major moved up 10 semitones is C major


def test_notes_per_second():
    assert stats.notes_per_second(scale()) == pytest.approx(2.0)  # 8 notes in 4 seconds
    assert stats.notes_per_second(chord()) == pytest.approx(1.5)  # 3 notes in 2 seconds
    late = [Note(note.start + 10, note.end + 10, note.pitch, 80) for note in scale()]
    assert stats.notes_per_second(late) == pytest.approx(2.0)  # counted from the first note
    assert stats.notes_per_second([]) == 0


def test_polyphony_melody_chord_overlap_and_gap():
    assert stats.polyphony(scale()) == pytest.approx(1.0)
    assert stats.polyphony(chord()) == pytest.approx(3.0)
    # 0-2 s and 1-3 s: 4 note-seconds over 3 sounding seconds.
    assert stats.polyphony([Note(0, 2, 60, 80), Note(1, 3, 64, 80)]) == pytest.approx(4 / 3)
    # A silence between two notes does not count: still one note at a time.
    assert stats.polyphony([Note(0, 1, 60, 80), Note(5, 6, 62, 80)]) == pytest.approx(1.0)
    assert math.isnan(stats.polyphony([]))


def test_sounding_seconds_is_the_union_of_the_notes():
    notes = [Note(0, 2, 60, 80), Note(1, 3, 64, 80), Note(1.5, 2.5, 67, 80), Note(4, 5, 60, 80)]
    assert stats.sounding_seconds(notes) == pytest.approx(4.0)


def test_pitch_range():
    assert stats.pitch_range(scale()) == 12  # C4 to C5
    assert stats.pitch_range(chord()) == 7  # C to G
    assert stats.pitch_range([Note(0, 1, 60, 80)]) == 0
    assert math.isnan(stats.pitch_range([]))


def test_note_lengths():
    assert np.allclose(stats.note_lengths(scale()), 0.5)
    assert np.allclose(stats.note_lengths([Note(0, 2, 60, 80), Note(1, 1.25, 62, 80)]), [2.0, 0.25])


def test_in_scale_rate():
    assert stats.in_scale_rate(scale()) == (1.0, 0)  # C major, tonic C
    rate, tonic = stats.in_scale_rate(scale([pitch + 7 for pitch in C_MAJOR]))
    assert (rate, tonic) == (1.0, 7)  # G major
    # All twelve pitch classes once: any major scale holds 7 of them.
    assert stats.in_scale_rate(scale(range(60, 72)))[0] == pytest.approx(7 / 12)
    # C major with an F# added: C major holds 8 of the 9 notes, and so does G major (F# in, F out).
    # The rate is 8/9, and the tie goes to the lower tonic, C.
    assert stats.in_scale_rate(scale(C_MAJOR + [66])) == (pytest.approx(8 / 9), 0)
    assert stats.in_scale_rate([])[1] is None


def test_loop_positions_and_share():
    chunks = "a b a b a b a b c d".split()  # "a b" four times, then two other chunks
    assert stats.loop_positions(chunks).tolist() == [True] * 8 + [False] * 2
    assert stats.loop_share(chunks) == pytest.approx(0.8)
    # Three times is not yet a loop (LOOP_MIN_REPEATS = 4), and a phrase played twice is music.
    assert stats.loop_share("a b a b a b c".split()) == 0
    assert stats.loop_share("c d e f g c d e f g".split()) == 0
    # One note struck over and over: an on and an off chunk, repeated.
    stuck = ["0_no_60_80", "2_nf_60_0"] * 6
    assert stats.loop_share(stuck) == 1.0
    assert stats.loop_share(["x"] * 4 + ["y"]) == pytest.approx(0.8)  # a period of one chunk
    assert stats.loop_share([]) == 0
    assert stats.loop_share(list(range(20))) == 0  # ids work too


def test_the_built_in_tunes_never_loop():
    from lstm_from_scratch.music.corpus import builtin_sequences
    for piece in builtin_sequences():
        assert stats.loop_share(piece.chunks) == 0, piece.name


def test_piece_statistics_of_a_scale_from_chunks():
    # The C major scale as chunks: each note two steps (half a beat at grid 4, a quarter second at
    # 120 beats per minute).
    chunks = []
    for pitch in C_MAJOR:
        chunks += [f"0_no_{pitch}_80", f"2_nf_{pitch}_0"]
    notes = chunks_to_notes(chunks, ticks_per_beat=4)
    corpus = stats.pitch_class_histogram(notes)
    found = stats.piece_statistics(notes, chunks, corpus)
    assert set(found) == set(stats.STATISTICS)
    assert found == pytest.approx({"notes_per_second": 4.0, "polyphony": 1.0, "pitch_range": 12.0,
                                   "median_note_length": 0.25, "loop_share": 0.0, "in_scale_rate": 1.0,
                                   "pitch_class_distance": 0.0})
    assert math.isnan(stats.piece_statistics(notes, chunks)["pitch_class_distance"])


def test_bad_notes_are_refused():
    with pytest.raises(ValueError, match="end >= start"):
        stats.note_array([(1.0, 0.5, 60, 80)])
