"""The page of a training run: ``RUN_DIR/report.html``, which tells the whole story in a browser.

``write_report(run_dir, sequences)`` reads the run's checkpoint and history, lets the net compose a few
short pieces, measures them against the pieces it trained on, looks inside the net, and writes one
HTML file with five sections:

1. the run at a glance: model, data, settings, time, and the best validation loss beside the
   unigram baseline;
2. learning curves, against epochs and against seconds (``plots.plot_learning_curves``);
3. listen and look: pieces at temperatures 0.5, 1.0 and 1.5, one primed with the start of a
   validation piece, and a training piece, each with a player, a piano roll and its first chunks;
4. does it sound like the corpus: ``music/stats.py``'s statistics of each piece beside the
   training pieces', as a table and as pictures;
5. inside the net: the gates and the cell state over a validation piece, and which earlier chunks
   drove one prediction (``saliency.py``), with how far back the net looks on average.

Everything is inside the one file, so the run folder (or the page alone) can be zipped and mailed:
the pictures are PNGs and the sounds WAVs, both as base64 ``data:`` addresses. Sounds take most of the
room, so the pieces are short and rendered at 11,025 samples per second (a quarter of a CD's
rate, plenty for our synth's few harmonics). The page is ``report_template.html`` filled in with
``string.Template``: plain HTML and CSS, no script, nothing fetched from the network.

The same run and pieces give the same page, byte for byte: every random draw is seeded from the
run's own seed.
"""
import base64
import html
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np
from matplotlib import rc_context

from . import __version__, plots
from .atomic import atomic_write_text
from .errors import DataError, LstmMusicError
from .generate import default_prime, generate, load_trained
from .music import stats
from .music.events import ControlEvent, Note, TempoEvent, chunks_to_notes, note_events, validate_chunks
from .music.synth import render_notes, wav_bytes
from .music.vocab import UnknownTokenError
from .nn.losses import log_softmax
from .saliency import gradient_sizes, step_gradients
from .train import TrainConfig, load_run, prepare_data

REPORT_FILE = "report.html"
TEMPERATURES = (0.5, 1.0, 1.5)
PIECE_CHUNKS = 200  # chunks per piece heard: about 10 to 20 seconds at 120 beats per minute
PRIME_CHUNKS = 48  # the start of a validation piece that primes the net
SAMPLE_RATE = 11025  # samples per second of the sounds inside the page
MAX_AUDIO_SECONDS = 20.0  # the sounds are most of the page's bytes; long silences would add more
TEXT_CHUNKS = 24  # chunks shown as text under each piano roll
GATE_CHUNKS = 64  # chunks of the validation piece the gate pictures cover
GATE_UNITS = 32  # hidden units shown: more rows than this are thinner than a projector's pixels
SALIENCY_STEPS = (40, 64)  # the prediction explained is made after one of these chunks
HORIZON_STEPS = (48, 112, 4)  # start, stop, every: the predictions averaged for "how far back"
HORIZON_LAGS = 48  # chunks back shown in that picture
FIGURE_FONT = {"font.size": 13}  # larger than matplotlib's 10: the page may be projected
PIECE_COLOURS = ("#2a9d8f", "#e9a23b", "#d1495b", "#6a4c93")


class ReportError(LstmMusicError):
    """The report cannot be made from this run and these pieces; the message says why."""


@dataclass
class Piece:
    """One piece on the page: ``label`` for headings, ``short`` for charts, ``about`` in words.

    ``chunks`` are all the chunks played; the first ``real`` of them are real music (a prime), the
    rest the net's: 0 for a generated piece, ``len(chunks)`` for a training piece.
    """
    label: str
    short: str
    about: str
    chunks: list
    ticks_per_beat: int
    real: int = 0
    colour: str = "0.4"

    @property
    def generated(self):
        return self.real < len(self.chunks)

    def notes(self, start=0):
        """The notes of ``chunks[start:]`` in seconds, at 120 beats per minute."""
        return chunks_to_notes(self.chunks[start:], self.ticks_per_beat)


