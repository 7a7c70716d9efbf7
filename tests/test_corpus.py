"""The built-in corpus: every piece parses, is public domain, and its committed MIDI is up to date."""
import mido
import pytest

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.music import corpus
from lstm_from_scratch.music.corpus import CorpusError, parse_duration, parse_piece, parse_pitch

PIECES = corpus.builtin_pieces()
NAMES = [piece.name for piece in PIECES]

HEADER = """title: Test
composer: traditional
date: 2024
source: a test
license: public domain
tempo: 120
time: 3/4
"""


def test_corpus_is_big_and_varied():
    assert len(PIECES) >= 12
    assert sum(len(piece.voices) >= 2 for piece in PIECES) >= 4
    assert any(len(piece.voices) >= 4 for piece in PIECES)
    assert len({piece.tempo_bpm for piece in PIECES}) >= 4
    assert len({piece.time_signature for piece in PIECES}) >= 3


@pytest.mark.parametrize("piece", PIECES, ids=NAMES)
def test_piece_is_sound(piece):
    assert piece.notes
    assert 12 <= piece.bars <= 64
    for note in piece.notes:
        assert 0 <= note.pitch <= 127
        assert 1 <= note.velocity <= 127
        assert 0 <= note.start < note.end
        assert 0 <= note.voice < len(piece.voices)
    # every voice plays, and the dynamics vary, so a model can learn loud and soft
    assert {note.voice for note in piece.notes} == set(range(len(piece.voices)))
    assert len({note.velocity for note in piece.notes}) >= 2


@pytest.mark.parametrize("piece", PIECES, ids=NAMES)
def test_piece_metadata(piece):
    assert piece.title and piece.date and piece.source
    assert "public domain" in piece.license.lower()
    # a named composer with life dates, or "traditional"
    assert "traditional" in piece.composer.lower() or any(ch.isdigit() for ch in piece.composer)
    assert 30 <= piece.tempo_bpm <= 200


def test_readme_table_is_up_to_date():
    readme = (corpus.builtin_midi_dir() / "README.md").read_text(encoding="utf-8")
    assert corpus.readme_table(PIECES) in readme, "run python -m lstm_from_scratch.music.corpus --render"
    for piece in PIECES:
        assert f"`{piece.name}`" in readme, piece.name


