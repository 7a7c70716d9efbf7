"""The fast engine's training step with ``--processes 1`` against ``--processes 2``, alternated in one run.

``--processes 1`` is ``FastModel.loss`` on the whole batch in this process (with its worker thread);
``--processes 2`` is ``fast.DataParallel(model).loss``: two halves, the second in a helper process
(``fast/data_parallel.py``). Both then take the Adam step, as ``train.py`` does. Each step is forward +
backward + update, float32, on random ids. Each round times ``--steps`` steps of each (after 5
untimed ones, which also start the helper); the table gives the median over ``--rounds`` rounds of
each one's median step, and the median, min and max of the rounds' ratios. Data parallelism earns
its place in the fast engine only while "bench V=400" shows at least 1.2x (issue 13).

Usage: python benchmarks/bench_processes.py [--rounds 5] [--steps 20] [--shapes NAME ...]
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # as lstm-music runs; before numpy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from lstm_from_scratch.fast import DataParallel, FastModel  # noqa: E402
from lstm_from_scratch.nn.config import preset_config  # noqa: E402
from lstm_from_scratch.nn.optim import Adam  # noqa: E402


def one_lstm(V, H=128):
    return {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": H}]}


# name -> (model config, T, B)
SHAPES = {
    "bench V=400": (one_lstm(400), 100, 24),
    "bench V=1500": (one_lstm(1500), 100, 24),
    "demo size": ({"vocab_size": 300, "layers": [{"type": "lstm", "hidden_size": 128},
                                                 {"type": "dropout", "rate": 0.3}]}, 32, 32),
    "piano-composer V=400": (preset_config("piano-composer", 400), 100, 16),
    "piano-composer V=1500": (preset_config("piano-composer", 1500), 100, 16),
}


def median_step_ms(config, T, B, processes, steps):
    model, optimizer = FastModel(config), Adam(1e-3)
    ids, targets = np.random.default_rng(0).integers(0, config["vocab_size"], (2, T, B))
    with DataParallel(model, start_helper=True) as parallel:
        batch_loss = model.loss if processes == 1 else parallel.loss
        times = []
        for n in range(5 + steps):
            start = time.perf_counter()
            _, grads = batch_loss(ids, targets)
            optimizer.step(model.params, grads)
            if n >= 5:
                times.append(time.perf_counter() - start)
        if processes == 2 and parallel.helper is None:
            raise SystemExit("error: the helper process did not start")
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    args = parser.parse_args()
    print(f"Command: `python {' '.join(sys.argv)}`; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| model (T, B) | --processes 1, ms | --processes 2, ms | speed-up, median (min-max) |")
    print("|---|---|---|---|")
    for name in args.shapes:
        config, T, B = SHAPES[name]
        times = {1: [], 2: []}
        for _ in range(args.rounds):
            for processes in (1, 2):
                times[processes].append(median_step_ms(config, T, B, processes, args.steps))
        one, two = statistics.median(times[1]), statistics.median(times[2])
        ratios = [a / b for a, b in zip(times[1], times[2])]
        print(f"| {name} ({T}, {B}) | {one:.2f} | {two:.2f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