def write_report(run_dir, sequences, dataset=None):
    """Write ``run_dir/report.html`` for the training run in ``run_dir``; returns its path.

    - ``sequences``: the pieces the run was trained on, as given to ``train.prepare_data`` (all of
      them, before the split, in the same order), e.g. ``corpus.builtin_sequences()``.
    - ``dataset``: the ``train.Dataset`` made from them, if the caller has it (saves redoing it).

    Uses ``best.npz`` (or ``last.npz`` when there is no best yet). Raises ``CheckpointError`` when
    ``run_dir`` holds no run, and ``ReportError`` when ``sequences`` are not the pieces it trained on.
    """
    run_dir = Path(run_dir)
    meta = load_run(run_dir)[2]  # last.npz: the whole history, up to the last epoch
    checkpoint = run_dir / "best.npz" if (run_dir / "best.npz").exists() else run_dir / "last.npz"
    trained = load_trained(checkpoint)  # the weights the page shows
    config = TrainConfig.from_dict(meta.get("train_config", {}))
    if dataset is None:
        dataset = _same_split(sequences, trained, config, run_dir)
    train_pieces = _pieces_by_name(sequences, dataset.train_names)
    val_pieces = _pieces_by_name(sequences, dataset.val_names)
    if not train_pieces:
        raise ReportError(f"{run_dir}: no training pieces to compare with")
    listened = _make_pieces(trained, config, train_pieces, val_pieces)
    studied = val_pieces[0] if val_pieces else train_pieces[0]
    with rc_context(FIGURE_FONT):
        sections = {
            "glance": _glance(trained, meta, config, dataset, sequences, checkpoint),
            "curves": _curves(meta.get("history", []), meta.get("baseline")),
            "listen": _listen(listened),
            "corpus": _corpus(listened, train_pieces),
            "inside": _inside(trained, studied, val_pieces, config),
        }
    page = Template(_template()).substitute(
        title=html.escape(f"What the net learned: {run_dir.resolve().name}"),
        subtitle=html.escape(f"A hand-written NumPy LSTM, trained on {len(sequences)} pieces. "
                             f"Run folder: {run_dir}"),
        footer=_footer(), **sections)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path


def _template():
    return resources.files("lstm_from_scratch").joinpath("report_template.html").read_text(encoding="utf-8")


def _same_split(sequences, trained, config, run_dir):
    """The run's ``Dataset`` again, checked to be the same training data by its token counts."""
    known = set(trained.vocab.tokens)
    for piece in sequences:
        unknown = next((chunk for chunk in piece.chunks if chunk not in known), None)
        if unknown is not None:
            raise ReportError(f"these pieces are not the ones {run_dir} was trained on: {piece.name} has "
                              f"the chunk {unknown!r}, which the run's vocabulary does not")
    try:
        dataset = prepare_data(sequences, trained.settings, config, vocab=trained.vocab)
    except (DataError, UnknownTokenError) as error:
        raise ReportError(f"these pieces are not the ones {run_dir} was trained on ({error})") from None
    if not np.array_equal(dataset.token_counts, trained.token_counts):
        raise ReportError(f"these pieces are not the ones {run_dir} was trained on: they hold other "
                          f"chunks, or as often")
    return dataset


def _pieces_by_name(sequences, names):
    pool = {}
    for piece in sequences:
        pool.setdefault(piece.name, []).append(piece)
    return [pool[name].pop(0) for name in names if pool.get(name)]


# ----------------------------------------------------------------------------------------------
# The pieces: generated at three temperatures, primed, and one from the training data
# ----------------------------------------------------------------------------------------------

def _temperature_words(temperature):
    if temperature < 1:
        return "Cautious: the likely chunks get likelier still."
    if temperature > 1:
        return "Adventurous: the unlikely chunks get a better chance."
    return "The net's own probabilities, unchanged."


