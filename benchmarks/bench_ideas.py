"""What each idea of the fast engine buys: the rows of "What each idea buys" in benchmarks/README.md.

The fast engine (lstm_from_scratch/fast/) is the plain engine (nn/) with a list of ideas applied; its
module docstring numbers them. This script measures each one where it acts, on the size of the
benchmark in bench_lstm.py (V = 400 one-hot chunks, H = 128, T = 100, B = 24, float32), in one run,
the old way and the new way alternated, so that the ratios compare like with like:

- ideas 1-3 and 5-6: the piece of work alone, the plain engine's way against the fast engine's;
- ideas 1-5 together: one LSTM layer's forward and backward, ``nn.lstm.LSTM`` against ``FastLSTM``;
- the whole training step (forward, backward, Adam), engine against engine: the plain ``Model``,
  ``FastModel`` with the worker thread off, with it on (idea 7), and ``fast.DataParallel`` with a
  helper process (idea 8);
- idea 9: one generated token, ``Model.step`` against ``FastModel.step``.

Like ``lstm-music``, NumPy's BLAS runs one thread (set before NumPy is imported).

Usage: python benchmarks/bench_ideas.py [--rounds 5] [--json]
"""
import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from lstm_from_scratch.fast import DataParallel, FastLSTM, FastModel, background  # noqa: E402
from lstm_from_scratch.fast.losses import softmax_cross_entropy as fused_loss  # noqa: E402
from lstm_from_scratch.fast import lstm as fast_lstm  # noqa: E402
from lstm_from_scratch.fast.lstm import scatter_add_rows_fast  # noqa: E402
from lstm_from_scratch.nn.layers import scatter_add_rows  # noqa: E402
from lstm_from_scratch.nn.losses import softmax_cross_entropy  # noqa: E402
from lstm_from_scratch.nn.lstm import LSTM, sigmoid  # noqa: E402
from lstm_from_scratch.nn.model import Model  # noqa: E402
from lstm_from_scratch.nn.optim import Adam  # noqa: E402

V, H, T, B = 400, 128, 100, 24


