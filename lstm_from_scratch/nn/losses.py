"""Softmax, log-softmax and softmax cross-entropy.

Shapes: logits (..., V) with V the vocabulary size, for example (T, B, V); targets (...) integer ids.

Numerical stability: softmax(z) does not change when the same number is subtracted from every logit,
so we subtract the largest one first. Then every exponent is <= 0, ``exp`` cannot overflow, and the
largest term is exactly 1, so the sum cannot underflow to 0 either. Logits of +-1e4 stay finite.
"""
import numpy as np


# |logit| at most this: exp needs no shift (e^60 ~ 1e26; float32 overflows above e^88, and a row sum
# of V such terms stays finite for any vocabulary that fits in memory).
SAFE_LOGIT = 60.0


def log_softmax(logits, axis=-1):
    """log(softmax(logits)) along ``axis``, computed as shifted - log(sum(exp(shifted))). Same shape."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """exp(logits) / sum(exp(logits)) along ``axis``: probabilities that sum to 1. Same shape."""
    exps = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, targets, overwrite_logits=False):
    """Mean cross-entropy of softmax(logits) against integer targets, and its gradient.

    logits: (..., V) floats; targets: (...) integers in [0, V).
    Returns (loss, dlogits): loss is a Python float, the mean of -log p[target] over all targets;
    dlogits (..., V) is (softmax(logits) - onehot(targets)) / N, with N the number of targets.
    With ``overwrite_logits=True`` (for a caller that no longer needs them, like ``Model.loss``),
    dlogits is computed in the logits' own memory instead of a new (..., V) array.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"softmax_cross_entropy: targets have shape {targets.shape}, "
            f"but logits {logits.shape} need targets of shape {logits.shape[:-1]}"
        )
    num_classes = logits.shape[-1]
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: targets must be integers, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"softmax_cross_entropy: targets must lie in [0, {num_classes}), "
            f"got min {targets.min()} and max {targets.max()}"
        )
    flat_logits = logits.reshape(-1, num_classes)
    flat_targets = targets.reshape(-1)
    n = flat_targets.size
    rows = np.arange(n)
    # The same steps as log_softmax and softmax, fused into one (N, V) buffer: every pass over the
    # (N, V) array costs time when V is large, so we make as few as we can.
    floating = np.issubdtype(flat_logits.dtype, np.floating)
    in_place = overwrite_logits and floating and flat_logits.flags.writeable
    row_max = flat_logits.max(axis=-1, keepdims=True)
    if row_max.size and -SAFE_LOGIT <= row_max.min() and row_max.max() <= SAFE_LOGIT:
        # The shift by the row's largest logit only keeps exp from overflowing (and a row's sum
        # from underflowing to 0). Logits this close to 0 need no guard, so we save its pass.
        shifted = flat_logits
    elif in_place:
        shifted = np.subtract(flat_logits, row_max, out=flat_logits)
    else:
        shifted = flat_logits - row_max  # every row's largest is now 0
    picked = shifted[rows, flat_targets].astype(np.float64)  # the target's (shifted) logit, (N,)
    exps = np.exp(shifted, out=shifted if in_place or shifted is not flat_logits else None)
    sums = exps.sum(axis=-1, keepdims=True)  # (N, 1), each > 0
    # -log p[target] = log(sum(exp(shifted))) - shifted[target]
    loss = np.mean(np.log(sums[:, 0].astype(np.float64)) - picked)
    # d(loss)/d(logits) = (softmax - onehot(target)) / N; softmax / N = exps * (1 / (N * sums))
    dlogits = np.multiply(exps, 1 / (n * sums), out=exps)
    dlogits[rows, flat_targets] -= 1 / n
    return float(loss), dlogits.reshape(logits.shape)
