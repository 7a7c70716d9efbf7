"""How fast does our NumPy LSTM train and generate, next to PyTorch's on the same CPU?

One training step = forward + backward + Adam update, float32, a loss at every position (sequence
training), one-hot input done as the row gather ``Wx[ids]``. The model is the deep-improvisation
preset: one-hot -> LSTM(H) -> Dense(V). Speeds are tokens per second: T * B / (the fastest of
``--repeats`` timed steps, after ``--warmup`` untimed ones).

When ``torch`` is importable the same run times, with the same thread count:

- torch one-hot:   one_hot(ids) as float (T, B, V) -> nn.LSTM(V, H) -> nn.Linear(H, V)
- torch embedding: nn.Embedding(V, 64) -> nn.LSTM(64, H) -> nn.Linear(H, V)

both with Adam and cross-entropy. Generation is measured at batch 1: one step of the model, softmax,
then one roulette-wheel draw (NumPy: ``searchsorted(cumsum(p), u * total)``; torch: ``multinomial``).

Memory: "numpy peak MB" is the ``tracemalloc`` peak while building the model and Adam and taking one
training step (NumPy reports its array allocations to tracemalloc; torch's are invisible to it).
"max RSS MB" is the process's ``ru_maxrss`` high-water mark after that row, which includes everything
measured before it (and torch, once imported).

Usage: python benchmarks/bench_lstm.py [--vocab 400 1500] [--threads 2] [--json]
"""
import os
import sys


