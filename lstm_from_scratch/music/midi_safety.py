"""Reading a MIDI file that may be broken: never crash with a stray exception, never hang.

Real MIDI collections are full of damaged files, and mido reports damage with many exception types:
``EOFError`` (with an empty message) for a truncated file or a wrong chunk length, ``OSError`` for a
missing header or an undefined status byte, ``ValueError``, ``IndexError``, ``KeySignatureError``,
``TypeError`` for type-2 files, ``ZeroDivisionError`` and ``OverflowError``. ``read_midi_file`` turns
every one of them into a ``MidiError(path, reason)``, so a caller catches one class.

What is rejected, with a reason:

- files larger than ``max_bytes`` (``MAX_FILE_BYTES`` = 8 MB by default; the biggest piano
  performances are a few hundred kB, and mido needs about 3 s per MB);
- SMPTE time division, or ticks per beat of 0: we count time in beats;
- type-2 files (independent tracks with no shared clock) and unknown format numbers;
- variable-length numbers longer than 4 bytes (see ``find_long_number``).

Data bytes above 127 are the most common real fault. Such a file is read again with
``clip=True`` (mido clips those bytes to 127) and a ``MidiWarning`` names the file.
"""
import io
import os
import re
import struct
import warnings

import mido
from mido.messages import SPEC_BY_STATUS

from lstm_from_scratch.errors import MidiError, MidiWarning

MAX_FILE_BYTES = 8 * 1024 * 1024

# mido refuses to read a single message longer than this (mido.midifiles.midifiles.MAX_MESSAGE_LENGTH).
_MAX_MESSAGE_LENGTH = 1_000_000

# A variable-length number (VLQ) stores 7 bits per byte and sets the top bit of every byte but the
# last; the SMF standard allows at most 4 bytes (0x0FFFFFFF). A longer one can only appear where the
# file has 4 or more bytes >= 0x80 in a row, which one fast regular-expression scan finds.
_HIGH_RUN = re.compile(rb"[\x80-\xff]{4,}")


def find_long_number(data):
    """Byte offset of the first variable-length number longer than 4 bytes that mido would read.

    Returns ``None`` when there is none. Why it matters: mido shifts a Python integer left by 7
    bits for every byte of a variable-length number, and a run of n bytes >= 0x80 costs O(n^2)
    time; 640 kB of them takes 31 s. So we look before mido does.

    Most files have no run of 4 high bytes at all and pass after one regex scan. The others (text
    in UTF-8 or Shift-JIS, a sysex end byte followed by a long delta) are walked event by event,
    reading exactly where mido would read, so legal text is never mistaken for a number.
    ``data`` is the whole file as ``bytes``.
    """
    if _HIGH_RUN.search(data) is None:
        return None
    if len(data) < 14 or data[:4] != b"MThd":
        return None  # mido rejects the header before reading any number
    header_size = struct.unpack(">L", data[4:8])[0]
    num_tracks = struct.unpack(">h", data[10:12])[0]
    pos = 8 + header_size
    for _ in range(num_tracks):
        if pos + 8 > len(data) or data[pos:pos + 4] != b"MTrk":
            return None
        track_size = struct.unpack(">L", data[pos + 4:pos + 8])[0]
        pos += 8
        pos = _walk_track(data, pos, track_size)
        if pos is None:
            return None
        if pos < 0:
            return -pos - 1
    return None


def _read_number(data, pos):
    """Read a variable-length number at ``pos``: ``(value, next_pos)``, or ``(None, -pos - 1)`` if
    it is longer than 4 bytes, or ``(None, None)`` at the end of the data."""
    value = 0
    for i in range(4):
        if pos + i >= len(data):
            return None, None
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return None, -pos - 1


