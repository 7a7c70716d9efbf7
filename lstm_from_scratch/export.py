"""Take a trained model to PyTorch, and back: the same weights under PyTorch's names and shapes.

``lstm-music export CHECKPOINT -o OUT.npz`` (``export_trained``) writes two files:

- ``OUT.npz``: every weight, named and shaped as the ``state_dict`` of the PyTorch model that
  ``tutorials/torch_music_lstm.py`` builds, so ``load_state_dict`` takes it as it is;
- ``OUT.json``: that model's layers in order, the vocabulary and the event settings, so the PyTorch
  side can rebuild the model and turn its ids back into music.

Writing needs no PyTorch; reading needs ``np.load`` and ``torch.from_numpy``.
``lstm-music import OUT.npz -o CHECKPOINT.npz`` (``import_to_checkpoint``) goes the other way, for a
model trained further in PyTorch and saved in the same two files.

Our names and PyTorch's, for our layer i, which is layer j of the PyTorch model::

    ours            shape       PyTorch                  shape
    i.lstm.Wx       (D, 4H)     layers.j.weight_ih_l0    (4H, D)   transposed
    i.lstm.Wh       (H, 4H)     layers.j.weight_hh_l0    (4H, H)   transposed
    i.lstm.b        (4H,)       layers.j.bias_ih_l0      (4H,)
    (none)                      layers.j.bias_hh_l0      (4H,)     zeros, see "Two biases"
    i.embedding.W   (V, E)      layers.j.weight          (V, E)
    i.dense.W       (D, O)      layers.j.weight          (O, D)    transposed
    i.dense.b       (O,)        layers.j.bias            (O,)

The gate blocks are in the same order (i, f, g, o), so the transposes are the only change: PyTorch
stores a weight as (out, in) and computes ``x @ W.T``; we store (in, out) and compute ``x @ W``,
the way the equations are written. The PyTorch model always starts with its input layer (one-hot or
embedding) at j = 0, so j is i, or i + 1 where our model reads ids straight into its first LSTM.

**Two biases.** PyTorch's LSTM computes ``x @ W_ih.T + b_ih + h @ W_hh.T + b_hh``: a bias for each
of the two products, because that is how NVIDIA's cuDNN library lays out an LSTM's weights, and
PyTorch kept cuDNN's layout so that its weights are the ones cuDNN computes with. The two are
only ever added, so one bias ``b = b_ih + b_hh`` computes exactly the same thing, and that is what
the equations in papers (and ours, in ``nn/lstm.py``) have. The second bias is not harmless in
training, though: both get the same gradient, so plain SGD moves their sum twice as far as it moves
our one ``b``. So we export ``b`` as ``bias_ih`` and zeros as ``bias_hh``, and the PyTorch model
freezes ``bias_hh`` (``requires_grad_(False)``): then one SGD step there is the same step as here.
Importing adds the two, so weights from any PyTorch LSTM come back right.

**One-hot input stays one-hot.** Our LSTM reads token ids and gathers rows of ``Wx`` (V, 4H), which
is the product ``onehot(ids) @ Wx``. The PyTorch model does that product literally:
``F.one_hot(ids, V)`` into ``nn.LSTM(input_size=V)`` with ``weight_ih_l0 = Wx.T``. Each gate input
is then one weight times 1 plus zeros, which is exact, so the numbers agree with ours; the file
holds PyTorch's own names and shapes, and a stock ``nn.LSTM`` loads them. The price is a V-wide
product at each step. We considered putting ``Wx`` into an ``nn.Embedding(V, 4H)`` in front of the
LSTM instead, and decided against it: ``nn.LSTM`` has no way to take gate inputs already computed,
so it would still need an input weight, a (4H, 4H) identity that costs more than the one-hot product
whenever V < 4H (299 < 512 for the built-in tunes at H = 128) and that PyTorch would train unless
frozen; the other way, a hand-written LSTM cell, gives up the fused LSTM kernels a student moves to
PyTorch for. For a vocabulary of thousands, train with ``"input": "embedding"`` (``--embedding``):
it maps one to one onto ``nn.Embedding`` and ``nn.LSTM``.

**One nn.LSTM per layer.** Each of our LSTM layers becomes its own ``nn.LSTM`` (so its weights
always end in ``_l0``). A single ``nn.LSTM(num_layers=3)`` needs one hidden size for every layer and
nothing but dropout between them; piano-composer's 128, 64, 128 fits neither.

**Why .npz.** It needs nothing beyond NumPy to write or read, it is the format of our checkpoints,
and it is read with ``allow_pickle=False``, so, like safetensors (the format PyTorch users share
weights in today), opening it runs no code. safetensors would be a new dependency here, and the
student would need the ``safetensors`` package too: ``torch.load`` reads such a file only through it.
"""
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write, atomic_write_text
from .checkpoint import CheckpointError, read_npz, save_checkpoint
from .nn.layers import Dense, Dropout, Embedding, LastStep, OneHot
from .nn.lstm import LSTM
from .nn.model import Model