def _make_pieces(trained, config, train_pieces, val_pieces):
    """The pieces of section 3, each ``PIECE_CHUNKS`` long: generated ones first, then a real one.

    Each draws from its own generator, seeded by the run's seed and its number: the same run gives
    the same pieces.
    """
    vocab, model = trained.vocab, trained.model
    pieces = []
    for number, temperature in enumerate(TEMPERATURES):
        rng = np.random.default_rng([config.seed, number])
        ids = generate(model, vocab, default_prime(trained, rng), PIECE_CHUNKS, temperature, rng=rng)
        pieces.append(Piece(f"Temperature {temperature}", f"T {temperature}",
                            f"Generated from a single note. {_temperature_words(temperature)}",
                            vocab.decode(ids), trained.ticks_per_beat))
    if val_pieces:
        source = val_pieces[0]
        prime = list(source.chunks[:PRIME_CHUNKS])
        rng = np.random.default_rng([config.seed, len(TEMPERATURES)])
        try:
            prime_ids = vocab.encode(prime).tolist()
        except UnknownTokenError as error:
            raise ReportError(f"{source.name}: {error}") from None
        ids = generate(model, vocab, prime_ids, PIECE_CHUNKS - len(prime), 1.0, rng=rng)
        pieces.append(Piece("Primed with a validation piece", "primed",
                            f"The first {len(prime)} chunks of {source.name}, which the net never trained "
                            f"on (shaded), then the net goes on at temperature 1.0.",
                            prime + vocab.decode(ids), trained.ticks_per_beat, real=len(prime)))
    for colour, piece in zip(PIECE_COLOURS, pieces):
        piece.colour = colour
    chunks = list(train_pieces[0].chunks[:PIECE_CHUNKS])
    pieces.append(Piece(f"A training piece: {train_pieces[0].name}", "training",
                        f"Real music the net learned from, for comparison (its first {len(chunks)} chunks).",
                        chunks, train_pieces[0].ticks_per_beat, real=len(chunks)))
    return pieces


def _png(draw, *args, **kwargs):
    """A figure as a data: address: ``draw(*args, buffer, **kwargs)`` renders into memory."""
    buffer = io.BytesIO()
    draw(*args, buffer, **kwargs)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(source, alt, caption=None):
    figure = f'<figure><img src="{source}" alt="{html.escape(alt)}">'
    if caption:
        figure += f"<figcaption>{caption}</figcaption>"
    return figure + "</figure>"


def _audible(notes):
    """The notes that start in the first ``MAX_AUDIO_SECONDS``, cut off there."""
    return [Note(note.start, min(note.end, MAX_AUDIO_SECONDS), note.pitch, note.velocity)
            for note in notes if note.start < MAX_AUDIO_SECONDS]


def _audio(notes):
    data = wav_bytes(render_notes(notes, SAMPLE_RATE), SAMPLE_RATE)
    return ('<audio controls preload="metadata" src="data:audio/wav;base64,'
            + base64.b64encode(data).decode("ascii") + '"></audio>')


def _chunk_text(chunks, ticks_per_beat):
    """The first chunks as text, each with a plain-words tooltip."""
    words = []
    for chunk, event in zip(chunks, validate_chunks(chunks)):
        when = "at the same moment" if event.delta == 0 else f"{event.delta / ticks_per_beat:g} beats later"
        kind = "other"
        if isinstance(event, TempoEvent):
            meaning = f"{when}, the tempo becomes {event.bpm} beats per minute"
        elif isinstance(event, ControlEvent):
            state = "down" if event.value >= 64 else "up"
            name = PEDALS.get(event.control, f"control {event.control}")
            meaning = f"{when}, the {name} goes {state}" if event.control in PEDALS else \
                f"{when}, {name} becomes {event.value}"
        else:
            started = event.is_on and event.velocity > 0
            kind = "on" if started else "off"
            meaning = f"{when}, {plots.note_name(event.pitch)} {'starts' if started else 'ends'}"
            if started:
                meaning += f" (velocity {event.velocity})"
        words.append(f'<code class="{kind}" title="{html.escape(meaning)}">{html.escape(chunk)}</code>')
    return '<p class="chunks">' + " ".join(words) + " &hellip;</p>"


PEDALS = {64: "sustain pedal", 66: "sostenuto pedal", 67: "soft pedal"}


def _listen(pieces):
    parts = [
        "<p>Each piece below was written by the net one chunk at a time, by the roulette wheel: it draws "
        "the next chunk with the probability the net gives it. The <em>temperature</em> divides the "
        "net's scores before they become probabilities: below 1 the likely chunks win more often, above "
        "1 the unlikely ones get a chance. No rules help it: what you hear is the net alone. The last "
        "piece is real music from the training data, to compare.</p>",
        "<p>Under each player: a piano roll (time across, pitch up, loudness as colour) and the first "
        "chunks of the piece. <code class=\"inline\">DELTA_no_PITCH_VELOCITY</code> starts a note, "
        f"<code class=\"inline\">DELTA_nf_PITCH_0</code> ends one; DELTA is the time since the chunk "
        f"before, in steps of 1/{pieces[0].ticks_per_beat} beat. Point at a chunk to read it in words.</p>",
    ]
    return "\n".join(parts + [_piece_card(piece) for piece in pieces])


