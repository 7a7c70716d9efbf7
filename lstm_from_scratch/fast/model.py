"""``FastModel``: ``nn.model.Model`` with FastLSTM layers, and two cores at work inside one step.

Read ``nn/model.py`` first: the same layers, parameters (same names), config and numbers (to
rounding). What differs:

- each LSTM layer is a ``FastLSTM`` (``fast/lstm.py``);
- ``loss`` uses ``fast/losses.py``, which turns the logits into their gradient in place;
- ``forward`` and ``backward`` hand big matrix products to the worker thread (``fast/background.py``)
  while this thread goes on with work that does not need their result:

  - backward: a Dense layer's weight gradient x^T dz, while the layers below run their backward;
  - backward, for a Dense right above a FastLSTM: the earlier half of the steps of its input
    gradient dz @ W^T, while this thread does the later half and the LSTM's backward starts on it
    (it runs from the last step down, so it needs the later steps first);
  - forward, for a big Dense right above a FastLSTM: the Dense on the earlier half of the steps,
    while the LSTM's loop computes the later half;

- ``step`` (generation, one token at a time) does only the arithmetic of one step, with nothing kept
  for backward.

NumPy lets go of Python's lock inside matrix products, so the two threads use two cores at once.
"""
import numpy as np

from ..nn.layers import Dense, Embedding, OneHot
from ..nn.model import Model
from .background import background
from .losses import softmax_cross_entropy
from .lstm import FastLSTM, scatter_add_rows_fast

# forward shares a Dense layer's forward with the worker thread (_DenseHalves) only when its W has at
# least this many numbers: a smaller product does not pay for the hand-off, and a second thread
# making NumPy calls slows the LSTM's loop beside it (benchmarks/README.md).
FORWARD_SPLIT_SIZE = 2**16


class FastModel(Model):
    """``nn.model.Model`` for speed: same constructor, parameters and methods (see the module docstring)."""

    lstm_class = FastLSTM

    def forward(self, ids, state=None, training=False):
        """ids (T, B) integers -> logits (T, B, V), or (B, V) for output "last"; as ``Model.forward``."""
        ids = self._check_input(ids, state, "Model.forward")
        self.set_training(training)
        out, lstm_index, layers = ids, 0, self.layers
        done_above = None  # a Dense whose forward already ran together with the FastLSTM below it
        for n, layer in enumerate(layers):
            if layer is done_above:
                continue
            if isinstance(layer, FastLSTM):
                layer_state = None if state is None else state[lstm_index]
                lstm_index += 1
                above = layers[n + 1] if n + 1 < len(layers) else None
                if (isinstance(above, Dense) and len(out) >= 2
                        and above.params["W"].size >= FORWARD_SPLIT_SIZE):
                    halves = _DenseHalves(above)
                    hs = layer.forward(out, layer_state, on_step=(len(out) // 2, halves.start))
                    out, done_above = halves.finish(hs), above
                else:
                    out = layer.forward(out, layer_state)
            else:
                out = layer.forward(out)
        self.final_state = [layer.final_state for layer in self.lstm_layers]
        return out

    def backward(self, dlogits):
        """dlogits (T, B, V) or (B, V) -> None; fills every layer's grads and ``self.grads``."""
        dout = dlogits
        pending = []  # worker-thread jobs still running: the Dense layers' weight gradients
        earlier_half = None  # (first step not ready, job) for the FastLSTM below, or None
        layers = self.layers
        for n in reversed(range(len(layers))):
            layer = layers[n]
            if isinstance(layer, Dense):
                dz = _dense_activation_backward(layer, dout)
                if n > 0 and isinstance(layers[n - 1], FastLSTM) and dz.ndim == 3 and dz.shape[0] >= 2:
                    # (queued first: the LSTM below needs it sooner than the weight gradient)
                    dout, earlier_half = _input_grad_halves(layer, dz)
                    pending.append(background().submit(_dense_weight_grads, layer, dz))
                else:
                    pending.append(background().submit(_dense_weight_grads, layer, dz))
                    dout = _dense_input_grad(layer, dz)
            elif isinstance(layer, Embedding):
                layer.grads["W"] = scatter_add_rows_fast(layer.ids, dout, layer.vocab_size)
                dout = None
            elif isinstance(layer, FastLSTM):
                dout = layer.backward(dout, wait_for=earlier_half)
                earlier_half = None
            else:
                dout = layer.backward(dout)
        for job in pending:
            job.result()  # wait for it; re-raises here any error from the thread
        self.collect_grads()

    def loss(self, ids, targets, training=True):
        """As ``Model.loss``: (loss, grads) for ids (T, B) and targets (T, B), or (B,) for output "last"."""
        logits = self.forward(ids, training=training)
        # The logits are not returned, so the loss may turn them into dlogits in place.
        loss, dlogits = softmax_cross_entropy(logits, targets, overwrite_logits=True)
        self.backward(dlogits)
        return loss, self.grads

    def step(self, ids, state=None):
        """As ``Model.step``: ids (B,) and the state list -> (logits (B, V), new state), dropout off.

        Generation calls this once per token, so each layer does only the arithmetic of one step
        (``FastLSTM.step``, ``x @ W + b``), with no caches for backward.
        """
        self._check_input(np.zeros((1, 1)), state, "Model.step")
        ids = np.asarray(ids).reshape(-1)
        if state is None:
            state = self.initial_state(ids.size)
        if self.training:
            self.set_training(False)
        out, new_state = ids, []
        for layer in self.layers:
            if isinstance(layer, FastLSTM):
                h, c = layer.step(out, state[len(new_state)])
                new_state.append((h, c))
                out = h  # the next layer reads h; c stays inside this LSTM
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


# ---------------------------------------------------------------- Dense's backward, in three parts

def _dense_activation_backward(dense, dout):
    """dout (..., O) -> dz (..., O): back through the activation, as in ``Dense.backward``."""
    if dense.activation == "relu":
        return dout * (dense.out > 0)
    if dense.activation == "tanh":
        return dout * (1 - dense.out**2)
    return dout


def _dense_weight_grads(dense, dz):
    """Fill ``dense.grads``: W (D, O) = x^T dz and b (O,), summed over every position of dz (..., O)."""
    dz_flat = dz.reshape(-1, dense.output_size)
    dense.grads["W"] = dense.x.reshape(-1, dense.input_size).T @ dz_flat
    dense.grads["b"] = dz_flat.sum(axis=0)


def _dense_input_grad(dense, dz):
    """dz (..., O) -> dx = dz @ W^T (..., D)."""
    return (dz.reshape(-1, dense.output_size) @ dense.params["W"].T).reshape(dense.x.shape)


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

    job = background().submit(rows, 0, half)
    rows(half, T)
    return dx, (half, job)
