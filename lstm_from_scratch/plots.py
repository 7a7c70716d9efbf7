"""Figures: loss curves, an optimizer comparison, a piano roll, and LSTM gate activations.

Every function draws one small PNG (about 8 x 4 inches at 100 dpi, readable on a README page) and returns
its path. We build a ``matplotlib.figure.Figure`` and render it with the Agg canvas directly instead of
using ``pyplot``: pyplot keeps a global list of open figures and picks a GUI backend, which leaks memory
in long runs and breaks on machines with no display. A plain ``Figure`` is freed like any object.

Files are written atomically: rendered to a temporary file in the same folder, then moved into place, so a
crash never leaves half a PNG where a README expects a picture.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lstm_from_scratch.atomic import atomic_write
from lstm_from_scratch.errors import LstmMusicError

WIDTH, HEIGHT, DPI = 8.0, 4.0, 100
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# The gates in PyTorch's order, then the cell state and hidden state; what each one's values can be.
GATE_ORDER = ("i", "f", "g", "o", "c", "h")
GATE_TITLES = {
    "i": "input gate i (0..1)", "f": "forget gate f (0..1)", "g": "cell candidate g (-1..1)",
    "o": "output gate o (0..1)", "c": "cell state c", "h": "hidden state h (-1..1)",
}


class PlotError(LstmMusicError):
    """A figure cannot be drawn from the data given, or cannot be written."""


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific pitch name: 60 -> ``"C4"`` (middle C), 69 -> ``"A4"``, 61 -> ``"C#4"``."""
    pitch = int(pitch)
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _new_figure(width: float = WIDTH, height: float = HEIGHT) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas: Agg renders to pixels, no display needed
    return figure


