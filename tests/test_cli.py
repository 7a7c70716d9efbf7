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

from cli_support import TINY, one_error_line, placeholder_reports, write_tune, write_tunes


@pytest.fixture(autouse=True, scope="module")
def _placeholder_reports():
    with placeholder_reports():  # the real page is test_report.py's business
        yield


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
    before = {path.name: path.read_bytes() for path in trained_run.iterdir()}
    assert cli.main(["train", str(other), "--resume", str(trained_run), "--epochs", "3"]) == 1
    line = one_error_line(capsys)
    # what differs, in the run's pieces' names (not the first unknown chunk of the new data)
    assert "not the data the run was trained on" in line and "missing" in line and "new (low.mid)" in line
    assert {path.name: path.read_bytes() for path in trained_run.iterdir()} == before  # nothing written


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


@pytest.mark.parametrize("signal_name, status", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_during_training_saves_and_exits_with_the_command_that_continues(
        tmp_path, midi_folder, signal_name, status):
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
        process.send_signal(getattr(signal, signal_name))
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, err
    assert "Traceback" not in err
    assert f"interrupted by {signal_name}: saved {run / 'last.npz'}" in err
    assert f"continue with: lstm-music train {midi_folder} --resume {run}" in err
    arrays, meta = load_checkpoint(run / "last.npz")
    assert meta["epoch"] >= 1 and any(name.startswith("param/") for name in arrays)
    point = f"at epoch {meta['epoch'] + 1}, batch {meta['batch']}" if meta["batch"] else f"after epoch {meta['epoch']}"
    assert point in err  # epochs counted from 1, as the progress bar counts them


def test_train_says_its_plan_first_and_outside_a_terminal_a_line_every_30_seconds(
        tmp_path, midi_folder, capsys, monkeypatch):
    clock = iter(range(0, 10**6, 7))  # 7 s a reading
    monkeypatch.setattr(cli, "_clock", lambda: next(clock))
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "2", "--transpose", "2",
                     "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("engine: fast")
    data = next(line for line in lines if line.startswith("data: "))
    assert "4 pieces to train on and 1 held out" in data and "random key (up to 2 semitones" in data
    plan = next(line for line in lines if line.startswith("plan: "))
    assert "for 2 epochs" in plan and "validating" in plan and "last.npz" in plan
    assert lines.index(plan) < lines.index(next(line for line in lines if line.startswith("epoch 1/2  ")))
    assert any(line.startswith("speed: ") and "an epoch of" in line for line in lines)
    progress = [line for line in lines if line.startswith("epoch ") and "so far" in line]
    assert progress and all("loss" in line for line in progress)


def test_train_for_some_minutes_then_resume_for_more(tmp_path, midi_folder, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", str(midi_folder), *TINY, "--minutes", "0.005", "--out", str(run)]) == 0
    said = capsys.readouterr().out
    assert "stopped after 0.005 minutes" in said and "best validation loss" in said
    _, meta = load_checkpoint(run / "last.npz")
    assert meta["train_config"]["epochs"] is None and meta["train_config"]["minutes"] == 0.005
    assert cli.main(["train", str(midi_folder), "--resume", str(run)]) == 2
    assert "has used its 0.005 minutes" in one_error_line(capsys)
    assert cli.main(["train", str(midi_folder), "--resume", str(run), "--minutes", "0.01"]) == 0
    assert "stopped after 0.01 minutes" in capsys.readouterr().out


def test_evaluate_scores_a_checkpoint_on_other_music(tmp_path, trained_run, midi_folder, capsys):
    other = tmp_path / "other"
    other.mkdir()
    write_tune(other / "new.mid", [60, 64, 67, 72, 67, 64, 90] * 8)  # 90: beyond 72 + 5, never seen
    capsys.readouterr()
    assert cli.main(["evaluate", str(trained_run), str(other), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pieces_scored"] == 1 and scores["windows"] > 0
    assert scores["unknown_chunks"] == 16 and scores["unknown_distinct"] == 2  # 61 on and off, 8 times
    assert scores["perplexity"] == pytest.approx(np.exp(scores["cross_entropy"]))
    assert 0 <= scores["accuracy"] <= 1 and scores["baseline_cross_entropy"] > 0
    assert cli.main(["evaluate", str(trained_run), str(midi_folder)]) == 0
    said = capsys.readouterr().out
    assert "cross-entropy" in said and "unigram baseline" in said and "every chunk is in" in said


def test_evaluate_refuses_music_too_short_or_encoded_otherwise(tmp_path, trained_run, capsys):
    short = tmp_path / "short"
    short.mkdir()
    write_tune(short / "one.mid", [60, 62])
    assert cli.main(["evaluate", str(trained_run), str(short)]) == 1
    assert "no piece has the" in one_error_line(capsys)
    raw = tmp_path / "raw.txt"
    assert cli.main(["encode", str(short / "one.mid"), "--raw", "-o", str(raw)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(trained_run), str(raw)]) == 1
    assert "other event settings" in one_error_line(capsys)


@pytest.mark.parametrize("argv, flag", [
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--hidden", "0"], "--hidden must be in 1..100,000, got 0"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--minutes", "-2"], "--minutes must be a number > 0, got -2"),
    (["--patience", "0"], "--patience must be an integer >= 1, got 0"),
])
def test_a_bad_option_is_named_in_its_error(tmp_path, midi_folder, capsys, argv, flag):
    assert cli.main(["train", str(midi_folder), *argv, "--out", str(tmp_path / "run")]) == 2
    assert flag in one_error_line(capsys)


def test_one_file_and_one_epoch_are_singular(tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    write_tune(folder / "a.mid", [60, 64, 67, 72] * 10)
    assert cli.main(["train", str(folder), *TINY, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr().out
    assert "loaded 1 file," in said and "1 piece to train on" in said and "for 1 epoch;" in said
    assert "1 files" not in said and "1 epochs" not in said and "1 pieces" not in said


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


def test_a_second_signal_still_says_how_to_continue(tmp_path, midi_folder, capsys, monkeypatch):
    # Was: three quick Ctrl-Cs printed only "error: interrupted", without the command that continues
    # the run, although last.npz had been saved.
    from lstm_from_scratch import train as train_module
    real_train = train_module.train
    run = tmp_path / "run"

    def saved_then_stopped_at_once(*args, **kwargs):
        real_train(*args, **kwargs)  # a run that saved
        raise KeyboardInterrupt  # and then the second Ctrl-C, mid-batch

    monkeypatch.setattr(train_module, "train", saved_then_stopped_at_once)
    assert cli.main(["train", str(midi_folder), *TINY, "--epochs", "1", "--out", str(run)]) == 130
    err = capsys.readouterr().err
    assert f"the last save is {run / 'last.npz'} (after epoch 1)" in err
    assert f"continue with: lstm-music train {midi_folder} --resume {run}" in err