def _piece_card(piece):
    """One piece: a heading, a player, a piano roll and its first chunks as text."""
    notes = piece.notes()
    audible = _audible(notes)
    heard = max((note.end for note in audible), default=0.0)
    whole = max((note.end for note in notes), default=0.0)
    cut = f" (the first {MAX_AUDIO_SECONDS:.0f} seconds)" if heard < whole else ""
    length = (f"{len(notes)} notes in {whole:.1f} seconds; you hear the first {heard:.0f}" if cut else
              f"{len(notes)} notes, {heard:.1f} seconds")
    shade = None
    if 0 < piece.real < len(piece.chunks):  # a prime, then the net: shade the prime
        shade = (0.0, _seconds_at(piece.chunks, piece.real, piece.ticks_per_beat), "the prime (real music)")
    roll = _png(plots.plot_piano_roll, audible, title=f"piano roll{cut}", width=10.0, height=2.9, shade=shade)
    return (f'<div class="piece{"" if piece.generated else " corpus"}"><h3>{html.escape(piece.label)}</h3>'
            f"<p>{html.escape(piece.about)} {length}.</p>"
            f"{_audio(audible)}{_image(roll, 'piano roll of ' + piece.label)}"
            f"{_chunk_text(piece.chunks[:TEXT_CHUNKS], piece.ticks_per_beat)}</div>")


def _seconds_at(chunks, index, ticks_per_beat, beats_per_second=2.0):
    """The time in seconds of chunk ``index`` (120 beats per minute: 2 beats a second)."""
    ticks = sum(delta for delta, *_ in validate_chunks(chunks[:index + 1]))
    return ticks / ticks_per_beat / beats_per_second


# ----------------------------------------------------------------------------------------------
# Section 1: the run at a glance; section 2: the learning curves
# ----------------------------------------------------------------------------------------------

def _model_words(config):
    parts = ([f"one-hot input ({config['vocab_size']})"] if config["input"] == "onehot"
             else [f"embedding {config['embedding_dim']}"])
    for spec in config["layers"]:
        if spec["type"] == "lstm":
            parts.append(f"LSTM {spec['hidden_size']}")
        elif spec["type"] == "dropout":
            parts.append(f"dropout {spec['rate']}")
        else:
            parts.append(f"dense {spec['units']} ({spec['activation']})")
    parts.append(f"dense {config['vocab_size']} &rarr; softmax")
    what = ("predicts the next chunk at every step" if config["output"] == "sequence"
            else "predicts only the chunk after each window")
    return " &rarr; ".join(parts) + f"; {what}"


def _names(pieces):
    return ", ".join(html.escape(name) for name in pieces) or "none"


def _number(value, text, digits=3):
    shown = "&ndash;" if value is None else f"{value:.{digits}f}"
    return f'<div class="number"><b>{shown}</b><span>{text}</span></div>'


def _engine(meta):
    """The engine the run trained with, in words ("fast, 2 processes"), or None for a run from before
    the engines were split. The checkpoint's "engine" says the last one; the history, each record's."""
    engines = [(record.get("engine"), record.get("processes")) for record in meta.get("history") or []
               if isinstance(record, dict) and record.get("engine")]
    stored = meta.get("engine")
    if isinstance(stored, dict) and stored.get("name"):
        engines.append((stored["name"], stored.get("processes")))
    words = [name + (", 2 processes" if processes == 2 else "") for name, processes in engines]
    unique = list(dict.fromkeys(words))
    return " then ".join(unique) if unique else None


