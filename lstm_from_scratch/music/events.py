"""MIDI <-> event-text chunks: the words the LSTM reads and writes.

A *chunk* is one event written as text, in the deep-improvisation project's format:

    DELTA_no_PITCH_VELOCITY          a note starts (note-on)
    DELTA_nf_PITCH_VELOCITY          a note ends (note-off)
    DELTA_st_BPM_MPQN                the tempo from here on ("set tempo"): beats per minute, rounded,
                                     and microseconds per quarter note, MIDI's own exact number
    DELTA_cc_CHANNEL_CONTROL_VALUE   a control change: a piano pedal (64 sustain, 66 sostenuto,
                                     67 soft); VALUE 64..127 is down, 0..63 up

DELTA is the number of ticks since the previous chunk of any kind, after all tracks are merged in
time order. Ticks count beats, so a tempo change changes seconds, not ticks. ``"0_st_120_500000
0_no_60_80 240_nf_60_0"`` is middle C at 120 bpm, velocity 80, held for 240 ticks. A piece is a
``ChunkSequence``: its chunks and ``ticks_per_beat``. ``parse_chunk`` reads a chunk as a
``NoteEvent``, ``TempoEvent`` or ``ControlEvent``.

What a MIDI file keeps, and what it loses (both modes):

- Kept: notes, the tempo map, and the three piano pedals (controls 64, 66, 67), the controls a
  pianist plays. The synth and ``pedal="fold"`` use the sustain pedal; the other two are kept in raw
  text so that it loses nothing a pianist did.
- Dropped: the channels of notes, program (instrument) changes, every other control change (bank
  select, modulation, volume, pan, expression, reverb and chorus depth, RPN/NRPN, all-notes-off:
  mixing and synthesizer set-up rather than playing), pitch bend, aftertouch, system exclusive, and
  the meta events other than tempo (key and time signatures, names, lyrics, markers).

How a MIDI file becomes chunks (the policy, the same in both modes):

- A note-on with velocity 0 is a note-off. Drums (MIDI channel 10, index 9) and the controls on
  that channel are dropped unless ``keep_drums``. Channels are merged: a note chunk has no channel.
- At most one note per pitch sounds at a time. Each track is read on its own, in file order: a
  note-on for a pitch that is already sounding (a re-strike) first ends the sounding note; a
  note-off ends the sounding note of its pitch, and a note-off for a silent pitch is ignored. A
  note that ends at the tick it starts is inaudible and dropped. Notes still sounding at the end
  of a track end at the file's last tick (the end of its longest track), or one beat after they
  start if that is later; a pedal left down is released at the file's last tick.
- Then the tracks are merged with the same rule: a note that starts while another note of its
  pitch sounds ends that note; notes of one pitch that start at the same tick merge into one
  (the first track's velocity, the latest end).
- Since notes have no channel, neither has the pedal: a sustain event on any channel holds every
  note, and the latest one decides. At one tick, pedal events count before note events, so a pedal
  pressed at the tick a key is released catches the note.
- Chunks are written in one fixed order: by time; at one tick the tempo first, then the pedals, the
  note-offs and the note-ons, notes by pitch (low to high). So the same events always give the same
  chunks, and decoding the chunks gives the same events back.

Two modes (``EventSettings.raw``):

- **Raw** keeps the file's own ticks, velocities (note-off velocities too), every tempo change and
  the pedals with their exact values and channels. The chunks open with the tempo at tick 0 (120 bpm,
  MIDI's default, if the file sets none). Decoding raw chunks gives the same notes at the same times
  in seconds, the same tempo map and the same pedal events, and encoding that MIDI again gives the
  same chunks: measured on the built-in tunes, 349 Bach chorales from music21 and 35 test files of
  pretty_midi, symusic and miditok (``benchmarks/README.md``), and tested.
- **Normalized** (the default) makes files comparable and the vocabulary small. Absolute times are
  rounded to ``grid`` steps per beat (rounding absolute times, not deltas, so errors never add up),
  and the chunk sequence's ``ticks_per_beat`` is ``grid``. A note shorter than half a step lasts one
  step; two notes of one pitch that start on the same step merge. Deltas are capped at
  ``max_delta_beats * grid`` steps (long silences shrink). Velocities go into ``velocity_bins``
  equal bins over 1..127 and are written as the bin's middle velocity, so every chunk still plays.
  Note-off velocity is written as 0. Tempo and pedal follow ``tempo_map`` and ``pedal`` (below).
  Encoding normalized chunks again gives the same chunks.

Tempo and pedal in normalized mode, and why the defaults are what they are (the vocabulary sizes
and the generated pieces behind these reasons are measured in ``benchmarks/README.md``, "Tempo and
pedal chunks", with ``benchmarks/measure_vocab.py --tempo-pedal``):

- ``tempo_map="main"`` (default): one tempo chunk at the start, the tempo the piece spends the most
  beats in, in one of ``tempo_bins`` tempos (8 by default: 43 to 181 bpm, each about 23% from the
  next, with 120 exact). ``"keep"`` writes every change that moves to another bin; ``"drop"`` none.
  The vocabulary barely cares which, so the choice is about the music. Tempo chunks in the middle of
  a piece are rare, so a small net learns little about where they go and would write them at
  random: a generated piece would lurch from one tempo to another. With the main tempo a tempo chunk
  only ever opens a piece, generated pieces keep the steady tempo of ``--tempo``, and decoding
  normalized text still plays each piece at its own tempo.
- ``pedal="keep"`` (default, both modes): the sustain pedal as two chunks, ``cc_0_64_127`` down and
  ``cc_0_64_0`` up (only the changes across 64; a press shorter than half a step is dropped; a
  release and a new press in one step, a pianist's pedal change, are both kept). ``"fold"`` writes
  no pedal chunks and lengthens each note released under the pedal to the pedal's release (or to
  its next strike), as Magenta's Performance RNN does. ``"drop"`` ignores the pedal. On performed
  piano, keeping gives the smallest vocabulary with the fewest chunks seen once: a pedal chunk splits
  a long, rare delta into two short, common ones, while folding ends ringing notes at many new
  moments. What it sounds like decides it too: with the pedal kept, notes keep the lengths the
  fingers played, so the note rules that end a note held too long (``generate.NoteRules``) leave
  alone the notes that ring under the pedal, and the synth rings them as a piano does; folded, a
  piece is full of long notes that those rules would cut, and nets trained each way bear it out.

Older settings (checkpoints and text headers written before tempo and pedal chunks existed) lack
``tempo_map`` and ``pedal``; ``EventSettings.from_dict`` reads them as ``"drop"``, which is what such
text always held: notes only. So an old checkpoint still encodes a primer as it did.

Chunk text files, several pieces per file::

    # lstm_from_scratch chunk text, format 1
    # settings: {"raw": false, "grid": 4, "max_delta_beats": 4.0, "velocity_bins": 4, "keep_drums": false,
    #            "tempo_map": "main", "pedal": "keep", "tempo_bins": 8}   (one line in the file)
    # piece: bach/bwv66.6.mid ticks_per_beat=4
    0_st_120_500000 0_no_60_80 0_no_64_80 4_nf_60_0 0_nf_64_0 ...

Lines starting with ``#`` are headers or comments; chunks are separated by any whitespace. The ticks
per beat live in the ``# piece:`` header, not in the seed's ``rs_RESOLUTION`` chunk: a chunk is a
word the net reads and writes, and the resolution is not music. As a chunk it would take a place in
the vocabulary, and a generated piece could state it anywhere, or twice. A file with no ``# piece:``
line (the seeds' plain format) is one piece with ``ticks_per_beat`` 480 (``DEFAULT_TICKS_PER_BEAT``),
or the seed's ``rs_N`` when its first word is one.

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
from typing import NamedTuple

import mido

from lstm_from_scratch.atomic import atomic_write_bytes  # also importable from here, as it always was
from lstm_from_scratch.errors import ChunkError, DataError, MidiError, MidiWarning  # noqa: F401
from lstm_from_scratch.music.midi_safety import MAX_FILE_BYTES, read_midi_file

DEFAULT_TICKS_PER_BEAT = 480  # for chunk text without a header, and mido's own default
DEFAULT_TEMPO = 500_000  # microseconds per beat: 120 beats per minute, MIDI's tempo until a file sets one
MAX_TEMPO = 0xFFFFFF  # microseconds per beat: MIDI stores a tempo in 3 bytes (about 3.6 bpm at the slowest)
DRUM_CHANNEL = 9  # "channel 10" in General MIDI, counted from 0
MAX_DELTA = 0x0FFFFFFF  # the largest delta a 4-byte variable-length number holds (SMF limit)

# The piano's three pedals, as MIDI control numbers. Their value 64..127 means down, 0..63 up.
SUSTAIN_PEDAL = 64  # the right pedal: lifts every damper, so released keys keep sounding
SOSTENUTO_PEDAL = 66  # the middle pedal: holds only the keys down when it is pressed
SOFT_PEDAL = 67  # the left pedal (una corda): a softer, darker tone
PEDAL_CONTROLS = (SUSTAIN_PEDAL, SOSTENUTO_PEDAL, SOFT_PEDAL)
PEDAL_DOWN, PEDAL_UP = 127, 0  # the values normalized mode writes

TEMPO_MAPS = ("keep", "main", "drop")
PEDALS = ("fold", "keep", "drop")
# Tempo bins divide the range of Maelzel's metronome, 40..208 beats per minute, into equal steps of
# log-tempo: musicians hear tempo as ratios (from 60 to 66 bpm is as big a step as from 120 to 132).
# 120 bpm, MIDI's default and the commonest tempo in MIDI files, is a bin's own tempo.
SLOWEST_BPM, FASTEST_BPM, CENTRE_BPM = 40, 208, 120

# The grid, the cap and the bins were chosen from the vocabulary sizes `benchmarks/measure_vocab.py`
# measures (benchmarks/README.md, "Event text: the grid, the cap and the velocity bins"): velocity
# bins cost the most on performed music and nothing on score-like files, a finer grid costs too, and a
# shorter cap would halve every whole note of a melody.
DEFAULT_GRID = 4
DEFAULT_MAX_DELTA_BEATS = 4.0
DEFAULT_VELOCITY_BINS = 4
DEFAULT_TEMPO_MAP = "main"  # normalized mode; raw mode keeps every tempo change (module docstring)
DEFAULT_PEDAL = "keep"  # both modes (module docstring)
DEFAULT_TEMPO_BINS = 8

# Settings saved before tempo and pedal chunks existed (in checkpoints and text headers) lack these
# keys, and their text holds notes only. Reading them, a missing key takes the value that means
# exactly that, not today's default: an old checkpoint must encode a primer as it always did.
NOTES_ONLY = {"tempo_map": "drop", "pedal": "drop"}


@dataclass(frozen=True)
class EventSettings:
    """How MIDI files become chunks. Stored in checkpoints as ``to_dict()``.

    The defaults (grid 4, cap 4 beats, 4 velocity bins; the main tempo in 8 bins; the sustain pedal
    as chunks) are measured: the figures are next to ``DEFAULT_GRID`` in this file and in the module
    docstring.

    - ``raw``: keep the file's own ticks, velocities, tempo changes and pedals (lossless, huge vocabulary).
    - ``grid``: steps per beat in normalized mode (4 = sixteenth notes in 4/4).
    - ``max_delta_beats``: longest silence between two chunks, in beats.
    - ``velocity_bins``: number of velocity levels (1..127).
    - ``keep_drums``: keep channel-10 drums as if they were pitched notes.
    - ``tempo_map``: ``"keep"`` every tempo change as an ``st`` chunk, ``"main"`` one ``st`` chunk
      with the tempo that lasts longest, ``"drop"`` none. Default: ``"keep"`` in raw mode,
      ``DEFAULT_TEMPO_MAP`` in normalized mode.
    - ``pedal``: ``"keep"`` the pedals as ``cc`` chunks, ``"fold"`` the sustain pedal into the notes
      (a note held by it ends when the pedal is released), ``"drop"`` it. Default ``"keep"``.
    - ``tempo_bins``: number of tempo levels in normalized mode (1..100).
    """

    raw: bool = False
    grid: int = DEFAULT_GRID
    max_delta_beats: float = DEFAULT_MAX_DELTA_BEATS
    velocity_bins: int = DEFAULT_VELOCITY_BINS
    keep_drums: bool = False
    tempo_map: str = None
    pedal: str = DEFAULT_PEDAL
    tempo_bins: int = DEFAULT_TEMPO_BINS

    def __post_init__(self):
        # None means "the mode's default": raw mode is lossless, so it keeps every tempo change.
        if self.tempo_map is None:
            object.__setattr__(self, "tempo_map", "keep" if self.raw else DEFAULT_TEMPO_MAP)
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
        if self.tempo_map not in TEMPO_MAPS:
            raise ValueError(f"EventSettings: tempo_map must be one of {', '.join(TEMPO_MAPS)}, "
                             f"got {self.tempo_map!r}")
        if self.pedal not in PEDALS:
            raise ValueError(f"EventSettings: pedal must be one of {', '.join(PEDALS)}, got {self.pedal!r}")
        bins = self.tempo_bins
        if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= 100:
            raise ValueError(f"EventSettings: tempo_bins must be an integer in 1..100, got {bins!r}")

    @property
    def max_delta_steps(self):
        """The delta cap in grid steps (normalized mode)."""
        return max(1, round(self.max_delta_beats * self.grid))

    def to_dict(self):
        """A JSON-safe dict of the settings."""
        return asdict(self)

    def differences(self, other):
        """``(mine, theirs)``: the settings that differ from ``other``'s, each as JSON text for a
        message, ``'{"raw": true, "grid": 480}'`` say."""
        mine, theirs = self.to_dict(), other.to_dict()
        keys = [key for key in mine if mine[key] != theirs.get(key)]
        return tuple(json.dumps({key: values.get(key) for key in keys}) for values in (mine, theirs))

    @classmethod
    def from_dict(cls, data):
        """Settings from ``to_dict()`` output; unknown keys raise.

        A missing ``tempo_map`` or ``pedal`` means the dict was saved before those existed, when
        text held notes only: it reads as ``"drop"`` (``NOTES_ONLY``). Other missing keys take the
        defaults.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"EventSettings: unknown keys {sorted(unknown)}")
        return cls(**{**NOTES_ONLY, **data})


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


