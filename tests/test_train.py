"""The training loop: data preparation, history and checkpoints, exact resume, divergence, Ctrl-C."""
import copy
import json
import math
import os
import signal

import numpy as np
import pytest

from lstm_from_scratch import train as train_module
from lstm_from_scratch.fast import data_parallel
from lstm_from_scratch.checkpoint import CheckpointError, load_checkpoint
from lstm_from_scratch.data import DataError, iterate_batches, num_batches
from lstm_from_scratch.music.events import ChunkSequence, EventSettings, transpose_chunk
from lstm_from_scratch.music.vocab import Vocabulary
from lstm_from_scratch.train import (
    TrainConfig, TrainingDiverged, evaluate, load_run, prepare_data, train)

# A small LSTM with dropout, so resuming must also restore the dropout generator.
MODEL = {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 8},
                                       {"type": "dropout", "rate": 0.2}], "output": "sequence"}


def pieces(count=6, length=60):
    """One arpeggio started at different notes: a pattern to learn, different files to split.

    Piece k >= 6 adds a new pitch, so its vocabulary differs from the first six pieces'.
    """
    pattern = [60, 64, 67, 72, 67, 64]
    result = []
    for k in range(count):
        chunks = []
        for step in range(length // 2):
            pitch = pattern[(step + k) % 6] if k < 6 else 48 + k
            chunks += [f"0_no_{pitch}_80", f"2_nf_{pitch}_0"]
        result.append(ChunkSequence(f"piece{k}", chunks, 4))
    return result


def config(**changes):
    values = dict(optimizer="adam", lr=0.01, epochs=2, batch_size=8, seq_len=8, step=4,
                  clip=1.0, seed=3, val_fraction=0.2)
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture
def dataset():
    return prepare_data(pieces(), EventSettings(), config())


def test_prepare_data_splits_by_file_and_shifts_targets(dataset):
    assert len(dataset.val_names) == 1 and len(dataset.train_names) == 5
    assert not set(dataset.val_names) & set(dataset.train_names)
    assert dataset.train_x.shape[1] == 8 and dataset.val_x.shape[1] == 8
    np.testing.assert_array_equal(dataset.train_x[:, 1:], dataset.train_y[:, :-1])
    assert dataset.baseline["cross_entropy"] > 0
    assert dataset.token_counts.sum() == 5 * 60
    assert dataset.ticks_per_beat == 4


def test_train_writes_history_plot_and_checkpoints(tmp_path, dataset):
    records = []
    result = train(dataset, MODEL, config(), tmp_path, progress=False, on_epoch=records.append)
    assert not result.interrupted
    assert [r["epoch"] for r in records] == [1, 2]
    history = json.loads((tmp_path / "history.json").read_text())
    assert history == result.history == records
    for record in history:
        assert np.isfinite(record["train_loss"]) and np.isfinite(record["val_loss"])
        assert record["val_perplexity"] == pytest.approx(np.exp(record["val_loss"]))
        assert 0 <= record["val_accuracy"] <= 1 and record["elapsed"] > 0
        assert record["baseline_loss"] == dataset.baseline["cross_entropy"]
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,batch,epochs,train_loss")
    assert (tmp_path / "loss.png").stat().st_size > 1000
    arrays, meta = load_checkpoint(tmp_path / "last.npz")
    assert meta["epoch"] == 2 and meta["vocabulary"] == list(dataset.vocab.tokens)
    assert meta["train_config"] == config().to_dict()
    assert set(meta["rng"]) == {"shuffle", "dropout"}
    for name, value in result.model.params.items():
        np.testing.assert_array_equal(arrays[f"param/{name}"], value)
    assert any(key.startswith("optim/") for key in arrays)
    _, best_meta = load_checkpoint(tmp_path / "best.npz")
    losses = [r["val_loss"] for r in history]
    assert best_meta["epoch"] == 1 + int(np.argmin(losses))


def test_training_learns_the_arpeggios(tmp_path, dataset):
    result = train(dataset, MODEL, config(epochs=12), tmp_path, progress=False)
    last = result.history[-1]
    assert last["val_loss"] < 0.5 * last["baseline_loss"] and last["val_accuracy"] > 0.6
    assert last["train_loss"] < result.history[0]["train_loss"]


def assert_same_params(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def test_resume_after_an_epoch_is_bit_identical(tmp_path, dataset):
    straight = train(dataset, MODEL, config(epochs=2), tmp_path / "a", progress=False)
    train(dataset, MODEL, config(epochs=1), tmp_path / "b", progress=False)
    resumed = train(dataset, MODEL, config(epochs=2), tmp_path / "b", progress=False, resume=True)
    assert_same_params(straight.model.params, resumed.model.params)
    strip = [{k: v for k, v in r.items() if k != "elapsed"} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed"} for r in resumed.history]


@pytest.mark.parametrize("engine, processes, signal_name", [
    ("plain", 1, "SIGINT"), ("fast", 1, "SIGINT"), ("fast", 2, "SIGINT"),
    ("plain", 1, "SIGTERM"), ("plain", 1, "SIGHUP"), ("fast", 2, "SIGTERM")])
def test_a_signal_mid_epoch_saves_a_point_that_resumes_exactly(engine, processes, signal_name, tmp_path,
                                                                monkeypatch):
    if processes == 2:  # the second half of every batch in a helper process, from the first batch on
        monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 0.0)
        monkeypatch.setattr(data_parallel, "can_use_helper", lambda: True)
    dataset = prepare_data(pieces(), EventSettings(), config(transpose=2))  # keys drawn per batch too
    run = dict(progress=False, engine=engine, processes=processes)
    straight = train(dataset, MODEL, config(epochs=2, transpose=2), tmp_path / "a", **run)

    calls = []
    real_clip = train_module.clip_grad_norm

    def clip_then_signal(grads, max_norm):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), getattr(signal, signal_name))  # as if during batch 3
        return real_clip(grads, max_norm)

    monkeypatch.setattr(train_module, "clip_grad_norm", clip_then_signal)
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP")}
    stopped = train(dataset, MODEL, config(epochs=2, transpose=2), tmp_path / "b", **run)
    assert stopped.interrupted and stopped.stopped == signal_name
    assert (stopped.epoch, stopped.batch) == (0, 3)
    _, meta = load_checkpoint(tmp_path / "b" / "last.npz")
    assert (meta["epoch"], meta["batch"]) == (0, 3)
    assert meta["engine"] == {"name": engine, "processes": processes}
    for name, handler in handlers.items():  # the handlers put back as they were
        assert signal.getsignal(getattr(signal, name)) == handler, name

    monkeypatch.setattr(train_module, "clip_grad_norm", real_clip)
    resumed = train(dataset, MODEL, config(epochs=2, transpose=2), tmp_path / "b", resume=True, **run)
    assert_same_params(straight.model.params, resumed.model.params)
    assert resumed.history[0]["train_loss"] == straight.history[0]["train_loss"]


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_train as t
from lstm_from_scratch import train as train_module
config = t.config(epochs=2, transpose=2, save_every=1e-9)      # last.npz after every batch
dataset = train_module.prepare_data(t.pieces(), t.EventSettings(), config)
batches = []

