"""The neural net, in pure NumPy: the plain engine, the code the tutorials teach. It knows nothing of music.

- ``lstm``: the LSTM layer (forward over a sequence, backpropagation through time);
- ``layers``: OneHot, Embedding, Dense, Dropout, LastStep;
- ``losses``: softmax, log-softmax, softmax cross-entropy;
- ``config``: a model as a JSON config, checked, and the presets;
- ``model``: a stack of layers built from a config, its forward, backward and loss;
- ``optim``: SGD, Adam, RMSprop and gradient clipping;
- ``gradcheck``: numerical gradients and relative errors, for tests and tutorials.

``lstm_from_scratch/fast/`` builds a faster engine on top of this one; nothing here imports it.
"""
from .config import PRESET_TRAINING, PRESETS, ModelConfigError, preset_config
from .layers import Dense, Dropout, Embedding, LastStep, OneHot
from .losses import log_softmax, softmax, softmax_cross_entropy
from .lstm import LSTM
from .model import Model
from .optim import SGD, Adam, RMSprop, clip_grad_norm, make_optimizer

__all__ = [
    "LSTM", "Dense", "Dropout", "Embedding", "OneHot", "LastStep", "Model",
    "softmax", "log_softmax", "softmax_cross_entropy", "PRESETS", "PRESET_TRAINING", "preset_config",
    "ModelConfigError", "SGD", "Adam", "RMSprop", "clip_grad_norm", "make_optimizer",
]
