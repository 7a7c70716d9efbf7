"""The built-in corpus: public-domain tunes written by hand as note text, rendered to MIDI.

Nothing is downloaded. Each piece is one text file in ``music/corpus/NAME.txt``; the rendered MIDI
files ``music/corpus/NAME.mid`` are committed next to them, and a test checks that a fresh render
gives the same bytes, so the note text and the MIDI never drift apart. After editing a ``.txt``
file, render again with::

    python -m lstm_from_scratch.music.corpus --render

The note text (the full description is ``music/corpus/README.md``)::

    title: Ode to Joy                 # header lines are "key: value"
    composer: Ludwig van Beethoven (1770-1827)
    date: 1824
    source: Symphony No. 9, fourth movement; melody only, bass by the editors
    license: public domain
    tempo: 120                        # quarter notes per minute
    time: 4/4

    voice: melody                     # every voice becomes one MIDI track
    | mf F#4:q F#4:q G4:q A4:q | A4:q G4:q F#4:q E4:q | ...
    voice: bass
    | p D3,A3:h D3:h | ...

A note is ``PITCH:DURATION``: ``C4`` is middle C (MIDI 60), ``F#4`` and ``Bb3`` have accidentals.
Durations are ``w h q e s`` (whole, half, quarter, eighth, sixteenth), ``.`` dots one (``q.``), and
``+`` ties (``h+e``). ``r:q`` is a rest, ``C4,E4,G4:h`` a chord, a trailing ``>`` an accent.
Dynamics ``pp p mp mf f ff`` set the velocity of the notes that follow in that voice. ``|`` is a bar
line: every bar except the first (a pickup) and the last must fill the time signature exactly,
which catches most typing mistakes.

Times in a ``Piece`` are ticks, ``TICKS_PER_BEAT`` (480) to the quarter note.
"""
import io
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mido

from lstm_from_scratch.atomic import atomic_write_bytes
from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.filenames import safe_file_name

TICKS_PER_BEAT = 480  # ticks per quarter note; divisible by 2, 3, 4, 8 and 16
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
REQUIRED_HEADERS = ("title", "composer", "date", "source", "license", "tempo", "time")

# Quarter notes per duration letter.
_BEATS = {"w": Fraction(4), "h": Fraction(2), "q": Fraction(1), "e": Fraction(1, 2), "s": Fraction(1, 4)}
# MIDI velocities for the dynamic marks. They are spread wide on purpose: the default event
# settings keep only 4 velocity bins (1-32, 33-64, 65-95, 96-127), and we want p, mf and f to land
# in different bins so a model can learn (and a listener can hear) the dynamics.
DYNAMICS = {"ppp": 24, "pp": 36, "p": 52, "mp": 66, "mf": 80, "f": 100, "ff": 112, "fff": 124}
ACCENT = 20  # velocity added by a trailing ">"
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_PITCH = re.compile(r"([A-G])(#|b)?(-?[0-9])$")
_DURATION_PART = re.compile(r"([whqes])(\.?)$")


class CorpusError(LstmMusicError):
    """A corpus note text that cannot be read. ``str(error)`` names the file, the line and the reason."""

    def __init__(self, source, reason, line=None):
        super().__init__(str(source), reason, line)
        self.source = str(source)
        self.reason = reason
        self.line = line

    def __str__(self):
        where = self.source if self.line is None else f"{self.source}, line {self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class ScoreNote:
    """One note of a piece, in ticks (``TICKS_PER_BEAT`` to the quarter note).

    ``voice`` is an index into ``Piece.voices``. ``start < end``; ``pitch`` and ``velocity`` are MIDI values.
    """

    start: int
    end: int
    pitch: int
    velocity: int
    voice: int


@dataclass(frozen=True)
class Piece:
    """One built-in piece: its metadata, voice names and N notes sorted by (start, voice, pitch)."""

    name: str
    title: str
    composer: str
    date: str
    source: str
    license: str
    tempo_bpm: float
    time_signature: tuple  # (numerator, denominator), e.g. (3, 4)
    voices: tuple  # voice names, one MIDI track each
    notes: tuple  # N ScoreNote
    bars: int
    key: str = ""
    ticks_per_beat: int = TICKS_PER_BEAT

    @property
    def duration_seconds(self):
        """Length of the piece in seconds at its tempo (the last note's end)."""
        end = max(note.end for note in self.notes)
        return end / self.ticks_per_beat * 60.0 / self.tempo_bpm


# --- parsing ------------------------------------------------------------------------------------


