"""Tempo (st) and control-change (cc) chunks: raw round trips in seconds, normalized choices, old
settings, decoding, the synth's pedal and tempo, the piano roll's pedal band."""
import json
import struct
import warnings

import numpy as np
import pytest

from lstm_from_scratch.errors import ChunkError
from lstm_from_scratch.music import corpus, events, synth
from lstm_from_scratch.music.events import (
    ChunkSequence, ControlEvent, EventSettings, Note, NoteEvent, TempoEvent, chunks_to_midi, chunks_to_notes,
    chunks_to_pedal, midi_to_chunks, midi_to_notes, midi_to_pedal, parse_chunk, read_chunk_text_file,
    write_chunk_text)

RAW = EventSettings(raw=True)


# --- a MIDI file built byte by byte -------------------------------------------------------------

def vlq(number):
    """A MIDI variable-length number: 7 bits a byte, high bit set on all but the last."""
    out = [number & 0x7F]
    number >>= 7
    while number:
        out.append(0x80 | (number & 0x7F))
        number >>= 7
    return bytes(reversed(out))


def track(events_):
    """``(delta, bytes)`` pairs -> an MTrk chunk, with its end-of-track."""
    body = b"".join(vlq(delta) + data for delta, data in events_) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def tempo(mpqn):
    return b"\xff\x51\x03" + mpqn.to_bytes(3, "big")


def performed_bytes(pedal=True):
    """480 ticks a beat. 120 bpm, then 60 bpm from tick 960 (beat 2). Middle C (60) struck at 0 and
    released at 240 with the sustain pedal down from 0 to 1440; E (64) from 960 to 1920."""
    conductor = track([(0, tempo(500_000)), (960, tempo(1_000_000))])
    down, up = (b"\xb0\x40\x7f", b"\xb0\x40\x00") if pedal else (b"\xff\x01\x00", b"\xff\x01\x00")  # (or empty text)
    notes = track([(0, down), (0, b"\x90\x3c\x50"), (240, b"\x80\x3c\x40"), (720, b"\x90\x40\x46"),
                   (480, up), (480, b"\x80\x40\x00")])
    return b"MThd" + struct.pack(">IHHH", 6, 1, 2, 480) + conductor + notes


@pytest.fixture
def performed(tmp_path):
    path = tmp_path / "performed.mid"
    path.write_bytes(performed_bytes())
    return path


def test_raw_chunks_hold_tempo_and_pedal(performed):
    chunks = midi_to_chunks(performed, RAW).chunks
    assert chunks == ["0_st_120_500000", "0_cc_0_64_127", "0_no_60_80", "240_nf_60_64",
                      "720_st_60_1000000", "0_no_64_70", "480_cc_0_64_0", "480_nf_64_0"]
    assert [type(event) for event in events.validate_chunks(chunks)[:3]] == [TempoEvent, ControlEvent, NoteEvent]


def test_tempo_and_pedal_in_seconds(performed):
    # Beats 0-1 last 0.5 s each, beats 2-3 one second each.
    assert midi_to_notes(performed) == [Note(0.0, 0.25, 60, 80), Note(1.0, 3.0, 64, 70)]
    assert midi_to_pedal(performed) == [(0.0, 2.0)]
    # As heard: C is released under the pedal and rings until it comes up.
    assert midi_to_notes(performed, pedal=True) == [Note(0.0, 2.0, 60, 80), Note(1.0, 3.0, 64, 70)]


def test_file_with_tempo_change_and_pedal_survives_encode_decode_render(performed, tmp_path):
    chunks = midi_to_chunks(performed, RAW).chunks
    decoded = tmp_path / "decoded.mid"
    chunks_to_midi(chunks, decoded, ticks_per_beat=480)
    assert midi_to_chunks(decoded, RAW).chunks == chunks
    assert midi_to_notes(decoded) == midi_to_notes(performed)
    assert midi_to_notes(decoded, pedal=True) == midi_to_notes(performed, pedal=True)
    assert midi_to_pedal(decoded) == midi_to_pedal(performed)
    assert chunks_to_notes(chunks, 480, pedal=True) == midi_to_notes(performed, pedal=True)
    assert chunks_to_pedal(chunks, 480) == [(0.0, 2.0)]

    rate = synth.DEFAULT_SAMPLE_RATE
    samples = synth.render_midi_to_wav(decoded, tmp_path / "decoded.wav")
    # The tempo change is honoured: the last note ends at 3.0 s, then the release.
    assert len(samples) == round(3.0 * rate) + round(synth.RELEASE * rate)
    # The pedal is honoured: C rings from its release (0.25 s) until the pedal comes up (2.0 s) ...
    window = slice(round(0.5 * rate), round(0.9 * rate))  # after C's key is up, before E starts
    assert np.abs(samples[window]).max() > 0.1
    # ... and without the pedal that stretch is silent.
    dry = tmp_path / "dry.mid"
    dry.write_bytes(performed_bytes(pedal=False))
    assert np.abs(synth.render_midi_to_wav(dry, tmp_path / "dry.wav")[window]).max() == 0


