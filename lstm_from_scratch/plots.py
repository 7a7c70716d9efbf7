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


def _save(figure: Figure, path):
    """Render ``figure`` as PNG to ``path`` atomically (temp file in the same folder, then rename).

    ``path`` may also be an open binary file, such as ``io.BytesIO`` (the report keeps its pictures
    in memory and puts them inside the page); then the PNG is written to it and it is returned.
    """
    if hasattr(path, "write"):
        figure.savefig(path, format="png", dpi=DPI)
        return path
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


def plot_piano_roll(notes, path, title: str | None = None, pedal=None, *, width: float = WIDTH,
                    height: float = HEIGHT, shade=None) -> Path:
    """Notes as horizontal bars: time in seconds across, pitch up, loudness as colour.

    ``notes`` holds objects with ``start``, ``end`` (seconds), ``pitch`` and ``velocity`` (0..127), such
    as ``events.Note``, or plain ``(start, end, pitch, velocity)`` tuples. The pitch axis is labelled at
    every C (``C4`` is middle C, MIDI 60). ``width`` and ``height`` are in inches; ``shade``, optional,
    is ``(start, end, label)``: a grey band over those seconds, labelled (the report marks a prime).

    ``pedal``: optional ``(start, end)`` spans in seconds when the sustain pedal is down (from
    ``events.midi_to_pedal`` or ``events.chunks_to_pedal``), drawn as a band in a row of its own
    under the notes (no spans, no row). The bars show when keys are down; the band shows why some
    notes ring longer.
    """
    rows = np.array([_note_fields(note) for note in notes], dtype=float).reshape(-1, 4)
    spans = np.array([(float(start), float(end)) for start, end in (pedal or [])], dtype=float).reshape(-1, 2)
    figure = _new_figure(width, height)
    axes = figure.subplots()
    axes.set(xlabel="time (seconds)", ylabel="pitch", title=title or "piano roll")
    if shade is not None:
        start, end, label = shade
        axes.axvspan(start, end, color="0.88", zorder=0)
        axes.text(start, 1.0, f" {label}", transform=axes.get_xaxis_transform(), va="top",
                  ha="left", color="0.3", fontsize="small")
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


# ----------------------------------------------------------------------------------------------
# The run report's figures (report.py puts them inside report.html)
# ----------------------------------------------------------------------------------------------

def best_record(history: list[dict]):
    """The record with the lowest validation loss (training loss when there is no validation)."""
    key = "val_loss" if any(entry.get("val_loss") is not None for entry in history) else "train_loss"
    scored = [entry for entry in history if entry.get(key) is not None]
    return (min(scored, key=lambda entry: entry[key]), key) if scored else (None, key)


def plot_learning_curves(history: list[dict], path, baseline=None, title: str | None = None) -> Path:
    """Training and validation loss against epochs and against seconds, the best checkpoint marked.

    ``history`` is as for ``plot_loss_curves`` (each record's ``"elapsed"`` is the seconds of training
    so far); ``baseline`` a loss (float) or ``data.unigram_baseline``'s dict, drawn dotted. The star
    is the epoch saved as ``best.npz``: the lowest validation loss (training loss without validation).
    """
    history = list(history)
    if isinstance(baseline, dict):
        baseline = baseline.get("cross_entropy")
    best, best_key = best_record(history)
    figure = _new_figure(WIDTH * 1.25, HEIGHT)
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    for axes, x_key, x_label in ((by_epoch, "epoch", "epoch"), (by_time, "elapsed", "seconds of training")):
        axes.plot(*_series(history, "train_loss", x_key), "-o", markersize=4, label="training")
        axes.plot(*_series(history, "val_loss", x_key), "--o", markersize=4, label="validation")
        if baseline is not None:
            axes.axhline(baseline, color="gray", linestyle=":", label="unigram baseline")
        if best is not None and best.get(x_key) is not None:
            axes.plot([best[x_key]], [best[best_key]], "*", color="C3", markersize=16, zorder=5,
                      label=f"best.npz (epoch {best['epoch']})")
        axes.set(xlabel=x_label)
        axes.grid(alpha=0.3)
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set(ylabel="cross-entropy (nats)", title="loss per epoch")
    by_time.set(title="loss against time")
    if not history:
        _empty_note(by_epoch, "no epochs yet")
    by_epoch.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _short_pitch_labels():
    """C, D, E, F, G, A, B written, the sharps left blank: twelve labels that fit a narrow panel."""
    return [name if len(name) == 1 else "" for name in NOTE_NAMES]