def parse_pitch(text):
    """``"C4"`` -> 60, ``"F#5"`` -> 78, ``"Bb3"`` -> 58. Returns None when ``text`` is not a pitch."""
    match = _PITCH.match(text)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    # Scientific pitch notation: C4 is middle C = MIDI 60, so octave o starts at 12 * (o + 1).
    pitch = 12 * (int(octave) + 1) + _PITCH_CLASS[letter] + {"#": 1, "b": -1, None: 0}[accidental]
    return pitch if 0 <= pitch <= 127 else None


def parse_duration(text):
    """``"q"`` -> 1 beat, ``"h."`` -> 3, ``"h+e"`` -> 5/2 (a Fraction of quarter notes), or None."""
    total = Fraction(0)
    for part in text.split("+"):
        match = _DURATION_PART.match(part)
        if match is None:
            return None
        beats = _BEATS[match.group(1)]
        total += beats * Fraction(3, 2) if match.group(2) else beats
    return total


def _parse_header(key, value, header, where, line):
    if key in header:
        raise CorpusError(where, f"header {key!r} given twice", line)
    if key == "tempo":
        try:
            tempo = float(value)
        except ValueError:
            tempo = 0.0
        if not 10 <= tempo <= 400:
            raise CorpusError(where, f"tempo must be 10..400 quarter notes per minute, got {value!r}", line)
        value = tempo
    elif key == "time":
        match = re.fullmatch(r"([0-9]+)/(1|2|4|8|16)", value)
        if match is None or int(match.group(1)) < 1:
            raise CorpusError(where, f"time signature must look like 3/4 or 6/8, got {value!r}", line)
        value = (int(match.group(1)), int(match.group(2)))
    header[key] = value


class _VoiceReader:
    """Turns the tokens of one voice into notes, keeping the clock, the dynamic and the bars."""

    def __init__(self, index, name, bar_beats, where):
        self.index, self.name, self.bar_beats, self.where = index, name, bar_beats, where
        self.time = Fraction(0)  # beats from the start of the piece
        self.velocity = DYNAMICS["mf"]
        self.notes = []
        self.bar_lengths = []  # (beats in the bar, line of its closing bar line)
        self.bar_start = Fraction(0)

    def token(self, token, line):
        if token == "|":
            self.close_bar(line)
        elif token in DYNAMICS:
            self.velocity = DYNAMICS[token]
        else:
            self.note(token, line)

    def note(self, token, line):
        accent = token.endswith(">")
        pitches_text, _, duration_text = token.rstrip(">").partition(":")
        beats = parse_duration(duration_text)
        if beats is None:
            raise CorpusError(self.where, f"voice {self.name!r}: bad duration in {token!r}", line)
        if pitches_text != "r":
            pitches = [parse_pitch(text) for text in pitches_text.split(",")]
            if None in pitches:
                raise CorpusError(self.where, f"voice {self.name!r}: bad pitch in {token!r}", line)
            if len(set(pitches)) != len(pitches):
                raise CorpusError(self.where, f"voice {self.name!r}: repeated pitch in chord {token!r}", line)
            velocity = min(127, self.velocity + (ACCENT if accent else 0))
            start, end = _ticks(self.time), _ticks(self.time + beats)
            for pitch in pitches:
                self.notes.append(ScoreNote(start, end, pitch, velocity, self.index))
        self.time += beats

    def close_bar(self, line):
        length = self.time - self.bar_start
        if length > 0:  # "| |" and a leading "|" are not bars
            self.bar_lengths.append((length, line))
        self.bar_start = self.time

    def finish(self, line):
        self.close_bar(line)
        # Every bar but a pickup (first) and the closing bar (last) must be exactly full.
        for number, (length, bar_line) in enumerate(self.bar_lengths[1:-1], start=2):
            if length != self.bar_beats:
                raise CorpusError(
                    self.where,
                    f"voice {self.name!r}: bar {number} lasts {length} quarter notes, "
                    f"the time signature needs {self.bar_beats}",
                    bar_line,
                )
        for length, bar_line in self.bar_lengths[:1] + self.bar_lengths[-1:]:
            if length > self.bar_beats:
                raise CorpusError(self.where, f"voice {self.name!r}: a bar is too long ({length})", bar_line)
        if not self.notes:
            raise CorpusError(self.where, f"voice {self.name!r} has no notes", line)


def _ticks(beats):
    ticks = beats * TICKS_PER_BEAT
    if ticks.denominator != 1:  # cannot happen with w h q e s and dots, but say so if it does
        raise ValueError(f"{beats} beats is not a whole number of ticks")
    return int(ticks)