def _walk_track(data, pos, track_size):
    """Skim one track the way mido's ``read_track`` does, without building messages.

    Returns the position after the track, ``-offset - 1`` for a too-long number at ``offset``, or
    ``None`` where mido itself will raise an error (so there is nothing more to check).
    """
    start = pos
    last_status = None
    while pos - start != track_size:  # mido stops only on an exact match, so do we
        _, pos = _read_number(data, pos)  # the delta time
        if pos is None or pos < 0:
            return pos
        if pos >= len(data):
            return None
        status = data[pos]
        pos += 1
        peeked = 0
        if status < 0x80:
            if last_status is None:
                return None
            status, peeked = last_status, 1
        elif status != 0xFF:
            last_status = status
        if status == 0xFF:  # meta message: type byte, length, data
            pos += 1
            length, pos = _read_number(data, pos)
        elif status in (0xF0, 0xF7):  # sysex: length, data (a peeked byte is dropped, as in mido)
            length, pos = _read_number(data, pos)
        else:
            spec = SPEC_BY_STATUS.get(status)
            if spec is None:
                return None
            length = spec["length"] - 1 - peeked
        if pos is None or pos < 0:
            return pos
        if length > _MAX_MESSAGE_LENGTH or pos + length > len(data):
            return None
        pos += length
    return pos


def check_header(path, data):
    """Raise ``MidiError`` for a header we cannot use (checked before the slower full parse)."""
    if len(data) == 0:
        raise MidiError(path, "the file is empty")
    if data[:4] != b"MThd":
        raise MidiError(path, "not a MIDI file (it does not start with 'MThd')")
    if len(data) < 14:
        raise MidiError(path, f"truncated header ({len(data)} bytes)")
    file_format, _, division = struct.unpack(">HHh", data[8:14])
    if file_format == 2:
        raise MidiError(path, "type-2 file (independent tracks with no shared clock) is not supported")
    if file_format > 2:
        raise MidiError(path, f"unknown MIDI file format {file_format} (expected 0, 1 or 2)")
    if division < 0:
        raise MidiError(path, "SMPTE time division is not supported (we count time in beats)")
    if division == 0:
        raise MidiError(path, "ticks per beat is 0")


def read_midi_file(path, max_bytes=MAX_FILE_BYTES):
    """Read ``path`` with mido and return a ``mido.MidiFile``, or raise ``MidiError`` naming the file.

    ``max_bytes`` caps the file size (default 8 MB). Time is linear in the file size (mido reads
    about 1 MB in 3 s); a broken small file fails in milliseconds.
    """
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise MidiError(path, f"the file has {size:,} bytes, over the cap of {max_bytes:,} bytes")
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)  # a device or a growing file can be longer than its size said
        if len(data) > max_bytes:
            raise MidiError(path, f"the file has more than {max_bytes:,} bytes, over the cap")
    except OSError as error:
        raise MidiError(path, f"cannot read the file: {error.strerror or error}") from error
    check_header(path, data)
    offset = find_long_number(data)
    if offset is not None:
        raise MidiError(path, f"a variable-length number at byte {offset} is longer than 4 bytes")
    try:
        return mido.MidiFile(file=io.BytesIO(data))
    except (OSError, ValueError):  # what mido raises for a data byte above 127, among others
        pass
    except EOFError as error:
        raise MidiError(path, "unexpected end of file (truncated, or a chunk length is wrong)") from error
    except Exception as error:  # noqa: BLE001 - every mido failure becomes a MidiError
        raise MidiError(path, f"cannot parse: {type(error).__name__}: {error}") from error
    # clip=True differs only in how it treats data bytes above 127, so if it succeeds where the
    # strict read failed, those bytes were the fault.
    try:
        midi = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except EOFError as error:
        raise MidiError(path, "unexpected end of file (truncated, or a chunk length is wrong)") from error
    except Exception as error:  # noqa: BLE001 - every mido failure becomes a MidiError
        raise MidiError(path, f"cannot parse: {type(error).__name__}: {error}") from error
    warnings.warn(MidiWarning(f"{path}: data bytes above 127 were clipped to 127"), stacklevel=2)
    return midi