def threads_from_argv(default=2):
    for n, arg in enumerate(sys.argv):
        if arg == "--threads" and n + 1 < len(sys.argv):
            return sys.argv[n + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return str(default)


# OpenBLAS reads its thread count once, when NumPy is first imported, so this must come before
# `import numpy`. Setting it later (or in Python after import) has no effect on NumPy.
THREADS = threads_from_argv()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from lstm_from_scratch.nn.losses import softmax  # noqa: E402
from lstm_from_scratch.nn.model import Model  # noqa: E402
from lstm_from_scratch.nn.optim import Adam  # noqa: E402

torch = None  # imported in main() unless --no-torch, so that a NumPy-only run's RSS is NumPy's alone


def best_seconds(step, warmup, repeats, number=1):
    """Seconds per ``step()`` call: the fastest of ``repeats`` timings of ``number`` calls each.

    The fastest, as ``timeit``'s documentation advises, not the mean or median: other programs on
    the machine can only ever slow a step down, so the minimum is the most repeatable estimate of
    what the code itself costs.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            step()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- NumPy (this project)

def numpy_model(V, H):
    """The deep-improvisation preset with H hidden units: one-hot ids -> LSTM(H) -> Dense(V)."""
    return Model({"vocab_size": V, "input": "onehot", "layers": [{"type": "lstm", "hidden_size": H}],
                  "output": "sequence"}, dtype=np.float32)


def numpy_training(V, H, T, B, rng):
    model = numpy_model(V, H)
    optimizer = Adam(lr=1e-3)
    ids, targets = rng.integers(0, V, size=(2, T, B))

    def step():
        loss, grads = model.loss(ids, targets)
        optimizer.step(model.params, grads)
    return step


def numpy_peak_mb(V, H, T, B):
    tracemalloc.start()
    numpy_training(V, H, T, B, np.random.default_rng(0))()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def numpy_generation(V, H, rng):
    model = numpy_model(V, H)
    token, state = np.array([0]), None

    def step():
        nonlocal token, state
        logits, state = model.step(token, state)
        cumulative = np.cumsum(softmax(logits[0]))
        index = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
        token = np.array([min(index, V - 1)])  # min: guards against u * total rounding up to total
    return step


# ---------------------------------------------------------------- PyTorch, for comparison

def torch_net(V, H, embedding_dim):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, embedding_dim) if embedding_dim else None
            self.lstm = torch.nn.LSTM(embedding_dim or V, H)  # time-major (T, B, D), like ours
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids, state=None):
            x = self.embed(ids) if self.embed else torch.nn.functional.one_hot(ids, V).float()
            hs, state = self.lstm(x, state)
            return self.out(hs), state
    return Net()


def torch_training(V, H, T, B, embedding_dim, rng):
    net = torch_net(V, H, embedding_dim)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    ids, targets = (torch.from_numpy(a) for a in rng.integers(0, V, size=(2, T, B)))

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits, _ = net(ids)
        torch.nn.functional.cross_entropy(logits.reshape(T * B, V), targets.reshape(T * B)).backward()
        optimizer.step()
    return step


def torch_generation(V, H, embedding_dim):
    net = torch_net(V, H, embedding_dim).eval()
    token, state = torch.zeros((1, 1), dtype=torch.long), None

    def step():
        nonlocal token, state
        with torch.no_grad():
            logits, state = net(token, state)
            token = torch.multinomial(torch.softmax(logits[0], dim=-1), 1)
    return step


# ---------------------------------------------------------------- the run

def measure(V, args):
    T, B, H = args.seq_len, args.batch, args.hidden
    rng = np.random.default_rng(0)
    train = lambda step: T * B / best_seconds(step, args.warmup, args.repeats)  # noqa: E731
    generate = lambda step: 1 / best_seconds(step, 20, args.repeats, number=args.gen_tokens)  # noqa: E731
    row = {"V": V, "H": H, "T": T, "B": B,
           "numpy_tokens_per_s": train(numpy_training(V, H, T, B, rng)),
           "torch_onehot_tokens_per_s": None, "torch_embedding_tokens_per_s": None,
           "numpy_generate_tokens_per_s": generate(numpy_generation(V, H, rng)),
           "torch_onehot_generate_tokens_per_s": None, "torch_embedding_generate_tokens_per_s": None,
           "numpy_peak_mb": numpy_peak_mb(V, H, T, B)}
    if torch is not None:
        for kind, embedding_dim in (("onehot", None), ("embedding", 64)):
            row[f"torch_{kind}_tokens_per_s"] = train(torch_training(V, H, T, B, embedding_dim, rng))
            row[f"torch_{kind}_generate_tokens_per_s"] = generate(torch_generation(V, H, embedding_dim))
    row["max_rss_mb"] = max_rss_mb()
    row["threads"] = int(THREADS)
    row["blas_env"] = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return row


def ratio(a, b):
    return f"{a / b:5.2f}x" if a and b else "    -"


def print_table(rows):
    def cell(value):
        return f"{value:9.0f}" if value else "        -"
    print(f"threads={THREADS}  numpy {np.__version__}  torch {torch.__version__ if torch else 'absent'}  "
          f"blas env {rows[0]['blas_env']}")
    for title, suffix in (("training, tokens/s (fastest of --repeats steps)", "tokens_per_s"),
                          ("generation at batch 1, tokens/s", "generate_tokens_per_s")):
        print(f"\n{title}")
        print("    V     numpy  torch-1hot  numpy/1hot  torch-emb  numpy/emb")
        for r in rows:
            ours, onehot, emb = (r[f"{k}_{suffix}"] for k in ("numpy", "torch_onehot", "torch_embedding"))
            print(f"{r['V']:5d} {cell(ours)}  {cell(onehot)}    {ratio(ours, onehot)}"
                  f"  {cell(emb)}    {ratio(ours, emb)}")
    print("\nmemory: numpy peak MB (tracemalloc, model + Adam + one step), process max RSS MB so far")
    for r in rows:
        print(f"{r['V']:5d}  {r['numpy_peak_mb']:8.1f}  {r['max_rss_mb']:8.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[400, 1500])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timings; the fastest is reported")
    parser.add_argument("--gen-tokens", type=int, default=100, help="generation steps per timing")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and torch threads (set before import)")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even when it is installed")
    parser.add_argument("--json", action="store_true", help="one JSON object per vocabulary size")
    args = parser.parse_args()
    global torch
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
    rows = []
    for V in args.vocab:
        rows.append(measure(V, args))
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        print_table(rows)


if __name__ == "__main__":
    main()
