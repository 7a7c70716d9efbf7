"""MIDI <-> event-text chunks: the words the LSTM reads and writes.

A *chunk* is one note event written as text, as in the deep-improvisation project:

    DELTA_no_PITCH_VELOCITY     a note starts (note-on)
    DELTA_nf_PITCH_VELOCITY     a note ends (note-off)

DELTA is the number of ticks since the previous chunk, after all tracks are merged in time order
(absolute ticks; tempo changes do not change ticks). ``"0_no_60_80 240_nf_60_0"`` is middle C,
velocity 80, held for 240 ticks. A piece is a ``ChunkSequence``: its chunks and ``ticks_per_beat``.

How a MIDI file becomes chunks (the policy, the same in both modes):

- A note-on with velocity 0 is a note-off. Drums (MIDI channel 10, index 9) are dropped unless
  ``keep_drums``. Channels are merged: a chunk has no channel.
- At most one note per pitch sounds at a time. Each track is read on its own, in file order: a
  note-on for a pitch that is already sounding (a re-strike) first ends the sounding note; a
  note-off ends the sounding note of its pitch, and a note-off for a silent pitch is ignored. A
  note that ends at the tick it starts is inaudible and dropped. Notes still sounding at the end
  of a track end at the file's last tick (the end of its longest track), or one beat after they
  start if that is later.
- Then the tracks are merged with the same rule: a note that starts while another note of its
  pitch sounds ends that note; notes of one pitch that start at the same tick merge into one
  (the first track's velocity, the latest end).
- Chunks are written in one fixed order: by time, note-offs before note-ons, then by pitch (low
  to high). So the same notes always give the same chunks, and decoding the chunks (one track,
  note-offs first) gives the same notes back.

Two modes (``EventSettings.raw``):

- **Raw** keeps the file's own ticks and velocities (note-off velocities too). Encoding the MIDI
  written from raw chunks gives the same chunks again: the round trip is lossless for note events.
- **Normalized** (the default) makes files comparable and the vocabulary small. Absolute times are
  rounded to ``grid`` steps per beat (rounding absolute times, not deltas, so errors never add up),
  and the chunk sequence's ``ticks_per_beat`` is ``grid``. A note shorter than half a step lasts one
  step; two notes of one pitch that start on the same step merge. Deltas are capped at
  ``max_delta_beats * grid`` steps (long silences shrink). Velocities go into ``velocity_bins``
  equal bins over 1..127 and are written as the bin's middle velocity, so every chunk still plays.
  Note-off velocity is written as 0. Encoding normalized chunks again gives the same chunks.

Chunk text files, several pieces per file::

    # lstm_from_scratch chunk text, format 1
    # settings: {"raw": false, "grid": 4, "max_delta_beats": 4.0, "velocity_bins": 4, "keep_drums": false}
    # piece: bach/bwv66.6.mid ticks_per_beat=4
    0_no_60_80 0_no_64_80 4_nf_60_0 0_nf_64_0 ...

Lines starting with ``#`` are headers or comments; chunks are separated by any whitespace. A file
with no ``# piece:`` line (the seeds' plain format) is one piece with ``ticks_per_beat`` 480
(``DEFAULT_TICKS_PER_BEAT``).

Reading broken MIDI files safely is ``midi_safety.py``.
"""
import io
import json
import math
import operator
import re
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import mido

from lstm_from_scratch.atomic import atomic_write_bytes  # also importable from here, as it always was
from lstm_from_scratch.errors import ChunkError, DataError, MidiError, MidiWarning  # noqa: F401
from lstm_from_scratch.music.midi_safety import MAX_FILE_BYTES, read_midi_file

DEFAULT_TICKS_PER_BEAT = 480  # for chunk text without a header, and mido's own default
DEFAULT_TEMPO = 500_000  # microseconds per beat: 120 beats per minute
DRUM_CHANNEL = 9  # "channel 10" in General MIDI, counted from 0
MAX_DELTA = 0x0FFFFFFF  # the largest delta a 4-byte variable-length number holds (SMF limit)