FORMAT = "lstm_from_scratch.torch_export"
FORMAT_VERSION = 1

# How each PyTorch array comes from ours (the third item of each ``weight_mapping`` row).
AS_IS, TRANSPOSED, SECOND_BIAS = "as is", "transposed", "second bias"


class ExportError(CheckpointError):
    """An export (a file of weights, like a checkpoint) that cannot be written or read back.
    ``str(error)`` is ``f"{path}: {reason}"``."""


# ----------------------------------------------------------------------------------------------
# The mapping: our layers and names -> PyTorch's
# ----------------------------------------------------------------------------------------------

def torch_layers(model):
    """The PyTorch model's layers, in order: a list of ``(spec, i)``.

    ``spec`` is a JSON-able dict naming a PyTorch layer and its arguments: ``{"type": "one_hot",
    "num_classes": V}``, ``{"type": "embedding", "num_embeddings": V, "embedding_dim": E}``,
    ``{"type": "lstm", "input_size": D, "hidden_size": H}``, ``{"type": "linear", "in_features": D,
    "out_features": O, "activation": "linear" | "relu" | "tanh"}``, ``{"type": "dropout", "p": rate}``
    or ``{"type": "last_step"}`` (keep the last time step). ``i`` is the index of the matching layer
    in ``model.layers``, or None for the one-hot step our LSTM does by gathering rows.
    """
    layers = model.layers
    V = model.config["vocab_size"]
    if isinstance(layers[0], Embedding):
        pairs = [({"type": "embedding", "num_embeddings": V, "embedding_dim": layers[0].embedding_dim}, 0)]
    else:
        pairs = [({"type": "one_hot", "num_classes": V}, 0 if isinstance(layers[0], OneHot) else None)]
    first = 0 if pairs[0][1] is None else 1  # the layers after the input step
    for i in range(first, len(layers)):
        layer = layers[i]
        if isinstance(layer, LSTM):
            spec = {"type": "lstm", "input_size": layer.input_size, "hidden_size": layer.hidden_size}
        elif isinstance(layer, Dense):
            spec = {"type": "linear", "in_features": layer.input_size, "out_features": layer.output_size,
                    "activation": layer.activation}
        elif isinstance(layer, Dropout):
            spec = {"type": "dropout", "p": layer.rate}
        elif isinstance(layer, LastStep):
            spec = {"type": "last_step"}
        else:
            raise ExportError(None, f"layer {i} ({type(layer).__name__}) has no PyTorch counterpart")
        pairs.append((spec, i))
    return pairs


def weight_mapping(model):
    """Where each PyTorch weight comes from: a list of ``(torch_name, our_name, how)``.

    ``how`` is ``AS_IS``, ``TRANSPOSED`` or ``SECOND_BIAS`` (an LSTM's ``bias_hh``: zeros on
    export, added to ``b`` on import). Rows are in the order of the PyTorch model's ``state_dict``.
    """
    rows = []
    for j, (spec, i) in enumerate(torch_layers(model)):
        ours, theirs = f"{i}.{spec['type']}.", f"layers.{j}."
        if spec["type"] == "lstm":
            rows += [(theirs + "weight_ih_l0", ours + "Wx", TRANSPOSED),
                     (theirs + "weight_hh_l0", ours + "Wh", TRANSPOSED),
                     (theirs + "bias_ih_l0", ours + "b", AS_IS),
                     (theirs + "bias_hh_l0", ours + "b", SECOND_BIAS)]
        elif spec["type"] == "linear":
            rows += [(theirs + "weight", f"{i}.dense.W", TRANSPOSED), (theirs + "bias", f"{i}.dense.b", AS_IS)]
        elif spec["type"] == "embedding":
            rows.append((theirs + "weight", ours + "W", AS_IS))
    return rows


def torch_weights(model):
    """The model's weights under PyTorch's names and in its shapes: ``{torch_name: array}``.

    Each array is a fresh C-ordered copy in the model's dtype (see the module docstring for the
    table): ``weight_ih_l0`` (4H, D) is ``Wx.T``, ``weight_hh_l0`` (4H, H) is ``Wh.T``,
    ``bias_ih_l0`` (4H,) is ``b`` and ``bias_hh_l0`` (4H,) is zeros; a Linear's ``weight`` (O, D)
    is our ``W.T``; an Embedding's ``weight`` (V, E) is our ``W``.
    """
    weights = {}
    for torch_name, our_name, how in weight_mapping(model):
        value = model.params[our_name]
        if how == TRANSPOSED:
            value = value.T
        elif how == SECOND_BIAS:
            value = np.zeros_like(value)
        weights[torch_name] = np.ascontiguousarray(value)
    return weights