def _save(figure: Figure, path) -> Path:
    """Render ``figure`` as PNG to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    try:
        atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=DPI))
    except OSError as error:
        raise PlotError(f"cannot write figure {path}: {error.strerror or error}") from None
    return path


def _empty_note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="gray")


def _series(history: list[dict], key: str, x_key: str = "epoch") -> tuple[list, list]:
    """The ``(x, y)`` points of ``key`` over the history, leaving out epochs where it is ``None``."""
    xs, ys = [], []
    for position, entry in enumerate(history):
        value = entry.get(key)
        x = entry.get(x_key, position + 1 if x_key == "epoch" else None)
        if value is not None and x is not None:
            xs.append(x)
            ys.append(value)
    return xs, ys


def plot_loss_curves(history: list[dict], path, baseline=None, title: str | None = None) -> Path:
    """Training and validation loss per epoch, and validation accuracy when there is any.

    - ``history``: one dict per epoch with ``"epoch"``, ``"train_loss"``, ``"val_loss"`` and
      ``"val_accuracy"`` (and optionally ``"train_accuracy"``); the validation values may be ``None``
      (no validation pieces).
    - ``baseline``: optional. A float (a loss drawn as a dotted line), or the dict returned by
      ``data.unigram_baseline``, whose ``"cross_entropy"`` and ``"accuracy"`` are drawn as dotted lines:
      the score of a model that only knows how often each token occurs. A net that learned anything
      about context ends below (loss) and above (accuracy) them.
    """
    history = list(history)
    if isinstance(baseline, dict):
        base_loss, base_accuracy = baseline.get("cross_entropy"), baseline.get("accuracy")
    else:
        base_loss, base_accuracy = baseline, None
    accuracy = _series(history, "val_accuracy")
    figure = _new_figure()
    if accuracy[0]:
        loss_axes, accuracy_axes = figure.subplots(1, 2)
    else:
        loss_axes, accuracy_axes = figure.subplots(1, 1), None

    loss_axes.plot(*_series(history, "train_loss"), "-o", markersize=3, label="training")
    loss_axes.plot(*_series(history, "val_loss"), "--o", markersize=3, label="validation")
    if base_loss is not None:
        loss_axes.axhline(base_loss, color="gray", linestyle=":", label="unigram baseline")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss")
    loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if not history:
        _empty_note(loss_axes, "no epochs yet")
    loss_axes.legend(fontsize="small")
    loss_axes.grid(alpha=0.3)

    if accuracy_axes is not None:
        train_accuracy = _series(history, "train_accuracy")
        if train_accuracy[0]:
            accuracy_axes.plot(*train_accuracy, "-o", markersize=3, color="C0", label="training")
        accuracy_axes.plot(*accuracy, "--o", markersize=3, color="C1", label="validation")
        if base_accuracy is not None:
            accuracy_axes.axhline(base_accuracy, color="gray", linestyle=":",
                                  label="most frequent token")
        accuracy_axes.set(xlabel="epoch", ylabel="next-token accuracy", title="accuracy")
        accuracy_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        accuracy_axes.legend(fontsize="small")
        accuracy_axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_optimizer_comparison(histories: dict[str, list[dict]], path, title: str | None = None) -> Path:
    """Two panels comparing optimizers: loss per epoch, and loss against wall-clock seconds.

    ``histories`` maps an optimizer's name to its history (see ``plot_loss_curves``); each epoch's
    ``"elapsed"`` is the seconds since training started. One colour per optimizer; training loss solid,
    validation loss dashed. Per epoch shows which optimizer learns most from the same data; per second
    shows which one gets there first (Adam's extra arithmetic per step costs time).
    """
    figure = _new_figure()
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    for number, (name, history) in enumerate(histories.items()):
        colour = f"C{number % 10}"
        for axes, x_key in ((by_epoch, "epoch"), (by_time, "elapsed")):
            axes.plot(*_series(history, "train_loss", x_key), "-", color=colour, label=name)
            axes.plot(*_series(history, "val_loss", x_key), "--", color=colour)
    by_epoch.set(xlabel="epoch", ylabel="cross-entropy (nats)", title="loss per epoch")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_time.set(xlabel="seconds", title="loss against time")
    if not histories:
        _empty_note(by_epoch, "no runs")
    # Colours name the optimizers; two grey proxy lines explain the line styles.
    handles, _ = by_epoch.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", linestyle="-", label="training"),
                Line2D([], [], color="gray", linestyle="--", label="validation")]
    by_epoch.legend(handles=handles, fontsize="small")
    for axes in (by_epoch, by_time):
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _note_fields(note) -> tuple[float, float, int, int]:
    """``(start, end, pitch, velocity)`` from a ``Note``-like object or a plain 4-tuple."""
    if hasattr(note, "pitch"):
        return note.start, note.end, note.pitch, note.velocity
    start, end, pitch, velocity = note
    return start, end, pitch, velocity


def plot_piano_roll(notes, path, title: str | None = None, pedal=None) -> Path:
    """Notes as horizontal bars: time in seconds across, pitch up, loudness as colour.

    ``notes`` holds objects with ``start``, ``end`` (seconds), ``pitch`` and ``velocity`` (0..127), such
    as ``events.Note``, or plain ``(start, end, pitch, velocity)`` tuples. The pitch axis is labelled at
    every C (``C4`` is middle C, MIDI 60).

    ``pedal``: optional ``(start, end)`` spans in seconds when the sustain pedal is down (from
    ``events.midi_to_pedal`` or ``events.chunks_to_pedal``), drawn as a band in a row of its own
    under the notes (no spans, no row). The bars show when keys are down; the band shows why some
    notes ring longer.
    """
    rows = np.array([_note_fields(note) for note in notes], dtype=float).reshape(-1, 4)
    spans = np.array([(float(start), float(end)) for start, end in (pedal or [])], dtype=float).reshape(-1, 2)
    figure = _new_figure()
    axes = figure.subplots()
    axes.set(xlabel="time (seconds)", ylabel="pitch", title=title or "piano roll")
    if len(rows) == 0:
        _empty_note(axes, "no notes")
        return _save(figure, path)
    start, end, pitch, velocity = rows.T
    # One PolyCollection of rectangles draws thousands of notes far faster than one bar per note.
    corners = np.stack([
        np.stack([start, pitch - 0.4], axis=1), np.stack([end, pitch - 0.4], axis=1),
        np.stack([end, pitch + 0.4], axis=1), np.stack([start, pitch + 0.4], axis=1),
    ], axis=1)  # (notes, 4 corners, xy)
    bars = PolyCollection(corners, array=velocity, cmap=colormaps["viridis"],
                          norm=Normalize(0, 127), edgecolors="none")
    axes.add_collection(bars)
    low, high = int(pitch.min()) - 1, int(pitch.max()) + 1
    bottom = low - 0.5
    right = max(end.max(), start.min() + 1e-3)
    c_pitches = [p for p in range(low, high + 1) if p % 12 == 0] or [int(round(pitch.mean()))]
    labels = [note_name(p) for p in c_pitches]
    if len(spans):
        # The band's row sits two rows under the lowest note, with a gap so it never reads as a note.
        band = low - 2
        bottom = band - 0.5
        axes.broken_barh([(s, e - s) for s, e in spans], (band - 0.35, 0.7), color="0.55")
        right = max(right, spans[:, 1].max())
        c_pitches, labels = [band] + c_pitches, ["pedal"] + labels
    axes.set_xlim(min(0.0, start.min()), right)
    axes.set_ylim(bottom, high + 0.5)
    axes.set_yticks(c_pitches, labels)
    axes.grid(axis="y", alpha=0.3)
    figure.colorbar(bars, ax=axes, label="velocity")
    return _save(figure, path)


def lstm_gate_arrays(layer, sequence: int = 0) -> dict[str, np.ndarray]:
    """The arrays ``plot_gate_activations`` wants, taken from an LSTM layer after its ``forward``.

    ``layer`` is an ``nn.lstm.LSTM`` (any object with ``gates`` ``(T, B, 4H)`` in the order i, f, g, o,
    and ``cs``, ``hs`` ``(T, B, H)``). Returns ``{"i", "f", "g", "o", "c", "h"}`` -> ``(T, H)`` for the
    sequence number ``sequence`` of the batch. (Read by attribute, so this file never imports ``nn``.)
    """
    gates = np.asarray(layer.gates)[:, sequence]  # (T, 4H)
    hidden = gates.shape[1] // 4
    arrays = {name: gates[:, k * hidden:(k + 1) * hidden] for k, name in enumerate("ifgo")}
    arrays["c"] = np.asarray(layer.cs)[:, sequence]
    arrays["h"] = np.asarray(layer.hs)[:, sequence]
    return arrays


def plot_gate_activations(gates: dict, path, tokens=None, title: str | None = None) -> Path:
    """Heatmaps of an LSTM's gates over time, one panel per gate: time across, hidden unit down.

    - ``gates``: name -> array ``(T, H)`` for one sequence, e.g. ``{"i", "f", "g", "o", "c", "h"}``
      (PyTorch's gate order, then the cell and hidden state). Known names are drawn in that order,
      others after them.
    - ``tokens``: optional ``T`` labels for the time axis (the chunks fed in); shown when ``T`` is small.

    The gates i, f, o are sigmoids, coloured on 0..1; g and h are tanh, on -1..1; c is unbounded and is
    coloured symmetrically around 0. A forget gate near 1 means the unit keeps its memory.
    """
    if not gates:
        raise PlotError("no gate activations to plot: gates is empty")
    arrays = {name: np.asarray(values, dtype=float) for name, values in gates.items()}
    for name, values in arrays.items():
        if values.ndim != 2:
            raise PlotError(f"gate {name!r} must have shape (T, H), got {values.shape}")
    lengths = {values.shape[0] for values in arrays.values()}
    if len(lengths) != 1:
        raise PlotError(f"all gates must cover the same number of steps T, got {sorted(lengths)}")
    steps = lengths.pop()
    if tokens is not None and len(tokens) != steps:
        raise PlotError(f"got {len(tokens)} token labels for {steps} time steps")
    names = [n for n in GATE_ORDER if n in arrays] + [n for n in arrays if n not in GATE_ORDER]

    figure = _new_figure(WIDTH, min(1.0 + 1.1 * len(names), 9.0))
    panels = np.atleast_1d(figure.subplots(len(names), 1, sharex=True))
    for axes, name in zip(panels, names):
        values = arrays[name].T  # (H, T): hidden units down, time across
        if name in ("i", "f", "o"):
            low, high, cmap = 0.0, 1.0, "viridis"
        else:
            limit = 1.0 if name in ("g", "h") else max(float(np.abs(values).max()), 1e-6)
            low, high, cmap = -limit, limit, "RdBu_r"
        image = axes.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap,
                            vmin=low, vmax=high)
        axes.set_ylabel("unit", fontsize="small")
        axes.set_title(GATE_TITLES.get(name, name), fontsize="small", loc="left")
        figure.colorbar(image, ax=axes, pad=0.01)
    panels[-1].set_xlabel("time step")
    if tokens is not None and steps <= 40:
        panels[-1].set_xticks(range(steps), [str(t) for t in tokens], rotation=90, fontsize=6)
    if title:
        figure.suptitle(title)
    return _save(figure, path)