# The defaults come from measurements with benchmarks/measure_vocab.py: distinct chunks (V) and the
# share of them seen only once, raw vs normalized.
#
#   corpus                                        raw             grid 4, cap 4 beats, 4 bins
#   built-in tunes (15 pieces, 5,306 chunks)       385 (15.8%)      292 (11.0%)
#   398 Bach chorales from music21 (228,722)       467 (12.6%)      445 (12.4%)
#   the same chorales "humanized" (note times     134,966 (83.6%)   873 (18.3%)
#     jittered by 1/40 beat, varied velocities)
#
# Velocity bins cost the most on performed music (humanized: 1 bin 544, 4 bins 873, 8 bins 1,203,
# 32 bins 2,645) and nothing on score-like files. A finer grid costs too (grid 8: 1,342; grid 12:
# 2,077). A 2-beat cap would save about 8% (chorales 408) but would halve every whole note of a
# melody, so the cap stays at 4 beats (0.003% of the chorales' deltas are longer).
DEFAULT_GRID = 4
DEFAULT_MAX_DELTA_BEATS = 4.0
DEFAULT_VELOCITY_BINS = 4


@dataclass(frozen=True)
class EventSettings:
    """How MIDI files become chunks. Stored in checkpoints as ``to_dict()``.

    The defaults (grid 4, cap 4 beats, 4 velocity bins) give 292 chunks on the built-in tunes and
    445 on 398 Bach chorales; the measurements are next to ``DEFAULT_GRID`` in this file.

    - ``raw``: keep the file's own ticks and velocities (lossless, huge vocabulary).
    - ``grid``: steps per beat in normalized mode (4 = sixteenth notes in 4/4).
    - ``max_delta_beats``: longest silence between two chunks, in beats.
    - ``velocity_bins``: number of velocity levels (1..127).
    - ``keep_drums``: keep channel-10 drums as if they were pitched notes.
    """

    raw: bool = False
    grid: int = DEFAULT_GRID
    max_delta_beats: float = DEFAULT_MAX_DELTA_BEATS
    velocity_bins: int = DEFAULT_VELOCITY_BINS
    keep_drums: bool = False

    def __post_init__(self):
        if not isinstance(self.grid, int) or isinstance(self.grid, bool) or not 1 <= self.grid <= 32767:
            raise ValueError(f"EventSettings: grid must be an integer in 1..32767, got {self.grid!r}")
        cap = self.max_delta_beats
        is_number = isinstance(cap, (int, float)) and not isinstance(cap, bool) and math.isfinite(cap)
        # The cap must allow at least one grid step, and at most the longest delta MIDI can hold.
        if not is_number or not 1 <= cap * self.grid <= MAX_DELTA:
            raise ValueError(f"EventSettings: max_delta_beats must be a number in 1/grid..{MAX_DELTA}/grid "
                             f"(grid {self.grid}), got {cap!r}")
        bins = self.velocity_bins
        if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= 127:
            raise ValueError(f"EventSettings: velocity_bins must be an integer in 1..127, got {bins!r}")

    @property
    def max_delta_steps(self):
        """The delta cap in grid steps (normalized mode)."""
        return max(1, round(self.max_delta_beats * self.grid))

    def to_dict(self):
        """A JSON-safe dict of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Settings from ``to_dict()`` output; missing keys take the defaults, unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"EventSettings: unknown keys {sorted(unknown)}")
        return cls(**data)


@dataclass
class ChunkSequence:
    """One piece as chunks. ``chunks`` is a list of N strings; deltas count ``ticks_per_beat`` per beat."""

    name: str
    chunks: list = field(default_factory=list)
    ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT


@dataclass(frozen=True)
class Note:
    """One sounding note: ``start`` and ``end`` in seconds, MIDI ``pitch`` and ``velocity`` (1..127)."""

    start: float
    end: float
    pitch: int
    velocity: int


# --- chunks as text ---------------------------------------------------------------------------

_CHUNK = re.compile(r"(-?[0-9]+)_(no|nf)_(-?[0-9]+)_(-?[0-9]+)", re.ASCII)


def parse_chunk(chunk, position=None, path=None, line=None):
    """``"12_no_60_80"`` -> ``(12, True, 60, 80)``: delta, is note-on, pitch, velocity.

    Raises ``ChunkError`` naming the chunk (and its position, file and line when given).
    """
    match = _CHUNK.fullmatch(chunk) if isinstance(chunk, str) else None
    if match is None:
        reason = "not of the form DELTA_no_PITCH_VELOCITY or DELTA_nf_PITCH_VELOCITY"
        raise ChunkError(reason, chunk, position, path, line)
    delta, kind, pitch, velocity = int(match[1]), match[2], int(match[3]), int(match[4])
    if delta < 0:
        raise ChunkError(f"negative delta {delta}", chunk, position, path, line)
    if not 0 <= pitch <= 127:
        raise ChunkError(f"pitch {pitch} is outside 0..127", chunk, position, path, line)
    if not 0 <= velocity <= 127:
        raise ChunkError(f"velocity {velocity} is outside 0..127", chunk, position, path, line)
    return delta, kind == "no", pitch, velocity


def format_chunk(delta, is_on, pitch, velocity):
    """``(12, True, 60, 80)`` -> ``"12_no_60_80"``."""
    return f"{delta}_{'no' if is_on else 'nf'}_{pitch}_{velocity}"


def validate_chunks(chunks, source=None):
    """Check every chunk; raise ``ChunkError`` naming the first bad one and its position.

    ``source`` (a file name or piece name) is added to the message. Returns the parsed events,
    a list of N tuples ``(delta, is_on, pitch, velocity)``.
    """
    return [parse_chunk(chunk, position, source) for position, chunk in enumerate(chunks)]


# --- notes: pairing note-ons with note-offs -------------------------------------------------------


def _pair_notes(events, end_tick, ticks_per_beat):
    """Turn one stream of note events into notes with the one-note-per-pitch policy.

    ``events``: ``(tick, is_on, pitch, velocity)`` in stream order (one track, or a chunk list).
    Returns notes ``(start, end, pitch, velocity, off_velocity)`` in ticks, sorted by start, pitch.
    """
    sounding = {}  # pitch -> (start tick, velocity)
    notes = []
    for tick, is_on, pitch, velocity in events:
        if pitch in sounding:
            start, on_velocity = sounding.pop(pitch)
            if tick > start:  # a note that ends where it starts is inaudible
                notes.append((start, tick, pitch, on_velocity, 0 if is_on else velocity))
        if is_on:
            sounding[pitch] = (tick, velocity)
    for pitch, (start, velocity) in sounding.items():  # close hanging notes
        end = end_tick if end_tick > start else start + ticks_per_beat
        notes.append((start, end, pitch, velocity, 0))
    notes.sort(key=lambda note: (note[0], note[2]))
    return notes


def _one_note_per_pitch(notes):
    """Resolve overlaps between notes of one pitch (from different tracks, or after rounding).

    ``notes``: ``(start, end, pitch, velocity, off_velocity)``. A note that starts while another
    of its pitch sounds ends that one (a re-strike); notes of one pitch that start together merge
    into one with the first note's velocity and the latest end. Returns notes sorted by start, pitch.
    """
    result = []
    previous = None
    for note in sorted(notes, key=lambda note: (note[2], note[0])):  # stable: track order survives
        start, end, pitch, velocity, off_velocity = note
        if previous is not None and previous[2] == pitch and start < previous[1]:
            if start == previous[0]:  # the same start: merge
                if end > previous[1]:
                    previous = previous[:1] + (end,) + previous[2:4] + (off_velocity,)
                result[-1] = previous
                continue
            result[-1] = previous[:1] + (start,) + previous[2:4] + (0,)  # re-strike
        result.append(note)
        previous = note
    result.sort(key=lambda note: (note[0], note[2]))
    return result


def _notes_to_chunks(notes, max_delta=None):
    """Notes ``(start, end, pitch, velocity, off_velocity)`` -> chunk strings, in the fixed order:
    by tick, note-offs first, then by pitch. Deltas above ``max_delta`` (if given) are cut to it."""
    events = []
    for start, end, pitch, velocity, off_velocity in notes:
        events.append((start, 1, pitch, velocity))
        events.append((end, 0, pitch, off_velocity))
    events.sort()
    chunks = []
    previous = 0
    for tick, is_on, pitch, velocity in events:
        delta = tick - previous
        if max_delta is not None and delta > max_delta:
            delta = max_delta  # a long silence shrinks; later times move earlier with it
        chunks.append(f"{delta}_{'no' if is_on else 'nf'}_{pitch}_{velocity}")
        previous = tick
    return chunks


def _midi_notes(midi, keep_drums):
    """The notes of a ``mido.MidiFile``: each track paired on its own in file order, then merged.

    Returns notes ``(start, end, pitch, velocity, off_velocity)`` in ticks, sorted by start, pitch.
    """
    end_tick = max((sum(message.time for message in track) for track in midi.tracks), default=0)
    notes = []
    for track in midi.tracks:
        events = []
        tick = 0
        for message in track:
            tick += message.time
            kind = message.type
            if kind != "note_on" and kind != "note_off":
                continue
            if message.channel == DRUM_CHANNEL and not keep_drums:
                continue
            is_on = kind == "note_on" and message.velocity > 0
            events.append((tick, is_on, message.note, message.velocity))
        notes.extend(_pair_notes(events, end_tick, midi.ticks_per_beat))
    return _one_note_per_pitch(notes)


# --- normalized mode -----------------------------------------------------------------------------


def velocity_bin_table(bins):
    """``(bin_of, middle)``: ``bin_of[v]`` is the bin of velocity v (index 0 unused, v in 1..127);
    ``middle[b]`` is the velocity written for bin b, the middle member of the bin, so binning it
    again gives b. With 4 bins: 1..32 -> 16, 33..64 -> 48, 65..96 -> 80, 97..127 -> 112."""
    bin_of = [0] + [(v - 1) * bins // 127 for v in range(1, 128)]
    members = [[] for _ in range(bins)]
    for v in range(1, 128):
        members[bin_of[v]].append(v)
    middle = [group[(len(group) - 1) // 2] for group in members]
    return bin_of, middle


def _normalize(notes, ticks_per_beat, settings):
    """Quantize notes ``(start, end, pitch, velocity, off_velocity)`` in ticks to grid steps,
    bin velocities, and keep one note per pitch at a time. Returns notes in steps."""
    grid = settings.grid
    bin_of, middle = velocity_bin_table(settings.velocity_bins)

    def to_steps(tick):  # round half up, in integers: no float error on long files
        return (2 * tick * grid + ticks_per_beat) // (2 * ticks_per_beat)

    quantized = []
    for start, end, pitch, velocity, _ in notes:
        step = to_steps(start)
        quantized.append((step, max(to_steps(end), step + 1), pitch, middle[bin_of[velocity]], 0))
    return _one_note_per_pitch(quantized)


# --- MIDI -> chunks and notes ----------------------------------------------------------------------


def midi_to_chunks(path, settings=EventSettings(), max_bytes=MAX_FILE_BYTES):
    """Encode one MIDI file as a ``ChunkSequence`` named after the file.

    Raises ``MidiError(path, reason)`` for any file that cannot be used (see ``midi_safety.py``),
    including a file with no notes. Warns ``MidiWarning`` when data bytes had to be clipped.
    """
    return mido_to_chunks(read_midi_file(path, max_bytes), settings, path)


def mido_to_chunks(midi, settings=EventSettings(), path="<midi>"):
    """Encode an already parsed ``mido.MidiFile``; ``path`` names the piece and any error.

    ``midi.ticks_per_beat`` must be positive (``read_midi_file`` checks it). Raises ``MidiError``
    if the file has no notes.
    """
    ticks_per_beat = midi.ticks_per_beat
    notes = _midi_notes(midi, settings.keep_drums)
    if not notes:
        if not settings.keep_drums and _midi_notes(midi, keep_drums=True):
            raise MidiError(path, "no notes other than drums on channel 10 (see keep_drums)")
        raise MidiError(path, "no notes")
    if settings.raw:
        return ChunkSequence(Path(path).name, _notes_to_chunks(notes), ticks_per_beat)
    notes = _normalize(notes, ticks_per_beat, settings)
    return ChunkSequence(Path(path).name, _notes_to_chunks(notes, settings.max_delta_steps), settings.grid)


def _tempo_map(midi):
    """Tempo changes from every track: a sorted list of ``(tick, microseconds per beat)``."""
    changes = []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                changes.append((tick, message.tempo))
    changes.sort(key=lambda change: change[0])
    return changes


def _ticks_to_seconds(ticks, ticks_per_beat, tempo_changes, tempo=DEFAULT_TEMPO):
    """Convert tick times to seconds under a tempo map (default ``tempo`` until the
    first change). ``ticks``: list of N ints -> list of N floats."""
    # Seconds at each tempo change, so any tick is one multiply away from its segment start.
    segments = [(0, 0.0, tempo)]  # (tick, seconds, tempo from here on)
    for tick, new_tempo in tempo_changes:
        seg_tick, seg_seconds, seg_tempo = segments[-1]
        seconds = seg_seconds + (tick - seg_tick) * seg_tempo / 1e6 / ticks_per_beat
        segments.append((tick, seconds, new_tempo))
    starts = [segment[0] for segment in segments]
    result = []
    for tick in ticks:
        seg_tick, seg_seconds, seg_tempo = segments[bisect_right(starts, tick) - 1]
        result.append(seg_seconds + (tick - seg_tick) * seg_tempo / 1e6 / ticks_per_beat)
    return result


def _notes_in_seconds(notes, ticks_per_beat, tempo_changes, tempo=DEFAULT_TEMPO):
    times = _ticks_to_seconds([t for note in notes for t in note[:2]], ticks_per_beat, tempo_changes, tempo)
    return [Note(times[2 * i], times[2 * i + 1], note[2], note[3]) for i, note in enumerate(notes)]


def midi_to_notes(path, keep_drums=False, max_bytes=MAX_FILE_BYTES):
    """The notes of a MIDI file in seconds (tempo changes respected), sorted by start then pitch.

    Uses the same pairing policy as ``midi_to_chunks``. Raises ``MidiError`` for a broken file.
    """
    midi = read_midi_file(path, max_bytes)
    notes = _midi_notes(midi, keep_drums)
    return _notes_in_seconds(notes, midi.ticks_per_beat, _tempo_map(midi))


def chunks_to_notes(chunks, ticks_per_beat, tempo=DEFAULT_TEMPO):
    """Decode chunks to notes in seconds at a constant ``tempo`` (microseconds per beat).

    Notes still sounding after the last chunk end one beat later. Raises ``ChunkError``.
    """
    notes = _pair_notes(*_chunk_ticks(chunks, ticks_per_beat), ticks_per_beat)
    return _notes_in_seconds(notes, ticks_per_beat, [], tempo)


def _chunk_ticks(chunks, ticks_per_beat):
    """Validated chunks -> (events with absolute ticks, the tick one beat after the last event)."""
    events = []
    tick = 0
    for delta, is_on, pitch, velocity in validate_chunks(chunks):
        tick += min(delta, MAX_DELTA)
        events.append((tick, is_on and velocity > 0, pitch, velocity))
    return events, tick + ticks_per_beat


# --- chunks -> MIDI ---------------------------------------------------------------------------------


def _integer_in(value, name, low, high):
    """``value`` as an int (NumPy integers welcome), or ``ValueError`` if it is not one in low..high."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return number


