"""Tests for plots.py: every figure writes a real PNG, copes with missing data, and leaves no pyplot state."""
import os
import subprocess
import sys
import textwrap
from collections import namedtuple

import numpy as np
import pytest

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.plots import (
    PlotError,
    note_name,
    plot_gate_activations,
    plot_loss_curves,
    plot_optimizer_comparison,
    plot_piano_roll,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
Note = namedtuple("Note", "start end pitch velocity")  # a stand-in for events.Note


def assert_png(path):
    with open(path, "rb") as file:
        head = file.read(8)
    assert head == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000
    # Atomic write: nothing but the finished PNG is left in the folder.
    assert [name for name in os.listdir(os.path.dirname(path)) if "tmp" in name] == []


def history(epochs=4, with_validation=True, elapsed_per_epoch=1.5):
    return [{"epoch": e, "train_loss": 3.0 / e, "elapsed": e * elapsed_per_epoch,
             "val_loss": 3.2 / e if with_validation else None,
             "val_accuracy": 0.1 * e if with_validation else None} for e in range(1, epochs + 1)]


def test_note_names():
    assert note_name(60) == "C4" and note_name(69) == "A4" and note_name(61) == "C#4"
    assert note_name(0) == "C-1" and note_name(127) == "G9"


def test_loss_curves_with_and_without_validation(tmp_path):
    baseline = {"cross_entropy": 2.5, "accuracy": 0.12}
    assert_png(plot_loss_curves(history(), tmp_path / "loss.png", baseline=baseline, title="demo"))
    assert_png(plot_loss_curves(history(with_validation=False), tmp_path / "train_only.png",
                                baseline=2.5))
    assert_png(plot_loss_curves([], tmp_path / "empty.png"))


def test_optimizer_comparison(tmp_path):
    histories = {"sgd": history(elapsed_per_epoch=1.0), "adam": history(elapsed_per_epoch=2.0),
                 "rmsprop": history(with_validation=False)}
    assert_png(plot_optimizer_comparison(histories, tmp_path / "optimizers.png"))
    assert_png(plot_optimizer_comparison({}, tmp_path / "none.png"))


def test_piano_roll_from_objects_tuples_and_nothing(tmp_path):
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 10, 300))
    notes = [Note(s, s + rng.uniform(0.1, 1), int(rng.integers(40, 90)), int(rng.integers(1, 128)))
             for s in starts]
    assert_png(plot_piano_roll(notes, tmp_path / "roll.png", title="random notes"))
    assert_png(plot_piano_roll([(0.0, 0.5, 61, 90)], tmp_path / "one.png"))  # no C in range
    assert_png(plot_piano_roll([], tmp_path / "none.png"))


def test_gate_activations(tmp_path):
    rng = np.random.default_rng(0)
    steps, hidden = 12, 8
    gates = {name: rng.uniform(0, 1, (steps, hidden)) for name in "ifo"}
    gates["g"] = np.tanh(rng.normal(size=(steps, hidden)))
    gates["c"] = rng.normal(scale=3, size=(steps, hidden))
    gates["h"] = np.tanh(gates["c"])
    tokens = [f"0_no_{60 + t}_80" for t in range(steps)]
    assert_png(plot_gate_activations(gates, tmp_path / "gates.png", tokens=tokens))
    assert_png(plot_gate_activations({"f": gates["f"]}, tmp_path / "forget.png"))


def test_gate_activations_rejects_bad_shapes(tmp_path):
    with pytest.raises(PlotError, match="empty"):
        plot_gate_activations({}, tmp_path / "x.png")
    with pytest.raises(PlotError, match=r"\(T, H\)"):
        plot_gate_activations({"i": np.zeros(5)}, tmp_path / "x.png")
    with pytest.raises(PlotError, match="same number of steps"):
        plot_gate_activations({"i": np.zeros((5, 2)), "f": np.zeros((6, 2))}, tmp_path / "x.png")
    with pytest.raises(PlotError, match="3 token labels for 5"):
        plot_gate_activations({"i": np.zeros((5, 2))}, tmp_path / "x.png", tokens=["a", "b", "c"])
    assert not (tmp_path / "x.png").exists()


def test_unwritable_path_is_a_project_error(tmp_path):
    with pytest.raises(PlotError, match="cannot write figure") as caught:
        plot_loss_curves(history(), tmp_path / "missing_folder" / "loss.png")
    assert isinstance(caught.value, LstmMusicError)


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "loss.png"
    plot_loss_curves([], path)
    first = path.read_bytes()
    plot_loss_curves(history(), path)
    assert path.read_bytes() != first
    assert_png(path)


