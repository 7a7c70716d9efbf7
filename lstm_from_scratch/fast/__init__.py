"""The fast engine: the plain engine of ``lstm_from_scratch/nn/``, made fast one idea at a time.

``lstm-music`` trains with it by default (``--engine fast``); the Python API and the tutorials use
the plain engine unless asked (``engine="fast"``). Both engines have the same layers, parameter
names, configs and checkpoints, and compute the same numbers to rounding: ``tests/test_engines.py``
checks outputs, gradients, optimizer steps and generation against the plain engine, and the fast
LSTM against numerical gradients and PyTorch. What each idea buys is measured by
``benchmarks/bench_ideas.py``; its table, row by row in this order, is in ``benchmarks/README.md``
("What each idea buys"):

1. **One tanh for all four gates** (``lstm.py``): sigmoid(a) = (1 + tanh(a/2)) / 2, so one call over
   the (B, 4H) slab computes every gate.
2. **Each gate in one piece of memory** (``lstm.py``): the gates of a step kept as a (4, B, H) block,
   not as slices of a (B, 4H) slab, so every call on a gate reads one run of memory.
3. **No new arrays inside the loops** (``lstm.py``): every step writes with ``out=`` into arrays and
   views made once per shape; the input projection of all steps is one gather, (Wx + b)[ids].
4. **Backward's factors outside the loop** (``lstm.py``, ``_backward_factors``): what does not depend
   on the recurrence is computed for all steps at once, leaving six calls and a product per step.
5. **A faster scatter-add** for one-hot input (``lstm.py``, ``scatter_add_rows_fast``): rounds of plain
   indexing instead of ``np.add.at``.
6. **A fused softmax cross-entropy** (``losses.py``): the gradient written over the logits.
7. **A worker thread** (``background.py``, ``model.py``): big products run on the second core
   while the main thread goes on with work that does not need them.
8. **Two processes** (``data_parallel.py``): each batch as two halves, the second in a helper
   process, gradients averaged (``--processes 2``).
9. **A lean step for generation** (``model.py``, ``FastModel.step``; ``lstm.py``, ``FastLSTM.step``):
   one token's arithmetic, nothing kept for backward.

Tutorial 11 shows each idea in a few lines, timed on a toy model, and checks its numbers.
"""
from .data_parallel import DataParallel, HelperWarning
from .lstm import FastLSTM
from .model import FastModel

__all__ = ["DataParallel", "FastLSTM", "FastModel", "HelperWarning"]
