"""The one switch between the two engines that compute the net.

- ``"plain"``: ``lstm_from_scratch/nn/``, the code the tutorials teach, line for line with the
  equations. Edit ``nn/lstm.py`` and training with this engine changes.
- ``"fast"``: ``lstm_from_scratch/fast/``, the same net rearranged for speed (its module docstring
  lists each idea), and with ``processes=2`` each batch split between two processes.

Both have the same layers, parameter names and checkpoints, and compute the same numbers to
rounding, so a checkpoint trained with one loads into the other. The Python API and the tutorials
default to the plain engine; the ``lstm-music`` command defaults to the fast one, since people who
run it want music sooner.
"""
import numpy as np

from .errors import LstmMusicError

ENGINES = ("plain", "fast")


class EngineError(LstmMusicError, ValueError):
    """An engine name or option that does not exist."""


def check_engine(engine, processes=1):
    """Raise ``EngineError`` unless ``engine`` is "plain" or "fast", and ``processes`` is 1 or 2 (2 with
    the fast engine only)."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if isinstance(processes, bool) or processes not in (1, 2):
        raise EngineError(f"processes must be 1 or 2, got {processes!r}")
    if processes == 2 and engine != "fast":
        raise EngineError("two processes are a fast-engine idea; the plain engine trains in one")


def model_class(engine):
    """``nn.model.Model`` for "plain", ``fast.FastModel`` for "fast"."""
    check_engine(engine)
    if engine == "plain":
        from .nn.model import Model
        return Model
    from .fast import FastModel
    return FastModel


def make_model(config, engine="plain", dtype=np.float32, seed=0):
    """A model of ``engine`` built from ``config`` (see ``nn/config.py``); the same initial weights
    for the same ``seed`` whichever the engine."""
    return model_class(engine)(config, dtype=dtype, seed=seed)


def describe(engine, processes=1):
    """One line saying which engine computes, for people: what ``lstm-music`` prints first."""
    if engine == "plain":
        return "engine: plain (nn/lstm.py, the code the tutorials teach; --engine fast is faster)"
    helper = ", each batch in 2 processes" if processes == 2 else ""
    return f"engine: fast (fast/lstm.py{helper}; --engine plain runs nn/lstm.py, the code the tutorials teach)"
