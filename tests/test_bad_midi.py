"""Broken MIDI files, built byte by byte: each gives a MidiError naming the file, within a second.

The one-second bound is a correctness bound for hangs (mido can take 31 s on a 640 kB file of
long variable-length numbers), not a speed test. It is measured in CPU time (``time.process_time``),
so a busy machine running other jobs cannot make it fail; only our own work counts.
"""
import random
import struct
import time
import warnings

import pytest

from lstm_from_scratch.errors import MidiError, MidiWarning
from lstm_from_scratch.music.events import EventSettings, load_folder, midi_to_chunks
from lstm_from_scratch.music.midi_safety import find_long_number, read_midi_file

END_OF_TRACK = b"\x00\xff\x2f\x00"
NOTES = b"\x00\x90\x3c\x50" + b"\x83\x60\x80\x3c\x00"  # note-on C4 at 0, note-off 480 ticks later


def chunk(name, body, length=None):
    return name + struct.pack(">L", len(body) if length is None else length) + body


def smf(*tracks, file_format=1, division=480):
    """A Standard MIDI File from track bodies (bytes without the MTrk header)."""
    header = chunk(b"MThd", struct.pack(">HHh", file_format, len(tracks), division))
    return header + b"".join(chunk(b"MTrk", body) for body in tracks)


GOOD = smf(NOTES + END_OF_TRACK)


def long_number_track(run_length):
    # Bytes of 0xff: each adds 7 set bits to the number mido builds, which makes it quadratic.
    return b"\x00\x90\x3c\x50" + b"\xff" * run_length + b"\x00\x80\x3c\x00" + END_OF_TRACK