def chunks_to_midi(chunks, path, ticks_per_beat, tempo=DEFAULT_TEMPO, program=0):
    """Write chunks as a playable type-1 MIDI file (atomically) and return the ``mido.MidiFile``.

    Track 0 holds the tempo; track 1 the notes on channel 1 with General MIDI ``program``.
    Chunks are validated first (``ChunkError`` names the chunk and its position). Deltas above
    ``MAX_DELTA`` (2^28 - 1 ticks, the SMF limit; mido would silently write an illegal 5-byte
    number) are clamped to it. Notes still sounding at the end get a note-off one beat later.
    """
    ticks_per_beat = _integer_in(ticks_per_beat, "ticks_per_beat", 1, 32767)
    tempo = _integer_in(tempo, "tempo (microseconds per beat)", 1, 0xFFFFFF)
    program = _integer_in(program, "program", 0, 127)
    events = validate_chunks(chunks, source=str(path))
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)]))
    track = mido.MidiTrack([mido.Message("program_change", program=program, time=0)])
    sounding = set()
    for delta, is_on, pitch, velocity in events:
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=min(delta, MAX_DELTA)))
        if is_on and velocity > 0:
            sounding.add(pitch)
        else:
            sounding.discard(pitch)
    for i, pitch in enumerate(sorted(sounding)):
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=ticks_per_beat if i == 0 else 0))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return midi


