"""How fast do our two engines train and generate, next to PyTorch on the same CPU?

One training step = forward + backward + Adam update, float32, a loss at every position (sequence
training), one-hot input done as the row gather ``Wx[ids]``, no gradient clipping (as in PyTorch's
loop here). The model is the deep-improvisation preset: one-hot -> LSTM(H) -> Dense(V).

- ``numpy_*``: the fast engine, the way ``lstm-music train`` and ``generate`` run it by default
  (``--engine fast``): training in two processes (``fast.DataParallel``, ``--processes 2``) of one
  OpenBLAS thread each, generation in one process with one OpenBLAS thread plus the worker thread.
  ``--processes 1`` trains in one process (with the worker thread) instead.
- ``plain_*``: the plain engine (``nn/``, ``--engine plain``), one process, one OpenBLAS thread.
- ``numpy_train_embedding``: the fast engine with ``"input": "embedding", "embedding_dim": 64``
  (Embedding(V, 64) -> LSTM(H) -> Dense(V)), the architecture of PyTorch's embedding figure.

Generation is ``generate.generate`` at batch 1, the very function ``lstm-music generate`` calls
(temperature 1, no top-k, no note rules): ``model.step``, softmax, one roulette-wheel draw per token.

When ``torch`` is importable, each run also times, with ``--threads`` threads (``torch.set_num_threads``):

- torch one-hot:   one_hot(ids) as float (T, B, V) -> nn.LSTM(V, H) -> nn.Linear(H, V)  (our model)
- torch embedding: nn.Embedding(V, 64) -> nn.LSTM(64, H) -> nn.Linear(H, V)  (what a PyTorch user writes)

both with Adam and cross-entropy; torch generates with ``multinomial`` under ``no_grad``.

A *run* measures everything once, back to back, so that all share the machine's load; each training
figure in a run is T * B / the median step time of ``--repeats`` steps (after ``--warmup``), each
generation figure ``--gen-tokens`` / the time to generate them. The table gives the min / median / max
over ``--runs`` runs of each figure and of the per-run ratio ours / torch.

Memory: "numpy peak MB" is the ``tracemalloc`` peak while building the model and Adam and taking one
training step with the fast engine (NumPy reports its array allocations to tracemalloc).

Usage: python benchmarks/bench_lstm.py [--vocab 400 1500] [--threads 2] [--processes 2] [--runs 5] [--json]
"""
import os
import sys


