"""MIDI <-> chunks: round trips, the pairing policy, normalization, validation, chunk text files."""
import importlib.util
import json

import mido
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lstm_from_scratch.errors import ChunkError, DataError, LstmMusicError, MidiError
from lstm_from_scratch.music import events
from lstm_from_scratch.music.events import (
    MAX_DELTA,
    ChunkSequence,
    EventSettings,
    Note,
    chunks_to_midi,
    chunks_to_notes,
    load_data,
    midi_to_chunks,
    midi_to_notes,
    read_chunk_text,
    read_chunk_text_file,
    validate_chunks,
    write_chunk_text,
)
from lstm_from_scratch.music.midi_safety import find_long_number

# The note policy, tested without the tempo chunk every raw piece opens with (tests/test_tempo_pedal.py
# tests tempo and pedal chunks).
RAW = EventSettings(raw=True, tempo_map="drop")


def write_midi(path, messages_by_track, ticks_per_beat=480):
    """Write tracks given as lists of ``(absolute tick, mido message)``; returns ``path``."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for messages in messages_by_track:
        track = mido.MidiTrack()
        now = 0
        for tick, message in sorted(messages, key=lambda item: item[0]):
            track.append(message.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


def on(tick, pitch, velocity=80, channel=0):
    return tick, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)


def off(tick, pitch, velocity=0, channel=0):
    return tick, mido.Message("note_off", note=pitch, velocity=velocity, channel=channel)


def notes_to_messages(notes):
    """Notes ``(start, end, pitch, velocity)`` in ticks -> messages, note-offs first at a tick."""
    messages = [on(s, p, v) for s, e, p, v in notes] + [off(e, p) for s, e, p, v in notes]
    return sorted(messages, key=lambda item: (item[0], item[1].type == "note_on"))


# Notes of one pitch never overlap: each pitch gets a row of (gap, length) pairs.
note_rows = st.dictionaries(
    keys=st.integers(0, 127),
    values=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 2000), st.integers(1, 127)),
                    min_size=1, max_size=8),
    min_size=1, max_size=6)


def rows_to_notes(rows):
    notes = []
    for pitch, row in rows.items():
        tick = 0
        for gap, length, velocity in row:
            notes.append((tick + gap, tick + gap + length, pitch, velocity))
            tick += gap + length
    return sorted(notes, key=lambda note: (note[0], note[2]))


@settings(max_examples=40, deadline=None)
@given(rows=note_rows, ticks_per_beat=st.sampled_from([24, 96, 480, 960]), split=st.booleans())
def test_raw_round_trip_is_exact(tmp_path_factory, rows, ticks_per_beat, split):
    folder = tmp_path_factory.mktemp("raw")
    notes = rows_to_notes(rows)
    # Merging tracks must not matter: optionally put every other note on a second track.
    tracks = [notes_to_messages(notes[0::2]), notes_to_messages(notes[1::2])] if split else [notes_to_messages(notes)]
    source = write_midi(folder / "in.mid", tracks, ticks_per_beat)
    first = midi_to_chunks(source, RAW)
    assert first.ticks_per_beat == ticks_per_beat
    assert len(first.chunks) == 2 * len(notes)
    chunks_to_midi(first.chunks, folder / "out.mid", ticks_per_beat=ticks_per_beat)
    assert midi_to_chunks(folder / "out.mid", RAW).chunks == first.chunks
    seconds = ticks_per_beat / 0.5  # ticks per second at the default 120 beats per minute
    expected = [(s / seconds, e / seconds, p, v) for s, e, p, v in notes]
    decoded = [(n.start, n.end, n.pitch, n.velocity) for n in midi_to_notes(source)]
    # Compare field by field: pytest.approx does not take nested tuples (pytest >= 9.1 refuses them).
    assert [(p, v) for _, _, p, v in decoded] == [(p, v) for _, _, p, v in expected]
    assert [t for s, e, _, _ in decoded for t in (s, e)] == pytest.approx(
        [t for s, e, _, _ in expected for t in (s, e)]
    )


@settings(max_examples=40, deadline=None)
@given(rows=note_rows, jitter=st.integers(-50, 50))
def test_normalized_keeps_note_order_and_count_and_is_stable(tmp_path_factory, rows, jitter):
    folder = tmp_path_factory.mktemp("norm")
    # Notes start on a 1/4-beat grid of 120 ticks, plus jitter under half a step; each lasts >= 1 step.
    notes = [(max(0, s * 120 + jitter), max(0, s * 120 + jitter) + max(60, (e - s) * 120), p, v)
             for s, e, p, v in rows_to_notes(rows)]
    source = write_midi(folder / "in.mid", [notes_to_messages(notes)])
    result = midi_to_chunks(source, EventSettings(grid=4, max_delta_beats=10_000, velocity_bins=4, tempo_map="drop"))
    assert result.ticks_per_beat == 4
    ons = [c for c in result.chunks if "_no_" in c]
    assert len(ons) == len(notes)
    assert [int(c.split("_")[2]) for c in ons] == [p for s, e, p, v in notes]
    assert all(int(c.split("_")[3]) in (16, 48, 80, 112) for c in ons)
    assert all(c.endswith("_0") for c in result.chunks if "_nf_" in c)
    # Encoding the decoded normalized file again changes nothing.
    chunks_to_midi(result.chunks, folder / "out.mid", ticks_per_beat=result.ticks_per_beat)
    again = midi_to_chunks(folder / "out.mid", EventSettings(grid=4, max_delta_beats=10_000, velocity_bins=4, tempo_map="drop"))
    assert again.chunks == result.chunks


def test_normalized_rounds_absolute_times_and_caps_deltas(tmp_path):
    # Three notes 1/3 beat apart: rounding deltas would drift, rounding absolute times does not.
    notes = [(0, 100, 60, 64), (160, 260, 62, 64), (320, 420, 64, 64), (480 * 20, 480 * 21, 65, 127)]
    source = write_midi(tmp_path / "a.mid", [notes_to_messages(notes)])
    result = midi_to_chunks(source, EventSettings(grid=4, max_delta_beats=2.0, velocity_bins=1, tempo_map="drop"))
    assert result.chunks == [
        "0_no_60_64", "1_nf_60_0", "0_no_62_64", "1_nf_62_0", "1_no_64_64",  # steps 0, 1, 1, 2, 3
        "1_nf_64_0", "8_no_65_64", "4_nf_65_0"]  # the 76-step silence is capped at 8 steps


def test_short_note_lasts_one_step_and_same_step_restrikes_merge(tmp_path):
    source = write_midi(tmp_path / "a.mid", [[on(0, 60), off(10, 60), on(20, 60), off(400, 60)]])
    result = midi_to_chunks(source, EventSettings(grid=4, tempo_map="drop"))
    assert result.chunks == ["0_no_60_80", "3_nf_60_0"]


def test_overlapping_same_pitch_policy(tmp_path):
    # on 60, on 60 again (re-strike), off, off (the stray second off is ignored).
    source = write_midi(tmp_path / "a.mid", [[on(0, 60, 100), on(100, 60, 50), off(200, 60, 30), off(300, 60)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_100", "100_nf_60_0", "0_no_60_50", "100_nf_60_30"]
    # Across tracks each note keeps its own note-off, and a later start still ends the earlier note.
    source = write_midi(tmp_path / "b.mid", [[on(0, 60, 100), off(200, 60, 30)], [on(100, 60, 50), off(300, 60, 20)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_100", "100_nf_60_0", "0_no_60_50", "200_nf_60_20"]
    # Two tracks starting the same pitch together merge into one note: first velocity, latest end.
    source = write_midi(tmp_path / "c.mid", [[on(0, 60, 100), off(200, 60)], [on(0, 60, 50), off(300, 60)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_100", "300_nf_60_0"]
    # Within one track, a note-on and note-off at the same tick, in that order, is dropped.
    source = write_midi(tmp_path / "d.mid", [[on(0, 62), on(100, 60), off(100, 60), off(200, 62)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_62_80", "200_nf_62_0"]


def test_simultaneous_events_order_offs_first_then_pitch(tmp_path):
    # The file lists the note-on before the note-off at tick 480, and high pitches first.
    messages = [on(0, 67), on(0, 60), on(480, 64), off(480, 67), off(480, 60), off(960, 64)]
    track = mido.MidiTrack()
    now = 0
    for tick, message in messages:  # keep this exact file order (no sorting)
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(tmp_path / "a.mid")
    assert midi_to_chunks(tmp_path / "a.mid", RAW).chunks == [
        "0_no_60_80", "0_no_67_80", "480_nf_60_0", "0_nf_67_0", "0_no_64_80", "480_nf_64_0"]


def test_note_on_velocity_zero_is_note_off(tmp_path):
    source = write_midi(tmp_path / "a.mid", [[on(0, 60), on(240, 60, 0)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_80", "240_nf_60_0"]


def test_drums_dropped_unless_kept(tmp_path):
    source = write_midi(tmp_path / "a.mid", [[on(0, 60), off(480, 60)], [on(0, 36, 90, 9), off(120, 36, 0, 9)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_80", "480_nf_60_0"]
    kept = midi_to_chunks(source, EventSettings(raw=True, keep_drums=True, tempo_map="drop")).chunks
    assert kept == ["0_no_36_90", "0_no_60_80", "120_nf_36_0", "360_nf_60_0"]


def test_hanging_notes_are_closed(tmp_path):
    track = [on(0, 60), on(240, 64), off(480, 64), (960, mido.MetaMessage("marker", text="end"))]
    source = write_midi(tmp_path / "a.mid", [track])
    # 60 never ends: it ends at the file's last tick (960).
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_80", "240_no_64_80", "240_nf_64_0", "480_nf_60_0"]
    # A note starting at the very last tick lasts one beat.
    source = write_midi(tmp_path / "b.mid", [[on(0, 60), off(100, 60), on(100, 62)]])
    assert midi_to_chunks(source, RAW).chunks == ["0_no_60_80", "100_nf_60_0", "0_no_62_80", "480_nf_62_0"]
    # chunks_to_midi closes notes a generated sequence left sounding.
    chunks_to_midi(["0_no_60_80", "10_no_62_80"], tmp_path / "c.mid", ticks_per_beat=96)
    assert midi_to_chunks(tmp_path / "c.mid", RAW).chunks == ["0_no_60_80", "10_no_62_80", "96_nf_60_0", "0_nf_62_0"]


@pytest.mark.parametrize("chunk, reason", [
    ("12_no_60", "not of the form"),
    ("12_xx_60_80", "not of the form"),
    ("a_no_60_80", "not of the form"),
    ("-5_no_60_80", "negative delta -5"),
    ("0_no_128_80", "pitch 128 is outside 0..127"),
    ("0_nf_60_-1", "velocity -1 is outside 0..127"),
    ("0_no_60_200", "velocity 200 is outside 0..127"),
])
def test_validation_names_chunk_position_and_reason(chunk, reason, tmp_path):
    chunks = ["0_no_60_80", "10_nf_60_0", chunk]
    with pytest.raises(ChunkError) as caught:
        validate_chunks(chunks)
    message = str(caught.value)
    assert reason in message and repr(chunk) in message and "chunk 2" in message
    assert caught.value.position == 2 and caught.value.chunk == chunk
    with pytest.raises(ChunkError):
        chunks_to_midi(chunks, tmp_path / "bad.mid", ticks_per_beat=480)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_huge_delta_stays_legal(tmp_path):
    chunks = ["0_no_60_80", f"{2 ** 40}_nf_60_0", f"{2 ** 28}_no_62_80", "5_nf_62_0"]
    chunks_to_midi(chunks, tmp_path / "a.mid", ticks_per_beat=480)
    data = (tmp_path / "a.mid").read_bytes()
    assert find_long_number(data) is None
    times = [message.time for message in mido.MidiFile(tmp_path / "a.mid").tracks[1]]
    assert max(times) == MAX_DELTA
    assert midi_to_chunks(tmp_path / "a.mid", RAW).chunks == [
        "0_no_60_80", f"{MAX_DELTA}_nf_60_0", f"{MAX_DELTA}_no_62_80", "5_nf_62_0"]


def test_chunks_to_notes_in_seconds():
    notes = chunks_to_notes(["0_no_60_80", "480_nf_60_0", "0_no_62_90", "240_no_64_10"], 480, tempo=1_000_000)
    # Notes left sounding end one beat after the last chunk, as chunks_to_midi writes them.
    assert notes == [Note(0.0, 1.0, 60, 80), Note(1.0, 2.5, 62, 90), Note(1.5, 2.5, 64, 10)]


def test_midi_to_notes_follows_tempo_map(tmp_path):
    tempo_track = [(0, mido.MetaMessage("set_tempo", tempo=500_000)),
                   (480, mido.MetaMessage("set_tempo", tempo=1_000_000))]
    source = write_midi(tmp_path / "a.mid", [tempo_track, [on(0, 60), off(960, 60)]])
    assert midi_to_notes(source) == [Note(0.0, 1.5, 60, 80)]  # 0.5 s for beat 1, 1 s for beat 2


def test_settings_dict_round_trip_and_checks():
    custom = EventSettings(raw=False, grid=8, max_delta_beats=2.5, velocity_bins=16, keep_drums=True)
    assert EventSettings.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    # A dict saved before tempo and pedal chunks existed meant notes only, and still does.
    assert EventSettings.from_dict({}) == EventSettings(tempo_map="drop", pedal="drop")
    for bad in [dict(grid=0), dict(grid=4.0), dict(velocity_bins=0), dict(velocity_bins=128), dict(max_delta_beats=0.2),
                dict(max_delta_beats=float("inf")), dict(max_delta_beats="4")]:
        with pytest.raises(ValueError):
            EventSettings(**bad)
    with pytest.raises(ValueError, match="unknown keys"):
        EventSettings.from_dict({"gird": 4})


def test_velocity_bins_decode_to_their_own_bin():
    for bins in range(1, 128):
        bin_of, middle = events.velocity_bin_table(bins)
        assert [bin_of[v] for v in middle] == list(range(bins))
        assert all(1 <= v <= 127 for v in middle)


def test_chunk_text_round_trip(tmp_path):
    pieces = [ChunkSequence("folder/one piece.mid", ["0_no_60_80", "4_nf_60_0"] * 20, 4),
              ChunkSequence("two", ["0_no_61_16"], 480), ChunkSequence("empty", [], 96)]
    write_chunk_text(tmp_path / "c.txt", pieces, EventSettings(grid=4))
    read, stored = read_chunk_text_file(tmp_path / "c.txt")
    assert read == pieces and stored == EventSettings(grid=4)
    assert load_data(tmp_path / "c.txt") == pieces[:2]  # empty pieces are left out of training data


def test_plain_seed_file_reads_with_default_ticks_per_beat(tmp_path):
    (tmp_path / "seed.txt").write_text("0_no_60_80 96_nf_60_0\n 0_no_62_70   48_nf_62_0 \n")
    assert read_chunk_text(tmp_path / "seed.txt") == [
        ChunkSequence("seed", ["0_no_60_80", "96_nf_60_0", "0_no_62_70", "48_nf_62_0"], events.DEFAULT_TICKS_PER_BEAT)]


@pytest.mark.parametrize("text, line, words", [
    ("# piece: a ticks_per_beat=4\n0_no_60_80\n0_no_60_80 4_nf_60_x\n", 3, "'4_nf_60_x'"),
    ("# piece: a ticks_per_beat=0\n0_no_60_80\n", 1, "ticks_per_beat"),
    ("# piece: a\n0_no_60_80\n", 1, "ticks_per_beat=N"),
    ("# settings: {not json\n", 1, "bad settings"),
])
def test_bad_chunk_text_names_file_and_line(tmp_path, text, line, words):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(ChunkError) as caught:
        read_chunk_text(tmp_path / "bad.txt")
    message = str(caught.value)
    assert "bad.txt" in message and f"line {line}" in message and words in message


def test_write_chunk_text_refuses_bad_chunks(tmp_path):
    with pytest.raises(ChunkError, match="piece-x"):
        write_chunk_text(tmp_path / "c.txt", [ChunkSequence("piece-x", ["0_no_60_80", "oops"], 4)])
    assert not (tmp_path / "c.txt").exists()


def test_load_data_sources(tmp_path):
    source = write_midi(tmp_path / "one.MIDI", [[on(0, 60), off(480, 60)]])
    assert load_data(source, RAW) == [ChunkSequence("one.MIDI", ["0_no_60_80", "480_nf_60_0"], 480)]
    with pytest.raises(DataError, match="no such file"):
        load_data(tmp_path / "missing.mid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .mid"):
        load_data(tmp_path / "empty")
    (tmp_path / "notes.csv").write_text("1,2")
    with pytest.raises(DataError, match="notes.csv"):
        load_data(tmp_path / "notes.csv")
    assert issubclass(DataError, LstmMusicError) and issubclass(MidiError, LstmMusicError)


def test_written_midi_is_type_1_and_plays(tmp_path):
    midi = chunks_to_midi(["0_no_60_80", "48_nf_60_0"], tmp_path / "a.mid",
                          ticks_per_beat=96, tempo=600_000, program=40)
    reread = mido.MidiFile(tmp_path / "a.mid")
    assert reread.type == 1 and reread.ticks_per_beat == 96 and len(midi.tracks) == 2
    assert reread.tracks[0][0].tempo == 600_000 and reread.tracks[1][0].program == 40
    assert reread.length == pytest.approx(48 / 96 * 0.6)
    for bad in [dict(ticks_per_beat=0), dict(ticks_per_beat=96.0), dict(tempo=0), dict(program=128)]:
        with pytest.raises(ValueError):
            chunks_to_midi(["0_no_60_80"], tmp_path / "b.mid", **{"ticks_per_beat": 96, **bad})
    chunks_to_midi(["0_no_60_80"], tmp_path / "b.mid", ticks_per_beat=np.int64(96))  # NumPy ints are fine


CORPUS_MISSING = importlib.util.find_spec("lstm_from_scratch.music.corpus") is None


@pytest.mark.skipif(CORPUS_MISSING, reason="the built-in corpus module is not there yet")
def test_builtin_pieces_round_trip(tmp_path):
    from lstm_from_scratch.music import corpus

    pieces = corpus.builtin_sequences(RAW)
    assert pieces
    for number, piece in enumerate(pieces):
        path = tmp_path / f"{number}.mid"
        chunks_to_midi(piece.chunks, path, ticks_per_beat=piece.ticks_per_beat)
        first = midi_to_chunks(path, RAW)
        chunks_to_midi(first.chunks, path, ticks_per_beat=first.ticks_per_beat)
        assert midi_to_chunks(path, RAW).chunks == first.chunks, piece.name
        ons = sum("_no_" in chunk and not chunk.endswith("_0") for chunk in piece.chunks)
        assert sum("_no_" in chunk for chunk in first.chunks) == ons, piece.name