class NoteEvent(NamedTuple):
    """``DELTA_no_PITCH_VELOCITY`` (``is_on``) or ``DELTA_nf_PITCH_VELOCITY``: a note starts or ends."""

    delta: int
    is_on: bool
    pitch: int
    velocity: int


class TempoEvent(NamedTuple):
    """``DELTA_st_BPM_MPQN``: the tempo from here on. ``mpqn`` (microseconds per quarter note, MIDI's
    own number) is exact; ``bpm`` is the same tempo in beats per minute, rounded, for reading."""

    delta: int
    bpm: int
    mpqn: int


class ControlEvent(NamedTuple):
    """``DELTA_cc_CHANNEL_CONTROL_VALUE``: a control change, such as the sustain pedal (control 64)."""

    delta: int
    channel: int
    control: int
    value: int


_CHUNK = re.compile(r"(-?[0-9]+)_(no|nf|st|cc)((?:_-?[0-9]+)+)", re.ASCII)
_NUMBERS = {"no": 2, "nf": 2, "st": 2, "cc": 3}  # how many numbers follow the kind
_FORMS = ("DELTA_no_PITCH_VELOCITY, DELTA_nf_PITCH_VELOCITY, DELTA_st_BPM_MPQN "
          "or DELTA_cc_CHANNEL_CONTROL_VALUE")