def option_from_argv(name, default):
    """The value of ``--name N`` or ``--name=N`` in sys.argv, read before argparse runs."""
    for n, arg in enumerate(sys.argv):
        if arg == name and n + 1 < len(sys.argv):
            return sys.argv[n + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


# Each library gets THREADS threads. PyTorch: torch.set_num_threads(THREADS). NumPy: the fast engine
# keeps one worker thread of its own (fast/background.py) busy next to the main one, or (training
# with --processes 2) a helper process, so OpenBLAS gets THREADS - 1 threads (and with --threads 1,
# one BLAS thread, no worker and no helper). This is also how `lstm-music` runs: one BLAS thread, and
# the helper or the worker. --blas-threads overrides it. OpenBLAS reads its thread count once, when
# NumPy is first imported, so this must come before `import numpy`; setting it later has no effect.
THREADS = option_from_argv("--threads", "2")
BLAS_THREADS = option_from_argv("--blas-threads", str(max(1, int(THREADS) - 1)))
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = BLAS_THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from lstm_from_scratch.engines import make_model  # noqa: E402
from lstm_from_scratch.fast import DataParallel, background as fast_background  # noqa: E402
from lstm_from_scratch.generate import generate  # noqa: E402
from lstm_from_scratch.music.vocab import Vocabulary  # noqa: E402
from lstm_from_scratch.nn.optim import Adam  # noqa: E402

torch = None  # imported in main() unless --no-torch

# Where the fast engine must stay (issue 13, "Speed must not fall"): ours / torch at least this much.
TARGETS = {"train_onehot": 2.0, "train_embedding": 0.93, "generate_onehot": 5.0}


def median_step_seconds(step, warmup, repeats):
    """Run ``step()`` warmup times untimed, then ``repeats`` times timed; the median in seconds."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine():
    """The CPU, the core count, NumPy's BLAS and the kernel it runs, the BLAS environment variables."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "numpy": np.__version__, "torch": torch.__version__ if torch else None, "threads": int(THREADS),
            "processes": PROCESSES,
            "blas_threads": int(BLAS_THREADS), "worker_thread": fast_background.ENABLED,
            "blas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
            info["cpu"] = next(names)
    except (OSError, StopIteration):
        pass
    try:  # optional: threadpoolctl says which BLAS library and which kernel (e.g. SkylakeX) runs
        import threadpoolctl
        info["blas"] = [{k: pool.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for pool in threadpoolctl.threadpool_info() if pool.get("user_api") == "blas"]
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = [{"internal_api": blas.get("name"), "version": blas.get("version"),
                         "architecture": "(pip install threadpoolctl to see it)"}]
    return info


# ---------------------------------------------------------------- NumPy (this project)

def numpy_model(V, H, embedding=None, engine="fast"):
    """The deep-improvisation preset with H hidden units: one-hot ids -> LSTM(H) -> Dense(V); or,
    with ``embedding`` E, Embedding(V, E) -> LSTM(H) -> Dense(V), the model PyTorch's embedding
    figure trains."""
    config = {"vocab_size": V, "input": "onehot", "layers": [{"type": "lstm", "hidden_size": H}],
              "output": "sequence"}
    if embedding:
        config.update(input="embedding", embedding_dim=embedding)
    return make_model(config, engine, dtype=np.float32)


PROCESSES = 2  # set by --processes


def numpy_training(V, H, T, B, rng, embedding=None, engine="fast"):
    """(step, parallel): one training step as ``lstm-music train --engine ENGINE`` takes it, and the
    DataParallel to close afterwards (it stops the helper), or None."""
    model = numpy_model(V, H, embedding, engine)
    optimizer = Adam(lr=1e-3)
    ids, targets = rng.integers(0, V, size=(2, T, B))
    parallel = DataParallel(model, start_helper=True) if engine == "fast" and PROCESSES == 2 else None
    batch_loss = model.loss if parallel is None else parallel.loss

    def step():
        _, grads = batch_loss(ids, targets)
        optimizer.step(model.params, grads)
    return step, parallel


def numpy_peak_mb(V, H, T, B):
    tracemalloc.start()
    step, parallel = numpy_training(V, H, T, B, np.random.default_rng(0))
    step()
    if parallel is not None:
        parallel.close()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def numpy_generation(V, H, rng, engine="fast"):
    """A function that generates n tokens exactly as ``lstm-music generate`` does (default options)."""
    model = numpy_model(V, H, engine=engine)
    vocab = Vocabulary([f"token{i}" for i in range(V)])
    return lambda n: generate(model, vocab, [0], n, temperature=1.0, top_k=None, rng=rng)


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

    def run(n):
        token, state = torch.zeros((1, 1), dtype=torch.long), None
        with torch.no_grad():
            for _ in range(n):
                logits, state = net(token, state)
                token = torch.multinomial(torch.softmax(logits[0], dim=-1), 1)
    return run


# ---------------------------------------------------------------- the run

def tokens_per_second(generate_n, n):
    generate_n(20)  # warm up
    start = time.perf_counter()
    generate_n(n)
    return n / (time.perf_counter() - start)


def one_run(V, args, seed):
    """Every figure once, ours and torch's back to back: {name: tokens/s}."""
    T, B, H = args.seq_len, args.batch, args.hidden
    rng = np.random.default_rng(seed)
    train = lambda step: T * B / median_step_seconds(step, args.warmup, args.repeats)  # noqa: E731
    figures = {}
    for name, embedding, engine in (("numpy_train", None, "fast"), ("numpy_train_embedding", 64, "fast"),
                                    ("plain_train", None, "plain")):
        step, parallel = numpy_training(V, H, T, B, rng, embedding, engine)
        try:
            step()  # the first step starts the helper
            if parallel is not None and parallel.helper is None:  # the figure would not be what it claims
                raise SystemExit("error: the helper process did not start")
            figures[name] = train(step)
        finally:
            if parallel is not None:
                parallel.close()
    if torch is not None:
        figures["torch_train_onehot"] = train(torch_training(V, H, T, B, None, rng))
        figures["torch_train_embedding"] = train(torch_training(V, H, T, B, 64, rng))
    figures["numpy_generate"] = tokens_per_second(numpy_generation(V, H, rng), args.gen_tokens)
    figures["plain_generate"] = tokens_per_second(numpy_generation(V, H, rng, "plain"), args.gen_tokens)
    if torch is not None:
        figures["torch_generate_onehot"] = tokens_per_second(torch_generation(V, H, None), args.gen_tokens)
        figures["torch_generate_embedding"] = tokens_per_second(torch_generation(V, H, 64), args.gen_tokens)
    return figures


def spread(values):
    """(min, median, max) of a list of numbers."""
    return min(values), statistics.median(values), max(values)


def measure(V, args):
    runs = []
    for seed in range(args.runs):
        load = os.getloadavg()[0]  # other programs' work shows here: compare only quiet runs
        runs.append({**one_run(V, args, seed), "load": load})
    row = {"V": V, "H": args.hidden, "T": args.seq_len, "B": args.batch, "runs": runs,
           "spread": {name: spread([r[name] for r in runs]) for name in runs[0] if name != "load"},
           "load": spread([r["load"] for r in runs])}
    if torch is not None:
        for ours, theirs, key in (("numpy_train", "torch_train_onehot", "train_onehot"),
                                  ("numpy_train", "torch_train_embedding", "train_embedding"),
                                  ("numpy_train_embedding", "torch_train_embedding", "train_same_embedding"),
                                  ("plain_train", "torch_train_onehot", "plain_train_onehot"),
                                  ("plain_train", "torch_train_embedding", "plain_train_embedding"),
                                  ("numpy_generate", "torch_generate_onehot", "generate_onehot"),
                                  ("numpy_generate", "torch_generate_embedding", "generate_embedding"),
                                  ("plain_generate", "torch_generate_onehot", "plain_generate_onehot")):
            row["spread"][f"ratio_{key}"] = spread([r[ours] / r[theirs] for r in runs])
    row["numpy_peak_mb"] = numpy_peak_mb(V, args.hidden, args.seq_len, args.batch)
    row["max_rss_mb"] = max_rss_mb()
    return row


def print_table(rows, info, command):
    def three(values, digits=0):
        return " / ".join(f"{v:,.{digits}f}" for v in values)

    print(f"Command: `{command}`  ")
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} kernel {b.get('architecture')}"
                     for b in info["blas"])
    print(f"Machine: {info['cpu']}, {info['cores']} cores; NumPy {info['numpy']} ({blas}); "
          f"PyTorch {info['torch'] or 'absent'} with {info['threads']} threads; ours training in "
          f"{info['processes']} process(es), generating with {info['blas_threads']} BLAS thread(s)"
          f"{' + 1 worker thread' if info['worker_thread'] else ' (worker thread off)'}; "
          f"OPENBLAS_CORETYPE={info['blas_env']['OPENBLAS_CORETYPE']}, "
          f"OPENBLAS_L2_SIZE={info['blas_env']['OPENBLAS_L2_SIZE']}\n")
    loads = [value for r in rows for value in r["load"]]
    print(f"Tokens per second, min / median / max over {len(rows[0]['runs'])} runs "
          f"(H = {rows[0]['H']}, T = {rows[0]['T']}, B = {rows[0]['B']}, float32). "
          f"1-minute load average at the start of the runs: {min(loads):.2f} to {max(loads):.2f}.\n")
    print("Tokens per second (medians); ratios are medians of the per-run ratios, with their min-max.\n")
    print("| V | measure | fast engine | plain engine | PyTorch | fast / PyTorch | plain / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    lines = (("training vs one-hot `nn.LSTM`", "numpy_train", "plain_train", "torch_train_onehot",
              "train_onehot", "plain_train_onehot"),
             ("training vs `Embedding(V, 64)` + `nn.LSTM`", "numpy_train", "plain_train",
              "torch_train_embedding", "train_embedding", "plain_train_embedding"),
             ("generation, batch 1, vs one-hot", "numpy_generate", "plain_generate",
              "torch_generate_onehot", "generate_onehot", "plain_generate_onehot"))

    def ratio(spread_, key):
        if key is None or f"ratio_{key}" not in spread_:
            return "-"
        low, median, high = spread_[f"ratio_{key}"]
        target = TARGETS.get(key)
        mark = "" if target is None else (" (target >= %g: %s)" % (target, "met" if median >= target else "NOT met"))
        return f"{median:.2f} ({low:.2f}-{high:.2f}){mark}"

    for r in rows:
        s = r["spread"]
        for title, fast, plain, theirs, key, plain_key in lines:
            torch_figure = f"{s[theirs][1]:,.0f}" if theirs in s else "-"
            print(f"| {r['V']} | {title} | {s[fast][1]:,.0f} | {s[plain][1]:,.0f} | {torch_figure} | "
                  f"{ratio(s, key)} | {ratio(s, plain_key)} |")
    print("\nOur fast engine's own Embedding(V, 64) model, training: " + ", ".join(
        f"V = {r['V']}: {three(r['spread']['numpy_train_embedding'])} tokens/s (min / median / max)" for r in rows))
    print("\nMemory: numpy peak MB (tracemalloc: model + Adam + one step); process max RSS MB so far")
    for r in rows:
        print(f"  V = {r['V']}: {r['numpy_peak_mb']:.1f} MB, {r['max_rss_mb']:.1f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[400, 1500])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--runs", type=int, default=5,
                        help="whole comparisons; the table gives min/median/max over them")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timed training steps per run (their median)")
    parser.add_argument("--gen-tokens", type=int, default=1000, help="timed generated tokens per run")
    parser.add_argument("--threads", type=int, default=2, help="threads for each library (see the top)")
    parser.add_argument("--blas-threads", type=int, help="OpenBLAS threads for NumPy (default: threads - 1)")
    parser.add_argument("--no-worker", action="store_true",
                        help="run our worker thread's jobs on the main thread (fast_background.ENABLED)")
    parser.add_argument("--processes", type=int, choices=[1, 2],
                        help="train as lstm-music train --processes N (default: 2; 1 with --threads 1 "
                             "or --blas-threads above 1)")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even when it is installed")
    parser.add_argument("--json", action="store_true", help="one JSON object per vocabulary size")
    args = parser.parse_args()
    global torch, PROCESSES
    # The helper starts only beside a one-thread BLAS (fast.data_parallel.can_use_helper).
    PROCESSES = args.processes or (2 if args.threads >= 2 and int(BLAS_THREADS) == 1 else 1)
    fast_background.ENABLED = not args.no_worker and args.threads >= 2  # one thread: no worker either
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
    info = machine()
    rows = []
    for V in args.vocab:
        rows.append(measure(V, args))
        if args.json:
            print(json.dumps({**rows[-1], "machine": info}), flush=True)
    if not args.json:
        print_table(rows, info, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