def _glance(trained, meta, config, dataset, sequences, checkpoint):
    history = meta.get("history") or []
    baseline = meta.get("baseline") or {}
    best, _ = plots.best_record(history)
    best_loss = best.get("val_loss") if best else None
    base_loss = baseline.get("cross_entropy")
    uniform = math.log(len(trained.vocab))
    numbers = [
        _number(best_loss, "best validation loss (nats)" + (f", epoch {best['epoch']}" if best else "")),
        _number(base_loss, "unigram baseline: knows only how often each chunk occurs"),
        _number(uniform, "a uniform guess, ln V: a net before training"),
        _number(None if not best or best.get("val_accuracy") is None else 100 * best["val_accuracy"],
                f"% next chunks guessed right (baseline {100 * (baseline.get('accuracy') or 0):.1f}%)", 1),
    ]
    if best_loss is not None and base_loss is not None:
        verdict = ("beats the baseline: it has learned something about music beyond how often each "
                   "chunk occurs" if best_loss < base_loss else
                   "does not beat the baseline yet: train longer, or on more music")
        summary = f"<p>The net's best validation loss {verdict}.</p>"
    else:
        summary = "<p>No validation loss yet (no validation pieces, or no epoch finished).</p>"
    chunk_count = sum(len(piece.chunks) for piece in sequences)
    elapsed = history[-1].get("elapsed") if history else None
    engine = _engine(meta)
    settings = trained.settings
    events = ("raw ticks and velocities" if settings.raw else
              f"{settings.grid} steps per beat, {settings.velocity_bins} loudness levels, silences "
              f"capped at {settings.max_delta_beats:g} beats")
    transposed = (f"; each training window moved into a random key, up to &plusmn;{config.transpose} "
                  f"semitones, each time it was batched" if config.transpose else "")
    rows = [
        ("model", _model_words(trained.model.config)),
        ("parameters", f"{trained.model.num_params():,}"),
        *([("engine", html.escape(str(engine)))] if engine else []),
        ("data", f"{len(sequences)} pieces, {chunk_count:,} chunks; a vocabulary of {len(trained.vocab)} "
                 f"distinct chunks ({events})"),
        ("split by piece", f"{len(dataset.train_names)} for training: {_names(dataset.train_names)}. "
                           f"{len(dataset.val_names)} for validation, never trained on: "
                           f"{_names(dataset.val_names)}"),
        ("windows", f"{len(dataset.train_x):,} training and {len(dataset.val_x):,} validation windows of "
                    f"{config.seq_len} chunks, one every {config.step}{transposed}"),
        ("training", f"{config.optimizer}, learning rate {config.lr:g}, batches of {config.batch_size}, "
                     f"gradient clipping at {config.clip:g}, seed {config.seed}"),
        ("time", "&ndash;" if elapsed is None else
                 f"{len(history)} epoch{'s' if len(history) != 1 else ''} in {elapsed:.1f} seconds "
                 f"({elapsed / max(len(history), 1):.1f} s an epoch)"),
        ("this page uses", f"{checkpoint.name}, the weights after epoch {trained.meta.get('epoch')}"),
    ]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return (f'<div class="numbers">{"".join(numbers)}</div>{summary}'
            "<p>The loss is the cross-entropy of the next chunk: the average of &minus;ln p(the chunk "
            "that came next), on validation pieces the net never trained on. Lower is better.</p>"
            f'<table class="facts">{table}</table>')


def _curves(history, baseline):
    source = _png(plots.plot_learning_curves, history, baseline=baseline)
    return ("<p>Left: the loss after each pass over the training data (epoch). Right: the same against "
            "the seconds spent training. Training loss (solid) keeps falling as the net learns its "
            "pieces by heart; validation loss (dashed) tells whether it learned music it can use on "
            "pieces it never saw. When validation turns up while training goes down, the net is "
            "over-fitting. The star is the checkpoint kept as <code class=\"inline\">best.npz</code>; "
            "the dotted line is the unigram baseline.</p>" + _image(source, "loss against epochs and seconds"))


# ----------------------------------------------------------------------------------------------
# Section 4: does it sound like the corpus?
# ----------------------------------------------------------------------------------------------