CASES = {
    "empty": (b"", "empty"),
    "truncated_header": (b"MThd\x00\x00\x00\x06\x00\x01", "truncated header"),
    "track_length_too_long": (GOOD[:14] + chunk(b"MTrk", NOTES + END_OF_TRACK, length=400) + NOTES + END_OF_TRACK,
                              "unexpected end of file"),
    "track_length_too_short": (GOOD[:14] + chunk(b"MTrk", NOTES + END_OF_TRACK, length=5) + NOTES,
                               "unexpected end of file"),
    "text_renamed": (b"This is not MIDI, just a text file renamed to .mid\n" * 3, "not a MIDI file"),
    "random_bytes": (bytes(random.Random(7).randrange(256) for _ in range(5000)), "not a MIDI file"),
    "random_after_header": (GOOD[:22] + bytes(random.Random(8).randrange(256) for _ in range(5000)), "cannot parse"),
    "long_number_small": (smf(long_number_track(5)), "longer than 4 bytes"),
    # A 300 kB run of 0xff bytes: mido alone needs about 6 s for this; the pre-scan rejects it.
    "long_number_huge": (smf(long_number_track(300_000)), "longer than 4 bytes"),
    # After a sysex, a data byte cannot start a message (mido reads it as another sysex, with garbage).
    "running_status_after_sysex": (smf(b"\x00\xf0\x03\x01\x02\xf7" + b"\x00\x3c\x50" + NOTES + END_OF_TRACK),
                                   "unexpected end of file"),
    "running_status_at_start": (smf(b"\x00\x3c\x50" + NOTES + END_OF_TRACK), "running status"),
    "undefined_status": (smf(b"\x00\xf4" + NOTES + END_OF_TRACK), "undefined status byte"),
    "smpte": (smf(NOTES + END_OF_TRACK, division=struct.unpack(">h", b"\xe7\x28")[0]), "SMPTE"),
    "zero_ticks_per_beat": (smf(NOTES + END_OF_TRACK, division=0), "ticks per beat is 0"),
    "type_2": (smf(NOTES + END_OF_TRACK, file_format=2), "type-2"),
    "format_7": (smf(NOTES + END_OF_TRACK, file_format=7), "unknown MIDI file format"),
    "no_notes": (smf(b"\x00\xff\x51\x03\x07\xa1\x20" + END_OF_TRACK), "no notes"),
    "drums_only": (smf(b"\x00\x99\x24\x50\x60\x89\x24\x00" + END_OF_TRACK), "no notes other than drums"),
    "bad_key_signature": (smf(b"\x00\xff\x59\x02\x09\x00" + NOTES + END_OF_TRACK), "KeySignatureError"),
    "short_tempo_meta": (smf(b"\x00\xff\x51\x01\x07" + NOTES + END_OF_TRACK), "IndexError"),
    "bad_smpte_offset_meta": (smf(b"\x00\xff\x54\x05\xff\x00\x00\x00\x00" + NOTES + END_OF_TRACK), "KeyError"),
    "not_a_track_chunk": (GOOD[:14] + chunk(b"XXXX", NOTES + END_OF_TRACK), "no MTrk header"),
    "huge_meta_length": (smf(b"\x00\xff\x01\x8f\xff\xff\x7f" + NOTES), "exceeds maximum length"),
    "missing_track": (GOOD[:14], "unexpected end of file"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file_raises_midi_error_naming_the_file_quickly(tmp_path, name):
    data, reason = CASES[name]
    path = tmp_path / f"{name}.mid"
    path.write_bytes(data)
    started = time.process_time()
    with pytest.raises(MidiError) as caught:
        midi_to_chunks(path)
    elapsed = time.process_time() - started
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    assert reason in caught.value.reason
    # The error is not one of mido's: it is wrapped (with the original kept as the cause for debugging).
    assert type(caught.value) is MidiError


def test_data_byte_above_127_warns_and_still_loads(tmp_path):
    path = tmp_path / "loud.mid"
    path.write_bytes(smf(b"\x00\x90\x3c\xc8" + b"\x83\x60\x80\x3c\x00" + END_OF_TRACK))  # velocity byte 0xc8
    started = time.process_time()
    with pytest.warns(MidiWarning, match="loud.mid"):
        result = midi_to_chunks(path, EventSettings(raw=True))
    assert time.process_time() - started < 1.0
    assert result.chunks == ["0_st_120_500000", "0_no_60_127", "480_nf_60_0"]  # (120 bpm: no tempo set)


def test_good_file_gives_no_warning(tmp_path):
    path = tmp_path / "good.mid"
    path.write_bytes(GOOD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert midi_to_chunks(path, EventSettings(raw=True)).chunks == ["0_st_120_500000", "0_no_60_80", "480_nf_60_0"]


def test_oversize_file_is_rejected_with_the_cap(tmp_path):
    path = tmp_path / "big.mid"
    path.write_bytes(GOOD)
    with pytest.raises(MidiError, match=r"big\.mid: the file has 35 bytes, over the cap of 30 bytes"):
        midi_to_chunks(path, max_bytes=30)
    assert midi_to_chunks(path, max_bytes=35).chunks  # exactly at the cap is fine


def test_missing_file(tmp_path):
    with pytest.raises(MidiError, match="missing.mid: cannot read the file"):
        read_midi_file(tmp_path / "missing.mid")


def test_long_number_scan_ignores_legal_text():
    # 40 bytes >= 0x80 in a row inside a track name (UTF-8 text) is legal: not a number.
    name = "和声".encode("utf-8") * 7 + "ü".encode("utf-8") * 10
    data = smf(b"\x00\xff\x03" + bytes([len(name)]) + name + NOTES + END_OF_TRACK)
    assert find_long_number(data) is None
    # A sysex end byte followed by a 3-byte delta gives 4 high bytes in a row, also legal.
    data = smf(b"\x00\xf0\x02\x01\xf7" + b"\xff\xff\x7f\x90\x3c\x50" + END_OF_TRACK)
    assert find_long_number(data) is None
    # A 5-byte delta after legal text is found, at the right offset.
    track = b"\x00\xff\x03" + bytes([len(name)]) + name + b"\x81\x80\x80\x80\x00\x90\x3c\x50" + END_OF_TRACK
    data = smf(track)
    assert find_long_number(data) == 22 + 4 + len(name)


def test_load_folder_skips_bad_files_and_keeps_going(tmp_path):
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    (tmp_path / "a.mid").write_bytes(GOOD)
    (tmp_path / "b" / "broken.MID").write_bytes(CASES["track_length_too_long"][0])
    (tmp_path / "b" / "deeper" / "c.midi").write_bytes(GOOD)
    (tmp_path / "b" / "empty.mid").write_bytes(b"")
    (tmp_path / "b" / "long.mid").write_bytes(CASES["long_number_huge"][0])
    (tmp_path / "notes.txt").write_text("not MIDI, not looked at")
    skipped = []
    started = time.process_time()
    sequences, errors = load_folder(tmp_path, EventSettings(raw=True), on_skip=skipped.append)
    assert time.process_time() - started < 2.0
    assert [sequence.name for sequence in sequences] == ["a.mid", "b/deeper/c.midi"]
    assert all(sequence.chunks == ["0_st_120_500000", "0_no_60_80", "480_nf_60_0"] for sequence in sequences)
    bad_names = ["broken.MID", "empty.mid", "long.mid"]
    assert [error.path for error in errors] == [str(tmp_path / "b" / name) for name in bad_names]
    assert skipped == errors
