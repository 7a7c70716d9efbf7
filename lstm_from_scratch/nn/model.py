"""A stack of layers built from a plain JSON config, and the two presets.

Shapes: T time steps, B sequences in a batch, V vocabulary size. Input ids are (T, B) integers.

A config is a JSON-serialisable dict::

    {"vocab_size": V,
     "input": "onehot",                 # or "embedding", with "embedding_dim": E
     "layers": [{"type": "lstm", "hidden_size": 128},
                {"type": "dropout", "rate": 0.3},
                {"type": "dense", "units": 64, "activation": "linear"}],   # or "relu" / "tanh"
     "output": "sequence"}              # or "last"

A final ``Dense(V)`` producing the logits is always added after ``layers``.

``"output": "sequence"`` predicts the next token at every position of a window: a window of T tokens
gives T training targets. ``"output": "last"`` predicts only the token after the window, from the last
LSTM's last step: that is the Keras formulation of the seed projects (``return_sequences=False`` on
the last LSTM), reproduced exactly, but it learns from T times fewer targets per window.

Parameters are named ``"<index>.<kind>.<key>"``, where index is the layer's position in
``model.layers`` (for example ``"0.lstm.Wx"``); ``model.params`` and ``model.grads`` are flat dicts with
those names, and ``model.params[name]`` is the very array the layer uses, so an optimizer that updates
it in place updates the layer.
"""
import copy

import numpy as np

from ..errors import LstmMusicError
from .fast_background import background
from .fast_lstm import FastLSTM, scatter_add_rows_fast
from .layers import Dense, Dropout, Embedding, LastStep, OneHot
from .losses import softmax_cross_entropy
from .lstm import LSTM

PRESETS = {
    # deep-improvisation: a single LSTM(128) reading one-hot chunks.
    "deep-improvisation": {
        "input": "onehot",
        "layers": [{"type": "lstm", "hidden_size": 128}],
        "output": "sequence",
    },
    # piano-composer: three stacked LSTMs with dropout, then a small dense layer.
    "piano-composer": {
        "input": "onehot",
        "layers": [
            {"type": "lstm", "hidden_size": 128},
            {"type": "dropout", "rate": 0.3},
            {"type": "lstm", "hidden_size": 64},
            {"type": "dropout", "rate": 0.3},
            {"type": "lstm", "hidden_size": 128},
            {"type": "dense", "units": 64, "activation": "linear"},
            {"type": "dropout", "rate": 0.3},
        ],
        "output": "sequence",
    },
}

# The optimizer, learning rate and batch size each seed project trained with.
PRESET_TRAINING = {
    "deep-improvisation": {"optimizer": "rmsprop", "lr": 0.01, "batch_size": 24},
    "piano-composer": {"optimizer": "adam", "lr": 0.001, "batch_size": 16},
}



class ModelConfigError(LstmMusicError, ValueError):
    """A model config that cannot be built; the message names the key or layer and the reason."""


# For each layer type: its required keys and its optional keys with their defaults.
LAYER_KEYS = {
    "lstm": ({"hidden_size"}, {"forget_bias": 1.0}),
    "dense": ({"units"}, {"activation": "linear"}),
    "dropout": ({"rate"}, {}),
}
TOP_KEYS = {"vocab_size", "input", "embedding_dim", "layers", "output"}


def preset_config(name, vocab_size):
    """The config dict of the preset ``name`` for a vocabulary of ``vocab_size`` tokens (a fresh copy)."""
    if name not in PRESETS:
        raise ModelConfigError(f"unknown preset {name!r}; the presets are: {', '.join(sorted(PRESETS))}")
    config = copy.deepcopy(PRESETS[name])
    config["vocab_size"] = vocab_size
    return validate_config(config)


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelConfigError(f"model config: {what} must be a positive integer, got {value!r}")
    return int(value)


