"""How much does work on a second thread, or in a second process, slow the LSTM's time loop?

The training step's critical path is the LSTM's loop over time (``FastLSTM.forward`` and
``.backward``): each step needs the one before, and a step is about a dozen NumPy calls of a few
microseconds each. Everything else (the output layer, the softmax, the weight gradients) could run
beside it on the second core. This script measures what that costs the loop:

- the forward of a FastLSTM (V = 400 ids, H = 128, T = 100, B = 24, float32), alone: the gather of
  the input projection, then the loop (not in training mode, so nothing else is computed);
- the same while a **thread** of this process runs NumPy calls in a loop, of three sizes: small
  elementwise calls (a multiply of 240 x 384 numbers, about 15 microseconds each), middling ones
  (``exp`` of 240 x 400, about 40 microseconds) and big products (2400 x 128 @ 128 x 400, about
  2 milliseconds);
- the same while a separate **process** runs the very same calls.

NumPy lets go of Python's lock (the GIL) inside each call, so the thread and the loop do compute at
once; but each call starts and ends holding the lock, so at every call of either thread the lock may
have to change hands, and on a busy 2-core virtual machine each handover costs microseconds. A
process has its own interpreter and its own lock: it shares only the cores and the memory.

Usage: python benchmarks/bench_worker_interference.py [--repeats 40] [--runs 3]
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread per thread or process, as lstm-music runs; before numpy

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from lstm_from_scratch.fast import background as fast_background  # noqa: E402
from lstm_from_scratch.fast.lstm import FastLSTM  # noqa: E402

V, H, T, B = 400, 128, 100, 24

# The worker's NumPy calls: name -> (setup code, the call), as source so a child process runs the same.
WORK = {
    "small calls (multiply 240x384)": (
        "x = np.random.rand(240, 384).astype(np.float32); y = np.empty_like(x)",
        "np.multiply(x, x, out=y)"),
    "middling calls (exp 240x400)": (
        "x = np.random.rand(240, 400).astype(np.float32); y = np.empty_like(x)",
        "np.exp(x, out=y)"),
    "big products (2400x128 @ 128x400)": (
        "a = np.random.rand(2400, 128).astype(np.float32); w = np.random.rand(128, 400).astype(np.float32);"
        " y = np.empty((2400, 400), np.float32)",
        "np.matmul(a, w, out=y)"),
}


def forward_ms(layer, ids, repeats):
    """The median time of ``layer.forward(ids)`` in milliseconds, over ``repeats`` calls."""
    layer.forward(ids)  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer.forward(ids)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def with_thread(setup, call, measure):
    """``measure()`` while a thread of this process runs ``call`` in a loop; (result, calls per ms)."""
    stop, counts = threading.Event(), []
    namespace = {"np": np}
    exec(setup, namespace)
    code = compile(call, "<worker call>", "eval")

    def loop():
        count = 0
        while not stop.is_set():
            eval(code, namespace)
            count += 1
        counts.append(count)

    worker = threading.Thread(target=loop)
    start = time.perf_counter()
    worker.start()
    try:
        result = measure()
    finally:
        stop.set()
        worker.join()
    return result, counts[0] / ((time.perf_counter() - start) * 1e3)


CHILD = """
import os, sys, time
import numpy as np
{setup}
print("ready", flush=True)
while True:
    {call}
"""


def with_process(setup, call, measure):
    """``measure()`` while a child process (a fresh interpreter) runs ``call`` in a loop."""
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(setup=setup, call=call)],
                             stdout=subprocess.PIPE, env=env)
    try:
        if child.stdout.readline().strip() != b"ready":
            raise SystemExit("error: the child process did not start")
        time.sleep(0.2)
        return measure()
    finally:
        child.kill()
        child.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed forwards per figure (their median)")
    parser.add_argument("--runs", type=int, default=3, help="whole rounds; the table gives the median")
    args = parser.parse_args()
    fast_background.ENABLED = False  # no thread of our own but the worker measured here
    layer = FastLSTM(V, H, np.float32, np.random.default_rng(0))
    layer.training = False  # the loop alone: no job for backward's factors
    ids = np.random.default_rng(1).integers(0, V, (T, B))

    def measure():
        return forward_ms(layer, ids, args.repeats)

    rows = {}
    for _ in range(args.runs):
        rows.setdefault(("alone", "-"), []).append((measure(), None))
        for name, (setup, call) in WORK.items():
            rows.setdefault(("thread", name), []).append(with_thread(setup, call, measure))
            rows.setdefault(("process", name), []).append((with_process(setup, call, measure), None))
    alone = statistics.median(ms for ms, _ in rows[("alone", "-")])
    print(f"Command: `python {' '.join(sys.argv)}`; load average {os.getloadavg()[0]:.2f}\n")
    print(f"FastLSTM forward (V = {V}, H = {H}, T = {T}, B = {B}, float32), median ms over {args.runs} runs "
          f"of {args.repeats}:\n")
    print("| beside the loop | the other side runs | forward ms | slower by |")
    print("|---|---|---|---|")
    for (where, name), results in rows.items():
        ms = statistics.median(result for result, _ in results)
        rates = [rate for _, rate in results if rate is not None]
        rate = f" ({statistics.median(rates):.0f} calls/ms)" if rates else ""
        print(f"| {where} | {name}{rate} | {ms:.2f} | {100 * (ms / alone - 1):+.0f}% |")


if __name__ == "__main__":
    main()