def _corpus(pieces, train_pieces):
    generated = [piece for piece in pieces if piece.generated]
    corpus_notes = [chunks_to_notes(piece.chunks, piece.ticks_per_beat) for piece in train_pieces]
    corpus_histogram = stats.pitch_class_histogram([note for notes in corpus_notes for note in notes])
    corpus = [stats.piece_statistics(notes, piece.chunks, corpus_histogram)
              for notes, piece in zip(corpus_notes, train_pieces)]
    measured, histograms, distances = {}, {}, {}
    for piece in generated:
        notes, chunks = piece.notes(piece.real), piece.chunks[piece.real:]  # the net's own part
        measured[piece.short] = stats.piece_statistics(notes, chunks, corpus_histogram)
        histograms[piece.short] = stats.pitch_class_histogram(notes)
        distances[piece.short] = measured[piece.short]["pitch_class_distance"]
    colours = {piece.short: piece.colour for piece in generated}
    table = _statistics_table(generated, measured, corpus)
    strips = _png(plots.plot_statistic_strips, measured, corpus,
                  {key: label for key, (label, _, _) in stats.STATISTICS.items()}, colours=colours)
    bars = _png(plots.plot_pitch_class_histograms, histograms, corpus_histogram, distances=distances,
                colours=colours)
    return (
        "<p>The loss says how well the net predicts; these numbers say what its music is like. Each is "
        f"measured the same way on the generated pieces and on each of the {len(train_pieces)} training "
        "pieces, all played at 120 beats per minute (the net never sees a tempo). For the primed piece "
        "only the net's own continuation counts. A value "
        '<span class="legend-outside">marked</span> lies outside the range of every training piece.</p>'
        + table
        + "<p>How they are defined (<code class=\"inline\">lstm_from_scratch/music/stats.py</code>): "
          "<b>notes per second</b> from the first note to the end of the last; <b>polyphony</b>, the "
          "mean number of notes sounding at once while any sounds; <b>pitch range</b>, highest minus "
          "lowest; <b>median note length</b>; <b>in repeated loops</b>, the share of chunks inside a "
          f"pattern of at most {stats.LOOP_MAX_PERIOD} chunks played {stats.LOOP_MIN_REPEATS} or more "
          "times in a row (a net stuck on one note); <b>in scale</b>, the share of notes in the major "
          "scale that holds the most of them (random notes: 7 in 12); <b>pitch classes vs corpus</b>, "
          "how far the piece's use of C, C#, &hellip;, B is from the training pieces', moved to the key "
          "where they match best: half the summed differences of the two histograms, so the share of "
          "notes that would have to change pitch class.</p>"
        + _image(strips, "each statistic for the training pieces and the generated ones",
                 "Grey dots: the training pieces, one dot each, with a grey band over their range. "
                 "Coloured dots: the generated pieces.")
        + _image(bars, "pitch-class histograms of the generated pieces over the corpus's",
                 "Grey: how often the training pieces use each pitch class. Colour: the generated piece "
                 "(in its own key; the distance moves it to the key that matches best)."))


def _statistics_table(generated, measured, corpus):
    keys = list(stats.STATISTICS)
    ranges = {}
    for key in keys:
        values = np.array([entry[key] for entry in corpus], dtype=float)
        values = values[np.isfinite(values)]
        ranges[key] = (values.min(), values.max(), float(np.median(values))) if len(values) else None

    def cell(key, value, mark=True):
        if value is None or not np.isfinite(value):
            return "<td>&ndash;</td>"
        text = stats.STATISTICS[key][2].format(value)
        known = ranges[key]
        # (The 1e-9: a share computed another way, 0.9999999999999999 for 1, is not outside.)
        outside = mark and known is not None and not known[0] - 1e-9 <= value <= known[1] + 1e-9
        return f'<td class="outside">{text}</td>' if outside else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(label)}<small>{html.escape(unit)}</small></th>"
                   for label, unit, _ in stats.STATISTICS.values())
    rows = []
    for piece in generated:
        rows.append(f"<tr><td>{html.escape(piece.label)}</td>"
                    + "".join(cell(key, measured[piece.short][key]) for key in keys) + "</tr>")
    median = "".join(cell(key, None if ranges[key] is None else ranges[key][2], False) for key in keys)
    spans = "".join("<td>&ndash;</td>" if ranges[key] is None else
                    f"<td>{stats.STATISTICS[key][2].format(ranges[key][0])} &ndash; "
                    f"{stats.STATISTICS[key][2].format(ranges[key][1])}</td>" for key in keys)
    rows.append(f'<tr class="corpus"><td>training pieces, median</td>{median}</tr>')
    rows.append(f'<tr class="corpus"><td>training pieces, range</td>{spans}</tr>')
    return f'<table class="stats"><thead><tr><th>piece</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# ----------------------------------------------------------------------------------------------
# Section 5: inside the net
# ----------------------------------------------------------------------------------------------

def _lstm_layers(model):
    """The model's LSTM layers, whichever engine built them: the layers with recurrent weights Wh."""
    return [layer for layer in model.layers if "Wh" in layer.params]


def _correlations(fact, values):
    """The correlation of ``fact`` (T,) with each column of ``values`` (T, H): ``(H,)``."""
    fact, values = fact - fact.mean(), values - values.mean(axis=0)
    return fact @ values / np.sqrt((fact @ fact) * (values * values).sum(axis=0) + 1e-12)