def kill_at_batch_5(progress):
    batches.append(1)
    if len(batches) == 5:
        os.kill(os.getpid(), signal.SIGKILL)                   # no handler, no save: gone

train_module.train(dataset, t.MODEL, config, {run!r}, progress=False, on_progress=kill_at_batch_5)
"""


def test_kill_minus_9_loses_at_most_one_save_interval_and_resumes_exactly(tmp_path):
    import subprocess
    import sys
    dataset = prepare_data(pieces(), EventSettings(), config(transpose=2))
    straight = train(dataset, MODEL, config(epochs=2, transpose=2), tmp_path / "a", progress=False)
    script = KILLED_RUN.format(tests=os.path.dirname(__file__), run=str(tmp_path / "b"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    _, meta = load_checkpoint(tmp_path / "b" / "last.npz")
    assert (meta["epoch"], meta["batch"]) == (0, 4)  # saved after batch 4; batch 5 was lost
    resumed = train(dataset, MODEL, config(epochs=2, transpose=2), tmp_path / "b", progress=False, resume=True)
    assert_same_params(straight.model.params, resumed.model.params)


class FakeClock:
    """A clock for train.py that moves ``tick`` seconds at every reading."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_a_time_budget_stops_the_run_validated_and_saved(tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(train_module, "_clock", FakeClock(0.5))
    result = train(dataset, MODEL, config(epochs=None, minutes=0.25, validate_every=3.0), tmp_path,
                   progress=False)
    assert result.stopped == "minutes" and not result.interrupted
    history = result.history
    assert history[-1]["elapsed"] >= 15.0 > history[-2]["elapsed"]
    inside = [record for record in history if 0 < record["batch"] < num_batches(len(dataset.train_x), 8)]
    assert inside, "no validation inside an epoch"
    assert all(b["elapsed"] > a["elapsed"] and b["epochs"] > a["epochs"] for a, b in zip(history, history[1:]))
    _, meta = load_checkpoint(tmp_path / "last.npz")
    assert meta["epoch"] + meta["batch"] / num_batches(len(dataset.train_x), 8) == history[-1]["epochs"]
    _, best = load_checkpoint(tmp_path / "best.npz")
    best_loss = min(record["val_loss"] for record in history)
    assert best["history"][-1]["val_loss"] == best_loss


