"""The `lstm-music` command end to end, through `cli.main([...])` in a temporary folder."""
import json
import os
import signal
import subprocess
import sys
import time

import mido
import numpy as np
import pytest

from lstm_from_scratch import cli
from lstm_from_scratch.checkpoint import load_checkpoint, save_checkpoint

from cli_support import TINY, one_error_line, write_tune, write_tunes


@pytest.fixture
def midi_folder(tmp_path):
    folder = tmp_path / "tunes"
    folder.mkdir()
    return write_tunes(folder)


@pytest.fixture
def trained_run(tmp_path, midi_folder):
    run = tmp_path / "run"
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "2", "--out", str(run)]) == 0
    return run


def note_ons(path):
    return [m for track in mido.MidiFile(path).tracks for m in track
            if m.type == "note_on" and m.velocity > 0]


def test_train_then_generate_writes_playable_midi(tmp_path, midi_folder, capsys):
    trained_run = tmp_path / "run"
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "2", "--out", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "loaded 5 files, skipped 0" in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "unigram" in epoch_lines[0] and "acc" in epoch_lines[0]
    for name in ("last.npz", "best.npz", "history.json", "history.csv", "loss.png"):
        assert (trained_run / name).exists(), name

    piece = tmp_path / "piece.mid"
    assert cli.main(["generate", str(trained_run / "best.npz"), "-o", str(piece),
                     "--length", "60", "--plot"]) == 0
    assert len(note_ons(piece)) > 0
    assert piece.with_suffix(".txt").read_text().startswith("# lstm_from_scratch chunk text")
    assert piece.with_suffix(".png").stat().st_size > 1000


def test_generation_with_the_same_seed_gives_the_same_bytes(tmp_path, trained_run):
    paths = [tmp_path / name for name in ("a.mid", "b.mid", "c.mid")]
    seeds = ["7", "7", "8"]
    for path, seed in zip(paths, seeds):
        assert cli.main(["generate", str(trained_run), "-o", str(path), "--length", "80",
                         "--seed", seed]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_generate_with_a_prime_and_top_k(tmp_path, trained_run, midi_folder):
    out = tmp_path / "primed.mid"
    assert cli.main(["generate", str(trained_run / "last.npz"), "-o", str(out), "--length", "10",
                     "--prime", str(midi_folder / "tune1.mid"), "--include-prime",
                     "--temperature", "0.5", "--top-k", "3"]) == 0
    chunks = out.with_suffix(".txt").read_text().split("\n", 3)[3].split()
    # The prime's tempo chunk (the default settings keep the main tempo), its 48 notes, on and
    # off, then 10 new chunks.
    assert chunks[0].split("_")[1] == "st" and len(chunks) == 1 + 96 + 10


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path, trained_run, capsys):
    broken = tmp_path / "broken.npz"
    broken.write_bytes((trained_run / "best.npz").read_bytes()[:500])
    assert cli.main(["generate", str(broken), "-o", str(tmp_path / "x.mid")]) == 1
    line = one_error_line(capsys)
    assert str(broken) in line
    assert not (tmp_path / "x.mid").exists()


def test_a_checkpoint_with_another_vocabulary_is_refused(tmp_path, trained_run, capsys):
    arrays, meta = load_checkpoint(trained_run / "best.npz")
    meta["vocabulary"] = meta["vocabulary"][:-1]  # one chunk fewer than the model's output layer
    odd = tmp_path / "odd.npz"
    save_checkpoint(odd, arrays, meta)
    assert cli.main(["generate", str(odd), "-o", str(tmp_path / "x.mid")]) == 1
    line = one_error_line(capsys)
    assert str(odd) in line and "vocabulary" in line


def test_resume_with_other_data_is_refused(tmp_path, trained_run, capsys):
    other = tmp_path / "other"
    other.mkdir()
    write_tune(other / "low.mid", [40, 43, 47] * 20)
    assert cli.main(["train", str(other), "--resume", str(trained_run), "--epochs", "3"]) == 1
    line = one_error_line(capsys)
    assert "vocabulary" in line