def validate_config(config):
    """Check a model config and return a full copy with defaults filled in.

    Raises ``ModelConfigError`` (a ``ValueError``) naming the key or layer that is wrong.
    """
    if not isinstance(config, dict):
        raise ModelConfigError(f"model config must be a dict, got {type(config).__name__}")
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise ModelConfigError(f"model config: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for key in ("vocab_size", "layers"):
        if key not in config:
            raise ModelConfigError(f"model config: missing key {key!r}")
    full = {"vocab_size": _positive_int(config["vocab_size"], "vocab_size")}
    full["input"] = config.get("input", "onehot")
    if full["input"] == "embedding":
        if "embedding_dim" not in config:
            raise ModelConfigError("model config: input 'embedding' needs the key 'embedding_dim'")
        full["embedding_dim"] = _positive_int(config["embedding_dim"], "embedding_dim")
    elif full["input"] != "onehot":
        raise ModelConfigError(f"model config: input must be 'onehot' or 'embedding', got {full['input']!r}")
    if not isinstance(config["layers"], list):
        raise ModelConfigError("model config: 'layers' must be a list of layer dicts")
    full["layers"] = [_validate_layer(layer, n) for n, layer in enumerate(config["layers"])]
    full["output"] = config.get("output", "sequence")
    if full["output"] not in ("sequence", "last"):
        raise ModelConfigError(f"model config: output must be 'sequence' or 'last', got {full['output']!r}")
    return full


def _validate_layer(layer, n):
    where = f"model config: layers[{n}]"
    if not isinstance(layer, dict) or "type" not in layer:
        raise ModelConfigError(f"{where} must be a dict with a 'type' key, got {layer!r}")
    kind = layer["type"]
    if kind not in LAYER_KEYS:
        raise ModelConfigError(f"{where}: unknown layer type {kind!r}; known types: {sorted(LAYER_KEYS)}")
    required, optional = LAYER_KEYS[kind]
    missing = required - set(layer)
    if missing:
        raise ModelConfigError(f"{where} ({kind}) is missing {sorted(missing)}")
    unknown = set(layer) - required - set(optional) - {"type"}
    if unknown:
        raise ModelConfigError(f"{where} ({kind}): unknown keys {sorted(unknown)}")
    full = {"type": kind, **optional, **layer}
    if kind == "lstm":
        full["hidden_size"] = _positive_int(full["hidden_size"], f"layers[{n}].hidden_size")
    elif kind == "dense":
        full["units"] = _positive_int(full["units"], f"layers[{n}].units")
        if full["activation"] not in ("linear", "relu", "tanh"):
            raise ModelConfigError(f"{where}: activation must be 'linear', 'relu' or 'tanh'")
    elif not isinstance(full["rate"], (int, float)) or not 0 <= full["rate"] < 1:
        raise ModelConfigError(f"{where}: dropout rate must be a number in [0, 1), got {full['rate']!r}")
    return full


class Model:
    """A stack of layers from a config (see the module docstring), ending in ``Dense(vocab_size)``.

    ``model.rng`` is the ``np.random.Generator`` every Dropout layer draws its masks from; a trainer can
    save and restore ``model.rng.bit_generator.state`` to resume exactly. The initial weights come from
    a separate generator, so they depend only on ``seed``.
    """

    def __init__(self, config, dtype=np.float32, seed=0):
        self.config = validate_config(config)
        self.dtype = np.dtype(dtype)
        init_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        init_rng = np.random.default_rng(init_seed)
        self.rng = np.random.default_rng(dropout_seed)
        self.layers = self._build(self.config, init_rng)
        self.params, self.grads = {}, {}
        for index, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                name = f"{index}.{_kind(layer)}.{key}"
                self.params[name] = value
                self.grads[name] = layer.grads[key]
        self.training = False
        self.final_state = None
        self._num_lstms = len(self.lstm_layers)

    def _build(self, config, rng):
        V, dtype = config["vocab_size"], self.dtype
        layers = []
        size = V  # features coming out of the last layer built so far
        if config["input"] == "embedding":
            layers.append(Embedding(V, config["embedding_dim"], dtype, rng))
            size = config["embedding_dim"]
        elif not config["layers"] or config["layers"][0]["type"] != "lstm":
            # An LSTM reads ids directly (row gather); anything else needs real one-hot vectors.
            layers.append(OneHot(V, dtype))
        specs = config["layers"]
        lstm_positions = [n for n, spec in enumerate(specs) if spec["type"] == "lstm"]
        # "last": cut to the last time step right after the last LSTM (or at once, if there is none).
        cut_after = lstm_positions[-1] if lstm_positions else -1
        if config["output"] == "last" and cut_after == -1:
            layers.append(LastStep())
        for n, spec in enumerate(specs):
            if spec["type"] == "lstm":
                # FastLSTM (nn/fast_lstm.py) is nn/lstm.py's LSTM with a faster forward and backward;
                # same parameters, same numbers.
                layers.append(FastLSTM(size, spec["hidden_size"], dtype, rng, spec["forget_bias"]))
                size = spec["hidden_size"]
            elif spec["type"] == "dense":
                layers.append(Dense(size, spec["units"], spec["activation"], dtype, rng))
                size = spec["units"]
            else:
                layers.append(Dropout(spec["rate"], self.rng))
            if config["output"] == "last" and n == cut_after:
                layers.append(LastStep())
        layers.append(Dense(size, V, "linear", dtype, rng))
        return layers

    @property
    def lstm_layers(self):
        """The LSTM layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, LSTM)]

    def initial_state(self, batch_size):
        """Zero state: a list with one (h, c) per LSTM layer, each (B, H)."""
        return [layer.zero_state(batch_size) for layer in self.lstm_layers]

    def set_training(self, flag):
        """Switch every layer to training (dropout on) or evaluation (dropout off)."""
        self.training = bool(flag)
        for layer in self.layers:
            layer.training = self.training

    def num_params(self):
        """The number of trainable numbers."""
        return sum(value.size for value in self.params.values())

    def forward(self, ids, state=None, training=False):
        """ids (T, B) integers -> logits (T, B, V), or (B, V) when the config's output is "last".

        state: None (zeros) or a list with one (h0, c0) per LSTM layer. Keeps ``self.final_state``,
        the list of each LSTM's (h_T, c_T).
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"Model.forward: ids must be (T, B) integers, got shape {ids.shape}")
        lstms = self.lstm_layers
        if state is not None and len(state) != len(lstms):
            raise ValueError(f"Model.forward: state needs {len(lstms)} (h, c) pairs, got {len(state)}")
        self.set_training(training)
        out, k = ids, 0
        layers = self.layers
        done_above = None  # a Dense whose forward already ran together with the FastLSTM below it
        for n, layer in enumerate(layers):
            if layer is done_above:
                continue
            if isinstance(layer, LSTM):
                layer_state = None if state is None else state[k]
                above = layers[n + 1] if n + 1 < len(layers) else None
                if (isinstance(layer, FastLSTM) and isinstance(above, Dense) and len(out) >= 2
                        and above.params["W"].size >= FORWARD_SPLIT_SIZE):
                    # The Dense's forward on the earlier half of the steps runs on the worker
                    # thread while the LSTM's loop computes the later half (_DenseHalves).
                    halves = _DenseHalves(above)
                    hs = layer.forward(out, layer_state, on_step=(len(out) // 2, halves.start))
                    out, done_above = halves.finish(hs), above
                else:
                    out = layer.forward(out, layer_state)
                k += 1
            else:
                out = layer.forward(out)
        self.final_state = [layer.final_state for layer in lstms]
        return out

    def backward(self, dlogits):
        """dlogits (T, B, V) or (B, V) -> None; fills every layer's grads and ``self.grads``.

        A Dense layer's weight gradient x^T dz (one big product) is computed on a second thread while
        the layers below it run their backward: NumPy lets go of Python's lock inside matrix products,
        so the two use two cores at once. (With multithreaded BLAS both cores are busy anyway and this
        changes little; with one BLAS thread, as ``lstm-music`` runs, it saves 8-16% of a step.)

        A Dense layer right above a FastLSTM also shares its input gradient dz @ W^T (T, B, D) with
        that thread (``_input_grad_halves``): the LSTM's backward runs from the last step down, so it
        can start on the later half while the worker still computes the earlier one.
        """
        dout = dlogits
        pending = []
        earlier_half = None  # (first step not ready, job) for the FastLSTM below, or None
        layers = self.layers
        for n in reversed(range(len(layers))):
            layer = layers[n]
            if isinstance(layer, Dense):
                dz = layer.backward_activation(dout)
                if n > 0 and isinstance(layers[n - 1], FastLSTM) and dz.ndim == 3 and dz.shape[0] >= 2:
                    dout, earlier_half = _input_grad_halves(layer, dz)
                    pending.append(background().submit(layer.backward_weights, dz))
                else:
                    pending.append(background().submit(layer.backward_weights, dz))
                    dout = layer.backward_input(dz)
            elif isinstance(layer, Embedding):
                # The same sums as Embedding.backward's np.add.at, about 3x faster (nn/fast_lstm.py).
                layer.grads["W"] = scatter_add_rows_fast(layer.ids, dout, layer.vocab_size)
                dout = None
            elif earlier_half is not None and isinstance(layer, FastLSTM):
                dout = layer.backward(dout, wait_for=earlier_half)
                earlier_half = None
            else:
                dout = layer.backward(dout)
        for job in pending:
            job.result()  # wait for it; re-raises here any error from the thread
        for index, layer in enumerate(self.layers):
            for key, value in layer.grads.items():
                self.grads[f"{index}.{_kind(layer)}.{key}"] = value

    def loss(self, ids, targets, training=True):
        """Mean cross-entropy of the next-token predictions and its gradients.

        ids: (T, B) integers; targets: (T, B) for output "sequence", (B,) for output "last".
        Returns (loss, grads): a float, and ``self.grads`` (name -> array like ``self.params[name]``).
        """
        logits = self.forward(ids, training=training)
        # The logits are not returned, so the loss may turn them into dlogits in place.
        loss, dlogits = softmax_cross_entropy(logits, targets, overwrite_logits=True)
        self.backward(dlogits)
        return loss, self.grads

    def step(self, ids, state=None):
        """One time step for generation, dropout off.

        ids: (B,) integers; state: None or the list of (h, c) returned by the previous call.
        Returns (logits (B, V), new state). The same numbers as ``forward`` on a length-1 sequence,
        but on a lean path: generation calls this once per token, so each layer does only the
        arithmetic of one step (``FastLSTM.step``, ``x @ W + b``), with no caches for backward.
        """
        ids = np.asarray(ids).reshape(-1)
        if state is None:
            state = self.initial_state(ids.size)
        elif len(state) != self._num_lstms:
            raise ValueError(f"Model.step: state needs {self._num_lstms} (h, c) pairs, got {len(state)}")
        if self.training:
            self.set_training(False)
        out, new_state = ids, []
        for layer in self.layers:
            if isinstance(layer, FastLSTM):
                h, c = layer.step(out, state[len(new_state)])
                new_state.append((h, c))
                out = h  # the next layer reads h; c stays inside this LSTM
            elif isinstance(layer, LSTM):  # the readable layer: a length-1 sequence
                out = layer.forward(out[None], state[len(new_state)])[0]
                new_state.append(layer.final_state)
            elif isinstance(layer, Dense):
                out = out @ layer.params["W"]
                out += layer.params["b"]
                if layer.activation == "relu":
                    np.maximum(out, 0, out=out)
                elif layer.activation == "tanh":
                    np.tanh(out, out=out)
            elif isinstance(layer, (Embedding, OneHot)):
                out = layer.forward(out)
            # Dropout is the identity when not training; LastStep has no time axis to cut here.
        self.final_state = new_state
        return out, new_state

    def use_param_arrays(self, arrays):
        """Make the arrays in ``arrays`` (name -> array of ``self.params[name]``'s shape and dtype)
        the parameters themselves, not copies of them: from now on the layers compute with these
        very arrays, and an optimizer updates them in place. Returns {name: the array replaced}.

        ``nn/data_parallel.py`` uses it to keep the weights in memory that two processes share.
        """
        replaced = {}
        for index, layer in enumerate(self.layers):
            for key, old in layer.params.items():
                name = f"{index}.{_kind(layer)}.{key}"
                if name not in arrays:
                    continue
                new = arrays[name]
                if new.shape != old.shape or new.dtype != old.dtype:
                    raise ValueError(f"parameter {name}: {new.dtype} {new.shape} cannot replace "
                                     f"{old.dtype} {old.shape}")
                layer.params[key] = self.params[name] = new
                replaced[name] = old
        return replaced

    def load_params(self, arrays):
        """Copy ``arrays`` (name -> array, e.g. from a checkpoint) into ``self.params``, in place.

        Raises ``ValueError`` naming the first missing, extra or wrongly shaped parameter.
        """
        missing, extra = set(self.params) - set(arrays), set(arrays) - set(self.params)
        if missing or extra:
            raise ValueError(
                f"parameters do not match this model: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        for name, value in arrays.items():
            if np.shape(value) != self.params[name].shape:
                raise ValueError(
                    f"parameter {name}: shape {np.shape(value)} does not match {self.params[name].shape}"
                )
        for name, value in arrays.items():
            self.params[name][...] = value


# Model.forward shares a Dense layer's forward with the worker thread (_DenseHalves) only when its W
# has at least this many numbers. On our 2-core machine (H = 128, T = 100, B = 24) that made the
# training step 5-12% faster for V = 800 and 1500 (W of 102,400 and 192,000 numbers), but 1-5%
# slower for V = 400 (51,200): there the product is too small to pay for the second thread, which
# also slows the LSTM loop running next to it.
FORWARD_SPLIT_SIZE = 2**16


class _DenseHalves:
    """``dense.forward(hs)`` for hs (T, B, H) from the FastLSTM below it, in two halves: ``start(hs,
    step)``, called by ``FastLSTM.forward`` once hs[:step] is final, hands steps [0, step) to the
    worker thread; ``finish(hs)`` does steps [step, T) on this thread, waits for the worker and
    returns the (T, B, O) output, leaving ``dense.x`` and ``dense.out`` as ``Dense.forward`` does.
    """

    def __init__(self, dense):
        self.dense, self.step, self.job = dense, None, None

    def start(self, hs, step):
        self.out = np.empty((*hs.shape[:2], self.dense.output_size), dtype=self.dense.dtype)
        self.step = step
        self.job = background().submit(self._rows, hs, 0, step)

    def _rows(self, hs, start, stop):  # out[start:stop] = activation(hs[start:stop] @ W + b)
        dense, part = self.dense, self.out[start:stop]
        np.matmul(hs[start:stop].reshape(-1, dense.input_size), dense.params["W"],
                  out=part.reshape(-1, dense.output_size))
        part += dense.params["b"]
        if dense.activation == "relu":
            np.maximum(part, 0, out=part)
        elif dense.activation == "tanh":
            np.tanh(part, out=part)

    def finish(self, hs):
        if self.job is None or hs.dtype != self.dense.dtype:  # start was not called: one plain call
            if self.job is not None:
                self.job.result()
            return self.dense.forward(hs)
        self._rows(hs, self.step, len(hs))
        self.job.result()
        self.dense.x, self.dense.out = hs, self.out
        return self.out


def _input_grad_halves(dense, dz):
    """A Dense layer's input gradient dz @ W^T for dz (T, B, O), as (dx, (half, job)): dx (T, B, D) has
    its steps [half, T) filled by this thread, while the worker thread fills steps [0, half) (``job``
    finishes when it has). ``FastLSTM.backward(dx, wait_for=(half, job))`` waits for it only when
    its loop, running from step T - 1 down, reaches step half - 1.
    """
    T, B, O = dz.shape
    W = dense.params["W"]
    dx = np.empty((T, B, W.shape[0]), dtype=np.result_type(dz, W))
    half = T // 2

    def rows(start, stop):  # dx[start:stop] = dz[start:stop] @ W^T, as one (rows, O) @ (O, D) product
        np.matmul(dz[start:stop].reshape(-1, O), W.T, out=dx[start:stop].reshape(-1, W.shape[0]))

    job = background().submit(rows, 0, half)  # queued before the weight gradient: needed sooner
    rows(half, T)
    return dx, (half, job)


def _kind(layer):
    """The layer's name in parameter names: "lstm" (also for FastLSTM), "dense", "embedding"."""
    return "lstm" if isinstance(layer, LSTM) else type(layer).__name__.lower()