def bpm_of(mpqn):
    """Microseconds per beat -> beats per minute, rounded to an integer (500,000 -> 120)."""
    return round(60_000_000 / mpqn)


def parse_chunk(chunk, position=None, path=None, line=None):
    """One chunk -> its event: a ``NoteEvent``, ``TempoEvent`` or ``ControlEvent`` (named tuples).

    ``"12_no_60_80"`` -> ``NoteEvent(12, True, 60, 80)``, equal to the tuple ``(12, True, 60, 80)``:
    delta, is note-on, pitch, velocity. ``"0_st_120_500000"`` -> ``TempoEvent(0, 120, 500000)``;
    ``"0_cc_0_64_127"`` -> ``ControlEvent(0, 0, 64, 127)``. Code that meets tempo or pedal chunks
    tells the kinds apart with ``isinstance(event, NoteEvent)``.

    Raises ``ChunkError`` naming the chunk (and its position, file and line when given).
    """
    match = _CHUNK.fullmatch(chunk) if isinstance(chunk, str) else None
    numbers = [] if match is None else [int(text) for text in match[3][1:].split("_")]
    if match is None or len(numbers) != _NUMBERS[match[2]]:
        raise ChunkError(f"not of the form {_FORMS}", chunk, position, path, line)
    delta, kind = int(match[1]), match[2]

    def check(value, name, low, high):
        if not low <= value <= high:
            raise ChunkError(f"{name} {value} is outside {low}..{high}", chunk, position, path, line)

    if delta < 0:
        raise ChunkError(f"negative delta {delta}", chunk, position, path, line)
    if kind == "st":
        bpm, mpqn = numbers
        check(mpqn, "tempo (microseconds per beat)", 1, MAX_TEMPO)
        # The seed wrote BPM rounded down; we round. Either is accepted, and only MPQN is used.
        if abs(bpm - 60_000_000 / mpqn) >= 1:
            raise ChunkError(f"{bpm} bpm is not the tempo of {mpqn} microseconds per beat "
                             f"({bpm_of(mpqn)} bpm)", chunk, position, path, line)
        return TempoEvent(delta, bpm, mpqn)
    if kind == "cc":
        channel, control, value = numbers
        check(channel, "channel", 0, 15)
        check(control, "control", 0, 127)
        check(value, "value", 0, 127)
        return ControlEvent(delta, channel, control, value)
    pitch, velocity = numbers
    check(pitch, "pitch", 0, 127)
    check(velocity, "velocity", 0, 127)
    return NoteEvent(delta, kind == "no", pitch, velocity)