def test_resume_continues_and_refuses_changed_settings(trained_run, midi_folder, capsys):
    capsys.readouterr()
    assert cli.main(["train", str(midi_folder), "--resume", str(trained_run), "--lr", "1"]) == 2
    assert "only --epochs" in one_error_line(capsys)
    assert cli.main(["train", str(midi_folder), "--resume", str(trained_run), "--seed", "1"]) == 2
    assert "--seed" in one_error_line(capsys)
    assert cli.main(["train", str(midi_folder), "--resume", str(trained_run), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "epoch 2/3" not in out


@pytest.mark.parametrize("argv", [
    ["train"],                                                   # DATA missing
    ["generate", "x.npz"],                                       # -o missing
    ["train", "builtin", "--epochs", "many"],                    # not a number
    ["train", "builtin", "--preset", "piano-composer", "--hidden", "8"],
    ["train", "builtin", "--raw", "--grid", "8"],
    ["train", "builtin", "--lr", "-1"],
    ["train", "builtin", "--grid", "0"],
    ["nonsense"],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    assert cli.main(argv) == 2
    one_error_line(capsys)


def test_generate_checks_its_numbers(tmp_path, trained_run, capsys):
    assert cli.main(["generate", str(trained_run), "-o", str(tmp_path / "x.mid"),
                     "--temperature", "-1"]) == 2
    one_error_line(capsys)


def test_a_missing_data_path_is_named(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert cli.main(["train", str(missing), *TINY]) == 1
    assert str(missing) in one_error_line(capsys)


def test_encode_decode_round_trip(tmp_path, midi_folder, capsys):
    text = tmp_path / "tunes.txt"
    assert cli.main(["encode", str(midi_folder), "-o", str(text)]) == 0
    assert cli.main(["decode", str(text), "-o", str(tmp_path / "back.mid")]) == 0
    written = sorted(tmp_path.glob("back*.mid"))
    # One file per piece, named after the names stored in the text (was: back.mid, back-2.mid, ...).
    assert [path.name for path in written] == [f"back-tune{n}.mid" for n in range(5)]
    printed = capsys.readouterr().out
    assert "5 MIDI files" in printed and all(str(path) in printed for path in written)
    again = tmp_path / "again.txt"
    assert cli.main(["encode", str(tmp_path / "back-tune0.mid"), "-o", str(again)]) == 0
    first_piece = text.read_text().split("# piece:")[1].split("\n", 1)[1].split()
    assert again.read_text().split("# piece:")[1].split("\n", 1)[1].split() == first_piece


def test_raw_encoding_keeps_the_files_ticks(tmp_path, midi_folder):
    text = tmp_path / "raw.txt"
    assert cli.main(["encode", str(midi_folder / "tune0.mid"), "-o", str(text), "--raw"]) == 0
    assert "240_nf_60_" in text.read_text() and "ticks_per_beat=480" in text.read_text()


def test_a_broken_midi_file_is_one_error_line(tmp_path, capsys):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x40\x00\x90")
    assert cli.main(["encode", str(broken), "-o", str(tmp_path / "x.txt")]) == 1
    assert str(broken) in one_error_line(capsys)


def test_a_folder_with_a_broken_file_warns_and_goes_on(tmp_path, midi_folder, capsys):
    (midi_folder / "junk.mid").write_bytes(b"not a midi file at all")
    assert cli.main(["encode", str(midi_folder), "-o", str(tmp_path / "x.txt")]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "junk.mid" in warnings[0]
    assert "loaded 5 files, skipped 1" in captured.out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "train" in capsys.readouterr().out


def test_ctrl_c_during_training_saves_and_exits_130(tmp_path, midi_folder):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "lstm_from_scratch", "train", str(midi_folder), *TINY,
               "--epochs", "100000", "--out", str(run)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    try:
        deadline = time.monotonic() + 60
        while not (run / "last.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # poll() is None while it runs; an exit status of 0 is falsy, so compare with None.
        assert (run / "last.npz").exists(), process.stderr.read() if process.poll() is not None else "timeout"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"saved {run / 'last.npz'}" in err and "--resume" in err
    arrays, meta = load_checkpoint(run / "last.npz")
    assert meta["epoch"] >= 1 and any(name.startswith("param/") for name in arrays)


def test_compare_trains_each_optimizer_from_the_same_start(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", "builtin", "--optimizers", "sgd", "adam", "--hidden", "8",
                     "--seq-len", "8", "--step", "16", "--epochs", "1", "--out", str(out)]) == 0
    for name in ("compare.png", "compare.json", "sgd.mid", "adam.mid"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "compare.json").read_text())
    assert list(summary) == ["sgd", "adam"]
    assert summary["sgd"]["lr"] == cli.COMPARE_LRS["sgd"]
    assert summary["adam"]["train_config"]["seed"] == summary["sgd"]["train_config"]["seed"]
    # Same model, different optimizers: the same parameters, trained to different values.
    sgd_arrays, _ = load_checkpoint(out / "sgd" / "last.npz")
    adam_arrays, _ = load_checkpoint(out / "adam" / "last.npz")
    params = sorted(name for name in sgd_arrays if name.startswith("param/"))
    assert params == sorted(name for name in adam_arrays if name.startswith("param/"))
    assert not np.array_equal(sgd_arrays["param/0.lstm.Wx"], adam_arrays["param/0.lstm.Wx"])
    assert cli.main(["compare", "builtin", "--optimizers", "sgd", "sgd", "--out", str(out)]) == 2
    one_error_line(capsys)


def test_a_repaired_file_gives_one_warning_line(tmp_path, midi_folder, capsys):
    data = bytearray((midi_folder / "tune0.mid").read_bytes())
    position = data.index(bytes([0x90, 60, 80]))
    data[position + 2] = 200  # a data byte above 127: mido reads it only with clip=True
    (midi_folder / "tune0.mid").write_bytes(bytes(data))
    assert cli.main(["encode", str(midi_folder), "-o", str(tmp_path / "x.txt")]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "tune0.mid" in lines[0], lines
    assert "loaded 5 files, skipped 0" in captured.out


def test_train_on_chunk_text_keeps_its_settings(tmp_path, midi_folder, capsys):
    text = tmp_path / "raw.txt"
    assert cli.main(["encode", str(midi_folder), "-o", str(text), "--raw"]) == 0
    run = tmp_path / "run"
    assert cli.main(["train", str(text), *TINY, "--epochs", "1", "--out", str(run)]) == 0
    _, meta = load_checkpoint(run / "last.npz")
    assert meta["event_settings"]["raw"] is True and meta["ticks_per_beat"] == 480


def test_builtin_means_the_package_corpus_even_beside_a_folder_of_that_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["encode", "builtin", "-o", "a.txt"]) == 0
    assert "./builtin" not in capsys.readouterr().out
    (tmp_path / "builtin").mkdir()
    assert cli.main(["encode", "builtin", "-o", "b.txt"]) == 0
    out = capsys.readouterr().out
    assert "loaded the built-in corpus" in out and "write ./builtin for that" in out
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
