"""The fast engine: the plain engine of ``lstm_from_scratch/nn/``, made fast one idea at a time.

``lstm-music`` trains with it by default (``--engine fast``); the Python API and the tutorials use
the plain engine unless asked (``engine="fast"``). Both engines have the same layers, parameter
names, configs and checkpoints, and compute the same numbers to rounding: ``tests/test_engines.py``
checks outputs, gradients, optimizer steps and generation against the plain engine, and the fast
LSTM against numerical gradients and PyTorch. Tutorial 11, "Making it fast", adds the ideas one by
one. What each idea buys is measured by ``benchmarks/bench_ideas.py``; the table is in
``benchmarks/README.md`` ("What each idea buys"), row by row in this order:

1. **One tanh for all four gates** (``lstm.py``, ``FastLSTM.forward``): sigmoid(a) = (1 + tanh(a/2)) / 2,
   so one call over the (B, 4H) slab computes every gate.
2. **The input projection of every step in one gather**, before the loop: (Wx + b)[ids].
3. **No new arrays inside the loops**: every step writes with ``out=`` into arrays made once.
4. **Backward's factors outside the loop** (``_backward_factors``): what does not depend on the
   recurrence is computed for all steps at once, leaving a few calls per step.
5. **A faster scatter-add** for one-hot input (``scatter_add_rows_fast``): rounds of plain
   indexing instead of ``np.add.at``.
6. **A fused softmax cross-entropy** (``losses.py``): the gradient written over the logits.
7. **A worker thread** (``background.py``, ``model.py``): big products run on the second core
   while the main thread goes on with work that does not need them.
8. **Two processes** (``data_parallel.py``): each batch as two halves, the second in a helper
   process, gradients averaged (``--processes 2``).
9. **A lean step for generation** (``FastModel.step``, ``FastLSTM.step``): one token's arithmetic,
   nothing kept for backward.
"""
from .data_parallel import DataParallel, HelperWarning
from .lstm import FastLSTM
from .model import FastModel

__all__ = ["DataParallel", "FastLSTM", "FastModel", "HelperWarning"]
