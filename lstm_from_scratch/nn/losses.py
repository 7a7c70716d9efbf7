"""Softmax, log-softmax and softmax cross-entropy.

Shapes: logits (..., V) with V the vocabulary size, for example (T, B, V); targets (...) integer ids.

Numerical stability: softmax(z) does not change when the same number is subtracted from every logit,
so we subtract the largest one first. Then every exponent is <= 0, ``exp`` cannot overflow, and the
largest term is exactly 1, so the sum cannot underflow to 0 either. Logits of +-1e4 stay finite.
"""
import numpy as np


def log_softmax(logits, axis=-1):
    """log(softmax(logits)) along ``axis``, computed as shifted - log(sum(exp(shifted))). Same shape."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """exp(logits) / sum(exp(logits)) along ``axis``: probabilities that sum to 1. Same shape."""
    exps = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, targets):
    """Mean cross-entropy of softmax(logits) against integer targets, and its gradient.

    logits: (..., V) floats (other numbers are converted to float64); targets: (...) integers in [0, V).
    Returns (loss, dlogits): loss is a Python float, the mean of -log p[target] over all N targets;
    dlogits (..., V) is (softmax(logits) - onehot(targets)) / N.
    """
    logits, targets = check_logits_and_targets(logits, targets)
    log_probs = log_softmax(logits)  # (..., V)
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)  # log p[target], (..., 1)
    n, num_classes = targets.size, logits.shape[-1]
    loss = -float(picked.sum(dtype=np.float64)) / n
    # d(loss)/d(logits) = (softmax - onehot(target)) / N
    dlogits = np.exp(log_probs)  # softmax, (..., V)
    rows = dlogits.reshape(n, num_classes)  # a (N, V) view of the same numbers
    rows[np.arange(n), targets.reshape(n)] -= 1
    dlogits /= n
    return loss, dlogits


def check_logits_and_targets(logits, targets):
    """``(logits, targets)`` as arrays, after checking that they fit: logits (..., V), targets (...)
    integers in [0, V). Raises ``ValueError`` saying what is wrong. Logits that are not floats come
    back as float64, since integer logits would wrap around in the shift.
    """
    logits, targets = np.asarray(logits), np.asarray(targets)
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
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)  # integer logits would wrap around in the shift
    return logits, targets