def plot_pitch_class_histograms(histograms: dict, corpus, path, distances: dict | None = None,
                                colours: dict | None = None) -> Path:
    """One small panel per piece: its pitch-class histogram over the corpus's (grey).

    ``histograms``: label -> ``(12,)`` shares (C first); ``corpus`` ``(12,)``; ``distances``: label ->
    a number written under the label (the report gives ``stats.key_free_distance``); ``colours``:
    label -> a matplotlib colour.
    """
    if not histograms:
        raise PlotError("no pitch-class histograms to plot")
    labels = list(histograms)
    figure = _new_figure(WIDTH * 1.25, 2.8)
    panels = np.atleast_1d(figure.subplots(1, len(labels), sharey=True))
    positions = np.arange(12)
    for number, (axes, label) in enumerate(zip(panels, labels)):
        colour = (colours or {}).get(label, f"C{number % 10}")
        axes.bar(positions, corpus, width=0.9, color="0.82", label="training pieces")
        axes.bar(positions, histograms[label], width=0.45, color=colour, label="this piece")
        axes.set_xticks(positions, _short_pitch_labels())
        heading = label if distances is None else f"{label}\ndistance {distances[label]:.2f}"
        axes.set_title(heading, fontsize="medium")
        axes.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("share of notes")
    panels[0].legend(fontsize="x-small", loc="upper left")
    return _save(figure, path)


def plot_statistic_strips(pieces: dict, corpus: list, labels: dict, path, colours: dict | None = None) -> Path:
    """One small panel per statistic: each training piece a grey dot, each other piece a coloured one.

    ``pieces``: label -> {statistic key: value} for the pieces to compare (generated ones, say);
    ``corpus``: a list of such dicts, one per training piece; ``labels``: statistic key -> its title
    (the panels, in this order). NaN values are left out. The grey band spans the training pieces'
    range, so a coloured dot outside it is unlike every piece the net learned from.
    """
    keys = list(labels)
    if not keys:
        raise PlotError("no statistics to plot")
    columns = 4
    rows = -(-len(keys) // columns)
    figure = _new_figure(WIDTH * 1.25, 2.6 * rows)
    panels = np.atleast_1d(figure.subplots(rows, columns)).reshape(-1)
    names = list(pieces)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(corpus))  # fixed: the same picture every time
    for axes, key in zip(panels, keys):
        values = np.array([entry.get(key, np.nan) for entry in corpus], dtype=float)
        known = np.isfinite(values)
        if known.any():
            axes.axhspan(values[known].min(), values[known].max(), color="0.9", zorder=0)
            axes.scatter(jitter[known], values[known], s=18, color="0.45", zorder=2)
        for number, name in enumerate(names, start=1):
            value = pieces[name].get(key, np.nan)
            if np.isfinite(value):
                colour = (colours or {}).get(name, f"C{(number - 1) % 10}")
                axes.scatter([number], [value], s=70, color=colour, edgecolors="black", zorder=3)
        axes.set_xticks(range(len(names) + 1), ["training"] + names, rotation=40, ha="right",
                        fontsize="small")
        axes.set_xlim(-0.6, len(names) + 0.6)
        axes.set_title(labels[key], fontsize="medium")
        axes.grid(axis="y", alpha=0.3)
    for axes in panels[len(keys):]:
        axes.set_visible(False)
    return _save(figure, path)


def chunk_notes(events) -> list[tuple[int, int, int, int]]:
    """Parsed chunks -> notes counted in chunks: ``(on, off, pitch, velocity)``, the index of the
    note-on chunk and of the chunk that ends it (``len(events)`` if none does).

    ``events`` is a list of ``(delta, is_on, pitch, velocity)``, with ``None`` in the place of a chunk
    that is not a note, a tempo or pedal chunk (``events.note_events``); a note-on of velocity 0 is a
    note-off, and a note-on of a sounding pitch ends that note first.
    """
    sounding, notes = {}, []
    for index, event in enumerate(events):
        if event is None:
            continue
        _, is_on, pitch, velocity = event
        if pitch in sounding:
            on, on_velocity = sounding.pop(pitch)
            notes.append((on, index, pitch, on_velocity))
        if is_on and velocity > 0:
            sounding[pitch] = (index, velocity)
    notes += [(on, len(events), pitch, velocity) for pitch, (on, velocity) in sounding.items()]
    return sorted(notes)


