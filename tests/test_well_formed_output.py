"""What the commands write is well formed and named well: generated and decoded MIDI (issue 14, item 6),
decode's file names, primers made with other settings, and tutorial 1 run twice (issue 18)."""
import os
import re
from pathlib import Path

import mido
import pytest
from hypothesis import given, settings, strategies as st

from lstm_from_scratch import cli, generate, train
from lstm_from_scratch.checkpoint import load_checkpoint, save_checkpoint
from lstm_from_scratch.filenames import piece_paths, safe_file_name
from lstm_from_scratch.music import events
from lstm_from_scratch.music.events import ChunkSequence, EventSettings, chunks_to_midi
from lstm_from_scratch.music.vocab import Vocabulary

from cli_support import TINY, one_error_line, write_tunes


def check_well_formed(path):
    """Assert the MIDI file at ``path`` is well formed; return its number of note-ons.

    No note-off for a silent pitch, no pitch struck while it sounds, every note and pedal released
    by the end, and no note that ends at the tick it starts.
    """
    sounding, pedal_down, note_ons = {}, {}, 0
    for track in mido.MidiFile(path).tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "control_change" and message.control in events.PEDAL_CONTROLS:
                pedal_down[message.channel, message.control] = message.value >= 64
            if message.type not in ("note_on", "note_off"):
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                assert key not in sounding, f"{path}: {key} struck while it sounds, tick {tick}"
                sounding[key] = tick
                note_ons += 1
            else:
                assert key in sounding, f"{path}: note-off for the silent {key}, tick {tick}"
                assert sounding.pop(key) < tick, f"{path}: {key} ends where it starts, tick {tick}"
    assert not sounding, f"{path}: notes never closed: {sorted(sounding)}"
    assert not any(pedal_down.values()), f"{path}: a pedal is left down"
    return note_ons


def pretty_midi_note_count(path):
    pretty_midi = pytest.importorskip("pretty_midi")  # an independent reader (the test extra)
    return sum(len(instrument.notes) for instrument in pretty_midi.PrettyMIDI(str(path)).instruments)


# --- the MIDI writer, whatever the chunks say ------------------------------------------------------------

def test_writer_mends_chunks_that_break_the_rules(tmp_path):
    chunks = ["0_nf_62_0",                  # a note-off for a silent pitch, first of all
              "0_cc_0_64_127", "0_no_60_80", "5_no_60_90",   # 60 struck again while it sounds
              "0_no_61_80", "0_nf_61_0",    # a note that ends where it starts
              "3_no_62_0", "2_nf_60_0", "0_no_64_70"]       # a note-on of velocity 0 ends nothing; 64 hangs
    path = tmp_path / "mended.mid"
    chunks_to_midi(chunks, path, ticks_per_beat=4)
    assert check_well_formed(path) == 3
    assert [n[:3] for n in events._midi_notes(mido.MidiFile(path), False)] == [(0, 5, 60), (5, 10, 60), (10, 14, 64)]
    assert pretty_midi_note_count(path) == 3


note_chunks = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["no", "nf", "cc"]), st.integers(60, 62),
                                 st.sampled_from([0, 80, 127])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(drawn=note_chunks)
def test_any_chunks_make_a_well_formed_file(tmp_path_factory, drawn):
    chunks = [f"{delta}_cc_0_64_{value}" if kind == "cc" else f"{delta}_{kind}_{pitch}_{value}"
              for delta, kind, pitch, value in drawn]
    path = tmp_path_factory.mktemp("any") / "any.mid"
    chunks_to_midi(chunks, path, ticks_per_beat=4)
    assert check_well_formed(path) == pretty_midi_note_count(path)


# --- generated and decoded pieces --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunes")
    write_tunes(folder)
    run = folder / "run"
    assert cli.main(["train", str(folder), *TINY, "--epochs", "1", "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("rules", [[], ["--no-rules"]])
def test_generated_pieces_are_well_formed_and_open_with_a_note(tmp_path, trained_run, rules):
    for seed in range(4):
        out = tmp_path / f"piece{seed}.mid"
        assert cli.main(["generate", str(trained_run), "-o", str(out), "--length", "60",
                         "--temperature", "1.5", "--seed", str(seed), *rules]) == 0
        note_ons = check_well_formed(out)
        assert note_ons == pretty_midi_note_count(out) > 0
        # The piece opens with a note, not with a note-off for a note it never started.
        first = next(m for m in mido.MidiFile(out).tracks[1] if m.type in ("note_on", "note_off"))
        assert first.type == "note_on" and first.velocity > 0
        text = events.read_chunk_text(out.with_suffix(".txt"))[0].chunks
        first_note = next(e for e in events.validate_chunks(text) if isinstance(e, events.NoteEvent))
        assert first_note.is_on
        # Decoding the text gives the same well-formed file.
        assert cli.main(["decode", str(out.with_suffix(".txt")), "-o", str(tmp_path / "decoded.mid")]) == 0
        assert (tmp_path / "decoded.mid").read_bytes() == out.read_bytes()


def silent_note_offs(chunks):
    sounding, silent = set(), 0
    for event in events.validate_chunks(chunks):
        if isinstance(event, events.NoteEvent):
            if event.is_on and event.velocity > 0:
                sounding.add(event.pitch)
            else:
                silent += event.pitch not in sounding
                sounding.discard(event.pitch)
    return silent


def test_note_rules_are_on_by_default(tmp_path, trained_run, capsys):
    texts = {}
    for flags in ([], ["--rules"], ["--no-rules"]):
        out = tmp_path / f"piece{len(texts)}.mid"
        assert cli.main(["generate", str(trained_run), "-o", str(out), "--length", "200",
                         "--temperature", "2", *flags]) == 0
        texts[" ".join(flags)] = events.read_chunk_text(out.with_suffix(".txt"))[0].chunks
    assert texts[""] == texts["--rules"]  # --rules is still accepted, and is the default
    assert silent_note_offs(texts[""]) == 0 < silent_note_offs(texts["--no-rules"])


def test_generate_help_names_the_default_seed_and_why(capsys):
    assert cli.main(["generate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--seed SEED\s+default 0, so the same command writes the same piece each time", text)


# --- primers ----------------------------------------------------------------------------------------------

def test_a_primer_text_made_with_other_settings_is_refused(tmp_path, trained_run, capsys):
    write_tunes(tmp_path)
    raw_text = tmp_path / "raw.txt"
    assert cli.main(["encode", str(tmp_path / "tune0.mid"), "--raw", "-o", str(raw_text)]) == 0
    capsys.readouterr()
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "p.mid"), "--prime", str(raw_text)]) == 1
    line = one_error_line(capsys)
    assert str(raw_text) in line and '"raw": true' in line and '"raw": false' in line
    assert not (tmp_path / "p.mid").exists()
    # The same tune as MIDI is encoded with the model's own settings, and primes it.
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "p.mid"),
                     "--prime", str(tmp_path / "tune0.mid"), "--length", "5"]) == 0
    assert "warning" not in capsys.readouterr().err  # every chunk of the prime is in the vocabulary