def format_chunk(delta, is_on, pitch, velocity):
    """``(12, True, 60, 80)`` -> ``"12_no_60_80"``."""
    return f"{delta}_{'no' if is_on else 'nf'}_{pitch}_{velocity}"


def format_event(event):
    """Any event from ``parse_chunk`` -> its chunk text (``parse_chunk``'s inverse)."""
    if isinstance(event, TempoEvent):
        return f"{event.delta}_st_{event.bpm}_{event.mpqn}"
    if isinstance(event, ControlEvent):
        return f"{event.delta}_cc_{event.channel}_{event.control}_{event.value}"
    return format_chunk(*event)


def validate_chunks(chunks, source=None):
    """Check every chunk; raise ``ChunkError`` naming the first bad one and its position.

    ``source`` (a file name or piece name) is added to the message. Returns the N parsed events,
    as ``parse_chunk`` gives them (``NoteEvent``, ``TempoEvent`` or ``ControlEvent``).
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


# --- pedals ----------------------------------------------------------------------------------------


def _close_pedals(controls, end_tick):
    """``controls`` plus a release at ``end_tick`` for each pedal (channel, control) left down.

    ``controls``: ``(tick, channel, control, value)`` in time order. A pedal held past the last
    note would otherwise sustain the end of the piece forever in some players.
    """
    down = {}
    for _, channel, control, value in controls:
        if control in PEDAL_CONTROLS:
            down[channel, control] = value >= 64
    left_down = sorted(key for key, is_down in down.items() if is_down)
    return list(controls) + [(end_tick, channel, control, 0) for channel, control in left_down]


def _sustain_spans(controls):
    """The ticks the sustain pedal is down: a list of ``(down, up)``, sorted, not overlapping.

    Our notes have no channel, so neither has the pedal: a sustain event on any channel counts,
    and the latest one decides (on the usual one-channel piano file this is simply its pedal).
    A pedal still down after the last event has no span: close it first (``_close_pedals``).
    """
    spans = []
    down_at = None
    for tick, _, control, value in controls:
        if control != SUSTAIN_PEDAL:
            continue
        if value >= 64 and down_at is None:
            down_at = tick
        elif value < 64 and down_at is not None:
            if tick > down_at:
                spans.append((down_at, tick))
            down_at = None
    return spans


def _fold_pedal(notes, spans):
    """Notes as they sound with the sustain pedal, as Magenta's performance encoding folds it.

    A note whose key is released while the pedal is down keeps sounding until the pedal is
    released, or until its pitch is struck again. At one tick, pedal events count before note
    events: a pedal pressed at the tick a key is released catches the note. ``notes``: ``(start,
    end, pitch, velocity, off_velocity)`` in ticks; ``spans``: from ``_sustain_spans``.
    """
    downs = [down for down, _ in spans]
    folded = []
    for start, end, pitch, velocity, off_velocity in notes:
        index = bisect_right(downs, end) - 1
        if index >= 0 and end < spans[index][1]:  # released while the pedal is down
            end = spans[index][1]
        folded.append((start, end, pitch, velocity, off_velocity))
    return _one_note_per_pitch(folded)


# --- reading a MIDI file --------------------------------------------------------------------------


def _midi_events(midi, keep_drums):
    """What a ``mido.MidiFile`` says, in ticks: ``(notes, tempos, controls, end_tick)``.

    - ``notes``: ``(start, end, pitch, velocity, off_velocity)``; each track paired on its own in
      file order, then merged; sorted by start, pitch.
    - ``tempos``: ``(tick, microseconds per beat)`` from every track, in time order.
    - ``controls``: the pedals (``PEDAL_CONTROLS``) as ``(tick, channel, control, value)``, in time order.
    - ``end_tick``: the end of the longest track.
    """
    end_tick = max((sum(message.time for message in track) for track in midi.tracks), default=0)
    notes, tempos, controls = [], [], []
    for track in midi.tracks:
        events = []
        tick = 0
        for message in track:
            tick += message.time
            kind = message.type
            if kind == "set_tempo":
                if message.tempo > 0:  # 0 microseconds per beat is no tempo at all: ignored
                    tempos.append((tick, message.tempo))
                continue
            if kind != "note_on" and kind != "note_off" and kind != "control_change":
                continue
            if message.channel == DRUM_CHANNEL and not keep_drums:
                continue
            if kind == "control_change":
                if message.control in PEDAL_CONTROLS:
                    controls.append((tick, message.channel, message.control, message.value))
                continue
            is_on = kind == "note_on" and message.velocity > 0
            events.append((tick, is_on, message.note, message.velocity))
        notes.extend(_pair_notes(events, end_tick, midi.ticks_per_beat))
    by_tick = operator.itemgetter(0)  # a stable sort: at one tick, earlier tracks first
    return _one_note_per_pitch(notes), sorted(tempos, key=by_tick), sorted(controls, key=by_tick), end_tick


def _midi_notes(midi, keep_drums):
    """The notes of a ``mido.MidiFile`` (see ``_midi_events``), in ticks."""
    return _midi_events(midi, keep_drums)[0]


def _opening_tempo(tempos):
    """The tempo in force at tick 0: the last change at tick 0, or MIDI's default."""
    at_start = [tempo for tick, tempo in tempos if tick == 0]
    return at_start[-1] if at_start else DEFAULT_TEMPO