def _draw_chunk_roll(axes, events, marks=None, cmap=None, norm=None):
    """A piano roll counted in chunks on ``axes``: a grey bar per note from its note-on chunk to its
    note-off chunk, a triangle per event (up: note-on, down: note-off), coloured by ``marks`` (T,)
    through ``cmap`` when given. Returns the (low, high) pitches drawn."""
    notes = chunk_notes(events)
    for on, off, pitch, _ in notes:
        axes.add_patch(_bar(on, off, pitch))
    steps = np.arange(len(events))
    notes_here = np.array([event is not None for event in events], dtype=bool)  # not tempo or pedal
    pitches = np.array([np.nan if event is None else event[2] for event in events], dtype=float)
    is_on = np.array([event is not None and event[1] and event[3] > 0 for event in events], dtype=bool)
    for kind, marker in ((is_on, "^"), (notes_here & ~is_on, "v")):
        if marks is None:
            axes.scatter(steps[kind], pitches[kind], marker=marker, s=36, color="C0", zorder=3)
        else:
            axes.scatter(steps[kind], pitches[kind], marker=marker, s=70, c=np.asarray(marks)[kind],
                         cmap=cmap, norm=norm, edgecolors="0.3", linewidths=0.4, zorder=3)
    low, high = (int(np.nanmin(pitches)), int(np.nanmax(pitches))) if notes_here.any() else (60, 60)
    return low, high


def _bar(on, off, pitch):
    from matplotlib.patches import Rectangle
    return Rectangle((on, pitch - 0.35), max(off - on, 0.3), 0.7, color="0.8", zorder=1)


def _pitch_ticks(axes, low, high):
    axes.set_ylim(low - 2, high + 2)
    c_pitches = [p for p in range(low - 1, high + 2) if p % 12 == 0] or [low]
    axes.set_yticks(c_pitches, [note_name(p) for p in c_pitches])