def model_from_torch_weights(config, weights, dtype=np.float32):
    """Our ``Model`` for ``config`` holding ``weights`` (``{torch_name: array}``, as ``torch_weights``
    returns or a PyTorch ``state_dict`` converted to NumPy).

    ``bias_ih`` and ``bias_hh`` are added into ``b``. Raises ``ExportError`` (without a path)
    naming the first missing, extra, misshapen or non-finite weight.
    """
    model = Model(config, dtype=dtype)
    expected = torch_weights(model)
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        raise ExportError(None, f"the weights do not fit the architecture: missing {missing}, extra {extra}")
    for name, value in weights.items():
        value = np.asarray(value)
        if value.shape != expected[name].shape:
            raise ExportError(None, f"weight {name} has shape {value.shape}, the architecture needs "
                                    f"{expected[name].shape}")
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ExportError(None, f"weight {name} must hold finite floats (it holds {value.dtype}"
                                    f"{'' if value.dtype.kind != 'f' else ' with NaN or inf'})")
    params = {}
    for torch_name, our_name, how in weight_mapping(model):
        value = np.asarray(weights[torch_name], dtype=np.float64)
        if how == TRANSPOSED:
            params[our_name] = value.T
        elif how == SECOND_BIAS:  # (bias_ih came first in the mapping)
            params[our_name] = params[our_name] + value
        else:
            params[our_name] = value
    model.load_params(params)
    return model


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

def architecture_path(weights_path):
    """The JSON file that goes with the weights file ``weights_path``: the same name, ending in .json."""
    return Path(weights_path).with_suffix(".json")