def main_tempo(tempos, end_tick):
    """The tempo in force for the most ticks (beats) of a piece, in microseconds per beat.

    ``tempos``: ``(tick, microseconds per beat)`` in time order; before the first, 120 bpm. Ties go
    to the tempo heard first.
    """
    segments = [(0, _opening_tempo(tempos))] + [(tick, tempo) for tick, tempo in tempos if tick > 0]
    ends = [tick for tick, _ in segments[1:]] + [end_tick]
    lasting = {}  # tempo -> ticks in force; a dict keeps the order tempos are first heard in
    for (tick, tempo), end in zip(segments, ends):
        lasting[tempo] = lasting.get(tempo, 0) + max(0, end - tick)
    return max(lasting, key=lasting.get)  # max keeps the first of equals


def _tempos_to_write(tempos, tempo_map, end_tick):
    """The tempo changes a piece's chunks will hold, ``(tick, microseconds per beat)``.

    ``"keep"``: the tempo at tick 0 (MIDI's default if the file sets none: every piece states its
    tempo first), then every change after it. ``"main"``: only ``main_tempo``, at tick 0. ``"drop"``: none.
    """
    if tempo_map == "drop":
        return []
    if tempo_map == "main":
        return [(0, main_tempo(tempos, end_tick))]
    if any(tick == 0 for tick, _ in tempos):
        return list(tempos)
    return [(0, DEFAULT_TEMPO)] + list(tempos)


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


def _tempo_bin_layout(bins):
    """``(ratio, offset)``: bin b's tempo is ``CENTRE_BPM * ratio ** (b - offset)``."""
    ratio = (FASTEST_BPM / SLOWEST_BPM) ** (1 / bins)
    offset = round(math.log(CENTRE_BPM / SLOWEST_BPM) / math.log(ratio) - 0.5)
    return ratio, offset


