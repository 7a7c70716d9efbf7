"""What a new user types by mistake, and what a damaged file does: one `error:` line naming the
file and the reason, the right exit status, and nothing already written lost or half-written.

Each test here reproduces a defect found by trying the commands by hand (see the final report of
the robustness review). All of them go through ``cli.main([...])`` in a temporary folder.
"""
import errno
import io
import os
import sys
import zipfile

import mido
import numpy as np
import pytest

from lstm_from_scratch import cli
from lstm_from_scratch.checkpoint import load_checkpoint, save_checkpoint

from cli_support import TINY, one_error_line, placeholder_reports, write_tune, write_tunes


@pytest.fixture(autouse=True, scope="module")
def _placeholder_reports():
    with placeholder_reports():  # the real page is test_report.py's business
        yield


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    return write_tunes(tmp_path_factory.mktemp("tunes"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, midi_folder):
    """A one-epoch run, shared by the tests that only read it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "1", "--out", str(run)]) == 0
    return run


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


def edited_checkpoint(source, target, edit_meta=None, edit_arrays=None):
    """Copy checkpoint `source` to `target` after `edit_meta(meta)` / `edit_arrays(arrays)`."""
    arrays, meta = load_checkpoint(source)
    meta.pop("format_version")
    if edit_meta is not None:
        edit_meta(meta)
    if edit_arrays is not None:
        edit_arrays(arrays)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, arrays, meta)
    return target


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------

def test_a_negative_seed_is_a_usage_error(tmp_path, midi_folder, trained_run, capsys):
    # Was: NumPy's "ValueError: expected non-negative integer" traceback, for train and generate.
    assert cli.main(["train", str(midi_folder), *TINY, "--seed", "-1", "--out", str(tmp_path / "r")]) == 2
    assert "seed" in one_error_line(capsys)
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid"), "--seed", "-1"]) == 2
    assert "seed" in one_error_line(capsys)
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize("option", [["--temperature", "nan"], ["--temperature", "inf"],
                                    ["--max-held-beats", "nan", "--rules"]])
def test_generate_refuses_numbers_that_are_not_finite(tmp_path, trained_run, capsys, option):
    # Was: --temperature nan crashed in the sampler ("probabilities sum to nan") with a traceback;
    # --max-held-beats nan was silently taken as "never".
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid"), *option]) == 2
    assert option[0] in one_error_line(capsys)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("command", [["train", ""], ["train", "builtin", "--out", ""],
                                     ["generate", "", "-o", "x.mid"], ["generate", "RUN", "-o", ""],
                                     ["render", "MIDI", "-o", ""], ["decode", "", "-o", "x.mid"]])
def test_an_empty_path_is_a_usage_error(tmp_path, trained_run, midi_folder, capsys, command):
    # Was: `train ""` trained on every MIDI file under the current folder, `--out ""` fell back to
    # runs/<time>, `-o ""` tried to replace the current folder or raised a ValueError traceback.
    names = {"RUN": str(trained_run), "MIDI": str(midi_folder / "tune0.mid")}
    argv = [names.get(word, word) for word in command]
    assert cli.main(argv) == 2
    assert "empty" in one_error_line(capsys)


# ----------------------------------------------------------------------------------------------
# Output paths
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["generate", "render", "plot", "encode", "decode"])
def test_an_output_path_that_is_a_folder_is_named(tmp_path, trained_run, midi_folder, capsys, command):
    # Was: "error: /tmp/.../.tmp-zlzo_bd8: Is a directory" (a temporary file's name) or a message
    # with the temporary name in it.
    text = tmp_path / "piece.txt"
    text.write_text("0_no_60_80 4_nf_60_0\n")
    inputs = {"generate": str(trained_run), "render": str(midi_folder / "tune0.mid"),
              "plot": str(midi_folder / "tune0.mid"), "encode": str(midi_folder / "tune0.mid"),
              "decode": str(text)}
    folder = tmp_path / "a folder"
    folder.mkdir()
    assert cli.main([command, inputs[command], "-o", str(folder)]) == 2
    line = one_error_line(capsys)
    assert str(folder) in line and "folder" in line and ".tmp" not in line
    assert files_in(folder) == [] and files_in(tmp_path) == ["a folder", "piece.txt"]


def test_an_output_under_a_file_says_that_it_is_not_a_folder(tmp_path, trained_run, midi_folder, capsys):
    # Was: "error: one.mid: File exists" (from mkdir), for -o FILE/x.mid and for --out FILE.
    a_file = tmp_path / "one.mid"
    write_tune(a_file, [60, 62])
    assert cli.main(["generate", str(trained_run), "-o", str(a_file / "x.mid")]) == 2
    line = one_error_line(capsys)
    assert str(a_file) in line and "not a folder" in line
    assert cli.main(["train", str(midi_folder), *TINY, "--out", str(a_file)]) == 2
    line = one_error_line(capsys)
    assert str(a_file) in line and "not a folder" in line


def failing_replace(source, target):
    """Stands in for os.replace on a read-only folder: the error names both files, as the real one."""
    raise PermissionError(errno.EACCES, "Permission denied", source, target)


@pytest.mark.parametrize("command", ["encode", "decode", "generate"])
def test_a_failed_write_names_the_output_not_a_temporary_file(tmp_path, trained_run, midi_folder,
                                                              capsys, monkeypatch, command):
    # Was: "error: /tmp/x/.tmp-sel7yhgk.mid: Read-only file system".
    text = tmp_path / "in.txt"
    text.write_text("0_no_60_80 4_nf_60_0\n")
    inputs = {"generate": str(trained_run), "encode": str(midi_folder / "tune0.mid"), "decode": str(text)}
    out = tmp_path / "out" / ("x.txt" if command == "encode" else "x.mid")
    out.parent.mkdir()
    monkeypatch.setattr(os, "replace", failing_replace)
    assert cli.main([command, inputs[command], "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert str(out) in line and "Permission denied" in line and ".tmp" not in line
    assert files_in(out.parent) == []  # no temporary file left behind


def test_a_wav_that_cannot_be_written_names_the_wav(tmp_path, midi_folder, capsys, monkeypatch):
    # Was: on a read-only folder, the clean-up `unlink` of the never-created temporary file raised a
    # second OSError, so the message named ".x.wav.16470.744bbce4.tmp" instead of x.wav.
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))
    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "unlink", read_only)
    out = tmp_path / "x.wav"
    assert cli.main(["render", str(midi_folder / "tune0.mid"), "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert str(out) in line and "Read-only" in line and ".tmp" not in line


@pytest.mark.parametrize("suffix", [".txt", ".wav", ".npz"])
def test_generate_never_writes_one_of_its_files_over_another(tmp_path, trained_run, capsys, suffix):
    # Was: `-o piece.txt` wrote the MIDI, then the chunk text over it ("wrote piece.txt, piece.txt");
    # `-o piece.wav --wav` replaced the MIDI with the WAV; `-o RUN/best.npz` destroyed the checkpoint.
    out = tmp_path / f"piece{suffix}"
    assert cli.main(["generate", str(trained_run), "-o", str(out), "--wav"]) == 2
    assert suffix in one_error_line(capsys)
    assert files_in(tmp_path) == []


def test_generate_never_overwrites_its_checkpoint_or_prime(tmp_path, trained_run, midi_folder, capsys):
    checkpoint = tmp_path / "model"  # no suffix, so only the same-file check can catch it
    checkpoint.write_bytes((trained_run / "best.npz").read_bytes())
    before = checkpoint.read_bytes()
    assert cli.main(["generate", str(checkpoint), "-o", str(checkpoint)]) == 2
    assert str(checkpoint) in one_error_line(capsys)
    assert checkpoint.read_bytes() == before
    prime = tmp_path / "prime.txt"  # `-o prime.mid` would write its chunk text to prime.txt
    prime.write_text("0_no_60_80 2_nf_60_0\n")
    assert cli.main(["generate", str(checkpoint), "-o", str(tmp_path / "prime.mid"),
                     "--prime", str(prime)]) == 2
    assert str(prime) in one_error_line(capsys)
    assert prime.read_text() == "0_no_60_80 2_nf_60_0\n"


@pytest.mark.parametrize("command", ["render", "plot", "encode", "decode"])
def test_an_output_equal_to_the_input_is_refused(tmp_path, midi_folder, capsys, command):
    # Was: `render x.mid -o x.mid` replaced the MIDI file with a WAV, `decode x.txt -o x.txt`
    # replaced the text with MIDI, and so on.
    source = tmp_path / "in.txt" if command == "decode" else tmp_path / "in.mid"
    if command == "decode":
        source.write_text("0_no_60_80 4_nf_60_0\n")
    else:
        write_tune(source, [60, 64, 67])
    before = source.read_bytes()
    assert cli.main([command, str(source), "-o", str(source)]) == 2
    assert str(source) in one_error_line(capsys)
    assert source.read_bytes() == before


def test_train_never_overwrites_an_existing_run(tmp_path, midi_folder, trained_run, capsys):
    # Was: `train --out RUN` (without --resume) silently replaced RUN's checkpoints and history.
    before = {name: (trained_run / name).read_bytes() for name in ("last.npz", "best.npz", "history.json")}
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "1", "--out", str(trained_run)]) == 2
    line = one_error_line(capsys)
    assert str(trained_run) in line and "--resume" in line
    assert {name: (trained_run / name).read_bytes() for name in before} == before


def test_demo_replaces_an_earlier_demo_but_never_a_training_run(tmp_path, trained_run, capsys):
    # Was: `demo --out RUN` replaced a training run's checkpoints with the demo's.
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.npz", "best.npz"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    before = (run / "last.npz").read_bytes()
    assert cli.main(["demo", "--tiny", "--out", str(run)]) == 2
    assert str(run) in one_error_line(capsys)
    assert (run / "last.npz").read_bytes() == before and not (run / "sample.mid").exists()
    demo = tmp_path / "demo"
    assert cli.main(["demo", "--tiny", "--out", str(demo)]) == 0
    assert cli.main(["demo", "--tiny", "--out", str(demo)]) == 0  # running the demo again is fine
    # A demo made by an older version (its train config without the newer fields, with "processes")
    # is a demo too: replaced, not refused.
    def as_older_version(meta):
        for name in ("minutes", "patience", "validate_every", "save_every"):
            del meta["train_config"][name]
        meta["train_config"]["processes"] = 2
    for name in ("last.npz", "best.npz"):
        edited_checkpoint(demo / name, demo / name, as_older_version)
    assert cli.main(["demo", "--tiny", "--out", str(demo)]) == 0


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def test_a_window_longer_than_the_data_names_the_data(tmp_path, midi_folder, capsys):
    assert cli.main(["train", str(midi_folder), *TINY[:2], "--seq-len", "5000",
                     "--out", str(tmp_path / "r")]) == 1
    line = one_error_line(capsys)
    assert str(midi_folder) in line and "--seq-len" in line


def test_divergence_without_clipping_suggests_turning_it_on(tmp_path, midi_folder, capsys):
    # Was: "try a lower --lr (now 1000000.0) or a smaller --clip (now 0.0)": 0 is already off.
    assert cli.main(["train", str(midi_folder), *TINY[:6], "--optimizer", "sgd", "--lr", "1e6",
                     "--clip", "0", "--epochs", "1", "--out", str(tmp_path / "r")]) == 1
    line = one_error_line(capsys)
    assert "epoch 1, batch" in line and "--lr" in line and "--clip 5" in line
    assert "smaller --clip" not in line


def test_compare_divergence_names_its_own_option(tmp_path, midi_folder, capsys):
    # Was: compare's divergence advice said "try a lower --lr", an option compare does not take.
    assert cli.main(["compare", str(midi_folder), *TINY[:6], "--optimizers", "sgd", "--lrs", "1e6",
                     "--clip", "0", "--epochs", "1", "--out", str(tmp_path / "c")]) == 1
    line = one_error_line(capsys)
    assert line.startswith("error: sgd: ") and "--lrs (now 1000000.0)" in line and "--lr " not in line


def test_running_out_of_memory_is_one_line(tmp_path, midi_folder, capsys, monkeypatch):
    # Was: `train --hidden 100000` ended in NumPy's _ArrayMemoryError traceback.
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 298. GiB for an array with shape (100000, 400000)")
    monkeypatch.setattr("lstm_from_scratch.train.make_model", no_memory)
    assert cli.main(["train", str(midi_folder), *TINY, "--out", str(tmp_path / "r")]) == 1
    line = one_error_line(capsys)
    assert "memory" in line and "--hidden" in line


def edit_resume(meta_key, value):
    def edit(meta):
        if value is KeyError:
            del meta[meta_key]
        else:
            meta[meta_key] = value
    return edit


@pytest.mark.parametrize("key, value", [
    ("train_config", KeyError), ("train_config", "x"), ("event_settings", {"grid": 0}),
    ("epoch", KeyError), ("epoch", "x"), ("batch", -3), ("batch", 10**6), ("rng", 5),
    ("rng", {"shuffle": 1, "dropout": 2}), ("history", 5), ("vocabulary", 5), ("elapsed", "x"),
    ("loss_sum", None),
])
def test_resume_from_damaged_metadata_is_one_line(tmp_path, midi_folder, trained_run, capsys, key, value):
    # Was: KeyError, TypeError, AttributeError or ValueError tracebacks (or, for a huge batch
    # number, an epoch with no batches and a training loss of 0).
    run = tmp_path / "run"
    edited_checkpoint(trained_run / "last.npz", run / "last.npz", edit_resume(key, value))
    assert cli.main(["train", str(midi_folder), "--resume", str(run), "--epochs", "2"]) == 1
    line = one_error_line(capsys)
    assert str(run / "last.npz") in line


# ----------------------------------------------------------------------------------------------
# Generating from a damaged checkpoint
# ----------------------------------------------------------------------------------------------

def first_param(arrays):
    return next(name for name in arrays if name.startswith("param/"))


def set_first_param(change):
    def edit(arrays):
        name = first_param(arrays)
        arrays[name] = change(arrays[name])
    return edit


@pytest.mark.parametrize("edit_meta, edit_arrays, reason", [
    (edit_resume("ticks_per_beat", 0), None, "ticks_per_beat"),
    (edit_resume("ticks_per_beat", "x"), None, "ticks_per_beat"),
    (edit_resume("ticks_per_beat", None), None, "ticks_per_beat"),
    (lambda meta: meta.__setitem__("token_counts", [-1] * len(meta["vocabulary"])), None, "token counts"),
    (lambda meta: meta.__setitem__("token_counts", [0] * len(meta["vocabulary"])), None, "token counts"),
    (lambda meta: meta["vocabulary"].__setitem__(0, "garbage"), None, "'garbage'"),
    (None, set_first_param(lambda value: np.full_like(value, np.nan)), "finite"),
    (None, set_first_param(lambda value: value.astype(np.int8)), "int8"),
    (None, set_first_param(lambda value: value.astype(np.complex64)), "complex64"),
])
def test_a_checkpoint_with_damaged_contents_is_refused(tmp_path, trained_run, capsys,
                                                       edit_meta, edit_arrays, reason):
    # Was: tracebacks (ValueError, TypeError) for a bad ticks_per_beat, token counts or NaN weights;
    # an error that blamed the *output* file for a bad vocabulary chunk; int8 and complex weights
    # loaded silently (complex with a NumPy warning).
    odd = edited_checkpoint(trained_run / "best.npz", tmp_path / "odd.npz", edit_meta, edit_arrays)
    out = tmp_path / "x.mid"
    assert cli.main(["generate", str(odd), "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert str(odd) in line and reason in line
    assert not out.exists()


def test_a_checkpoint_whose_model_does_not_fit_in_memory_is_refused(tmp_path, trained_run, capsys,
                                                                    monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 29.8 GiB")
    monkeypatch.setattr("lstm_from_scratch.generate.make_model", no_memory)
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid")]) == 1
    line = one_error_line(capsys)
    assert str(trained_run / "last.npz") in line and "memory" in line


def test_deeply_nested_json_metadata_is_refused(tmp_path, trained_run, capsys):
    # Was: RecursionError traceback from json.loads.
    odd = tmp_path / "deep.npz"
    text = "[" * 100_000 + "]" * 100_000
    with zipfile.ZipFile(odd, "w") as archive:
        with archive.open("__meta__.npy", "w") as member:
            np.lib.format.write_array(member, np.frombuffer(text.encode(), dtype=np.uint8))
    assert cli.main(["generate", str(odd), "-o", str(tmp_path / "x.mid")]) == 1
    line = one_error_line(capsys)
    assert str(odd) in line and "JSON" in line


def test_a_deeply_nested_settings_header_is_refused(tmp_path, capsys):
    # Was: RecursionError traceback when reading a chunk text file's '# settings:' line.
    text = tmp_path / "deep.txt"
    text.write_text("# settings: " + "[" * 100_000 + "]" * 100_000 + "\n0_no_60_80\n")
    assert cli.main(["decode", str(text), "-o", str(tmp_path / "x.mid")]) == 1
    line = one_error_line(capsys)
    assert str(text) in line and "line 1" in line and "settings" in line


def test_history_files_are_as_readable_as_the_checkpoints(trained_run):
    # Was: history.json and history.csv were created 0600 (tempfile.mkstemp), the checkpoints 0644.
    wanted = (trained_run / "last.npz").stat().st_mode & 0o777
    for name in ("history.json", "history.csv"):
        assert (trained_run / name).stat().st_mode & 0o777 == wanted, name


def test_a_file_name_that_is_not_utf8_is_encoded_and_decoded(tmp_path, midi_folder, capsys):
    # Was: UnicodeEncodeError traceback writing the '# piece:' line of `ok\xe9.mid` (Linux file
    # names are bytes; Python shows the undecodable byte as a lone surrogate).
    folder = tmp_path / "tunes"
    folder.mkdir()
    try:
        odd = folder / os.fsdecode(b"ok\xe9.mid")
        odd.write_bytes((midi_folder / "tune0.mid").read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take file names that are not UTF-8")
    text = tmp_path / "tunes.txt"
    assert cli.main(["encode", str(folder), "-o", str(text)]) == 0
    assert "# piece: ok\\xe9.mid " in text.read_text(encoding="utf-8")
    assert cli.main(["decode", str(text), "-o", str(tmp_path / "back.mid")]) == 0


def test_a_terminal_that_cannot_show_a_path_gets_an_escape_not_a_crash(tmp_path, midi_folder, monkeypatch):
    # Was: UnicodeEncodeError traceback from print() when stdout is ASCII (PYTHONIOENCODING=ascii)
    # and a path has an accent in it.
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    out = tmp_path / "pièce.txt"
    assert cli.main(["encode", str(midi_folder / "tune0.mid"), "-o", str(out)]) == 0
    stdout.flush()
    assert b"pi\\xe8ce.txt" in stdout.buffer.getvalue()


def test_rendering_a_piece_hours_long_is_refused_before_it_eats_the_memory(tmp_path, capsys):
    # Was: one note held for 10^8 ticks (29 hours at 120 bpm) made `render` allocate tens of GB
    # until the kernel killed it (exit 137); at the slowest tempo, a MemoryError whose message
    # advised a smaller --hidden.
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=10**8)])
    midi.tracks.append(track)
    long_piece = tmp_path / "long.mid"
    midi.save(long_piece)
    out = tmp_path / "long.wav"
    assert cli.main(["render", str(long_piece), "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert str(long_piece) in line and "hours" in line
    assert not out.exists()


def test_out_of_memory_outside_training_does_not_talk_about_the_model(tmp_path, midi_folder, capsys,
                                                                      monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.51 TiB")
    monkeypatch.setattr("lstm_from_scratch.music.synth.render_notes", no_memory)
    assert cli.main(["render", str(midi_folder / "tune0.mid"), "-o", str(tmp_path / "x.wav")]) == 1
    line = one_error_line(capsys)
    assert "memory" in line and "--hidden" not in line


@pytest.mark.parametrize("bpm", ["1", "3.5"])
def test_a_tempo_too_slow_for_midi_is_a_usage_error(tmp_path, trained_run, capsys, bpm):
    # Was: --tempo 1 passed the 1..1000 check, then chunks_to_midi raised a ValueError traceback
    # (a MIDI tempo holds at most 16,777,215 microseconds per beat, about 3.6 beats per minute).
    text = tmp_path / "in.txt"
    text.write_text("0_no_60_80 4_nf_60_0\n")
    assert cli.main(["decode", str(text), "-o", str(tmp_path / "x.mid"), "--tempo", bpm]) == 2
    assert "--tempo" in one_error_line(capsys)
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid"), "--tempo", bpm]) == 2
    assert "--tempo" in one_error_line(capsys)
    assert files_in(tmp_path) == ["in.txt"]


def test_a_prime_folder_with_a_broken_file_warns(tmp_path, trained_run, midi_folder, capsys):
    # Was: the broken file was skipped without a word (training warns for the same folder).
    folder = tmp_path / "primes"
    folder.mkdir()
    (folder / "good.mid").write_bytes((midi_folder / "tune0.mid").read_bytes())
    (folder / "junk.mid").write_bytes(b"not a midi file")
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid"), "--prime", str(folder)]) == 0
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "junk.mid" in warnings[0]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_midi_input_is_cut_at_the_size_cap():
    # Was: a file whose size the system does not know up front (a device, a file still growing)
    # passed the size check (getsize says 0) and was then read without end.
    from lstm_from_scratch.errors import MidiError
    from lstm_from_scratch.music.midi_safety import read_midi_file
    with pytest.raises(MidiError, match="over the cap"):
        read_midi_file("/dev/zero", max_bytes=1000)


@pytest.mark.parametrize("epochs, status", [("0", 2), ("1", 2)])
def test_resume_with_epochs_not_above_those_done_is_a_usage_error(tmp_path, midi_folder, trained_run,
                                                                  capsys, epochs, status):
    # Was: --epochs 0 gave exit status 1 and a line without the command; --epochs 1 on a run that
    # had done 1 epoch printed "training ... for 1 epochs" and "wrote ..." having trained nothing.
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.npz").write_bytes((trained_run / "last.npz").read_bytes())
    assert cli.main(["train", str(midi_folder), "--resume", str(run), "--epochs", epochs]) == status
    assert "--epochs" in one_error_line(capsys)
    assert files_in(run) == ["last.npz"]


@pytest.mark.parametrize("option", [["--hidden", str(10**30)], ["--layers", str(10**30)],
                                    ["--embedding", str(10**30)], ["--max-delta-beats", "1e308"]])
def test_an_absurdly_large_size_is_a_usage_error(tmp_path, midi_folder, capsys, option):
    # Was: TypeError (NumPy cannot take the square root of a 100-bit integer) or OverflowError
    # (1e308 beats times the grid is infinite steps) tracebacks.
    assert cli.main(["train", str(midi_folder), *option, "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert option[0].lstrip("-").replace("-", "_") in one_error_line(capsys).replace("-", "_")


def test_resume_with_other_data_gives_advice_for_the_command_line(tmp_path, midi_folder, trained_run, capsys):
    # Was: "... or encode with unknown='skip' to drop unknown chunks.": advice for the Python API.
    other = tmp_path / "other"
    other.mkdir()
    write_tune(other / "low.mid", [40, 43, 47] * 20)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.npz").write_bytes((trained_run / "last.npz").read_bytes())
    assert cli.main(["train", str(other), "--resume", str(run), "--epochs", "3"]) == 1
    line = one_error_line(capsys)
    assert str(other) in line and "low.mid" in line and "not the data" in line and "--resume" in line
    assert "unknown=" not in line


def edit_model_config(change):
    def edit(meta):
        change(meta["model_config"])
    return edit


@pytest.mark.parametrize("edit", [
    edit_resume("model_config", "x"),
    edit_model_config(lambda config: config["layers"][0].update(forget_bias="x")),
    edit_model_config(lambda config: config["layers"][0].update(hidden_size=10**20)),
    edit_model_config(lambda config: config["layers"][0].update(type=[])),
    edit_resume("history", [{}]),
    lambda meta: meta["history"][0].update(val_loss="x"),
])
def test_resume_from_a_damaged_model_config_or_history_is_one_line(tmp_path, midi_folder, trained_run,
                                                                   capsys, edit):
    # Was: TypeError / ValueError tracebacks from the model, the CSV writer or the best-loss check
    # (found by fuzzing every metadata field with values of the wrong type).
    run = tmp_path / "run"
    edited_checkpoint(trained_run / "last.npz", run / "last.npz", edit)
    assert cli.main(["train", str(midi_folder), "--resume", str(run), "--epochs", "2"]) == 1
    assert str(run / "last.npz") in one_error_line(capsys)


def test_an_enormous_learning_rate_gives_only_the_divergence_line(tmp_path, midi_folder, capsys):
    # Was: "warning: overflow encountered in multiply" from the optimizer step before the error.
    assert cli.main(["train", str(midi_folder), *TINY[:6], "--lr", "1e308", "--epochs", "1",
                     "--out", str(tmp_path / "r")]) == 1
    assert "--lr" in one_error_line(capsys)


@pytest.mark.parametrize("command", ["encode", "decode", "plot"])
def test_a_missing_input_is_named(tmp_path, capsys, command):
    assert cli.main([command, str(tmp_path / "missing.mid"), "-o", str(tmp_path / "x.out")]) == 1
    assert "missing.mid" in one_error_line(capsys)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("command", ["generate", "encode", "decode", "plot", "render"])
def test_an_output_folder_that_does_not_exist_is_an_error_not_a_new_folder(tmp_path, trained_run, midi_folder,
                                                                           capsys, command):
    # Was: `generate -o typo/piece.mid` made the folder typo/ and wrote there.
    text = tmp_path / "in.txt"
    text.write_text("0_no_60_80 4_nf_60_0\n")
    inputs = {"generate": str(trained_run), "decode": str(text)}
    source = inputs.get(command, str(midi_folder / "tune0.mid"))
    out = tmp_path / "typo" / ("x.txt" if command == "encode" else "x.wav" if command == "render" else "x.mid")
    assert cli.main([command, source, "-o", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(out.parent) in line and "does not exist" in line
    assert not out.parent.exists()


def test_resume_or_generate_from_a_folder_without_a_checkpoint_says_so(tmp_path, midi_folder, capsys):
    # Was: "error: FOLDER/last.npz: no such file", which does not say what is wrong with FOLDER.
    folder = tmp_path / "not a run"
    folder.mkdir()
    assert cli.main(["train", str(midi_folder), "--resume", str(folder)]) == 1
    line = one_error_line(capsys)
    assert str(folder) in line and "no last.npz" in line
    assert cli.main(["generate", str(folder), "-o", str(tmp_path / "x.mid")]) == 1
    assert "no last.npz" in one_error_line(capsys)


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    # `lstm-music train ... | head -1`: once head exits, the next print raises BrokenPipeError. The
    # command stops without an error line or a traceback, as Unix tools do.
    def reader_went_away(args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(cli, "run_encode", reader_went_away)  # build_parser looks it up at call time
    assert cli.main(["encode", "in.mid", "-o", "out.txt"]) == 1
    assert capsys.readouterr().err == ""