def chosen_step(events, probabilities, steps=SALIENCY_STEPS):
    """The step whose prediction section 5 explains: a step t in ``steps`` (start, stop) after which
    the next chunk ends a note; of those the net gave at least 0.1, the one whose note started longest
    before (its prediction needs the most memory), else the one the net found likeliest.

    ``events``: the parsed chunks, ``(delta, is_on, pitch, velocity)``, ``None`` for a chunk that is
    not a note (see ``events.note_events``); ``probabilities``: ``(N,)``,
    entry t the probability the net gave chunk t + 1 after reading chunks 0..t. Returns t.
    """
    last = min(steps[1], len(events) - 1)
    candidates = list(range(min(steps[0], last - 1), last)) or [0]
    notes_next = [t for t in candidates if events[t + 1] is not None] or candidates  # not tempo, pedal
    ends = [t for t in notes_next if events[t + 1] is not None and not (events[t + 1][1] and events[t + 1][3] > 0)]

    def started(t):  # the chunk that started the note chunk t + 1 ends, or t + 1 if none did
        pitch = events[t + 1][2]
        return max((k for k in range(t + 1) if events[k] is not None and events[k][2] == pitch
                    and events[k][1] and events[k][3] > 0), default=t + 1)

    sure = [t for t in ends if probabilities[t] >= 0.1]
    if sure:
        return max(sure, key=lambda t: (t + 1 - started(t), probabilities[t]))
    return max(ends or notes_next, key=lambda t: probabilities[t])


def _inside(trained, piece, val_pieces, config):
    try:
        ids = trained.vocab.encode(piece.chunks)
    except UnknownTokenError as error:
        raise ReportError(f"{piece.name}: {error}") from None
    events = note_events(piece.chunks)
    where = ("a validation piece, never trained on" if piece in val_pieces
             else "a training piece (there are no validation pieces)")
    gates = _gates_part(trained.model, ids, events, f"{html.escape(piece.name)} ({where})")
    if len(ids) < 2:  # nothing was predicted from what came before
        return gates
    return gates + _saliency_part(trained.model, ids, events) + _horizon_part(trained.model, ids, config.seq_len)


def _gates_part(model, ids, events, what):
    """The gates i, f, o and the cell state of the first LSTM over the piece's first chunks."""
    T = min(GATE_CHUNKS, len(ids))
    layer = _lstm_layers(model)[0]
    model.forward(ids[:T, None])  # (T, 1): the piece as one sequence, from a zero state
    arrays = {name: values.copy() for name, values in plots.lstm_gate_arrays(layer).items()}
    is_on = np.array([event is not None and event[1] and event[3] > 0 for event in events[:T]], dtype=float)
    correlations = np.nan_to_num(_correlations(is_on, arrays["h"]))
    # The GATE_UNITS units whose h follows note-on or note-off most closely, from the most
    # note-on-like (top) to the most note-off-like (bottom): rows a reader can tell apart.
    strongest = np.argsort(-np.abs(correlations))[:GATE_UNITS]
    order = strongest[np.argsort(-correlations[strongest])]
    shown = {name: arrays[name][:, order] for name in ("i", "f", "o", "c")}
    hidden = arrays["h"].shape[1]
    return (
        "<h3>The gates and the memory, chunk by chunk</h3>"
        f"<p>The net reads the first {T} chunks of {what}. Each heatmap has one column per chunk read "
        f"and one row per hidden unit of the first LSTM layer: the {len(order)} of its {hidden} units "
        "whose output h follows the note-ons and note-offs most closely, the most note-on-like on top, "
        "the most note-off-like at the bottom (by correlation, as in tutorial 10). The <b>input "
        "gate</b> i says how much new content a unit writes, the <b>forget gate</b> f how much of its "
        "memory it keeps (near 1: keep), the <b>output gate</b> o how much it shows, and the <b>cell "
        "state</b> c is the memory itself. A column that changes with a note-on or a note-off above "
        "it is a unit that reacts to that event.</p>"
        + _image(_png(plots.plot_gates_over_chunks, shown, events[:T]), "gates and cell state over the piece"))