def test_raw_round_trip_is_exact_in_seconds_on_the_builtin_tunes(tmp_path):
    for path in sorted(corpus.builtin_midi_dir().glob("*.mid")):
        assert_raw_round_trip(path, tmp_path / "out.mid")


def assert_raw_round_trip(path, out):
    piece = midi_to_chunks(path, RAW)
    chunks_to_midi(piece.chunks, out, ticks_per_beat=piece.ticks_per_beat)
    assert midi_to_notes(out) == midi_to_notes(path), path.name            # the same notes, in seconds
    assert midi_to_notes(out, pedal=True) == midi_to_notes(path, pedal=True), path.name
    assert midi_to_pedal(out) == midi_to_pedal(path), path.name
    assert midi_to_chunks(out, RAW).chunks == piece.chunks, path.name      # so the same tempo map too


def test_raw_round_trip_is_exact_in_seconds_on_bach_chorales(tmp_path):
    pytest.importorskip("music21")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about things we do not use
        paths = corpus.export_bach_chorales(tmp_path / "bach", limit=4)
    for path in paths:
        assert_raw_round_trip(path, tmp_path / "out.mid")


def test_raw_keeps_a_multi_tempo_map_exactly(tmp_path):
    source = tmp_path / "tempi.mid"
    conductor = track([(0, tempo(600_000)), (100, tempo(433_333)), (0, tempo(433_334)), (1000, tempo(2_000_000))])
    notes = track([(0, b"\x90\x3c\x50"), (1500, b"\x80\x3c\x00")])
    source.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 1, 2, 96) + conductor + notes)
    chunks = midi_to_chunks(source, RAW).chunks
    assert chunks[:4] == ["0_st_100_600000", "0_no_60_80", "100_st_138_433333", "0_st_138_433334"]
    assert_raw_round_trip(source, tmp_path / "out.mid")


def test_normalized_tempo_choices(performed):
    def chunks(**options):
        return midi_to_chunks(performed, EventSettings(pedal="drop", **options)).chunks

    # main (the default): one tempo chunk; the two tempos last 960 ticks each, so the first heard wins.
    assert chunks() == ["0_st_120_500000", "0_no_60_80", "2_nf_60_0", "6_no_64_80", "8_nf_64_0"]
    assert events.bpm_of(events.tempo_bin(1_000_000, 8)) == 65
    assert chunks(tempo_map="keep") == ["0_st_120_500000", "0_no_60_80", "2_nf_60_0", "6_st_65_923077",
                                        "0_no_64_80", "8_nf_64_0"]
    assert chunks(tempo_map="drop") == ["0_no_60_80", "2_nf_60_0", "6_no_64_80", "8_nf_64_0"]
    # A change that stays in its bin writes nothing.
    assert "_st_" not in "".join(chunks(tempo_map="keep", tempo_bins=1)[1:])


def test_main_tempo_is_the_one_that_lasts_most_beats():
    assert events.main_tempo([], 100) == events.DEFAULT_TEMPO
    assert events.main_tempo([(0, 400_000), (10, 600_000), (50, 400_000)], 100) == 400_000  # 60 against 40
    assert events.main_tempo([(40, 600_000)], 100) == 600_000  # 60 ticks, against 40 at the default