def test_update_readme_table(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("intro\n<!-- table -->\nold rows\n<!-- end table -->\nafter\n", encoding="utf-8")
    corpus.update_readme_table(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("intro\n<!-- table -->\n| name |") and text.endswith("<!-- end table -->\nafter\n")
    assert "old rows" not in text
    path.write_text("no markers", encoding="utf-8")
    with pytest.raises(CorpusError, match="markers"):
        corpus.update_readme_table(path)


@pytest.mark.parametrize("piece", PIECES, ids=NAMES)
def test_committed_midi_equals_fresh_render(piece):
    committed = corpus.builtin_midi_dir() / f"{piece.name}.mid"
    assert committed.read_bytes() == corpus.midi_bytes(piece), (
        f"{committed.name} is stale: run python -m lstm_from_scratch.music.corpus --render")


def test_no_stray_midi_files():
    midi_names = sorted(path.stem for path in corpus.builtin_midi_dir().glob("*.mid"))
    assert midi_names == NAMES


def test_write_midi_round_trip(tmp_path):
    piece = next(p for p in PIECES if p.name == "frere_jacques")
    path = corpus.write_midi(piece, tmp_path / "round.mid")
    midi = mido.MidiFile(path)
    assert midi.type == 1 and midi.ticks_per_beat == corpus.TICKS_PER_BEAT
    assert len(midi.tracks) == 1 + len(piece.voices)
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(piece.tempo_bpm)]
    # read the notes back: same (start, end, pitch, velocity, voice) set
    notes = []
    for voice, track in enumerate(midi.tracks[1:]):
        tick, sounding = 0, {}
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                sounding[message.note] = (tick, message.velocity)
            elif message.type in ("note_on", "note_off"):
                start, velocity = sounding.pop(message.note)
                notes.append(corpus.ScoreNote(start, tick, message.note, velocity, voice))
    assert sorted(notes, key=lambda n: (n.start, n.voice, n.pitch)) == list(piece.notes)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_builtin_sequences():
    events = pytest.importorskip("lstm_from_scratch.music.events")
    sequences = corpus.builtin_sequences()
    assert len(sequences) == len(PIECES)
    assert all(sequence.chunks for sequence in sequences)
    raw = corpus.builtin_sequences(events.EventSettings(raw=True))
    # Raw mode keeps the notes: channels are merged, so two voices starting the same pitch at the
    # same tick become one note, but every distinct (start, pitch) gives one note-on.
    for piece, sequence in zip(PIECES, raw):
        assert sequence.name == f"{piece.name}.mid"
        assert sequence.ticks_per_beat == corpus.TICKS_PER_BEAT
        note_ons = sum(chunk.split("_")[1] == "no" for chunk in sequence.chunks)
        assert note_ons == len({(note.start, note.pitch) for note in piece.notes})


# --- the note text format ---------------------------------------------------------------------


def test_pitch_and_duration_parsing():
    assert parse_pitch("C4") == 60
    assert parse_pitch("A4") == 69
    assert parse_pitch("F#5") == 78
    assert parse_pitch("Bb3") == 58
    assert parse_pitch("C-1") == 0
    assert parse_pitch("G9") == 127
    assert parse_pitch("G#9") is None  # 128
    assert parse_pitch("H4") is None
    assert parse_duration("q") == 1
    assert parse_duration("h.") == 3
    assert parse_duration("e.+q") == 1.75
    assert parse_duration("s") == 0.25
    assert parse_duration("x") is None
    assert parse_duration("q..") is None


def test_parse_small_piece():
    text = HEADER + """
voice: tune
| mf C4:q D4:e E4:e F4:q | f G4,B4:h r:q |
# a comment line
voice: bass        # a comment after a space
| p C3:h.> |
"""
    piece = parse_piece(text, "small")
    assert piece.voices == ("tune", "bass")
    assert piece.time_signature == (3, 4) and piece.tempo_bpm == 120
    tpb = corpus.TICKS_PER_BEAT
    tune = [(n.start, n.end, n.pitch, n.velocity) for n in piece.notes if n.voice == 0]
    assert tune == [
        (0, tpb, 60, 80), (tpb, tpb * 3 // 2, 62, 80), (tpb * 3 // 2, 2 * tpb, 64, 80),
        (2 * tpb, 3 * tpb, 65, 80), (3 * tpb, 5 * tpb, 67, 100), (3 * tpb, 5 * tpb, 71, 100),
    ]
    bass = [(n.start, n.end, n.pitch, n.velocity) for n in piece.notes if n.voice == 1]
    assert bass == [(0, 3 * tpb, 48, 52 + corpus.ACCENT)]
    assert piece.bars == 2


def test_pickup_and_last_bar_may_be_short():
    piece = parse_piece(HEADER + "voice: v\n| D4:q | G4:h. | G4:h |\n", "pickup")
    assert piece.bars == 3


@pytest.mark.parametrize("body, reason", [
    ("| C4:q | C4:q D4:q | C4:h. | C4:q |", "bar 2 lasts 2"),
    ("| C4:h. | C4:w | C4:h. |", "bar 2 lasts 4"),
    ("| C4:w |", "too long"),
    ("| H4:q |", "bad pitch"),
    ("| C4:x |", "bad duration"),
    ("| C4,C4:q |", "repeated pitch"),
    ("| r:h. |", "has no notes"),
])
def test_bad_voice_is_refused_with_a_reason(body, reason):
    with pytest.raises(CorpusError, match=reason) as info:
        parse_piece(HEADER + "voice: v\n" + body + "\n", "bad", source="bad.txt")
    assert "bad.txt" in str(info.value) and "line" in str(info.value)
    assert isinstance(info.value, LstmMusicError)


@pytest.mark.parametrize("text, reason", [
    (HEADER.replace("license: public domain", "license: all rights reserved") + "voice: v\n| C4:h. |",
     "public domain"),
    (HEADER.replace("tempo: 120\n", "") + "voice: v\n| C4:h. |", "missing header"),
    (HEADER.replace("time: 3/4", "time: 3/5") + "voice: v\n| C4:h. |", "time signature"),
    (HEADER.replace("tempo: 120", "tempo: fast") + "voice: v\n| C4:h. |", "tempo"),
    (HEADER + "| C4:h. |", "before the first 'voice:'"),
    (HEADER, "no 'voice:'"),
    (HEADER + "title: again\nvoice: v\n| C4:h. |", "given twice"),
])
def test_bad_header_is_refused_with_a_reason(text, reason):
    with pytest.raises(CorpusError, match=reason):
        parse_piece(text, "bad")


def test_load_piece_names_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="cannot read"):
        corpus.load_piece(tmp_path / "nothing.txt")


def test_export_bach_chorales_names_missing_package(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_music21(name, *args, **kwargs):
        if name.startswith("music21"):
            raise ImportError("No module named 'music21'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_music21)
    with pytest.raises(CorpusError, match="music21"):
        corpus.export_bach_chorales(tmp_path)


def test_export_bach_chorales_with_music21(tmp_path):
    pytest.importorskip("music21")
    events = pytest.importorskip("lstm_from_scratch.music.events")
    seen = []
    paths = corpus.export_bach_chorales(tmp_path, limit=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    assert sorted(tmp_path.iterdir()) == sorted(paths) and len(paths) == 2
    assert all(path.name.startswith("bach_bwv") for path in paths)
    assert all(events.midi_to_chunks(path).chunks for path in paths)


def test_export_bach_chorales_skips_a_chorale_music21_cannot_export(tmp_path, monkeypatch):
    # Was: music21 10 fails on the repeat marks of bwv277, and that one score stopped the whole export
    # after 14 of 371 chorales.
    music21 = pytest.importorskip("music21")
    real_parse = music21.corpus.parse
    names = [str(name) for name in music21.corpus.chorales.Iterator(returnType="filename")][:3]

    def parse_but_the_second(name, *args, **kwargs):
        if str(name) == names[1]:
            raise music21.repeat.ExpanderException("badly formed repeats")
        return real_parse(name, *args, **kwargs)

    monkeypatch.setattr(music21.corpus, "parse", parse_but_the_second)
    skipped = []
    paths = corpus.export_bach_chorales(tmp_path, limit=3, on_skip=skipped.append)
    assert len(paths) == 2 and [error.source for error in skipped] == [names[1]]
    assert "badly formed repeats" in str(skipped[0])
