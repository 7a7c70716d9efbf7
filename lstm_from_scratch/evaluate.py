"""Score a trained model on music it did not train on: does it generalize, or did it learn its pieces by heart?

The score is the one training reports for its validation pieces, on any pieces you give:

- **cross-entropy** per chunk, in nats: the mean of -ln p(the chunk that came next), over every
  position of the windows cut from the pieces (the windows training used: ``seq_len`` chunks, a new one
  every ``step``);
- **perplexity**, exp(cross-entropy): as if the model were choosing among that many chunks, evenly;
- **accuracy**: how often the model's likeliest next chunk is the one that came;
- the **unigram baseline** of the same targets: the score of a model that knows only how often each
  chunk occurred in the checkpoint's training data (add-one smoothed, as ``data.unigram_baseline``).
  A model that has learned something about music beats it.

The pieces are encoded with the checkpoint's own event settings. Chunks its vocabulary does not have
(a pitch it never saw, a rhythm finer than its grid) cannot be fed to it: they are left out of their
piece and counted, and the report says how many.
"""
import math

import numpy as np

from .data import windows_from_sequences
from .errors import DataError
from .train import evaluate


def score(trained, sequences):
    """Score ``trained`` (a ``generate.TrainedModel``) on ``sequences`` (``ChunkSequence`` objects made
    with ``trained.settings``). Returns a JSON-ready dict: the scores (see the module docstring), the
    window length and step, and counts of pieces, windows, targets and unknown chunks.

    Raises ``DataError`` when no piece is long enough for one window of known chunks.
    """
    config = trained.meta.get("train_config", {})
    seq_len, step = int(config.get("seq_len", 32)), int(config.get("step", 4))
    ids, unknown, total = [], 0, 0
    unknown_kinds = set()
    for piece in sequences:
        encoded, skipped = trained.vocab.encode_skipping(piece.chunks)
        unknown += skipped
        total += len(piece.chunks)
        if skipped:
            unknown_kinds.update(chunk for chunk in piece.chunks if chunk not in trained.vocab)
        if len(encoded) > seq_len:
            ids.append(encoded)
    if not ids:
        raise DataError(f"no piece has the {seq_len + 1} known chunks one window needs "
                        f"({len(sequences)} pieces, {total} chunks, {unknown} of them unknown to the model)")
    inputs, targets = windows_from_sequences(ids, seq_len, step)
    loss, accuracy = evaluate(trained.model, inputs, targets)
    counts = trained.token_counts
    probabilities = (counts + 1) / (counts.sum() + len(counts))
    return {
        "cross_entropy": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": accuracy,
        "baseline_cross_entropy": float(-np.mean(np.log(probabilities[targets]))),
        "baseline_accuracy": float(np.mean(targets == int(np.argmax(counts)))),
        "seq_len": seq_len,
        "step": step,
        "pieces": len(sequences),
        "pieces_scored": len(ids),
        "windows": len(inputs),
        "targets": int(targets.size),
        "chunks": total,
        "unknown_chunks": unknown,
        "unknown_distinct": len(unknown_kinds),
    }