# --- chunk text files ---------------------------------------------------------------------------------

TEXT_FORMAT_LINE = "# lstm_from_scratch chunk text, format 1"
_CHUNKS_PER_LINE = 16
_PIECE = re.compile(r"#\s*piece:\s*(.*?)\s+ticks_per_beat=(\S+)\s*")
_SETTINGS = re.compile(r"#\s*settings:\s*(.*)")


def write_chunk_text(path, sequences, settings=None):
    """Write pieces to one chunk text file (format in the module docstring), atomically.

    ``sequences``: a list of ``ChunkSequence``; ``settings``: the ``EventSettings`` that made them,
    recorded in a header line, or ``None``. Chunks are validated first (``ChunkError``).
    """
    lines = [TEXT_FORMAT_LINE]
    if settings is not None:
        lines.append("# settings: " + json.dumps(settings.to_dict()))
    for sequence in sequences:
        validate_chunks(sequence.chunks, source=sequence.name)
        name = " ".join(str(sequence.name).split()) or "piece"  # one line, no runs of blanks
        # A file name that is not UTF-8 (Linux names are bytes) holds lone surrogates: write \xe9.
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        lines.append(f"# piece: {name} ticks_per_beat={int(sequence.ticks_per_beat)}")
        chunks = sequence.chunks
        for start in range(0, len(chunks), _CHUNKS_PER_LINE):
            lines.append(" ".join(chunks[start:start + _CHUNKS_PER_LINE]))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read_chunk_text_file(path):
    """Read a chunk text file: ``(sequences, settings)``, settings ``None`` if the file has none.

    Raises ``DataError`` if the file cannot be read as UTF-8 text, ``ChunkError`` naming the file,
    line and chunk for a bad chunk or header.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a BOM is not a chunk
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read chunk text: {error}") from error
    sequences = []
    settings = None
    current = None
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            piece = _PIECE.fullmatch(stripped)
            setting = _SETTINGS.fullmatch(stripped)
            if piece is not None:
                current = ChunkSequence(piece[1], [], _parse_ticks_per_beat(piece[2], path, line_number))
                sequences.append(current)
            elif stripped.startswith("# piece:"):
                raise ChunkError("a piece header needs 'ticks_per_beat=N'", None, None, path, line_number)
            elif setting is not None:
                settings = _parse_settings(setting[1], path, line_number)
            continue  # any other '#' line is a comment
        words = stripped.split()
        if not words:
            continue
        if current is None:  # seeds' plain format: chunks with no header
            current = ChunkSequence(Path(path).stem, [], DEFAULT_TICKS_PER_BEAT)
            sequences.append(current)
        for word in words:
            parse_chunk(word, None, path, line_number)
        current.chunks.extend(words)
    return sequences, settings


def read_chunk_text(path):
    """The pieces in a chunk text file, a list of ``ChunkSequence`` (see ``read_chunk_text_file``)."""
    return read_chunk_text_file(path)[0]


def _parse_ticks_per_beat(text, path, line_number):
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 32767:
        raise ChunkError(f"ticks_per_beat must be an integer in 1..32767, got {text!r}", None, None, path, line_number)
    return int(text)


def _parse_settings(text, path, line_number):
    try:
        return EventSettings.from_dict(json.loads(text))
    except RecursionError:  # json.loads on thousands of nested brackets
        raise ChunkError("bad settings header: nested too deeply", None, None, path, line_number) from None
    except (ValueError, TypeError, AttributeError) as error:
        raise ChunkError(f"bad settings header: {error}", None, None, path, line_number) from error


# --- loading a corpus -----------------------------------------------------------------------------------

MIDI_SUFFIXES = (".mid", ".midi")


def midi_files(folder):
    """Every ``*.mid`` / ``*.midi`` file under ``folder`` (any letter case, recursively), sorted."""
    found = [path for path in Path(folder).rglob("*") if path.suffix.lower() in MIDI_SUFFIXES and path.is_file()]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def load_folder(path, settings=EventSettings(), on_skip=None, progress=False, max_bytes=MAX_FILE_BYTES):
    """Encode every MIDI file under a folder; bad files are skipped, never stop the corpus.

    Returns ``(sequences, errors)``: the ``ChunkSequence`` of each good file, named by its path
    relative to the folder, and one ``MidiError`` per skipped file, each also passed to
    ``on_skip(error)`` when given. ``progress=True`` shows a tqdm bar. Raises ``DataError`` if
    ``path`` is not a folder.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{path}: not a folder")
    files = midi_files(folder)
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc="reading MIDI", unit="file")
    sequences, errors = [], []
    for file in files:
        try:
            sequence = midi_to_chunks(file, settings, max_bytes)
        except MidiError as error:
            errors.append(error)
            if on_skip is not None:
                on_skip(error)
            continue
        sequences.append(replace(sequence, name=file.relative_to(folder).as_posix()))
    return sequences, errors