def tempo_bin_table(bins):
    """The tempos normalized mode writes, in beats per minute: a list of ``bins`` integers.

    The bins are equal steps of log-tempo (``ratio = (FASTEST_BPM / SLOWEST_BPM) ** (1 / bins)``),
    placed so that 120 bpm is a bin's own tempo and the bins cover 40..208. Each tempo goes to the
    bin whose tempo is nearest on that log scale; tempos beyond the ends go to the end bins.
    With 8 bins: 43, 53, 65, 79, 98, 120, 147, 181.
    """
    ratio, offset = _tempo_bin_layout(bins)
    return [round(CENTRE_BPM * ratio ** (b - offset)) for b in range(bins)]


def tempo_bin(mpqn, bins):
    """A tempo (microseconds per beat) -> the microseconds per beat of its bin's tempo."""
    ratio, offset = _tempo_bin_layout(bins)
    steps = round(math.log(60_000_000 / mpqn / CENTRE_BPM) / math.log(ratio))
    return round(60_000_000 / tempo_bin_table(bins)[min(bins - 1, max(0, steps + offset))])


def _step_rounder(ticks_per_beat, grid):
    def to_steps(tick):  # round half up, in integers: no float error on long files
        return (2 * tick * grid + ticks_per_beat) // (2 * ticks_per_beat)
    return to_steps


def _normalize(notes, ticks_per_beat, settings):
    """Quantize notes ``(start, end, pitch, velocity, off_velocity)`` in ticks to grid steps,
    bin velocities, and keep one note per pitch at a time. Returns notes in steps."""
    to_steps = _step_rounder(ticks_per_beat, settings.grid)
    bin_of, middle = velocity_bin_table(settings.velocity_bins)
    quantized = []
    for start, end, pitch, velocity, _ in notes:
        step = to_steps(start)
        quantized.append((step, max(to_steps(end), step + 1), pitch, middle[bin_of[velocity]], 0))
    return _one_note_per_pitch(quantized)


def _normalize_tempos(tempos, ticks_per_beat, settings):
    """Tempo changes in ticks -> in grid steps, each tempo in its bin; a change that stays in the
    bin in force is left out, and of several changes in one step the last counts."""
    to_steps = _step_rounder(ticks_per_beat, settings.grid)
    by_step = {}
    for tick, tempo in tempos:
        by_step[to_steps(tick)] = tempo_bin(tempo, settings.tempo_bins)  # (dicts keep the first insert's order)
    result = []
    for step, tempo in sorted(by_step.items()):
        if not result or result[-1][1] != tempo:
            result.append((step, tempo))
    return result


def _normalize_pedal(controls, ticks_per_beat, settings):
    """The sustain pedal in grid steps: ``(step, 0, 64, PEDAL_DOWN or PEDAL_UP)``, in order.

    Only the sustain pedal, only its changes between up and down (MIDI values 0..63 and 64..127),
    on channel 0. A press shorter than half a step is dropped; a release and a new press in the
    same step (a pianist's pedal change) are both kept, release first.
    """
    to_steps = _step_rounder(ticks_per_beat, settings.grid)
    result = []
    for down, up in _sustain_spans(controls):
        down, up = to_steps(down), to_steps(up)
        if up <= down:
            continue
        if result and down < result[-1][0]:  # overlaps the previous press after rounding: one press
            result[-1] = (up, 0, SUSTAIN_PEDAL, PEDAL_UP)
            continue
        result += [(down, 0, SUSTAIN_PEDAL, PEDAL_DOWN), (up, 0, SUSTAIN_PEDAL, PEDAL_UP)]
    return result


# --- events in time order -> chunks ------------------------------------------------------------------

# At one tick: the tempo first (it applies from that tick on), then the pedals (so that a pedal
# pressed at the tick a key is released catches the note), then note-offs (a repeated pitch ends
# before it starts again), then note-ons.
_TEMPO, _CONTROL, _NOTE_OFF, _NOTE_ON = range(4)


def _in_time_order(notes, tempos, controls):
    """Every event of a piece as ``(tick, event)``, in the fixed chunk order: by tick, then tempo,
    pedals, note-offs, note-ons; notes by pitch, tempo and pedal changes in the order given.
    Each event is a ``NoteEvent``, ``TempoEvent`` or ``ControlEvent`` whose delta is still 0."""
    timed = [(tick, _TEMPO, i, TempoEvent(0, bpm_of(tempo), tempo)) for i, (tick, tempo) in enumerate(tempos)]
    timed += [(tick, _CONTROL, i, ControlEvent(0, channel, control, value))
              for i, (tick, channel, control, value) in enumerate(controls)]
    for start, end, pitch, velocity, off_velocity in notes:
        timed.append((start, _NOTE_ON, pitch, NoteEvent(0, True, pitch, velocity)))
        timed.append((end, _NOTE_OFF, pitch, NoteEvent(0, False, pitch, off_velocity)))
    timed.sort(key=operator.itemgetter(0, 1, 2))
    return [(tick, event) for tick, _, _, event in timed]


