"""Export to PyTorch and import back (lstm_from_scratch/export.py, tutorials/torch_music_lstm.py).

The tests without PyTorch check the files: PyTorch's names and shapes, the transposes, the JSON, the
round trip back to a checkpoint, and the command line. The tests that need PyTorch (they skip
cleanly without it) rebuild each exported model in PyTorch and check that it computes our numbers:
the logits over a whole piece, the final (h, c) of every LSTM, one SGD step on the same batch, and a
generated piece.
"""
import dataclasses
import errno
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from lstm_from_scratch import cli, export, generate, train
from lstm_from_scratch.music import corpus, events
from lstm_from_scratch.nn import layers
from lstm_from_scratch.nn.lstm import LSTM
from lstm_from_scratch.nn.model import PRESETS, Model
from lstm_from_scratch.nn.optim import SGD

from cli_support import one_error_line

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

# The two presets, the embedding input, and a model whose one-hot input feeds a Dense layer (our
# model then has a OneHot layer) and that predicts from the last step only.
CONFIGS = {
    "deep-improvisation": PRESETS["deep-improvisation"],
    "piano-composer": PRESETS["piano-composer"],
    "embedding": {"input": "embedding", "embedding_dim": 12,
                  "layers": [{"type": "lstm", "hidden_size": 16},
                             {"type": "dense", "units": 12, "activation": "tanh"}],
                  "output": "sequence"},
    "onehot-dense-last": {"input": "onehot",
                          "layers": [{"type": "dense", "units": 16, "activation": "relu"},
                                     {"type": "lstm", "hidden_size": 16},
                                     {"type": "dropout", "rate": 0.2}],
                          "output": "last"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: checkpoint path}: each config of CONFIGS trained briefly on the built-in tunes.

    A few dozen batches are enough: training moves every bias away from where it started (0, or 1
    for the forget gate), so a bias put in the wrong place would show.
    """
    folder = tmp_path_factory.mktemp("export-runs")
    config = train.TrainConfig(optimizer="adam", lr=0.01, epochs=1, batch_size=16, seq_len=8, step=64,
                               seed=0, val_fraction=0.2)
    dataset = train.prepare_data(corpus.builtin_sequences(), events.EventSettings(), config)
    paths = {}
    for name, model_config in CONFIGS.items():
        train.train(dataset, model_config, config, folder / name, progress=False)
        paths[name] = folder / name / "last.npz"
    return paths


@pytest.fixture(scope="module")
def piece_ids(runs):
    """Ode to Joy as ids (T, 1), T = 194: the piece the logits are compared over."""
    vocab = generate.load_trained(runs["deep-improvisation"]).vocab
    ode = next(piece for piece in corpus.builtin_sequences() if piece.name == "ode_to_joy.mid")
    ids, skipped = vocab.encode_skipping(ode.chunks)
    assert skipped == 0 and len(ids) > 150
    return ids[:, None]


def exported(trained, path):
    """Export ``trained`` to ``path``; returns (weights {name: array}, architecture dict)."""
    weights_path, json_path = export.export_trained(trained, path)
    with np.load(weights_path, allow_pickle=False) as archive:
        weights = {name: archive[name] for name in archive.files}
    return weights, json.loads(json_path.read_text())


# ----------------------------------------------------------------------------------------------
# The files (no PyTorch needed)
# ----------------------------------------------------------------------------------------------

def test_deep_improvisation_exports_under_pytorchs_names(runs, tmp_path):
    trained = generate.load_trained(runs["deep-improvisation"])
    V, params = len(trained.vocab), trained.model.params
    weights, architecture = exported(trained, tmp_path / "model.npz")
    # Written out by hand: the layer before the LSTM is the one-hot step our LSTM does by gathering rows.
    assert {name: value.shape for name, value in weights.items()} == {
        "layers.1.weight_ih_l0": (512, V), "layers.1.weight_hh_l0": (512, 128),
        "layers.1.bias_ih_l0": (512,), "layers.1.bias_hh_l0": (512,),
        "layers.2.weight": (V, 128), "layers.2.bias": (V,)}
    assert architecture["layers"] == [
        {"type": "one_hot", "num_classes": V},
        {"type": "lstm", "input_size": V, "hidden_size": 128},
        {"type": "linear", "in_features": 128, "out_features": V, "activation": "linear"}]
    assert np.array_equal(weights["layers.1.weight_ih_l0"], params["0.lstm.Wx"].T)
    assert np.array_equal(weights["layers.1.weight_hh_l0"], params["0.lstm.Wh"].T)
    assert np.array_equal(weights["layers.1.bias_ih_l0"], params["0.lstm.b"])
    assert not weights["layers.1.bias_hh_l0"].any()
    assert np.array_equal(weights["layers.2.weight"], params["1.dense.W"].T)
    assert np.array_equal(weights["layers.2.bias"], params["1.dense.b"])
    assert all(value.dtype == np.float32 and value.flags.c_contiguous for value in weights.values())
    assert architecture["dtype"] == "float32" and architecture["vocabulary"] == list(trained.vocab.tokens)
    assert architecture["sources"]["layers.1.weight_ih_l0"] == "0.lstm.Wx, transposed"
    assert architecture["model_config"] == trained.model.config


def test_piano_composer_and_embedding_layouts(runs, tmp_path):
    composer = generate.load_trained(runs["piano-composer"])
    weights, architecture = exported(composer, tmp_path / "composer.npz")
    assert [spec["type"] for spec in architecture["layers"]] == [
        "one_hot", "lstm", "dropout", "lstm", "dropout", "lstm", "linear", "dropout", "linear"]
    assert [spec.get("hidden_size") for spec in architecture["layers"] if spec["type"] == "lstm"] == [128, 64, 128]
    assert weights["layers.3.weight_ih_l0"].shape == (256, 128)       # 4H = 256 from D = 128
    assert np.array_equal(weights["layers.5.weight_hh_l0"], composer.model.params["4.lstm.Wh"].T)
    assert weights["layers.6.weight"].shape == (64, 128) and architecture["layers"][7] == {"type": "dropout", "p": 0.3}

    embedded = generate.load_trained(runs["embedding"])
    weights, architecture = exported(embedded, tmp_path / "embedded.npz")
    V = len(embedded.vocab)
    assert architecture["layers"][0] == {"type": "embedding", "num_embeddings": V, "embedding_dim": 12}
    assert np.array_equal(weights["layers.0.weight"], embedded.model.params["0.embedding.W"])  # (V, E), as is
    assert weights["layers.1.weight_ih_l0"].shape == (64, 12)
    assert architecture["layers"][2]["activation"] == "tanh"

    last = generate.load_trained(runs["onehot-dense-last"])
    _, architecture = exported(last, tmp_path / "last.npz")
    assert [spec["type"] for spec in architecture["layers"]] == [
        "one_hot", "linear", "lstm", "last_step", "dropout", "linear"]  # the same order as model.layers
    kinds = (layers.OneHot, layers.Dense, LSTM, layers.LastStep, layers.Dropout, layers.Dense)
    assert len(last.model.layers) == len(kinds)
    assert all(isinstance(layer, kind) for layer, kind in zip(last.model.layers, kinds))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_gives_back_the_same_model(runs, tmp_path, name):
    trained = generate.load_trained(runs[name])
    export.export_trained(trained, tmp_path / "model.npz")
    checkpoint = export.import_to_checkpoint(tmp_path / "model.npz", tmp_path / "back.npz")
    back = generate.load_trained(checkpoint)
    assert back.model.config == trained.model.config and back.vocab.tokens == trained.vocab.tokens
    assert back.settings == trained.settings and back.ticks_per_beat == trained.ticks_per_beat
    assert np.array_equal(back.token_counts, trained.token_counts)
    for key, value in trained.model.params.items():
        assert np.array_equal(back.model.params[key], value), key
    pieces = [generate.generate(model, trained.vocab, [3, 5], 40, rng=np.random.default_rng(7))
              for model in (trained.model, back.model)]
    assert pieces[0] == pieces[1]


def test_import_adds_the_two_biases(runs, tmp_path):
    # Weights from a PyTorch LSTM that trained both biases: our b is their sum.
    trained = generate.load_trained(runs["deep-improvisation"])
    weights = export.torch_weights(trained.model)
    split = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    weights["layers.1.bias_ih_l0"] = weights["layers.1.bias_ih_l0"] - split
    weights["layers.1.bias_hh_l0"] = split
    model = export.model_from_torch_weights(trained.model.config, weights)
    np.testing.assert_allclose(model.params["0.lstm.b"], trained.model.params["0.lstm.b"], rtol=0, atol=1e-6)
    assert not np.array_equal(model.params["0.lstm.b"], weights["layers.1.bias_ih_l0"])


@pytest.mark.parametrize("damage, words", [
    (lambda w: w.pop("layers.1.bias_hh_l0"), "missing ['layers.1.bias_hh_l0']"),
    (lambda w: w.update(extra=np.zeros(3, np.float32)), "extra ['extra']"),
    (lambda w: w.update({"layers.2.weight": w["layers.2.weight"].T.copy()}), "layers.2.weight has shape"),
    (lambda w: w["layers.1.weight_hh_l0"].__setitem__((0, 0), np.nan), "finite"),
    (lambda w: w.update({"layers.2.bias": w["layers.2.bias"].astype(np.int64)}), "finite floats"),
])
def test_import_refuses_weights_that_do_not_fit(runs, tmp_path, capsys, damage, words):
    trained = generate.load_trained(runs["deep-improvisation"])
    export.export_trained(trained, tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as archive:
        weights = {name: archive[name] for name in archive.files}
    damage(weights)
    np.savez(tmp_path / "model.npz", **weights)
    with pytest.raises(export.ExportError, match="model.npz: .*" + words.replace("[", r"\[").replace("]", r"\]")):
        export.import_trained(tmp_path / "model.npz")
    assert cli.main(["import", str(tmp_path / "model.npz"), "-o", str(tmp_path / "back.npz")]) == 1
    assert words in one_error_line(capsys)
    assert not (tmp_path / "back.npz").exists()


def test_import_refuses_a_damaged_architecture(runs, tmp_path, capsys):
    trained = generate.load_trained(runs["deep-improvisation"])
    weights_path, json_path = export.export_trained(trained, tmp_path / "model.npz")
    architecture = json.loads(json_path.read_text())
    for change, words in (({"format": "something else"}, "not the architecture of an lstm-music export"),
                          ({"format_version": 99}, "format version 99"),
                          ({"vocabulary": architecture["vocabulary"][:-1]}, "does not fit its vocabulary"),
                          ({"ticks_per_beat": 0}, "ticks_per_beat")):
        json_path.write_text(json.dumps({**architecture, **change}))
        assert cli.main(["import", str(weights_path), "-o", str(tmp_path / "back.npz")]) == 1
        line = one_error_line(capsys)
        assert str(json_path) in line and words in line, line
    json_path.write_text("{ not json")
    assert cli.main(["import", str(weights_path), "-o", str(tmp_path / "back.npz")]) == 1
    assert "not valid JSON" in one_error_line(capsys)
    json_path.unlink()
    assert cli.main(["import", str(weights_path), "-o", str(tmp_path / "back.npz")]) == 1
    assert f"{json_path}: no such file" in one_error_line(capsys)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

def test_cli_export_then_import_then_generate(runs, tmp_path, capsys):
    run_folder = runs["piano-composer"].parent
    out = tmp_path / "torch" / "composer.npz"
    out.parent.mkdir()
    assert cli.main(["export", str(run_folder), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and str(out.with_suffix(".json")) in said
    with np.load(out) as archive:
        assert "layers.5.weight_hh_l0" in archive.files
    assert cli.main(["import", str(out), "-o", str(tmp_path / "back.npz")]) == 0
    assert cli.main(["generate", str(tmp_path / "back.npz"), "-o", str(tmp_path / "a.mid"), "--seed", "3"]) == 0
    assert cli.main(["generate", str(run_folder), "-o", str(tmp_path / "b.mid"), "--seed", "3"]) == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()


@pytest.mark.parametrize("make_input", [
    lambda folder: folder / "missing.npz",
    lambda folder: (folder / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip") and folder / "garbage.npz",
    lambda folder: (folder / "empty").mkdir() or folder / "empty",  # a folder without last.npz
])
def test_cli_export_of_a_bad_checkpoint_is_one_error_line(tmp_path, capsys, make_input):
    bad = make_input(tmp_path)
    assert cli.main(["export", str(bad), "-o", str(tmp_path / "out.npz")]) == 1
    assert str(bad) in one_error_line(capsys)
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "out.json").exists()


def test_cli_export_refuses_bad_outputs(runs, tmp_path, capsys):
    checkpoint = runs["deep-improvisation"]
    assert cli.main(["export", str(checkpoint), "-o", str(tmp_path / "model.pt")]) == 2
    assert "-o names the weights file, OUT.npz" in one_error_line(capsys)
    assert cli.main(["export", str(checkpoint), "-o", str(checkpoint)]) == 2
    assert "is also an input" in one_error_line(capsys)
    assert cli.main(["import", str(tmp_path / "nothing.npz"), "-o", str(tmp_path / "x.txt")]) == 2
    one_error_line(capsys)
    assert cli.main(["import", str(tmp_path / "nothing.npz"), "-o", str(tmp_path / "x.npz")]) == 1
    assert "nothing.npz: no such file" in one_error_line(capsys)


def test_cli_export_names_the_file_it_could_not_write(runs, tmp_path, capsys, monkeypatch):
    def failing_replace(source, target):  # as on a read-only folder
        raise PermissionError(errno.EACCES, "Permission denied", source, target)
    monkeypatch.setattr(os, "replace", failing_replace)
    out = tmp_path / "out" / "model.npz"
    out.parent.mkdir()
    assert cli.main(["export", str(runs["embedding"]), "-o", str(out)]) == 1
    line = one_error_line(capsys)
    assert str(out) in line and "Permission denied" in line and ".tmp" not in line
    assert list(out.parent.iterdir()) == []  # no temporary file left behind
    monkeypatch.undo()
    folder = tmp_path / "model.npz"
    folder.mkdir()
    assert cli.main(["export", str(runs["embedding"]), "-o", str(folder)]) == 2
    assert "is a folder" in one_error_line(capsys)


# ----------------------------------------------------------------------------------------------
# PyTorch computes our numbers (skipped without PyTorch)
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_music_lstm(torch):
    """tutorials/torch_music_lstm.py, the PyTorch model tutorial 12 teaches (not part of the package)."""
    spec = importlib.util.spec_from_file_location("torch_music_lstm", TUTORIALS / "torch_music_lstm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_dtype(trained, dtype):
    """``trained`` with its model copied into ``dtype`` (float64 for the exact comparison)."""
    model = Model(trained.model.config, dtype=dtype)
    model.load_params(trained.model.params)
    return dataclasses.replace(trained, model=model)


TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pytorch_computes_our_numbers(runs, piece_ids, tmp_path, torch, torch_music_lstm, name, dtype):
    trained = in_dtype(generate.load_trained(runs[name]), np.dtype(dtype))
    ours = trained.model
    export.export_trained(trained, tmp_path / "model.npz")
    net, architecture = torch_music_lstm.load(tmp_path / "model.npz")
    assert architecture["dtype"] == dtype and next(net.parameters()).dtype == getattr(torch, dtype)
    tolerance = TOLERANCE[dtype]

    def largest(a, b):
        return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b.detach().numpy())))

    # 1. The logits over a whole piece, and every LSTM's final (h, c).
    logits = ours.forward(piece_ids)
    with torch.no_grad():
        torch_logits, torch_state = net(torch.from_numpy(piece_ids))
    assert torch_logits.shape == logits.shape
    found = {"logits": largest(logits, torch_logits)}
    assert len(torch_state) == len(ours.final_state) >= 1
    for k, ((h, c), (torch_h, torch_c)) in enumerate(zip(ours.final_state, torch_state)):
        # h lies in (-1, 1), but the cell c is unbounded (Ode to Joy takes it past 60), and float32
        # keeps 7 significant digits, so c's difference is measured relative to its largest value.
        found[f"h{k}"] = largest(h, torch_h[0])
        found[f"c{k} relative"] = largest(c, torch_c[0]) / max(1.0, float(np.abs(c).max()))

    # 2. One SGD step on the same batch. Dropout is off on both sides: the masks come from two
    # different random generators, so with dropout on the two steps would differ by design.
    rng = np.random.default_rng(3)
    V = ours.config["vocab_size"]
    inputs, targets = rng.integers(0, V, (12, 5)), rng.integers(0, V, (12, 5))
    if ours.config["output"] == "last":
        targets = targets[-1]
    before = export.torch_weights(ours)
    loss, grads = ours.loss(inputs, targets, training=False)
    SGD(lr=0.5).step(ours.params, grads)
    net.eval()
    torch_logits, _ = net(torch.from_numpy(inputs))
    torch_loss = torch.nn.functional.cross_entropy(torch_logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1))
    torch_loss.backward()
    torch.optim.SGD(net.parameters(), lr=0.5).step()
    after, torch_after = export.torch_weights(ours), net.state_dict()
    found["loss"] = abs(loss - torch_loss.item())
    found["step"] = max(largest(after[key], torch_after[key]) for key in after)
    moved = max(float(np.max(np.abs(after[key] - before[key]))) for key in after)
    assert moved > 100 * tolerance  # the step really changed the weights
    assert not torch_after[next(key for key in after if key.endswith("bias_hh_l0"))].any()  # frozen at 0

    print(f"torch export {name} {dtype}: " + ", ".join(f"{key} {value:.1e}" for key, value in found.items()))
    assert max(found.values()) < tolerance, found


def test_pytorch_generates_our_piece(runs, tmp_path, torch, torch_music_lstm):
    # float64, so that no draw can fall on the other side of a slice's edge by rounding.
    for name in ("piano-composer", "onehot-dense-last"):
        trained = in_dtype(generate.load_trained(runs[name]), np.float64)
        export.export_trained(trained, tmp_path / f"{name}.npz")
        net, _ = torch_music_lstm.load(tmp_path / f"{name}.npz")
        for temperature in (1.0, 0.7, 0.0):
            ours = generate.generate(trained.model, trained.vocab, [3, 5, 8], 60, temperature=temperature,
                                     rng=np.random.default_rng(11))
            theirs = torch_music_lstm.generate(net, [3, 5, 8], 60, temperature=temperature,
                                               rng=np.random.default_rng(11))
            assert ours == theirs
            assert temperature == 0 or len(set(ours)) > 5  # a real piece, not one chunk repeated


def test_a_trained_bias_hh_would_take_a_different_step(runs, tmp_path, torch, torch_music_lstm):
    # Why the PyTorch model freezes bias_hh: trained, it gets the same gradient as bias_ih, and
    # their sum moves twice as far as our one bias.
    trained = in_dtype(generate.load_trained(runs["deep-improvisation"]), np.float64)
    export.export_trained(trained, tmp_path / "model.npz")
    net, _ = torch_music_lstm.load(tmp_path / "model.npz")
    net.layers[1].bias_hh_l0.requires_grad_(True)
    inputs = np.random.default_rng(0).integers(0, trained.model.config["vocab_size"], (8, 4))
    _, grads = trained.model.loss(inputs[:-1], inputs[1:], training=False)
    logits, _ = net(torch.from_numpy(inputs[:-1]))
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                      torch.from_numpy(inputs[1:]).reshape(-1)).backward()
    torch.optim.SGD(net.parameters(), lr=0.5).step()
    their_b = (net.layers[1].bias_ih_l0 + net.layers[1].bias_hh_l0).detach().numpy()
    np.testing.assert_allclose(their_b, trained.model.params["0.lstm.b"] - 2 * 0.5 * grads["0.lstm.b"], atol=1e-12)
    assert np.abs(grads["0.lstm.b"]).max() > 1e-3


def test_weights_trained_in_pytorch_come_back(runs, piece_ids, tmp_path, torch, torch_music_lstm):
    trained = generate.load_trained(runs["embedding"])
    export.export_trained(trained, tmp_path / "model.npz")
    net, architecture = torch_music_lstm.load(tmp_path / "model.npz")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    inputs = torch.from_numpy(piece_ids[:-1])
    for _ in range(3):
        logits, _ = net(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(piece_ids[1:]).reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch_music_lstm.save(net, architecture, tmp_path / "tuned.npz")
    checkpoint = export.import_to_checkpoint(tmp_path / "tuned.npz", tmp_path / "tuned-checkpoint.npz")
    back = generate.load_trained(checkpoint)
    with torch.no_grad():
        torch_logits, _ = net(torch.from_numpy(piece_ids))
    assert np.abs(back.model.forward(piece_ids) - torch_logits.numpy()).max() < 1e-5
    assert np.abs(back.model.params["0.embedding.W"] - trained.model.params["0.embedding.W"]).max() > 1e-3