def seconds(function, repeats):
    """The median time of ``repeats`` calls of ``function()``, after one untimed call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gates_pair(rng):
    """Idea 1: the gate nonlinearities of one step on a (B, 4H) slab."""
    a = rng.standard_normal((B, 4 * H)).astype(np.float32)
    out = np.empty_like(a)
    half = np.full(H, 0.5, np.float32)
    scale = np.concatenate([half, half, np.ones(H, np.float32), half])
    add = np.concatenate([half, half, np.zeros(H, np.float32), half])
    mul, add = np.tile(scale, (B, 1)), np.tile(add, (B, 1))
    scaled = a * scale

    def plain():  # three sigmoids and a tanh, as nn/lstm.py
        out[:, :2 * H] = sigmoid(a[:, :2 * H])
        out[:, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])
        out[:, 3 * H:] = sigmoid(a[:, 3 * H:])

    def fast():  # one tanh over the slab, its input already scaled (fast/lstm.py)
        np.tanh(scaled, out=out)
        np.multiply(out, mul, out=out)
        np.add(out, add, out=out)
    return plain, fast


def layout_pair(rng):
    """Idea 2: one elementwise product of two gates, slices of a (B, 4H) slab against whole blocks."""
    slab = rng.standard_normal((B, 4 * H)).astype(np.float32)
    blocks = rng.standard_normal((4, B, H)).astype(np.float32)
    out = np.empty((B, H), np.float32)
    return (lambda: np.multiply(slab[:, :H], slab[:, 2 * H:3 * H], out=out),
            lambda: np.multiply(blocks[0], blocks[2], out=out))


def out_pair(rng):
    """Idea 3: the cell update c = f * c + i * g of one step, new arrays against ``out=``."""
    f, c, i, g = rng.standard_normal((4, B, H)).astype(np.float32)
    new_c, product = np.empty_like(c), np.empty_like(c)

    def plain():
        return f * c + i * g

    def fast():
        np.multiply(f, c, out=new_c)
        np.multiply(i, g, out=product)
        np.add(new_c, product, out=new_c)
    return plain, fast


def row_block_pair(rng):
    """Idea 3's row blocks: a FastLSTM forward and backward at B = 24, its step products as one call
    (SPLIT_SMALL_PRODUCTS off) against two blocks of 12 rows."""
    ids = rng.integers(0, V, (T, B))
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)
    layer = FastLSTM(V, H, rng=0)

    def run(split):
        fast_lstm.SPLIT_SMALL_PRODUCTS = split
        layer.forward(ids)
        layer.backward(dhs)
        fast_lstm.SPLIT_SMALL_PRODUCTS = True
    return lambda: run(False), lambda: run(True)


def scatter_pair(rng):
    """Idea 5: the gradient of the row gather Wx[ids], a (T*B, 4H) scatter-add into (V, 4H)."""
    ids = rng.integers(0, V, (T, B))
    dout = rng.standard_normal((T, B, 4 * H)).astype(np.float32)
    return lambda: scatter_add_rows(ids, dout, V), lambda: scatter_add_rows_fast(ids, dout, V)


def loss_pair(rng):
    """Idea 6: softmax cross-entropy and its gradient on (T, B, V) logits."""
    logits = rng.standard_normal((T, B, V)).astype(np.float32)
    targets = rng.integers(0, V, (T, B))
    work = np.empty_like(logits)

    def fast():
        np.copyto(work, logits)  # the fused loss writes over its input
        fused_loss(work, targets, overwrite_logits=True)
    return lambda: softmax_cross_entropy(logits, targets), fast


def layer_pair(rng):
    """Ideas 1-5 together: one LSTM layer, forward and backward, on one-hot ids; worker thread off."""
    ids = rng.integers(0, V, (T, B))
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)
    plain, fast = LSTM(V, H, rng=0), FastLSTM(V, H, rng=0)

    def run(layer):
        layer.forward(ids)
        layer.backward(dhs)
    return lambda: run(plain), lambda: run(fast)


CONFIG = {"vocab_size": V, "input": "onehot", "layers": [{"type": "lstm", "hidden_size": H}]}


def training_step(model_class, rng, processes=1):
    """One training step as train.py takes it (no clipping): a function, and the DataParallel to close."""
    model, optimizer = model_class(CONFIG), Adam(1e-3)
    ids, targets = rng.integers(0, V, (2, T, B))
    parallel = DataParallel(model, start_helper=True) if processes == 2 else None
    batch_loss = model.loss if parallel is None else parallel.loss

    def step():
        _, grads = batch_loss(ids, targets)
        optimizer.step(model.params, grads)
    return step, parallel


def generation_pair():
    """Idea 9: one generated token at batch 1, ``model.step``."""
    pairs = []
    for model_class in (Model, FastModel):
        model = model_class(CONFIG)
        state = model.initial_state(1)
        token = np.array([5])
        pairs.append(lambda model=model, state=state, token=token: model.step(token, state))
    return pairs


def one_round(rng):
    """Every measurement once: {name: (plain seconds, fast seconds)}."""
    background.ENABLED = False
    figures = {}
    for name, make, repeats in (("1 gates", gates_pair, 2000), ("2 layout", layout_pair, 2000),
                                ("3 out=", out_pair, 2000), ("3 row blocks", row_block_pair, 10),
                                ("5 scatter", scatter_pair, 20),
                                ("6 loss", loss_pair, 20), ("1-5 layer", layer_pair, 5)):
        plain, fast = make(rng)
        figures[name] = (seconds(plain, repeats), seconds(fast, repeats))
    steps = {}
    for label, model_class, processes, worker in (("plain", Model, 1, False), ("fast, no worker", FastModel, 1, False),
                                                   ("fast", FastModel, 1, True),
                                                   ("fast, 2 processes", FastModel, 2, True)):
        background.ENABLED = worker
        step, parallel = training_step(model_class, rng, processes)
        try:
            step()
            steps[label] = seconds(step, 10)
        finally:
            if parallel is not None:
                parallel.close()
    background.ENABLED = True
    figures["1-6 step"] = (steps["plain"], steps["fast, no worker"])
    figures["7 worker"] = (steps["fast, no worker"], steps["fast"])
    figures["8 processes"] = (steps["fast"], steps["fast, 2 processes"])
    figures["all, step"] = (steps["plain"], steps["fast, 2 processes"])
    plain, fast = generation_pair()
    figures["9 generation"] = (seconds(plain, 300), seconds(fast, 300))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rounds = [one_round(rng) for _ in range(args.rounds)]
    if args.json:
        print(json.dumps(rounds))
        return
    print(f"Command: `python {' '.join(sys.argv)}`; V = {V}, H = {H}, T = {T}, B = {B}, float32, one BLAS "
          f"thread; medians over {args.rounds} rounds, each measuring old and new back to back.\n")
    print("| idea | measured on | plain way | fast way | gain |")
    print("|---|---|---|---|---|")
    described = {
        "1 gates": "the gates of one step, (B, 4H)", "2 layout": "one gate product, (B, H)",
        "3 out=": "the cell update of one step",
        "3 row blocks": "FastLSTM forward + backward, its step product in one call vs row blocks",
        "5 scatter": "dWx for one-hot input",
        "6 loss": "softmax cross-entropy, (T, B, V)", "1-5 layer": "one LSTM layer, forward + backward",
        "1-6 step": "a training step: plain Model vs FastModel, no worker",
        "7 worker": "a training step: worker thread off vs on",
        "8 processes": "a training step: one process vs two",
        "all, step": "a training step: plain engine vs fast engine as lstm-music runs it",
        "9 generation": "one generated token, model.step"}
    for name, what in described.items():
        plain = statistics.median(r[name][0] for r in rounds)
        fast = statistics.median(r[name][1] for r in rounds)
        ratios = [r[name][0] / r[name][1] for r in rounds]
        unit, scale = ("ms", 1e3) if plain > 1e-3 else ("us", 1e6)
        print(f"| {name} | {what} | {plain * scale:.2f} {unit} | {fast * scale:.2f} {unit} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