def _events_to_chunks(notes, tempos=(), controls=(), max_delta=None):
    """A piece in ticks -> chunk strings, in the fixed order of ``_in_time_order``. Deltas above
    ``max_delta`` (if given) are cut to it: a long silence shrinks, later times move earlier."""
    chunks = []
    previous = 0
    for tick, event in _in_time_order(notes, tempos, controls):
        delta = tick - previous
        if max_delta is not None and delta > max_delta:
            delta = max_delta
        chunks.append(format_event(event._replace(delta=delta)))
        previous = tick
    return chunks


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
    notes, tempos, controls, end_tick = _midi_events(midi, settings.keep_drums)
    if not notes:
        if not settings.keep_drums and _midi_notes(midi, keep_drums=True):
            raise MidiError(path, "no notes other than drums on channel 10 (see keep_drums)")
        raise MidiError(path, "no notes")
    controls = _close_pedals(controls, end_tick)
    if settings.pedal == "fold":
        notes = _fold_pedal(notes, _sustain_spans(controls))
    if settings.pedal != "keep":
        controls = []
    tempos = _tempos_to_write(tempos, settings.tempo_map, end_tick)
    if settings.raw:
        return ChunkSequence(Path(path).name, _events_to_chunks(notes, tempos, controls), ticks_per_beat)
    notes = _normalize(notes, ticks_per_beat, settings)
    tempos = _normalize_tempos(tempos, ticks_per_beat, settings)
    controls = _normalize_pedal(controls, ticks_per_beat, settings)
    chunks = _events_to_chunks(notes, tempos, controls, settings.max_delta_steps)
    return ChunkSequence(Path(path).name, chunks, settings.grid)


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


def _spans_in_seconds(spans, ticks_per_beat, tempo_changes, tempo=DEFAULT_TEMPO):
    times = _ticks_to_seconds([t for span in spans for t in span], ticks_per_beat, tempo_changes, tempo)
    return [(times[2 * i], times[2 * i + 1]) for i in range(len(spans))]


def midi_to_notes(path, keep_drums=False, max_bytes=MAX_FILE_BYTES, pedal=False):
    """The notes of a MIDI file in seconds (tempo changes respected), sorted by start then pitch.

    Uses the same pairing policy as ``midi_to_chunks``. A note ends when its key is released; with
    ``pedal=True`` it ends when its sound does: a note released while the sustain pedal is down
    lasts until the pedal is released (what the synth plays). Raises ``MidiError`` for a broken file.
    """
    midi = read_midi_file(path, max_bytes)
    notes, tempos, controls, end_tick = _midi_events(midi, keep_drums)
    if pedal:
        notes = _fold_pedal(notes, _sustain_spans(_close_pedals(controls, end_tick)))
    return _notes_in_seconds(notes, midi.ticks_per_beat, tempos)


def midi_to_pedal(path, keep_drums=False, max_bytes=MAX_FILE_BYTES):
    """When the sustain pedal of a MIDI file is down: a list of ``(start, end)`` in seconds."""
    midi = read_midi_file(path, max_bytes)
    _, tempos, controls, end_tick = _midi_events(midi, keep_drums)
    spans = _sustain_spans(_close_pedals(controls, end_tick))
    return _spans_in_seconds(spans, midi.ticks_per_beat, tempos)


def _chunk_timeline(chunks, source=None):
    """Validated chunks -> ``(note events, tempos, controls, last tick)``, in absolute ticks.

    Note events are ``(tick, is_on, pitch, velocity)`` (a note-on with velocity 0 is a note-off),
    tempos ``(tick, microseconds per beat)``, controls ``(tick, channel, control, value)``.
    """
    notes, tempos, controls = [], [], []
    tick = 0
    for event in validate_chunks(chunks, source):
        tick += min(event.delta, MAX_DELTA)
        if isinstance(event, TempoEvent):
            tempos.append((tick, event.mpqn))
        elif isinstance(event, ControlEvent):
            controls.append((tick, event.channel, event.control, event.value))
        else:
            notes.append((tick, event.is_on and event.velocity > 0, event.pitch, event.velocity))
    return notes, tempos, controls, tick


def _decode(chunks, ticks_per_beat, source=None):
    """Chunks -> ``(notes, tempos, controls, end tick)`` in ticks, well formed: see ``chunks_to_midi``."""
    note_events, tempos, controls, last_tick = _chunk_timeline(chunks, source)
    end_tick = last_tick + ticks_per_beat
    notes = _pair_notes(note_events, end_tick, ticks_per_beat)
    controls = _close_pedals(controls, end_tick)
    return notes, tempos, controls, end_tick


def chunks_to_notes(chunks, ticks_per_beat, tempo=DEFAULT_TEMPO, pedal=False):
    """Decode chunks to notes in seconds: ``tempo`` (microseconds per beat) until the first tempo
    chunk, then the tempo chunks'. ``pedal=True``: notes held by the sustain pedal last until it is
    released, as in ``midi_to_notes``.

    Notes still sounding after the last chunk end one beat later. Raises ``ChunkError``.
    """
    notes, tempos, controls, _ = _decode(chunks, ticks_per_beat)
    if pedal:
        notes = _fold_pedal(notes, _sustain_spans(controls))
    return _notes_in_seconds(notes, ticks_per_beat, tempos, tempo)


