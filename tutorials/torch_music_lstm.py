"""lstm_from_scratch's model, rebuilt in PyTorch from an export (tutorial 12).

This file needs PyTorch and NumPy only; lstm_from_scratch never imports it. Copy it next to your own
PyTorch code and carry on there.

- ``load("model.npz")`` reads what ``lstm-music export CHECKPOINT -o model.npz`` writes (the weights,
  and the architecture in ``model.json``) and returns ``(net, architecture)``;
- ``net(ids, state)``: ids ``(T, B)`` int64 -> logits ``(T, B, V)`` (or ``(B, V)`` for a model whose
  config has ``"output": "last"``) and the new state, one ``(h, c)`` per LSTM, each ``(1, B, H)``;
- ``generate(net, prime_ids, length, temperature, rng)`` writes new ids with the roulette wheel of
  ``lstm_from_scratch.generate``: the same seed and prime give the same piece;
- ``save(net, architecture, "tuned.npz")`` writes the two files back, for ``lstm-music import``.

Shapes are time-major (T, B, ...), as in lstm_from_scratch, which is also ``nn.LSTM``'s default.
"""
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class MusicLSTM(nn.Module):
    """The layers listed in an export's JSON, in order, in ``self.layers`` (so the weights are named
    ``layers.<j>.<name>``, as in the export's .npz)."""

    def __init__(self, layers):
        super().__init__()
        self.specs = layers
        self.layers = nn.ModuleList(make_layer(spec) for spec in layers)
        for spec, layer in zip(self.specs, self.layers):
            if spec["type"] == "lstm":
                # lstm_from_scratch's LSTM has one bias, b = bias_ih + bias_hh. Freezing bias_hh (at 0)
                # keeps it that way: trained, the two would move together, twice as far as one bias.
                layer.bias_hh_l0.requires_grad_(False)

    def forward(self, ids, state=None):
        """ids (T, B) int64 -> (logits (T, B, V) or (B, V), [(h, c) per LSTM, each (1, B, H)])."""
        x, new_state = ids, []
        for spec, layer in zip(self.specs, self.layers):
            kind = spec["type"]
            if kind == "one_hot":  # onehot(ids) @ W equals W[ids]: lstm_from_scratch gathers rows instead
                x = F.one_hot(x, spec["num_classes"]).to(next(self.parameters()).dtype)
            elif kind == "lstm":
                x, (h, c) = layer(x, None if state is None else state[len(new_state)])
                new_state.append((h, c))
            elif kind == "linear":
                x = layer(x)
                x = torch.relu(x) if spec["activation"] == "relu" else x
                x = torch.tanh(x) if spec["activation"] == "tanh" else x
            elif kind == "last_step":
                x = x[-1]
            else:  # embedding, dropout
                x = layer(x)
        return x, new_state


def make_layer(spec):
    """One PyTorch layer from its spec in the export's JSON."""
    kind = spec["type"]
    if kind == "embedding":
        return nn.Embedding(spec["num_embeddings"], spec["embedding_dim"])
    if kind == "lstm":
        return nn.LSTM(spec["input_size"], spec["hidden_size"])  # time-major: (T, B, D) in
    if kind == "linear":
        return nn.Linear(spec["in_features"], spec["out_features"])
    if kind == "dropout":
        return nn.Dropout(spec["p"])
    if kind in ("one_hot", "last_step"):
        return nn.Identity()  # no weights; forward does the work
    raise ValueError(f"unknown layer type {kind!r}")


def load(path):
    """``(net, architecture)`` from an export: ``path`` is the .npz, its .json sits beside it."""
    path = Path(path)
    architecture = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    net = MusicLSTM(architecture["layers"]).to(getattr(torch, architecture["dtype"]))
    with np.load(path, allow_pickle=False) as weights:
        net.load_state_dict({name: torch.from_numpy(weights[name]) for name in weights.files})
    return net.eval(), architecture  # eval: dropout off until you call net.train()


def save(net, architecture, path):
    """Write ``net``'s weights to ``path`` (.npz) and ``architecture`` beside it (.json)."""
    path = Path(path)
    np.savez(path, **{name: value.detach().cpu().numpy() for name, value in net.state_dict().items()})
    dtype = str(next(net.parameters()).dtype).removeprefix("torch.")
    text = json.dumps({**architecture, "weights": path.name, "dtype": dtype}, indent=1)
    path.with_suffix(".json").write_text(text, encoding="utf-8")


def roulette_wheel(probs, rng):
    """Index i with probability probs[i] / sum(probs): lstm_from_scratch.generate.roulette_wheel."""
    edges = np.cumsum(probs)
    index = int(np.searchsorted(edges, rng.random() * edges[-1], side="right"))
    return index if index < len(probs) else int(np.flatnonzero(probs > 0)[-1])


@torch.no_grad()
def generate(net, prime_ids, length, temperature=1.0, rng=None):
    """``length`` new ids after ``prime_ids`` (a list of ids), at batch 1, dropout off."""
    rng = np.random.default_rng() if rng is None else rng
    was_training, device = net.training, next(net.parameters()).device
    net.eval()
    logits, state = net(torch.tensor([prime_ids], device=device).T)  # the prime as (P, 1), in one call
    new_ids = []
    for _ in range(length):
        last = (logits[-1] if logits.dim() == 3 else logits)[0].double()  # (V,)
        if temperature <= 1e-6:  # (lstm_from_scratch's MIN_TEMPERATURE): the argmax
            token = int(last.argmax())
        else:
            token = roulette_wheel(torch.softmax(last / temperature, dim=0).cpu().numpy(), rng)
        new_ids.append(token)
        logits, state = net(torch.tensor([[token]], device=device), state)
    net.train(was_training)
    return new_ids