def load_data(path, settings=EventSettings(), on_skip=None, progress=False):
    """Pieces from a folder of MIDI files, one MIDI file, or a chunk text file (``.txt``).

    Returns a non-empty list of ``ChunkSequence``. Chunk text is used as written (``settings``
    apply to MIDI only). Raises ``MidiError`` for a single bad MIDI file and ``DataError`` naming
    the path when nothing usable is found.
    """
    source = Path(path)
    if source.is_dir():
        sequences, errors = load_folder(source, settings, on_skip, progress)
        if not sequences:
            reason = f"{len(errors)} MIDI files, none usable" if errors else "no .mid or .midi files"
            raise DataError(f"{path}: {reason}")
        return sequences
    if not source.exists():
        raise DataError(f"{path}: no such file or folder")
    if source.suffix.lower() in MIDI_SUFFIXES:
        return [midi_to_chunks(source, settings)]
    if source.suffix.lower() == ".txt":
        sequences = [sequence for sequence in read_chunk_text(source) if sequence.chunks]
        if not sequences:
            raise DataError(f"{path}: no chunks in this chunk text file")
        return sequences
    raise DataError(f"{path}: not a folder, a .mid/.midi file or a .txt chunk file")


# --- transposition ------------------------------------------------------------------------------


def transpose_chunk(chunk, semitones):
    """``chunk`` with its pitch moved by ``semitones``, or ``None`` if the pitch would leave 0..127.

    ``"4_no_60_80"`` moved by 2 is ``"4_no_62_80"``. Deltas and velocities stay as they are: a tune in
    another key is the same tune, which is why transposition is the data augmentation of music.
    Raises ``ChunkError`` for a chunk that is not well formed.
    """
    delta, is_on, pitch, velocity = parse_chunk(chunk)
    if not 0 <= pitch + semitones <= 127:
        return None
    return format_chunk(delta, is_on, pitch + semitones, velocity)


def pitch_range(chunks, source=None):
    """``(lowest, highest)`` pitch of the note chunks in ``chunks``, or ``None`` when there is none."""
    pitches = [event[2] for event in validate_chunks(chunks, source)]
    return (min(pitches), max(pitches)) if pitches else None