def test_plots_never_use_pyplot():
    # In a fresh interpreter: drawing every figure must not even import pyplot, so no global figures
    # can be left open and no GUI backend is chosen.
    script = textwrap.dedent("""
        import sys, tempfile, os
        import numpy as np
        from lstm_from_scratch import plots
        folder = tempfile.mkdtemp()
        plots.plot_loss_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": None}],
                               os.path.join(folder, "a.png"))
        plots.plot_piano_roll([(0, 1, 60, 64)], os.path.join(folder, "b.png"))
        plots.plot_gate_activations({"i": np.zeros((3, 2))}, os.path.join(folder, "c.png"))
        plots.plot_optimizer_comparison({}, os.path.join(folder, "d.png"))
        assert "matplotlib.pyplot" not in sys.modules, "plots imported pyplot"
    """)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_a_failed_render_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "loss.png"
    plot_loss_curves(history(), path)
    before = path.read_bytes()

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk on fire"):
        plot_loss_curves([], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["loss.png"]


def test_new_files_follow_the_umask_not_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = plot_loss_curves([], tmp_path / "loss.png")
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_lstm_gate_arrays_splits_the_fused_gates():
    from types import SimpleNamespace

    from lstm_from_scratch.plots import lstm_gate_arrays

    steps, batch, hidden = 5, 2, 3
    gates = np.arange(steps * batch * 4 * hidden, dtype=float).reshape(steps, batch, 4 * hidden)
    layer = SimpleNamespace(gates=gates, cs=-np.ones((steps, batch, hidden)),
                            hs=np.zeros((steps, batch, hidden)))
    arrays = lstm_gate_arrays(layer, sequence=1)
    assert list(arrays) == ["i", "f", "g", "o", "c", "h"]
    assert all(values.shape == (steps, hidden) for values in arrays.values())
    np.testing.assert_array_equal(arrays["f"], gates[:, 1, hidden:2 * hidden])  # PyTorch order
    np.testing.assert_array_equal(arrays["o"], gates[:, 1, 3 * hidden:])


def test_gates_of_the_real_lstm_can_be_drawn(tmp_path):
    lstm_module = pytest.importorskip("lstm_from_scratch.nn.lstm")
    from lstm_from_scratch.plots import lstm_gate_arrays

    layer = lstm_module.LSTM(5, 4, rng=np.random.default_rng(0))
    layer.forward(np.random.default_rng(1).integers(0, 5, size=(7, 2)))
    arrays = lstm_gate_arrays(layer)
    assert arrays["i"].shape == (7, 4) and arrays["h"].shape == (7, 4)
    assert_png(plot_gate_activations(arrays, tmp_path / "gates.png"))


# --- the run report's figures ---------------------------------------------------------------------

def chunk_events(pitches):
    """Parsed chunks of a melody: each pitch on, then off one step later."""
    events = []
    for pitch in pitches:
        events += [(0, True, pitch, 80), (1, False, pitch, 0)]
    return events


def test_a_figure_can_be_drawn_into_memory():
    import io
    buffer = io.BytesIO()
    assert plot_loss_curves(history(), buffer) is buffer
    assert buffer.getvalue()[:8] == PNG_SIGNATURE


def test_learning_curves_mark_the_best_epoch(tmp_path):
    from lstm_from_scratch.plots import best_record, plot_learning_curves
    records = history()
    records[2]["val_loss"] = 0.1  # epoch 3 is the best
    assert best_record(records)[0]["epoch"] == 3
    assert best_record(history(with_validation=False))[1] == "train_loss"
    assert_png(plot_learning_curves(records, tmp_path / "curves.png", baseline={"cross_entropy": 2.5}))
    assert_png(plot_learning_curves([], tmp_path / "none.png"))


def test_chunk_notes_pairs_each_note_on_with_what_ends_it():
    from lstm_from_scratch.plots import chunk_notes
    events = [(0, True, 60, 80), (0, True, 64, 80), (2, False, 60, 0), (0, True, 64, 80),  # a re-strike
              (1, True, 67, 0), (0, True, 72, 80)]  # velocity 0 ends nothing sounding; 72 never ends
    assert chunk_notes(events) == [(0, 2, 60, 80), (1, 3, 64, 80), (3, 6, 64, 80), (5, 6, 72, 80)]


def test_the_report_figures(tmp_path):
    from lstm_from_scratch.plots import (plot_chunk_saliency, plot_gates_over_chunks, plot_memory_horizon,
                                         plot_pitch_class_histograms, plot_statistic_strips)
    rng = np.random.default_rng(0)
    histograms = {"T 0.5": np.eye(12)[0], "T 1.0": np.full(12, 1 / 12)}
    assert_png(plot_pitch_class_histograms(histograms, np.full(12, 1 / 12), tmp_path / "pc.png",
                                           distances={"T 0.5": 0.9, "T 1.0": 0.0}))
    corpus = [{"polyphony": value, "pitch_range": 12.0} for value in rng.uniform(1, 3, 10)]
    pieces = {"T 0.5": {"polyphony": 5.0, "pitch_range": np.nan}, "primed": {"polyphony": 2.0, "pitch_range": 7.0}}
    assert_png(plot_statistic_strips(pieces, corpus, {"polyphony": "polyphony", "pitch_range": "range"},
                                     tmp_path / "strips.png"))
    events = chunk_events([60, 62, 64, 65, 67, 69])
    gates = {name: rng.uniform(0, 1, (len(events), 6)) for name in "ifo"}
    gates["c"] = rng.normal(scale=5, size=(len(events), 6))
    assert_png(plot_gates_over_chunks(gates, events, tmp_path / "gates.png"))
    sizes = np.linspace(0.1, 1, len(events) - 1)
    assert_png(plot_chunk_saliency(events[:-1], sizes, (events[-1], 0.42), tmp_path / "saliency.png"))
    assert_png(plot_memory_horizon(np.exp(-np.arange(20) / 5), tmp_path / "horizon.png", window=8))


def test_the_report_figures_refuse_what_they_cannot_draw(tmp_path):
    from lstm_from_scratch.plots import plot_chunk_saliency, plot_gates_over_chunks, plot_pitch_class_histograms
    events = chunk_events([60, 62])
    with pytest.raises(PlotError, match="one gradient size per chunk"):
        plot_chunk_saliency(events, [1.0], (events[0], 0.5), tmp_path / "x.png")
    with pytest.raises(PlotError, match="T long"):
        plot_gates_over_chunks({"i": np.zeros((3, 2))}, events, tmp_path / "x.png")
    with pytest.raises(PlotError, match="no pitch-class"):
        plot_pitch_class_histograms({}, np.zeros(12), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