def _saliency_part(model, ids, events):
    """One prediction, and the size of its gradient with respect to each chunk read before it."""
    N = min(len(ids), SALIENCY_STEPS[1] + 1)
    probabilities = np.empty(N - 1)  # entry t: the probability the net gave chunk t + 1
    state = model.initial_state(1)
    for t in range(N - 1):  # one step at a time, as in generation (any output config)
        logits, state = model.step(ids[t:t + 1], state)
        probabilities[t] = np.exp(log_softmax(logits[0].astype(np.float64))[ids[t + 1]])
    step = chosen_step(events[:N], probabilities)
    log_prob, sizes = gradient_sizes(model, ids[:step + 1], ids[step + 1])
    target = events[step + 1]
    if target is None:  # only tempo or pedal chunks to predict here: nothing about notes to show
        return ""
    kind = "ends" if not (target[1] and target[3] > 0) else "starts"
    if kind == "ends" and probabilities[step] >= 0.1:
        why = ("We chose the chunk that ends the note struck longest before it, among those the net "
               "gave at least 0.1: predicting it needs memory.")
    else:
        why = ("The net gave no note-ending chunk here a probability of 0.1 or more, so we chose the "
               "prediction it was surest of.")
    picture = _png(plots.plot_chunk_saliency, events[:step + 1], sizes, (target, math.exp(log_prob)))
    return (
        "<h3>Which earlier chunks drove this prediction?</h3>"
        f"<p>After chunk {step}, the next chunk {kind} {plots.note_name(target[2])}, and the net gave "
        f"it a probability of {math.exp(log_prob):.2g}. Which of the chunks read before mattered for "
        "that number? Backpropagation through time answers it: the gradient of ln p(next chunk) with "
        "respect to the input at each earlier step, computed by the same backward pass that trains the "
        "net (<code class=\"inline\">lstm_from_scratch/saliency.py</code>). Its size (length) at a "
        "step says how much the prediction would change if the chunk read there changed; a size near "
        f"0 means the net no longer depends on it. {why}</p>"
        + _image(picture, "gradient size of each earlier chunk, over the piano roll"))


def _horizon_part(model, ids, window):
    """How far back the net looks: the gradient sizes of many predictions, by distance back."""
    horizon, averaged = _memory_horizon(model, ids)
    if horizon is None:
        return ""
    faded = np.flatnonzero(horizon < 0.1)
    fade = (f"falls below 0.1 (a tenth of each prediction's largest) {faded[0]} chunks back"
            if len(faded) else f"is still above 0.1 (a tenth of each prediction's largest) "
                               f"{HORIZON_LAGS} chunks back")
    caption = (f"The gradient sizes of {len(averaged)} predictions (after chunks "
               f"{', '.join(map(str, averaged[:2]))}, &hellip; {averaged[-1]}), by how many chunks back "
               "each input was, averaged; each prediction's largest is 1.")
    return (
        "<p>How far back does the net look, in general? Averaged over many predictions, the mean "
        f"gradient size {fade}. The net trained on windows of {window} chunks, each started from an empty "
        "memory, so backpropagation through time never taught it to use anything further back.</p>"
        + _image(_png(plots.plot_memory_horizon, horizon, window=window),
                 "mean gradient size against chunks back", caption))


def _memory_horizon(model, ids):
    """``(mean sizes, steps)``: the mean relative gradient size at each distance back, ``(HORIZON_LAGS
    + 1,)``, over the predictions after the chunks ``steps``; ``(None, [])`` for a short piece."""
    first, stop, every = HORIZON_STEPS
    steps = np.arange(first, min(stop, len(ids) - 1), every)
    if len(steps) == 0:
        return None, []
    _, grads = step_gradients(model, ids, steps)  # (K, T, D), all the predictions in one pass
    sizes = np.linalg.norm(grads.astype(np.float64), axis=2)  # (K, T)
    totals = np.zeros(HORIZON_LAGS + 1)
    for k, t in enumerate(steps):
        back = sizes[k, t::-1]  # entry j: the chunk j steps before the last one read
        totals += back[:HORIZON_LAGS + 1] / back.max()
    return totals / len(steps), steps.tolist()


def _footer():
    return (f"Made by lstm_from_scratch {__version__}; <code class=\"inline\">lstm-music report RUN_DIR"
            "</code> makes it again. Pictures drawn by matplotlib, sounds by the package's own synth "
            f"(<code class=\"inline\">music/synth.py</code>) at {SAMPLE_RATE:,} samples per second. "
            "Everything is inside this one file: it needs no network.")