def chunks_to_pedal(chunks, ticks_per_beat, tempo=DEFAULT_TEMPO):
    """When the sustain pedal of decoded chunks is down: a list of ``(start, end)`` in seconds."""
    _, tempos, controls, _ = _decode(chunks, ticks_per_beat)
    return _spans_in_seconds(_sustain_spans(controls), ticks_per_beat, tempos, tempo)


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


def _track(timed_messages, filler):
    """``(absolute tick, message)`` pairs in order -> a ``mido.MidiTrack`` with delta times.

    A gap longer than ``MAX_DELTA`` (possible between two tracks' events in a very long piece) is
    bridged with copies of ``filler``, a message that changes nothing, so no delta is illegal.
    """
    track = mido.MidiTrack()
    now = 0
    for tick, message in timed_messages:
        while tick - now > MAX_DELTA:
            track.append(filler.copy(time=MAX_DELTA))
            now += MAX_DELTA
        track.append(message.copy(time=tick - now))
        now = tick
    return track


def chunks_to_midi(chunks, path, ticks_per_beat, tempo=DEFAULT_TEMPO, program=0):
    """Write chunks as a playable, well-formed type-1 MIDI file (atomically); return the ``mido.MidiFile``.

    Track 0 holds the tempo: ``tempo`` (microseconds per beat) from the start unless a tempo chunk
    sits at tick 0, then the tempo chunks. Track 1 holds the notes on channel 1 with General MIDI
    ``program``, and the control-change chunks on their own channels.

    Whatever the chunks say, the file is well formed, with the encoder's one-note-per-pitch policy:
    a note-off for a silent pitch is left out (its delta still counts), a note-on for a sounding
    pitch ends that note first, a note that would end where it starts is left out, and notes and
    pedals still down after the last chunk are released one beat later. So a reader counts exactly
    as many notes as the file has note-ons. Chunks are validated first (``ChunkError`` names the
    chunk and its position). Deltas above ``MAX_DELTA`` (2^28 - 1 ticks, the SMF limit; mido would
    silently write an illegal 5-byte number) are clamped to it.
    """
    ticks_per_beat = _integer_in(ticks_per_beat, "ticks_per_beat", 1, 32767)
    tempo = _integer_in(tempo, "tempo (microseconds per beat)", 1, MAX_TEMPO)
    program = _integer_in(program, "program", 0, 127)
    notes, tempos, controls, _ = _decode(chunks, ticks_per_beat, source=str(path))
    if not any(tick == 0 for tick, _ in tempos):
        tempos = [(0, tempo)] + tempos
    conductor, performance = [], []
    for tick, event in _in_time_order(notes, tempos, controls):
        if isinstance(event, TempoEvent):
            conductor.append((tick, mido.MetaMessage("set_tempo", tempo=event.mpqn)))
        elif isinstance(event, ControlEvent):
            performance.append((tick, mido.Message("control_change", channel=event.channel,
                                                   control=event.control, value=event.value)))
        else:
            kind = "note_on" if event.is_on else "note_off"
            performance.append((tick, mido.Message(kind, note=event.pitch, velocity=event.velocity)))
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(_track(conductor, mido.MetaMessage("text", text="")))
    performance.insert(0, (0, mido.Message("program_change", program=program)))
    midi.tracks.append(_track(performance, mido.MetaMessage("text", text="")))
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
    resolution_allowed = False
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            piece = _PIECE.fullmatch(stripped)
            setting = _SETTINGS.fullmatch(stripped)
            if piece is not None:
                current = ChunkSequence(piece[1], [], _parse_ticks_per_beat(piece[2], path, line_number))
                sequences.append(current)
                resolution_allowed = False
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
            resolution_allowed = True
        if words[0].startswith("rs_"):  # the seed's first chunk, rs_RESOLUTION: its ticks per beat
            if not (resolution_allowed and not current.chunks):
                raise ChunkError("rs_ (ticks per beat) may only open a piece that has no '# piece:' "
                                 "header", words[0], None, path, line_number)
            current.ticks_per_beat = _parse_ticks_per_beat(words[0][3:], path, line_number)
            words = words[1:]
            resolution_allowed = False
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
    Tempo and pedal chunks have no pitch and come back as they are. Raises ``ChunkError`` for a
    chunk that is not well formed.
    """
    event = parse_chunk(chunk)
    if not isinstance(event, NoteEvent):
        return chunk
    if not 0 <= event.pitch + semitones <= 127:
        return None
    return format_chunk(event.delta, event.is_on, event.pitch + semitones, event.velocity)


def pitch_range(chunks, source=None):
    """``(lowest, highest)`` pitch of the note chunks in ``chunks``, or ``None`` when there is none."""
    pitches = [event.pitch for event in validate_chunks(chunks, source) if isinstance(event, NoteEvent)]
    return (min(pitches), max(pitches)) if pitches else None


def note_events(chunks, source=None):
    """The parsed chunks with ``None`` in the place of every chunk that is not a note (tempo, pedal):
    a list as long as ``chunks``, so that position t is still chunk t. Pictures drawn chunk by chunk
    (``plots.plot_chunk_saliency``, ``plots.plot_gates_over_chunks``) take this form."""
    return [event if isinstance(event, NoteEvent) else None for event in validate_chunks(chunks, source)]