def test_patience_stops_when_validation_stops_improving(tmp_path, dataset):
    # lr 0: the weights never move, so validation never improves on the first record
    result = train(dataset, MODEL, config(epochs=20, optimizer="sgd", lr=1e-12, patience=2), tmp_path,
                   progress=False)
    assert result.stopped == "patience" and len(result.history) == 3


def test_resume_with_other_data_changes_no_file(tmp_path, dataset):
    train(dataset, MODEL, config(epochs=1), tmp_path, progress=False)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    changed = [ChunkSequence(p.name, p.chunks[:-2], 4) if p.name == "piece2" else p for p in pieces()]
    other = prepare_data(changed, EventSettings(), config())
    with pytest.raises(CheckpointError, match=r"1 changed \(piece2\)"):
        train(other, MODEL, config(epochs=2), tmp_path, progress=False, resume=True)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_on_progress_hears_every_batch_with_an_estimate(tmp_path, dataset):
    heard = []
    train(dataset, MODEL, config(epochs=2), tmp_path, progress=False, on_progress=heard.append)
    batches = num_batches(len(dataset.train_x), 8)
    assert [(p.epoch, p.batch) for p in heard] == [(e, b) for e in (1, 2) for b in range(1, batches + 1)]
    assert heard[0].left is None and heard[-1].left is not None and heard[-1].left >= 0
    assert heard[-1].batches == batches and heard[-1].epochs == 2


def test_resume_refuses_another_vocabulary_or_settings(tmp_path, dataset):
    train(dataset, MODEL, config(epochs=1), tmp_path, progress=False)
    other = prepare_data(pieces(count=7), EventSettings(), config())
    with pytest.raises(CheckpointError, match="not the data the run was trained on.*1 new \\(piece6\\)"):
        train(other, MODEL, config(epochs=2), tmp_path, progress=False, resume=True)
    with pytest.raises(CheckpointError, match="lr"):
        train(dataset, MODEL, config(epochs=2, lr=0.5), tmp_path, progress=False, resume=True)


def test_prepare_data_with_a_fixed_vocabulary_rejects_unknown_chunks():
    vocab = Vocabulary(["0_no_60_80", "2_nf_60_0"])
    with pytest.raises(DataError, match="not in the vocabulary"):
        prepare_data(pieces(), EventSettings(), config(), vocab=vocab)


def test_a_diverging_run_stops_with_advice(tmp_path, dataset):
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch \d+.*--lr") as caught:
        train(dataset, MODEL, config(optimizer="sgd", lr=1e30, clip=0), tmp_path, progress=False)
    error = caught.value  # what happened and what to change, for a caller that words its own advice
    assert (error.epoch, error.lr, error.clip) == (1, 1e30, 0) and error.batch >= 1
    assert not math.isfinite(error.loss) or error.loss > error.uniform
    assert "try a lower learning rate in --lrs (now 1e+30)" in error.advice("learning rate in --lrs")
    assert str(copy.copy(error)) == str(error)  # rebuilt from its fields


def test_output_last_models_train_and_evaluate(tmp_path, dataset):
    model_config = {**MODEL, "output": "last"}
    result = train(dataset, model_config, config(epochs=1), tmp_path, progress=False)
    loss, accuracy = evaluate(result.model, dataset.val_x, dataset.val_y)
    assert loss == pytest.approx(result.history[-1]["val_loss"])
    assert 0 <= accuracy <= 1


def test_a_single_piece_trains_without_validation(tmp_path):
    data = prepare_data(pieces(count=1), EventSettings(), config())
    assert len(data.val_x) == 0
    result = train(data, MODEL, config(epochs=1), tmp_path, progress=False)
    assert result.history[0]["val_loss"] is None and (tmp_path / "best.npz").exists()


def test_a_helper_process_changes_the_speed_not_the_weights(tmp_path, dataset, monkeypatch):
    """processes=2 computes the second half of each batch in a helper process once a step takes
    MIN_STEP_SECONDS; with or without the helper, the weights come out the same, bit for bit."""
    started = []
    real_start = data_parallel.DataParallel._start
    monkeypatch.setattr(data_parallel.DataParallel, "_start",
                        lambda self, numbers: started.append(1) or real_start(self, numbers))
    monkeypatch.setattr(data_parallel, "can_use_helper", lambda: True)  # whatever NumPy's BLAS here
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", float("inf"))
    fast = dict(progress=False, engine="fast", processes=2)
    alone = train(dataset, MODEL, config(epochs=2), tmp_path / "alone", **fast)
    assert not started
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 0.0)
    helped = train(dataset, MODEL, config(epochs=2), tmp_path / "helped", **fast)
    assert started == [1]
    assert_same_params(alone.model.params, helped.model.params)
    assert [r["val_loss"] for r in alone.history] == [r["val_loss"] for r in helped.history]
    one = train(dataset, MODEL, config(epochs=2), tmp_path / "one", progress=False, engine="fast")
    assert len(started) == 1  # processes=1: no helper at all, and (by rounding) other weights
    assert not all(np.array_equal(one.model.params[k], alone.model.params[k]) for k in one.model.params)


