"""Two engines, one truth: the plain engine (nn/) is what trains when asked for, and the fast engine
(fast/) computes the same numbers: outputs, gradients, optimizer steps, generation, checkpoints."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import TINY, one_error_line

import lstm_from_scratch
from lstm_from_scratch import cli, engines
from lstm_from_scratch.fast import FastLSTM, FastModel
from lstm_from_scratch.generate import generate, load_trained
from lstm_from_scratch.music.events import ChunkSequence, EventSettings
from lstm_from_scratch.music.vocab import Vocabulary
from lstm_from_scratch.nn import lstm as plain_lstm_module
from lstm_from_scratch.nn.gradcheck import check_model_directions
from lstm_from_scratch.nn.lstm import LSTM
from lstm_from_scratch.nn.model import PRESETS, Model, preset_config
from lstm_from_scratch.nn.optim import make_optimizer
from lstm_from_scratch.train import TrainConfig, prepare_data, train

V, T, B = 11, 6, 4
NN = Path(lstm_from_scratch.__file__).parent / "nn"

CONFIGS = {
    **{name: preset_config(name, V) for name in PRESETS},
    "embedding, dense tanh, last": {
        "vocab_size": V, "input": "embedding", "embedding_dim": 5, "output": "last",
        "layers": [{"type": "lstm", "hidden_size": 6}, {"type": "dense", "units": 4, "activation": "tanh"},
                   {"type": "lstm", "hidden_size": 5}, {"type": "dense", "units": 3, "activation": "relu"}]},
}


def pair(config, seed=2):
    """A plain Model and a FastModel built from the same config and seed: the same weights."""
    plain, fast = Model(config, np.float64, seed=seed), FastModel(config, np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    for name, value in plain.params.items():  # random biases too, so that no term hides behind a zero
        value[...] = 0.3 * rng.standard_normal(value.shape)
        fast.params[name][...] = value
    return plain, fast


def batch(config, seed=0):
    ids, targets = np.random.default_rng(seed).integers(0, V, (2, T, B))
    return ids, (targets[-1] if config.get("output") == "last" else targets)


def test_nn_imports_no_speed_machinery_and_stays_short():
    forbidden = {"threading", "concurrent", "subprocess", "multiprocessing", "mmap"}
    for path in sorted(NN.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
                assert "fast" not in name.split("."), f"{path.name} imports the fast engine ({name})"
        assert len(path.read_text().splitlines()) < 300, f"{path.name} is 300 lines or more"


def test_the_plain_model_is_built_from_nn_lstm_and_the_fast_one_from_fast_lstm():
    config = preset_config("piano-composer", V)
    assert {type(layer) for layer in Model(config).lstm_layers} == {LSTM}
    assert {type(layer) for layer in FastModel(config).lstm_layers} == {FastLSTM}
    assert list(Model(config).params) == list(FastModel(config).params)  # one checkpoint fits both
    assert type(engines.make_model(config)) is Model  # the Python API's default
    assert type(engines.make_model(config, "fast")) is FastModel
    with pytest.raises(engines.EngineError, match="turbo"):
        engines.make_model(config, "turbo")


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("training", [False, True])
def test_outputs_losses_and_gradients_agree(name, training):
    config = CONFIGS[name]
    plain, fast = pair(config)
    ids, targets = batch(config)
    state = [pair_ for pair_ in plain.initial_state(B)]
    state = [(h + 0.1, c - 0.2) for h, c in state]  # a nonzero initial state
    np.testing.assert_allclose(fast.forward(ids, state), plain.forward(ids, state), rtol=1e-10, atol=1e-12)
    for (h_fast, c_fast), (h_plain, c_plain) in zip(fast.final_state, plain.final_state):
        np.testing.assert_allclose(h_fast, h_plain, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c_fast, c_plain, rtol=1e-10, atol=1e-12)
    # dropout on: both models draw the same masks from the same model.rng
    loss_plain, grads_plain = plain.loss(ids, targets, training=training)
    loss_fast, grads_fast = fast.loss(ids, targets, training=training)
    assert loss_fast == pytest.approx(loss_plain, rel=1e-12)
    for key, grad in grads_plain.items():
        np.testing.assert_allclose(grads_fast[key], grad, rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_three_optimizer_steps_agree(optimizer):
    config = CONFIGS["piano-composer"]
    plain, fast = pair(config)
    settings = {"momentum": 0.9} if optimizer == "sgd" else {}
    optimizers = [make_optimizer(optimizer, 0.05, **settings) for _ in range(2)]
    for step in range(3):
        ids, targets = batch(config, seed=step)
        for model, opt in zip((plain, fast), optimizers):
            _, grads = model.loss(ids, targets, training=True)
            opt.step(model.params, grads)
    for key, value in plain.params.items():
        np.testing.assert_allclose(fast.params[key], value, rtol=1e-9, atol=1e-11, err_msg=key)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_model_whole_gradients_along_random_directions(name, rng):
    _, fast = pair(CONFIGS[name])
    ids, targets = batch(CONFIGS[name], seed=5)
    error = check_model_directions(fast, ids, targets, n_directions=3, rng=rng, training=True)
    print(f"worst relative error FastModel {name} along 3 random directions: {error:.2e}")
    assert error < 1e-6


def test_generation_with_the_same_seed_agrees():
    plain, fast = pair(CONFIGS["piano-composer"])
    vocab = Vocabulary([f"{k}_no_{60 + k}_80" for k in range(V)])
    pieces = [generate(model, vocab, [1, 2, 3], 200, temperature=1.0, rng=np.random.default_rng(7))
              for model in (plain, fast)]
    assert pieces[0] == pieces[1]
    logits_plain, _ = plain.step(np.array([3]), None)
    logits_fast, _ = fast.step(np.array([3]), None)
    np.testing.assert_allclose(logits_fast, logits_plain, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- training and checkpoints

MODEL = {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 8}, {"type": "dropout", "rate": 0.2}]}


@pytest.fixture
def dataset():
    pattern = [60, 64, 67, 72, 67, 64]
    pieces = [ChunkSequence(f"piece{k}", [chunk for step in range(30) for chunk in
                                          (f"0_no_{pattern[(step + k) % 6]}_80", f"2_nf_{pattern[(step + k) % 6]}_0")], 4)
              for k in range(6)]
    return prepare_data(pieces, EventSettings(), small_config())


def small_config(**changes):
    return TrainConfig(**{**dict(optimizer="adam", lr=0.01, epochs=1, batch_size=8, seq_len=8, step=4,
                                 clip=1.0, seed=3, val_fraction=0.2), **changes})


def test_a_checkpoint_loads_into_either_engine_and_resumes_with_the_other(tmp_path, dataset):
    made = train(dataset, MODEL, small_config(), tmp_path, progress=False, engine="plain")
    assert made.history[0]["engine"] == "plain"
    plain, fast = load_trained(tmp_path / "last.npz"), load_trained(tmp_path / "last.npz", engine="fast")
    assert type(plain.model) is Model and type(fast.model) is FastModel
    ids = dataset.val_x[:3].T
    np.testing.assert_allclose(fast.model.forward(ids), plain.model.forward(ids), rtol=1e-5, atol=1e-6)
    resumed = train(dataset, MODEL, small_config(epochs=2), tmp_path, progress=False, resume=True,
                    engine="fast")
    assert [record["engine"] for record in resumed.history] == ["plain", "fast"]
    assert json.loads((tmp_path / "history.json").read_text())[-1]["engine"] == "fast"


def test_the_plain_engine_trains_with_nn_lstm_itself(tmp_path, dataset, monkeypatch):
    """A student who edits nn/lstm.py sees the change in training with the plain engine (and not
    with the fast one, which has a forward of its own)."""
    before = {engine: train(dataset, MODEL, small_config(), tmp_path / engine, progress=False,
                            engine=engine).history[0]["train_loss"] for engine in ("plain", "fast")}
    monkeypatch.setattr(plain_lstm_module, "sigmoid", lambda x: 0.5 * np.ones_like(x))  # "an edit"
    after = {engine: train(dataset, MODEL, small_config(), tmp_path / f"{engine}-edited", progress=False,
                           engine=engine).history[0]["train_loss"] for engine in ("plain", "fast")}
    assert after["plain"] != before["plain"]
    assert after["fast"] == before["fast"]


def test_cli_says_which_engine_ran_first_and_in_the_history(tmp_path, capsys):
    for engine in ("plain", "fast"):
        out = tmp_path / engine
        argv = ["train", "builtin", *TINY, "--step", "64", "--epochs", "1", "--out", str(out)]
        assert cli.main(argv + ["--engine", engine]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed[0].startswith(f"engine: {engine}")
        assert json.loads((out / "history.json").read_text())[0]["engine"] == engine


def test_cli_refuses_two_processes_with_the_plain_engine(tmp_path, capsys):
    argv = ["train", "builtin", *TINY, "--engine", "plain", "--processes", "2", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    assert "--processes 2" in one_error_line(capsys)