def test_an_old_checkpoint_encodes_primers_as_it_always_did(tmp_path, trained_run):
    arrays, meta = load_checkpoint(trained_run / "last.npz")
    for key in ("tempo_map", "pedal", "tempo_bins"):  # as written before these keys existed
        del meta["event_settings"][key]
    save_checkpoint(tmp_path / "old.npz", arrays, meta)
    trained = generate.load_trained(tmp_path / "old.npz")
    assert trained.settings == EventSettings(tempo_map="drop", pedal="drop")
    write_tunes(tmp_path)
    ids, _ = generate.prime_from_file(tmp_path / "tune0.mid", trained)
    assert all(isinstance(events.parse_chunk(chunk), events.NoteEvent) for chunk in trained.vocab.decode(ids))


# --- decode's file names --------------------------------------------------------------------------------------

def test_decode_names_files_after_the_pieces_safely(tmp_path, capsys):
    pieces = [ChunkSequence(name, ["0_no_60_80", "4_nf_60_0"], 4)
              for name in ("bach/bwv66.6.mid", "../../escape me.mid", "Satie: Gymnopédie", "a.mid", "A.MID", "")]
    events.write_chunk_text(tmp_path / "all.txt", pieces, EventSettings())
    (tmp_path / "out").mkdir()
    assert cli.main(["decode", str(tmp_path / "all.txt"), "-o", str(tmp_path / "out" / "all.mid")]) == 0
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == sorted(["all-bach_bwv66.6.mid", "all-escape_me.mid", "all-Satie_Gymnopédie.mid",
                            "all-a.mid", "all-A-2.mid", "all-piece.mid"])
    printed = capsys.readouterr().out
    assert "wrote 6 MIDI files" in printed and "all-escape_me.mid  (../../escape me.mid)" in printed
    assert not (tmp_path / "escape me.mid").exists()


def test_safe_file_names():
    assert safe_file_name("bach/bwv66.6") == "bach_bwv66.6"
    assert safe_file_name("..") == safe_file_name("") == "piece"
    assert safe_file_name("x" * 300) == "x" * 100
    assert safe_file_name("name\udce9") == "name"  # a byte that was not UTF-8 (a surrogate escape)
    assert piece_paths(Path("o.mid"), ["one"]) == [Path("o.mid")]


# --- tempo and pedal chunks in training and sampling -----------------------------------------------------------

def test_transposition_moves_only_notes():
    piece = ChunkSequence("p", ["0_st_120_500000", "0_cc_0_64_127", "0_no_60_80", "4_cc_0_64_0", "0_nf_60_0"], 4)
    assert train.transpose_piece(piece, 2).chunks == [
        "0_st_120_500000", "0_cc_0_64_127", "0_no_62_80", "4_cc_0_64_0", "0_nf_62_0"]
    assert train.transpose_piece(ChunkSequence("q", ["0_cc_0_64_127", "0_no_127_80"], 4), 1) is None


def test_note_rules_follow_tempo_and_pedal_chunks():
    vocab = Vocabulary(["0_no_60_80", "4_nf_60_0", "4_st_120_500000", "0_cc_0_64_127", "4_cc_0_64_0"])
    rules = generate.NoteRules(vocab, ticks_per_beat=4, max_held_beats=2)
    assert rules.allowed().tolist() == [True, False, True, True, False]   # no release of an unpressed pedal
    rules.update(3)                                                        # pedal down at tick 0
    assert rules.allowed().tolist() == [True, False, True, False, True]   # no second press
    rules.update(0)                                                        # 60 starts at tick 0
    rules.update(2)                                                        # a tempo chunk: tick 4
    assert rules.allowed().tolist() == [True, True, True, False, True]
    rules.update(2)                                                        # tick 8: 60 and the pedal overdue
    assert rules.allowed().tolist() == [False, True, False, False, True]


# --- tutorials run twice in the same folder ---------------------------------------------------------------------

def test_tutorial_1_runs_twice_in_the_same_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = (Path(__file__).parent.parent / "tutorials" / "01-midi-as-text.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL)
    for run in range(2):
        namespace = {"__name__": "tutorial_01"}
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"tutorial 1, run {run + 1}, block {number}", "exec"), namespace)
    assert os.path.exists("humanized")