def plot_gates_over_chunks(gates: dict, events, path, title: str | None = None) -> Path:
    """The notes an LSTM read, and its gates and cell state at each chunk, one panel each.

    - ``gates``: name -> ``(T, H)`` for one sequence (``lstm_gate_arrays``), drawn in the order given;
      the gates i, f, o on 0..1, anything else (the cell state c) symmetrically around 0.
    - ``events``: the T chunks read, parsed (``(delta, is_on, pitch, velocity)``); drawn on top as a
      piano roll counted in chunks, so each column of every heatmap sits under the chunk it read.
    """
    if not gates:
        raise PlotError("no gate activations to plot: gates is empty")
    arrays = {name: np.asarray(values, dtype=float) for name, values in gates.items()}
    steps = {values.shape[0] for values in arrays.values()} | {len(events)}
    if len(steps) != 1 or any(values.ndim != 2 for values in arrays.values()):
        raise PlotError(f"gates must be (T, H) arrays and events T long, got "
                        f"{[values.shape for values in arrays.values()]} and {len(events)} events")
    T = steps.pop()
    figure = _new_figure(WIDTH * 1.25, 1.9 + 1.5 * len(arrays))
    grid = figure.add_gridspec(len(arrays) + 1, 2, width_ratios=[60, 1], height_ratios=[1.4] + [1] * len(arrays))
    roll = figure.add_subplot(grid[0, 0])
    low, high = _draw_chunk_roll(roll, events)
    _pitch_ticks(roll, low, high)
    roll.set_xlim(-0.5, T - 0.5)
    roll.set_title("the chunks read (\u25b2 note-on, \u25bc note-off)", fontsize="medium", loc="left")
    roll.tick_params(labelbottom=False)
    axes = roll
    for row, (name, values) in enumerate(arrays.items(), start=1):
        axes = figure.add_subplot(grid[row, 0], sharex=roll)
        heading = GATE_TITLES.get(name, name)
        if name in ("i", "f", "o"):
            low_value, high_value, cmap = 0.0, 1.0, "viridis"
        else:
            # A cell state is unbounded, and a few units that count up to large values would leave
            # every other unit white: the colours stop at the 98th percentile of |value|.
            limit = max(float(np.percentile(np.abs(values), 98)), 1e-6)
            low_value, high_value, cmap = -limit, limit, "RdBu_r"
            heading += f" (colours stop at \u00b1{limit:.2g})"
        image = axes.imshow(values.T, aspect="auto", interpolation="nearest", cmap=cmap,
                            vmin=low_value, vmax=high_value, extent=(-0.5, T - 0.5, values.shape[1] - 0.5, -0.5))
        axes.set_title(heading, fontsize="medium", loc="left")
        axes.set_ylabel(f"{values.shape[1]} units")
        axes.set_yticks([])  # rows are units in the caller's order, not unit numbers
        figure.colorbar(image, cax=figure.add_subplot(grid[row, 1]))
        if row < len(arrays):
            axes.tick_params(labelbottom=False)
    axes.set_xlabel("chunk number")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_chunk_saliency(events, sizes, target, path, title: str | None = None) -> Path:
    """Which earlier chunks drove one prediction: the chunks read, coloured by gradient size.

    - ``events``: the T chunks read, parsed (``(delta, is_on, pitch, velocity)``);
    - ``sizes``: ``(T,)``, the size of the gradient at each chunk (``saliency.gradient_sizes``); drawn
      relative to the largest;
    - ``target``: ``(parsed chunk, probability)``, the chunk that came next, starred at step T.

    Top: a piano roll counted in chunks, each event coloured by its size. Bottom: the sizes as bars.
    """
    sizes = np.asarray(sizes, dtype=float)
    if sizes.shape != (len(events),) or len(events) == 0:
        raise PlotError(f"need one gradient size per chunk read: {len(events)} chunks, sizes {sizes.shape}")
    relative = sizes / sizes.max() if sizes.max() > 0 else sizes
    cmap, norm = colormaps["magma_r"], Normalize(0, 1)
    figure = _new_figure(WIDTH * 1.25, 4.6)
    roll, bars = figure.subplots(2, 1, sharex=True, height_ratios=[1.6, 1])
    low, high = _draw_chunk_roll(roll, events, relative, cmap, norm)
    (_, is_on, pitch, velocity), probability = target
    T = len(events)
    roll.scatter([T], [pitch], marker="*", s=260, color="C2", edgecolors="black", zorder=4)
    kind = "note-on" if is_on and velocity > 0 else "note-off"
    _pitch_ticks(roll, min(low, pitch), max(high, pitch))
    roll.set_title("the chunks read, coloured by gradient size",
                   fontsize="medium", loc="left")
    # Above the axes, where no note can hide it: the chunk predicted (the star) and its probability.
    roll.set_title(f"\u2605 next: {kind} {note_name(pitch)}, p = {probability:.2g}", fontsize="medium",
                   loc="right", color="C2")
    bars.bar(np.arange(T), relative, width=0.8, color=cmap(norm(relative)), edgecolor="0.3", linewidth=0.4)
    bars.set(xlabel="chunk number", ylabel="gradient size\n(largest = 1)", ylim=(0, 1.05))
    bars.set_xlim(-0.8, T + 0.8)
    bars.grid(axis="y", alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_memory_horizon(mean_sizes, path, window: int | None = None, title: str | None = None) -> Path:
    """How far back the net looks: the mean gradient size at each distance back from the prediction.

    ``mean_sizes`` ``(L,)``: entry k is the size of the gradient at the chunk k steps before the last
    chunk read (0 = the last), relative to the largest of its prediction, averaged over predictions.
    ``window``: the training windows' length, drawn as a dotted line: backpropagation through time
    never reached further back than that while training.
    """
    mean_sizes = np.asarray(mean_sizes, dtype=float)
    figure = _new_figure(WIDTH * 1.25, 3.2)
    axes = figure.subplots()
    axes.plot(np.arange(len(mean_sizes)), mean_sizes, "-o", markersize=4, color="C4")
    if window is not None:
        axes.axvline(window, color="gray", linestyle=":", label=f"training window ({window} chunks)")
        axes.legend(fontsize="small")
    axes.set(xlabel="chunks back from the prediction", ylabel="mean gradient size\n(largest = 1)",
             ylim=(0, 1.05))
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title, fontsize="medium")
    return _save(figure, path)