def test_tempo_bins():
    assert events.tempo_bin_table(8) == [43, 53, 65, 79, 98, 120, 147, 181]
    assert events.tempo_bin(500_000, 8) == 500_000                        # 120 bpm is a bin's own tempo
    for bins in (1, 4, 8, 16):
        table = events.tempo_bin_table(bins)
        assert [events.bpm_of(events.tempo_bin(round(60_000_000 / bpm), bins)) for bpm in table] == table
    assert events.bpm_of(events.tempo_bin(60_000_000 // 20, 8)) == 43     # beyond the ends: the end bins
    assert events.bpm_of(events.tempo_bin(60_000_000 // 400, 8)) == 181


def test_normalized_pedal_choices(performed):
    def chunks(pedal):
        return midi_to_chunks(performed, EventSettings(pedal=pedal, tempo_map="drop")).chunks

    assert chunks("keep") == ["0_cc_0_64_127", "0_no_60_80", "2_nf_60_0", "6_no_64_80", "4_cc_0_64_0", "4_nf_64_0"]
    assert chunks("fold") == ["0_no_60_80", "8_no_64_80", "4_nf_60_0", "4_nf_64_0"]  # C rings to the release
    assert chunks("drop") == ["0_no_60_80", "2_nf_60_0", "6_no_64_80", "8_nf_64_0"]
    assert chunks_to_notes(chunks("keep"), 4, pedal=True) == chunks_to_notes(chunks("fold"), 4)


def test_normalized_pedal_keeps_changes_and_drops_taps():
    controls = [(0, 0, 64, 100), (10, 0, 64, 80), (470, 0, 64, 0), (480, 0, 64, 127),  # a pedal change
                (700, 0, 64, 0), (1000, 1, 64, 127), (1010, 1, 64, 0)]                 # a tap (< half a step)
    result = events._normalize_pedal(controls, 480, EventSettings())
    assert result == [(0, 0, 64, 127), (4, 0, 64, 0), (4, 0, 64, 127), (6, 0, 64, 0)]


def test_fold_ends_a_held_note_at_a_restrike():
    notes = [(0, 10, 60, 80, 0), (50, 60, 60, 90, 0)]
    assert events._fold_pedal(notes, [(5, 100)]) == [(0, 50, 60, 80, 0), (50, 100, 60, 90, 0)]
    # A pedal pressed at the very tick a key is released catches the note.
    assert events._fold_pedal([(0, 10, 60, 80, 0)], [(10, 30)]) == [(0, 30, 60, 80, 0)]


def test_a_pedal_left_down_is_released_at_the_end(tmp_path):
    source = tmp_path / "held.mid"
    source.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + track(
        [(0, b"\xb0\x40\x7f"), (0, b"\x90\x3c\x50"), (96, b"\x80\x3c\x00"), (96, b"\xff\x01\x00")]))
    assert midi_to_chunks(source, RAW).chunks[-1] == "96_cc_0_64_0"  # at the file's last tick
    chunks_to_midi(["0_cc_0_64_127", "0_no_60_80", "10_nf_60_0"], tmp_path / "g.mid", ticks_per_beat=96)
    assert midi_to_chunks(tmp_path / "g.mid", RAW).chunks[-1] == "96_cc_0_64_0"  # a beat after the last chunk


def test_drum_channel_pedal_is_dropped_with_the_drums(tmp_path):
    source = tmp_path / "drums.mid"
    source.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + track(
        [(0, b"\xb9\x40\x7f"), (0, b"\x90\x3c\x50"), (96, b"\x80\x3c\x00"), (0, b"\xb0\x07\x64")]))
    assert midi_to_chunks(source, RAW).chunks == ["0_st_120_500000", "0_no_60_80", "96_nf_60_0"]  # no volume (7)


def test_parse_tempo_and_control_chunks():
    assert parse_chunk("5_st_120_500000") == TempoEvent(5, 120, 500_000)
    assert parse_chunk("0_st_65_909091") == TempoEvent(0, 65, 909_091)  # the seed rounds 65.99 down; we accept it
    assert parse_chunk("0_cc_3_64_127") == ControlEvent(0, 3, 64, 127)
    assert parse_chunk("7_no_60_80") == (7, True, 60, 80)  # note chunks read as they always did
    for event in (TempoEvent(5, 120, 500_000), ControlEvent(0, 3, 64, 127), NoteEvent(7, False, 60, 0)):
        assert parse_chunk(events.format_event(event)) == event
    for bad, reason in [("0_st_120", "not of the form"), ("0_st_90_500000", "90 bpm is not the tempo"),
                        ("0_st_0_0", "outside 1..16777215"), ("0_cc_16_64_0", "channel 16"),
                        ("0_cc_0_64_128", "value 128"), ("0_cc_0_64", "not of the form"),
                        ("0_no_60_80_1", "not of the form")]:
        with pytest.raises(ChunkError, match=reason):
            parse_chunk(bad)


def test_seed_resolution_chunk_sets_ticks_per_beat(tmp_path):
    (tmp_path / "seed.txt").write_text("rs_96\n0_st_120_500000\n0_no_60_80\n96_no_60_0\n")
    (sequence,), settings = read_chunk_text_file(tmp_path / "seed.txt")
    assert sequence == ChunkSequence("seed", ["0_st_120_500000", "0_no_60_80", "96_no_60_0"], 96)
    assert settings is None
    (tmp_path / "late.txt").write_text("# piece: a ticks_per_beat=4\nrs_96 0_no_60_80\n")
    with pytest.raises(ChunkError, match="late.txt, line 2.*rs_"):
        read_chunk_text_file(tmp_path / "late.txt")


# --- older text files and checkpoints keep their meaning ------------------------------------------

OLD_SETTINGS = {"raw": False, "grid": 4, "max_delta_beats": 4.0, "velocity_bins": 4, "keep_drums": False}


@pytest.mark.parametrize("raw", [False, True])
def test_settings_saved_before_tempo_and_pedal_mean_notes_only(performed, raw):
    old = EventSettings.from_dict({**OLD_SETTINGS, "raw": raw})
    assert (old.tempo_map, old.pedal) == ("drop", "drop")
    chunks = midi_to_chunks(performed, old).chunks
    assert all(isinstance(event, NoteEvent) for event in events.validate_chunks(chunks))
    # Today's defaults (whose keys are all present) do keep them.
    assert EventSettings.from_dict(EventSettings(raw=raw).to_dict()) == EventSettings(raw=raw)


def test_old_chunk_text_reads_with_its_old_meaning(tmp_path):
    text = ("# lstm_from_scratch chunk text, format 1\n# settings: " + json.dumps(OLD_SETTINGS) +
            "\n# piece: a.mid ticks_per_beat=4\n0_no_60_80 4_nf_60_0\n")
    (tmp_path / "old.txt").write_text(text)
    (piece,), settings = read_chunk_text_file(tmp_path / "old.txt")
    assert settings == EventSettings(tempo_map="drop", pedal="drop") and piece.chunks == ["0_no_60_80", "4_nf_60_0"]
    assert chunks_to_notes(piece.chunks, 4) == [Note(0.0, 0.5, 60, 80)]  # 120 bpm, as always
    write_chunk_text(tmp_path / "again.txt", [piece], settings)
    assert read_chunk_text_file(tmp_path / "again.txt")[1] == settings


def test_settings_check_their_new_keys():
    for bad in [dict(tempo_map="bins"), dict(pedal="hold"), dict(tempo_bins=0), dict(tempo_bins=2.0)]:
        with pytest.raises(ValueError):
            EventSettings(**bad)
    assert EventSettings(raw=True).tempo_map == "keep" and EventSettings().tempo_map == "main"


# --- the piano roll -----------------------------------------------------------------------------------

def test_piano_roll_draws_the_pedal_band(performed, tmp_path):
    from lstm_from_scratch import plots

    plain = plots.plot_piano_roll(midi_to_notes(performed), tmp_path / "plain.png")
    banded = plots.plot_piano_roll(midi_to_notes(performed), tmp_path / "pedal.png", pedal=midi_to_pedal(performed))
    assert banded.stat().st_size > 1000 and banded.read_bytes() != plain.read_bytes()
    unpedalled = plots.plot_piano_roll(midi_to_notes(performed), tmp_path / "none.png", pedal=[])
    assert unpedalled.read_bytes() == plain.read_bytes()  # no pedal, no pedal row


# --- the command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--tempo-bins", "0"], "--tempo-bins must be an integer in 1..100"),
    (["--grid", "0"], "--grid must be an integer"),
    (["--raw", "--tempo-bins", "4"], "--raw keeps the files' own timing"),
    (["--pedal", "hold"], "argument --pedal: invalid choice"),
])
def test_event_options_name_the_bad_flag(tmp_path, capsys, argv, words):
    from lstm_from_scratch import cli

    source = corpus.builtin_midi_dir() / "ode_to_joy.mid"
    assert cli.main(["encode", str(source), "-o", str(tmp_path / "x.txt"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1


def test_encode_options_choose_tempo_and_pedal(tmp_path, performed):
    from lstm_from_scratch import cli

    out = tmp_path / "x.txt"
    assert cli.main(["encode", str(performed), "-o", str(out), "--tempo-map", "keep", "--tempo-bins", "4",
                     "--pedal", "fold"]) == 0
    (piece,), settings = read_chunk_text_file(out)
    assert (settings.tempo_map, settings.tempo_bins, settings.pedal) == ("keep", 4, "fold")
    assert piece.chunks == midi_to_chunks(performed, settings).chunks
