"""Softmax cross-entropy for the fast engine: ``nn.losses.softmax_cross_entropy`` in fewer passes.

Read ``nn/losses.py`` first: the same loss and gradient, (softmax - onehot(targets)) / N. Shapes:
logits (..., V), targets (...). What differs, for speed (each pass over a (T*B, V) array costs time
when V is large):

- the exp, the sum and the gradient are written into one array (the logits' own memory with
  ``overwrite_logits=True``), not into new ones;
- the shift by each row's largest logit is skipped when no logit is large enough to overflow;
- a big array's rows are split between this thread and the worker thread (``fast/background.py``).
"""
import numpy as np

from ..nn.losses import check_logits_and_targets
from .background import background


# Logit arrays with at least this many numbers are split between two threads.
PARALLEL_SIZE = 2**18

# With no logit above this and no target's logit below minus this, exp needs no shift (e^60 ~ 1e26;
# float32 overflows above e^88, and a row sum of V such terms stays finite for any vocabulary that fits
# in memory; a row's sum is at least e^-60, since its target's term is). Float32 and float64 only.
SAFE_LOGIT = 60.0


def softmax_cross_entropy(logits, targets, overwrite_logits=False):
    """Mean cross-entropy of softmax(logits) against integer targets, and its gradient.

    logits: (..., V) floats (other numbers are converted to float64); targets: (...) integers in [0, V).
    Returns (loss, dlogits): loss is a Python float, the mean of -log p[target] over all targets;
    dlogits (..., V) is (softmax(logits) - onehot(targets)) / N, with N the number of targets.
    With ``overwrite_logits=True`` (for a caller that no longer needs them, like ``Model.loss``),
    dlogits is computed in the logits' own memory instead of a new (..., V) array.
    """
    logits, targets = check_logits_and_targets(logits, targets)
    num_classes = logits.shape[-1]
    flat_logits = logits.reshape(-1, num_classes)
    flat_targets = targets.reshape(-1)
    n = flat_targets.size
    if overwrite_logits and flat_logits.flags.writeable:
        dlogits = flat_logits
    else:
        dlogits = np.empty_like(flat_logits)
    # Each row is its own softmax, so for a big array a second thread does the second half of the
    # rows while this one does the first (fast/background.py).
    half = n // 2 if flat_logits.size >= PARALLEL_SIZE else n
    second = None
    if half < n:
        second = background().submit(_rows_loss, flat_logits[half:], flat_targets[half:], dlogits[half:], n)
    total = _rows_loss(flat_logits[:half], flat_targets[:half], dlogits[:half], n)
    if second is not None:
        total += second.result()
    return float(total / n), dlogits.reshape(logits.shape)


def _rows_loss(logits, targets, out, n):
    """The loss and gradient for some rows: logits (M, V), targets (M,), out (M, V) (may be logits
    itself); n is the number of targets in the whole batch. Writes (softmax - onehot(targets)) / n
    into out and returns the sum of -log p[target] over these M rows, as a float.

    The same steps as log_softmax and softmax, fused into the one (M, V) array ``out``: every pass
    over it costs time when V is large, so we make as few as we can.
    """
    rows = np.arange(targets.size)
    picked = logits[rows, targets].astype(np.float64)  # the target's logit, (M,)
    # The shift by the row's largest logit only keeps exp from overflowing (and a row's sum from
    # underflowing to 0). When no logit is above SAFE_LOGIT and no target's logit is below
    # -SAFE_LOGIT (so that no row's largest is either), exp needs no guard and we save its passes.
    # (The largest logit of the whole array is also faster to find than every row's largest: one
    # long run through memory, not M short ones.)
    if picked.size and picked.min() >= -SAFE_LOGIT and logits.max() <= SAFE_LOGIT:
        exps = np.exp(logits, out=out)
    else:
        row_max = logits.max(axis=-1, keepdims=True)
        shifted = np.subtract(logits, row_max, out=out)  # every row's largest is now 0
        picked = shifted[rows, targets].astype(np.float64)
        exps = np.exp(shifted, out=out)
    sums = exps.sum(axis=-1, keepdims=True)  # (M, 1), each > 0
    # -log p[target] = log(sum(exp(shifted))) - shifted[target], for any shift
    total = float(np.sum(np.log(sums[:, 0].astype(np.float64)) - picked))
    # d(loss)/d(logits) = (softmax - onehot(target)) / n; softmax / n = exps * (1 / (n * sums))
    np.multiply(exps, 1 / (n * sums), out=out)
    out[rows, targets] -= 1 / n
    return total