def parse_piece(text, name, source=None):
    """Parse note text (the format in this module's docstring) into a ``Piece`` named ``name``.

    ``source`` names the text in error messages (default: ``name``). Raises ``CorpusError``.
    """
    where = source if source is not None else name
    header = {}
    voices = []
    bar_beats = None
    line_number = 0
    for line_number, raw_line in enumerate(text.splitlines(), start=1):
        # "#" also marks sharps (F#4), so a comment must start a line or follow a space.
        line = re.split(r"(?:^|\s)#", raw_line, maxsplit=1)[0].strip()
        if not line:
            continue
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if colon and re.fullmatch(r"[a-z_]+", key) and key != "r":
            value = value.strip()
            if key == "voice":
                if bar_beats is None:
                    missing = [k for k in REQUIRED_HEADERS if k not in header]
                    if missing:
                        raise CorpusError(where, f"missing header(s) {missing} before the first voice", line_number)
                    numerator, denominator = header["time"]
                    bar_beats = Fraction(numerator * 4, denominator)
                if voices:
                    voices[-1].finish(line_number)
                voices.append(_VoiceReader(len(voices), value or f"voice {len(voices) + 1}", bar_beats, where))
            elif voices:
                raise CorpusError(where, f"header {key!r} after the first voice", line_number)
            else:
                _parse_header(key, value, header, where, line_number)
            continue
        if not voices:
            raise CorpusError(where, f"notes before the first 'voice:' line: {line[:40]!r}", line_number)
        for token in line.replace("|", " | ").split():
            voices[-1].token(token, line_number)
    if not voices:
        raise CorpusError(where, "no 'voice:' section")
    voices[-1].finish(line_number)
    if "public domain" not in header["license"].lower():
        raise CorpusError(where, f"license must say 'public domain', got {header['license']!r}")
    notes = sorted((n for voice in voices for n in voice.notes), key=lambda n: (n.start, n.voice, n.pitch))
    return Piece(
        name=name,
        title=header["title"],
        composer=header["composer"],
        date=header["date"],
        source=header["source"],
        license=header["license"],
        tempo_bpm=header["tempo"],
        time_signature=header["time"],
        voices=tuple(voice.name for voice in voices),
        notes=tuple(notes),
        bars=max(len(voice.bar_lengths) for voice in voices),
        key=header.get("key", ""),
    )