def test_train_refuses_an_unknown_engine_or_process_count(tmp_path, dataset):
    for engine, processes in (("turbo", 1), ("fast", 3), ("plain", 2)):
        with pytest.raises(train_module.ConfigError, match="engine|processes|process"):
            train(dataset, MODEL, config(), tmp_path / engine, progress=False, engine=engine,
                  processes=processes)


def test_train_config_rejects_nonsense():
    with pytest.raises(train_module.ConfigError, match="learning rate"):
        config(lr=-1)
    with pytest.raises(train_module.ConfigError, match="seq_len"):
        config(seq_len=0)
    assert TrainConfig.from_dict(config().to_dict()) == config()


def test_load_run_refuses_a_non_training_checkpoint(tmp_path):
    from lstm_from_scratch.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "other.npz", {"x": np.zeros(2)}, {"kind": "something else"})
    with pytest.raises(CheckpointError, match="other.npz"):
        load_run(tmp_path / "other.npz")


def test_transposition_moves_each_window_as_it_is_batched_and_stores_nothing_per_key():
    plain = prepare_data(pieces(), EventSettings(), config())
    shifted = prepare_data(pieces(), EventSettings(), config(transpose=2))
    np.testing.assert_array_equal(shifted.vocab.decode(shifted.train_x.ravel()),
                                  plain.vocab.decode(plain.train_x.ravel()))  # the originals only
    np.testing.assert_array_equal(shifted.vocab.decode(shifted.val_x.ravel()),
                                  plain.vocab.decode(plain.val_x.ravel()))
    assert "0_no_74_80" in shifted.vocab and "0_no_74_80" not in plain.vocab  # 72 + 2
    assert shifted.train_names == plain.train_names
    assert shifted.token_counts.sum() == 5 * plain.token_counts.sum()  # trained in 5 keys
    vocab, seen = shifted.vocab, set()
    for epoch in range(3):
        rng = np.random.default_rng(epoch)
        for inputs, targets in iterate_batches(shifted.train_x, shifted.train_y, 8, rng,
                                               shifts=shifted.transposition):
            for column in range(inputs.shape[1]):
                chunks = vocab.decode(inputs[:, column])
                pitch = int(chunks[0].split("_")[2])
                # every window is a whole original window moved by one shift in -2..2
                candidates = [s for s in range(-2, 3)
                              if [transpose_chunk(c, -s) for c in chunks] in originals(plain)]
                assert candidates, chunks
                seen.add(candidates[0])
                assert vocab.decode(targets[:-1, column]) == chunks[1:]
                assert 0 <= pitch <= 127
    assert seen == {-2, -1, 0, 1, 2}


def originals(dataset):
    return [dataset.vocab.decode(window) for window in dataset.train_x]


def test_transposition_keeps_each_piece_in_midi_range():
    high = [ChunkSequence(f"high{k}", [f"0_no_{p}_80" if n % 2 == 0 else f"1_nf_{p}_0"
                                       for n, p in enumerate([125, 125, 127, 127] * 10)], 4) for k in range(3)]
    data = prepare_data(high, EventSettings(), config(transpose=3, val_fraction=0.0))
    assert set(data.transposition.high) == {0} and set(data.transposition.low) == {-3}
    for inputs, _ in iterate_batches(data.train_x, data.train_y, 4, np.random.default_rng(0),
                                     shifts=data.transposition):
        assert all(0 <= int(chunk.split("_")[2]) <= 127 for chunk in data.vocab.decode(inputs.ravel()))


def test_transpose_piece_moves_pitches_and_refuses_to_leave_midi_range():
    piece = ChunkSequence("p", ["0_no_60_80", "3_nf_60_0", "0_no_120_80"], 4)
    assert train_module.transpose_piece(piece, -2).chunks == ["0_no_58_80", "3_nf_58_0", "0_no_118_80"]
    assert train_module.transpose_piece(piece, 8) is None


@pytest.mark.parametrize("batch_size", [None, 3])
def test_evaluate_is_the_mean_cross_entropy(tmp_path, dataset, batch_size):
    from lstm_from_scratch.nn.losses import softmax_cross_entropy
    result = train(dataset, MODEL, config(epochs=1), tmp_path, progress=False)
    model = result.model
    loss, accuracy = evaluate(model, dataset.val_x, dataset.val_y, batch_size=batch_size)
    logits = model.forward(dataset.val_x.T)
    expected, _ = softmax_cross_entropy(logits.astype(np.float64), dataset.val_y.T)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert accuracy == pytest.approx(np.mean(logits.argmax(-1) == dataset.val_y.T))