def export_trained(trained, path):
    """Write ``trained`` (from ``generate.load_trained``) as ``path`` (a ``.npz`` of PyTorch-named
    weights) and, beside it, the ``.json`` architecture. Returns the two paths written.

    The JSON holds ``format`` and ``format_version``; ``layers`` (the PyTorch layer specs of
    ``torch_layers``, in order); ``dtype``; ``sources`` (each PyTorch weight's origin in our names,
    for the curious); and what turns ids into music and back again: ``model_config``,
    ``vocabulary``, ``event_settings``, ``ticks_per_beat`` and ``token_counts``.
    Both files are written atomically; raises ``ExportError`` naming the file on failure.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ExportError(path, "the weights file must end in .npz (the architecture goes beside it, in .json)")
    model = trained.model
    how_shown = {AS_IS: "{}", TRANSPOSED: "{}, transposed", SECOND_BIAS: "zeros ({} is bias_ih + bias_hh)"}
    architecture = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": path.name,
        "dtype": model.dtype.name,
        "layers": [spec for spec, _ in torch_layers(model)],
        "sources": {torch_name: how_shown[how].format(our_name) for torch_name, our_name, how in weight_mapping(model)},
        "model_config": model.config,
        "vocabulary": list(trained.vocab.tokens),
        "event_settings": trained.settings.to_dict(),
        "ticks_per_beat": trained.ticks_per_beat,
        "token_counts": trained.token_counts.tolist(),
        "exported_from": {"checkpoint": Path(trained.path).name, "epoch": trained.meta.get("epoch")},
    }
    weights = torch_weights(model)
    json_path = architecture_path(path)
    for target, write in ((path, lambda: atomic_write(path, lambda file: np.savez(file, **weights))),
                          (json_path, lambda: atomic_write_text(json_path, _json_text(architecture)))):
        try:
            write()
        except OSError as error:
            raise ExportError(target, f"could not write it ({error.strerror or error})") from None
    return path, json_path


def _json_text(architecture):
    """The architecture as JSON a person can read: one top-level key a line, one layer a line."""
    lines = []
    for key, value in architecture.items():
        if key in ("layers", "sources") and value:
            items = ([json.dumps(item) for item in value] if isinstance(value, list)
                     else [f"{json.dumps(name)}: {json.dumps(item)}" for name, item in value.items()])
            brackets = "[]" if isinstance(value, list) else "{}"
            text = brackets[0] + "\n   " + ",\n   ".join(items) + "\n " + brackets[1]
        else:
            text = json.dumps(value)
        lines.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def read_export(path):
    """Read an export: ``(weights, architecture)``, ``{torch_name: array}`` and the JSON dict.

    ``path`` is the ``.npz``; its ``.json`` sits beside it. Raises ``ExportError`` naming the file
    that is missing, unreadable or not an export (weights are loaded with ``allow_pickle=False``).
    """
    path = Path(path)
    json_path = architecture_path(path)
    for file in (path, json_path):
        if not file.is_file():
            beside = f" (an export's architecture sits beside its weights, {path.name})" if file == json_path else ""
            raise ExportError(file, ("no such file" if not file.exists() else "not a file") + beside)
    try:
        architecture = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ExportError(json_path, f"not valid JSON ({error.__class__.__name__})") from None
    if not isinstance(architecture, dict) or architecture.get("format") != FORMAT:
        raise ExportError(json_path, "not the architecture of an lstm-music export (no \"format\": "
                                     f"\"{FORMAT}\")")
    if architecture.get("format_version") != FORMAT_VERSION:
        raise ExportError(json_path, f"format version {architecture.get('format_version')!r}, but this "
                                     f"code reads version {FORMAT_VERSION}")
    return read_npz(path, ExportError, "export"), architecture


def import_trained(path):
    """Read an export (``path``, the ``.npz``) back into our world: a ``generate.TrainedModel``.

    The weights may come from PyTorch (saved by ``tutorials/torch_music_lstm.py``'s ``save``), so
    everything is checked: names, shapes, finite floats, vocabulary and settings. Raises
    ``ExportError`` naming the file and the reason.
    """
    from .generate import TrainedModel  # (generate imports the training code; only needed here)
    from .music import events
    from .music.vocab import Vocabulary, VocabularyError

    path = Path(path)
    weights, architecture = read_export(path)
    json_path = architecture_path(path)
    try:
        vocab = Vocabulary(architecture["vocabulary"])
        events.validate_chunks(vocab.tokens, "its vocabulary")
        settings = events.EventSettings.from_dict(architecture["event_settings"])
        ticks_per_beat = architecture["ticks_per_beat"]
        if type(ticks_per_beat) is not int or not 1 <= ticks_per_beat <= 32767:
            raise ValueError(f"ticks_per_beat must be an integer in 1..32767, got {ticks_per_beat!r}")
        config = architecture["model_config"]
        if not isinstance(config, dict) or config.get("vocab_size") != len(vocab):
            raise ValueError(f"its model config does not fit its vocabulary of {len(vocab)} chunks")
        counts = np.asarray(architecture["token_counts"], dtype=np.float64)
        if counts.shape != (len(vocab),) or not np.isfinite(counts).all() or counts.min() < 0 or counts.sum() <= 0:
            raise ValueError("its token counts must be one count >= 0 per vocabulary chunk, not all 0")
    except KeyError as error:
        raise ExportError(json_path, f"no {error} in the architecture") from None
    except (ValueError, TypeError, VocabularyError, events.ChunkError) as error:
        raise ExportError(json_path, str(error)) from None
    try:
        model = model_from_torch_weights(config, weights)
    except ExportError as error:
        raise ExportError(path, error.reason) from None
    except (ValueError, TypeError, KeyError) as error:  # a model config that cannot be built
        raise ExportError(json_path, str(error)) from None
    except MemoryError:
        raise ExportError(json_path, "its model config needs more memory than this computer has") from None
    source = architecture.get("exported_from")
    epoch = source.get("epoch") if isinstance(source, dict) else None
    meta = {"imported_from": path.name, "epoch": epoch if type(epoch) is int else None}
    return TrainedModel(model, vocab, settings, ticks_per_beat, counts, path, meta)


def import_to_checkpoint(path, checkpoint_path):
    """Turn an export (``path``, the ``.npz``) back into a checkpoint that ``lstm-music generate``
    and ``generate.load_trained`` read. Returns ``checkpoint_path``.

    The checkpoint holds the weights, vocabulary and settings, but no optimizer state or training
    history, so it makes music but cannot be resumed with ``lstm-music train --resume``.
    """
    from .train import CHECKPOINT_KIND

    trained = import_trained(path)
    meta = {
        "kind": CHECKPOINT_KIND,
        "model_config": trained.model.config,
        "vocabulary": list(trained.vocab.tokens),
        "event_settings": trained.settings.to_dict(),
        "ticks_per_beat": trained.ticks_per_beat,
        "token_counts": trained.token_counts.tolist(),
        "rng": {},  # nothing to resume: there is no optimizer state either
        "imported_from": Path(path).name,
        "epoch": trained.meta["epoch"] or 0,
        "history": [],
    }
    arrays = {f"param/{name}": value for name, value in trained.model.params.items()}
    save_checkpoint(checkpoint_path, arrays, meta)
    return Path(checkpoint_path)

