"""One worker thread, for work that can run at the same time as the main thread's.

NumPy lets go of Python's lock (the GIL) inside matrix products and inside ufunc loops on large
arrays, so a NumPy call on this thread and one on the main thread use two cores at once. The fast
paths use it for work that does not depend on what the main thread does next:

- ``FastModel.backward``: a Dense layer's weight gradient, while the layers below run their backward;
  and, for a Dense right above a FastLSTM, the earlier half of its input gradient, while this thread
  computes the later half and the LSTM's backward starts on it (it runs from the last step down);
- ``FastLSTM.forward`` (while training): backward's factors, while the main thread goes on with the
  layers above and the loss;
- ``FastModel.forward``: a big Dense layer's forward on the earlier half of the steps of the FastLSTM
  below it, while that LSTM's loop computes the later half (``FastLSTM.forward``'s ``on_step``);
- ``FastLSTM.backward``: the product for ``dWh``, while the main thread does the scatter-add;
- ``softmax_cross_entropy``: the second half of the rows, while the main thread does the first.

Every result is the same as on one thread: the same operations on the same numbers. It pays most
when BLAS runs one thread (as ``lstm-music`` does), since the second core would otherwise idle.
When ``fast/data_parallel.py`` trains with a helper process, that process has the second core: the
worker is then off (``ENABLED`` False) in the helper, and in the main process during each step.

Only big calls belong here. Every NumPy call starts and ends holding Python's lock, so small calls on
this thread slow the main thread's small calls (the LSTM's loop) down
(``benchmarks/bench_worker_interference.py`` measures by how much).
"""
import os
from concurrent.futures import Future, ThreadPoolExecutor

ENABLED = True  # False: every job runs at once on the calling thread (same results, one core)

_WORKER = {}  # process id -> executor


class _RunNow:
    """Looks like an executor; runs each job at once, on the calling thread."""

    def submit(self, function, *args):
        future = Future()
        future.set_result(function(*args))
        return future


def background():
    """The worker (a ``ThreadPoolExecutor`` with one thread), started on first use; or, when
    ``ENABLED`` is False, an object that runs the jobs at once on the calling thread.

    One per process: a process forked from this one (``multiprocessing`` on Linux) does not inherit
    the thread, so it starts its own instead of waiting forever on one that is not there.
    """
    if not ENABLED:
        return _RunNow()
    pid = os.getpid()
    if pid not in _WORKER:
        _WORKER.clear()
        _WORKER[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstm-background")
    return _WORKER[pid]