def load_piece(path):
    """Read one note-text file; the piece's ``name`` is the file name without ``.txt``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(path, f"cannot read: {error}") from error
    return parse_piece(text, path.stem, source=path)


def builtin_names():
    """The names of the built-in pieces, sorted (file names without ``.txt``)."""
    return sorted(path.stem for path in CORPUS_DIR.glob("*.txt"))


def builtin_pieces():
    """Every built-in piece, parsed from ``music/corpus/*.txt``, sorted by name."""
    return [load_piece(CORPUS_DIR / f"{name}.txt") for name in builtin_names()]


# --- MIDI ---------------------------------------------------------------------------------------


def _channel(voice):
    # One channel per voice, so two voices on the same pitch stay two notes in a synth.
    # Channel index 9 is General MIDI's drum channel: skip it.
    return voice if voice < 9 else voice + 1


def midi_bytes(piece):
    """The type-1 Standard MIDI File of ``piece`` as bytes: a conductor track (title, tempo, time
    signature) and one track per voice (program 0, acoustic grand piano). Deterministic."""
    if len(piece.voices) > 15:
        raise CorpusError(piece.name, f"{len(piece.voices)} voices; MIDI has 15 non-drum channels")
    midi = mido.MidiFile(type=1, ticks_per_beat=piece.ticks_per_beat)
    numerator, denominator = piece.time_signature
    conductor = mido.MidiTrack([
        mido.MetaMessage("track_name", name=piece.title, time=0),
        mido.MetaMessage("copyright", text=f"{piece.composer}; {piece.license}", time=0),
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.tempo_bpm), time=0),
        mido.MetaMessage("end_of_track", time=0),
    ])
    midi.tracks.append(conductor)
    for voice, voice_name in enumerate(piece.voices):
        channel = _channel(voice)
        events = []  # (tick, 0 = off / 1 = on, pitch, velocity)
        for note in piece.notes:
            if note.voice == voice:
                events.append((note.start, 1, note.pitch, note.velocity))
                events.append((note.end, 0, note.pitch, 0))
        # At one tick, note-offs go first: a repeated pitch ends before it starts again.
        events.sort()
        track = mido.MidiTrack([
            mido.MetaMessage("track_name", name=voice_name, time=0),
            mido.Message("program_change", channel=channel, program=0, time=0),
        ])
        now = 0
        for tick, is_on, pitch, velocity in events:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _atomic_write(path, data):
    """Write the bytes ``data`` to ``path`` atomically (``atomic.py``); ``CorpusError`` if it fails."""
    try:
        atomic_write_bytes(path, data)
    except OSError as error:
        raise CorpusError(path, f"cannot write: {error.strerror or error}") from error


def write_midi(piece, path):
    """Write ``piece`` as a type-1 MIDI file at ``path`` (atomic). Returns ``Path(path)``."""
    _atomic_write(path, midi_bytes(piece))
    return Path(path)


def builtin_midi_dir():
    """The folder holding the committed ``NAME.mid`` renders of the built-in pieces."""
    return CORPUS_DIR


def render_builtin(folder=None):
    """Render every built-in piece to ``folder/NAME.mid`` (default: the corpus folder). Returns the paths."""
    folder = Path(folder) if folder is not None else CORPUS_DIR
    return [write_midi(piece, folder / f"{piece.name}.mid") for piece in builtin_pieces()]


def readme_table(pieces=None):
    """The Markdown table of the pieces that ``music/corpus/README.md`` shows (one row per piece)."""
    pieces = builtin_pieces() if pieces is None else pieces
    rows = [
        "| name | title | composer | date | voices | bars | time, tempo | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for piece in pieces:
        numerator, denominator = piece.time_signature
        rows.append(
            f"| `{piece.name}` | {piece.title} | {piece.composer} | {piece.date} "
            f"| {len(piece.voices)} ({', '.join(piece.voices)}) | {piece.bars} "
            f"| {numerator}/{denominator}, {piece.tempo_bpm:g} | {len(piece.notes)} |")
    return "\n".join(rows) + "\n"


def update_readme_table(path=None):
    """Rewrite the table between ``<!-- table -->`` and ``<!-- end table -->`` in the corpus README."""
    path = Path(path) if path is not None else CORPUS_DIR / "README.md"
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- table -->\n", "<!-- end table -->"
    if start not in text or end not in text:
        raise CorpusError(path, "no '<!-- table -->' ... '<!-- end table -->' markers")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    _atomic_write(path, (before + start + readme_table() + end + after).encode("utf-8"))


def builtin_sequences(settings=None):
    """The built-in pieces as chunk sequences, read from the committed MIDI files.

    ``settings`` is an ``events.EventSettings`` (default: its defaults, normalized mode).
    Returns a list of ``ChunkSequence``, one per piece, sorted by name.
    """
    # Imported here so this module (and the note text tools) work on their own.
    from lstm_from_scratch.music import events

    if settings is None:
        settings = events.EventSettings()
    return [events.midi_to_chunks(CORPUS_DIR / f"{name}.mid", settings) for name in builtin_names()]


# --- Bach chorales through music21 (optional) ---------------------------------------------------


def export_bach_chorales(folder, limit=None, progress=None, on_skip=None):
    """Write Bach's chorales from music21's bundled corpus as MIDI files ``folder/bach_bwvNNN.mid``.

    Needs the optional package ``music21`` (``pip install lstm-from-scratch[bach]``); nothing is
    downloaded, music21 ships the scores (371 chorales). ``limit`` caps the number of chorales;
    ``progress`` is an optional callback ``progress(done, total)``. A chorale music21 cannot turn
    into MIDI (some versions of music21 fail on a few, for instance on their repeat marks) is skipped
    and passed to ``on_skip(error)`` as a ``CorpusError``: one score never stops the corpus.
    Returns the written paths.
    """
    try:
        from music21 import corpus as music21_corpus
        from music21.midi import translate as music21_midi
    except ImportError as error:
        raise CorpusError(
            "music21", "exporting Bach chorales needs the optional package 'music21': "
            "pip install 'lstm-from-scratch[bach]'") from error
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(music21_corpus.chorales.Iterator(returnType="filename"))  # e.g. "bach/bwv269"
    if limit is not None:
        names = names[:limit]
    written = []
    for done, name in enumerate(names, start=1):
        path = folder / (safe_file_name(name) + ".mid")
        try:
            # The bytes music21's own .write("midi", fp=...) would put in a file, made in memory.
            data = music21_midi.music21ObjectToMidiFile(music21_corpus.parse(name)).writestr()
        except Exception as error:  # music21 raises many kinds; name the chorale and the reason
            if on_skip is not None:
                on_skip(CorpusError(name, f"cannot export with music21: {error}"))
        else:
            _atomic_write(path, data)
            written.append(path)
        if progress is not None:
            progress(done, len(names))
    return written


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Render the built-in corpus note text to MIDI.")
    parser.add_argument("--render", action="store_true",
                        help="write music/corpus/NAME.mid for every piece and the table in its README.md")
    arguments = parser.parse_args()
    if arguments.render:
        paths = render_builtin()
        update_readme_table()
        print(f"rendered {len(paths)} pieces into {CORPUS_DIR} and updated README.md")
    else:
        parser.print_help()
