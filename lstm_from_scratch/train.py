"""The training loop: shuffled batches, clipped gradients, an optimizer step; validation; checkpoints.

Two steps, so each can be read (and tested) on its own:

1. ``prepare_data(sequences, settings, config)`` turns chunk sequences (one per MIDI file) into a
   ``Dataset``: the vocabulary, training and validation windows ``(N, T)`` split *by file*, and the
   unigram baseline the net has to beat.
2. ``train(dataset, model_config, config, run_dir)`` runs the epochs. One training step is::

       loss, grads = model.loss(inputs, targets)      # forward + backpropagation through time
                                                      # (with --processes 2, the default: as two
                                                      # halves, in two processes, nn/data_parallel.py)
       clip_grad_norm(grads, config.clip)             # tame exploding gradients (Pascanu et al.)
       optimizer.step(model.params, grads)            # the only place weights change

   After each epoch it measures the validation loss, perplexity and next-token accuracy, appends a
   record to the history and writes ``RUN_DIR/last.npz`` (and ``best.npz`` when validation improved),
   ``history.json`` and ``history.csv``; at the end it draws ``loss.png``.

Resuming is exact: a checkpoint stores the parameters, the optimizer's buffers and the state of both
random generators (the one that shuffles batches and the one behind dropout), so "2 epochs" and
"1 epoch, stop, resume for 1 more" give bit-identical weights.
"""
import csv
import dataclasses
import io
import json
import math
import signal
import threading
import time
from itertools import islice
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .checkpoint import CheckpointError, check_compatible, load_checkpoint, save_checkpoint
from .data import (DataError, iterate_batches, num_batches, split_by_file, unigram_baseline,
                   windows_from_sequences)
from .errors import LstmMusicError
from .music.events import EventSettings, NoteEvent, format_event, validate_chunks
from .music.vocab import UnknownTokenError, Vocabulary, VocabularyError
from .nn.data_parallel import DataParallel
from .nn.losses import log_softmax
from .nn.model import Model, validate_config
from .nn.optim import clip_grad_norm, make_optimizer

CHECKPOINT_KIND = "lstm_from_scratch.run"
EVAL_BATCH_SIZE = 256  # validation has no backward pass, so bigger batches are cheap


class TrainingDiverged(LstmMusicError):
    """The loss became NaN, infinite or far worse than a uniform guess: the weights are garbage now.

    It keeps what happened (``loss``, ``epoch``, ``batch``, and ``uniform``, the loss of a uniform
    guess) and the settings to change (``lr``, ``clip``), so that a caller that names its options
    differently can word the advice itself: ``advice(lr_option)``.
    """

    def __init__(self, loss, epoch, batch, uniform, lr, clip):
        self.loss, self.epoch, self.batch, self.uniform = loss, epoch, batch, uniform
        self.lr, self.clip = lr, clip
        super().__init__(self.advice("--lr"))

    def __reduce__(self):  # copy.copy and the like rebuild it from its fields, not from its message
        return type(self), (self.loss, self.epoch, self.batch, self.uniform, self.lr, self.clip)

    def advice(self, lr_option):
        """The message, with ``lr_option`` naming where the learning rate is set (``"--lr"``)."""
        clipping = (f"a smaller --clip (now {self.clip})" if self.clip > 0
                    else "gradient clipping (--clip 5; it is off now)")
        return (f"the training loss became {self.loss:.4g} at epoch {self.epoch}, batch {self.batch} "
                f"(a uniform guess scores {self.uniform:.3g}); try a lower {lr_option} (now {self.lr}) "
                f"or {clipping}")


class ConfigError(LstmMusicError):
    """A training or model setting that cannot work (for example a negative learning rate)."""


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainConfig:
    """How to train: every field is a plain number or string, so the config is stored as JSON.

    ``seq_len`` is T, the window length (steps of backpropagation through time); ``step`` is how far
    apart windows start; ``clip`` is the largest global gradient norm (0 turns clipping off);
    ``momentum`` is used by SGD only. ``seed`` fixes the initial weights, the train/validation split,
    the batch order and the dropout masks. ``transpose`` = N also trains on every training piece
    shifted by -N..+N semitones (data augmentation: a tune is the same tune in another key).
    ``processes`` = 2 computes each batch as two halves, the second in a helper process
    (``nn/data_parallel.py``; the helper starts only when NumPy's BLAS runs one thread, as
    ``lstm-music`` sets it: from Python, set ``OPENBLAS_NUM_THREADS=1`` before NumPy is imported);
    1 computes the whole batch in this process. Each gives its own numbers (they differ by rounding
    and by the dropout masks), the same from run to run.
    """
    optimizer: str = "adam"
    lr: float = 0.003
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 32
    seq_len: int = 32
    step: int = 4
    clip: float = 5.0
    seed: int = 0
    val_fraction: float = 0.1
    transpose: int = 0
    processes: int = 2

    def __post_init__(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "seq_len": self.seq_len, "step": self.step}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"the learning rate must be a positive number, got {self.lr!r}")
        if not self.clip >= 0:
            raise ConfigError(f"clip must be >= 0 (0 turns clipping off), got {self.clip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.transpose, bool) or not isinstance(self.transpose, int) or not 0 <= self.transpose <= 12:
            raise ConfigError(f"transpose must be an integer in 0..12 semitones, got {self.transpose!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if isinstance(self.processes, bool) or self.processes not in (1, 2):
            raise ConfigError(f"processes must be 1 or 2, got {self.processes!r}")
        if self.optimizer not in ("sgd", "adam", "rmsprop"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd, adam or rmsprop")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclasses.dataclass
class Dataset:
    """Encoded training data. ``train_x``/``train_y`` are ``(N, T)`` int64 windows whose targets are
    the inputs shifted by one token; ``val_x``/``val_y`` are ``(M, T)`` (M may be 0).

    ``baseline`` is ``data.unigram_baseline`` on the validation targets; ``token_counts`` ``(V,)``
    counts each token in the training pieces; ``ticks_per_beat`` is the resolution of the chunks.
    """
    vocab: Vocabulary
    settings: object  # music.events.EventSettings
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    baseline: dict
    token_counts: np.ndarray
    ticks_per_beat: int
    train_names: list
    val_names: list


def prepare_data(sequences, settings, config, vocab=None):
    """Chunk sequences -> a ``Dataset``, split by file with ``config.seed``.

    ``sequences`` is a list of ``ChunkSequence`` (one per piece), made with event ``settings``.
    With ``config.transpose`` the training pieces (never the validation ones) are also added in
    other keys. The vocabulary is built from every piece (training and validation), so validation
    never meets an unknown chunk. Pass ``vocab`` (e.g. a checkpoint's) to encode with it instead;
    a chunk it does not know then raises ``DataError``.
    """
    sequences = list(sequences)
    if not sequences:
        raise DataError("no pieces to train on")
    split_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[0])
    originals, val_pieces = split_by_file(sequences, config.val_fraction, split_rng)
    train_pieces = list(originals)
    for semitones in range(-config.transpose, config.transpose + 1):
        if semitones != 0:
            shifted = (transpose_piece(piece, semitones) for piece in originals)
            train_pieces += [piece for piece in shifted if piece is not None]
    if vocab is None:
        vocab = Vocabulary.build(train_pieces + val_pieces)
    try:
        train_ids = [vocab.encode(piece) for piece in train_pieces]
        val_ids = [vocab.encode(piece) for piece in val_pieces]
    except UnknownTokenError as error:
        where = f" of {error.source}" if error.source else ""
        raise DataError(f"chunk {error.token!r}{where} is not in the vocabulary ({len(vocab)} "
                        f"chunks): --resume needs the data and event settings the run was made with"
                        ) from None
    train_x, train_y = windows_from_sequences(train_ids, config.seq_len, config.step)
    val_x = val_y = np.zeros((0, config.seq_len), dtype=np.int64)
    long_enough = [ids for ids in val_ids if len(ids) > config.seq_len]
    if long_enough:
        val_x, val_y = windows_from_sequences(long_enough, config.seq_len, config.step)
    counts = np.bincount(np.concatenate(train_ids), minlength=len(vocab))
    ticks = [piece.ticks_per_beat for piece in sequences]
    return Dataset(
        vocab=vocab, settings=settings, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        baseline=unigram_baseline(train_ids, val_y, len(vocab)), token_counts=counts,
        ticks_per_beat=max(set(ticks), key=ticks.count),
        train_names=[piece.name for piece in originals],
        val_names=[piece.name for piece in val_pieces])


def transpose_piece(piece, semitones):
    """``piece`` (a ``ChunkSequence``) with every pitch moved by ``semitones``; ``None`` if a pitch
    would leave MIDI's 0..127. Deltas, velocities, tempo and pedal chunks stay as they are."""
    chunks = []
    for event, chunk in zip(validate_chunks(piece.chunks, piece.name), piece.chunks):
        if not isinstance(event, NoteEvent):  # a tempo or a pedal has no pitch to move
            chunks.append(chunk)
            continue
        if not 0 <= event.pitch + semitones <= 127:
            return None
        chunks.append(format_event(event._replace(pitch=event.pitch + semitones)))
    return dataclasses.replace(piece, name=f"{piece.name} ({semitones:+d})", chunks=chunks)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns. ``interrupted`` is True when Ctrl-C stopped it (``last.npz`` holds
    the exact point reached: ``epoch`` finished epochs plus ``batch`` batches of the next one)."""
    model: Model
    history: list
    run_dir: Path
    interrupted: bool = False
    epoch: int = 0
    batch: int = 0


def train(dataset, model_config, config, run_dir, progress=True, on_epoch=None, resume=False):
    """Train a model on ``dataset`` and write checkpoints, history and a loss plot to ``run_dir``.

    - ``model_config``: an ``nn.model`` config dict; its ``vocab_size`` is set from the vocabulary.
    - ``config``: a ``TrainConfig``. ``config.epochs`` is the total to reach, also when resuming.
    - ``progress``: show a tqdm bar with the running training loss.
    - ``on_epoch``: called with each epoch's history record (a dict) as soon as it is done.
    - ``resume``: continue from ``run_dir/last.npz``; its model config, vocabulary, event settings
      and training settings (all but ``epochs``) must match, or ``CheckpointError`` says which differs.

    Returns a ``TrainResult``. Ctrl-C (SIGINT) finishes the current batch, saves ``last.npz`` and
    returns with ``interrupted=True``. A NaN, infinite or exploding loss raises ``TrainingDiverged``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        model_config = validate_config({**model_config, "vocab_size": len(dataset.vocab)})
        model = Model(model_config, seed=config.seed)
    except (ValueError, TypeError, KeyError) as error:  # TypeError: a field of the wrong type
        if resume:  # the config came from the checkpoint's metadata
            raise CheckpointError(run_dir / "last.npz", f"damaged metadata, cannot resume: model "
                                                        f"config: {error}") from None
        raise ConfigError(str(error)) from None
    optimizer_settings = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = make_optimizer(config.optimizer, config.lr, **optimizer_settings)
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1])
    run = _RunState(model, optimizer, shuffle_rng, dataset, config, run_dir)
    if resume:
        run.restore(run_dir / "last.npz")

    with _InterruptFlag() as interrupt, DataParallel(model, config.processes, optimizer) as parallel:
        if config.processes == 2:
            run.parallel = parallel
        for epoch in range(run.epoch + 1, config.epochs + 1):
            # Kept so that a Ctrl-C save can store the generator as it was *before* this epoch's
            # shuffle: a resume redraws the same order and skips the batches already done.
            epoch_rng_state = shuffle_rng.bit_generator.state
            if not run.train_epoch(epoch, progress, interrupt):
                run.save(run_dir / "last.npz", epoch_rng_state)
                run.save_history(plot=bool(run.history))
                return TrainResult(model, run.history, run_dir, True, run.epoch, run.batch)
            record = run.finish_epoch(epoch)
            if on_epoch is not None:
                on_epoch(record)
    run.save_history(plot=True)
    return TrainResult(model, run.history, run_dir, False, run.epoch, 0)


class _RunState:
    """Everything a run carries from batch to batch, and how to save and restore it exactly."""

    def __init__(self, model, optimizer, shuffle_rng, dataset, config, run_dir):
        self.model, self.optimizer, self.shuffle_rng = model, optimizer, shuffle_rng
        self.dataset, self.config, self.run_dir = dataset, config, run_dir
        self.parallel = None  # or the DataParallel that computes each step, set by train()
        self.epoch = 0           # epochs finished
        self.batch = 0           # batches finished in the epoch under way
        self.loss_sum = 0.0      # sum of those batches' losses (for the epoch's mean)
        self.elapsed = 0.0       # training seconds before this session
        self.history = []
        self.started = time.perf_counter()
        # A fresh net scores about ln V (a uniform guess); ten times that means the run blew up.
        self.uniform = math.log(len(dataset.vocab))
        self.exploded = 10 * max(self.uniform, 1.0)

    def seconds(self):
        return self.elapsed + time.perf_counter() - self.started

    def train_epoch(self, epoch, progress, interrupt):
        """Run the remaining batches of ``epoch``; False if Ctrl-C stopped it between two batches."""
        data, config, model = self.dataset, self.config, self.model
        total = num_batches(len(data.train_x), config.batch_size)
        batches = iterate_batches(data.train_x, data.train_y, config.batch_size, self.shuffle_rng)
        bar = _progress_bar(progress, total, self.batch, f"epoch {epoch}/{config.epochs}")
        try:
            for inputs, targets in islice(batches, self.batch, None):  # skip batches done before a resume
                if model.config["output"] == "last":
                    targets = targets[-1]  # only the token after each window is predicted
                # A diverging run overflows (exp, tanh, a huge step) before its loss turns inf or
                # NaN; the check reports that with advice, so NumPy's own warnings would be noise.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    if self.parallel is None:
                        loss, grads = model.loss(inputs, targets, training=True)
                    else:  # the same, as two halves of the batch in two processes
                        loss, grads = self.parallel.loss(inputs, targets, training=True)
                if not math.isfinite(loss) or loss > self.exploded:
                    raise TrainingDiverged(loss, epoch, self.batch + 1, self.uniform, config.lr, config.clip)
                with np.errstate(over="ignore", invalid="ignore"):
                    if self.parallel is None:
                        clip_grad_norm(grads, config.clip)
                        self.optimizer.step(model.params, grads)
                    else:  # the same, each process updating half of every weight array
                        self.parallel.update(config.clip)
                self.batch += 1
                self.loss_sum += loss
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.loss_sum / self.batch:.3f}", refresh=False)
                if interrupt.requested:
                    return False
        finally:
            if bar is not None:
                bar.close()
        return True

    def finish_epoch(self, epoch):
        """Validate, append the epoch's record to the history, write the checkpoints."""
        val_loss, val_accuracy = evaluate(self.model, self.dataset.val_x, self.dataset.val_y)
        record = {
            "epoch": epoch,
            "train_loss": self.loss_sum / max(self.batch, 1),
            "val_loss": val_loss,
            "val_perplexity": None if val_loss is None else math.exp(min(val_loss, 700.0)),
            "val_accuracy": val_accuracy,
            "baseline_loss": self.dataset.baseline["cross_entropy"],
            "baseline_accuracy": self.dataset.baseline["accuracy"],
            "elapsed": self.seconds(),
        }
        improved = _is_best(record, self.history)
        self.history.append(record)
        self.epoch, self.batch, self.loss_sum = epoch, 0, 0.0
        state = self.shuffle_rng.bit_generator.state  # where the next epoch's shuffle starts
        self.save(self.run_dir / "last.npz", state)
        if improved:
            self.save(self.run_dir / "best.npz", state)
        self.save_history()
        return record

    # -- checkpoints -------------------------------------------------------------------------------

    def meta(self, shuffle_state):
        data = self.dataset
        return {
            "kind": CHECKPOINT_KIND,
            "model_config": self.model.config,
            "vocabulary": list(data.vocab.tokens),
            "event_settings": data.settings.to_dict(),
            "train_config": self.config.to_dict(),
            "ticks_per_beat": data.ticks_per_beat,
            "token_counts": data.token_counts.tolist(),
            "baseline": data.baseline,
            "epoch": self.epoch,
            "batch": self.batch,
            "loss_sum": self.loss_sum,
            "elapsed": self.seconds(),
            "rng": {"shuffle": shuffle_state, "dropout": self.model.rng.bit_generator.state},
            "history": self.history,
        }

    def save(self, path, shuffle_state):
        arrays = {f"param/{name}": value for name, value in self.model.params.items()}
        arrays.update({f"optim/{key}": value for key, value in self.optimizer.state_dict().items()})
        save_checkpoint(path, arrays, self.meta(shuffle_state))

    def restore(self, path):
        """Load ``path`` (a ``last.npz``) into this run, refusing one made for other data or settings."""
        arrays, meta = load_checkpoint(path)
        current = self.meta(None)
        expected = {key: current[key] for key in ("kind", "vocabulary", "event_settings", "model_config")}
        expected["train_config"] = {**self.config.to_dict(), "epochs": meta.get("train_config", {}).get("epochs")}
        check_compatible(meta, expected, path)
        progress = run_progress(path, meta, num_batches(len(self.dataset.train_x), self.config.batch_size))
        params = {name[len("param/"):]: value for name, value in arrays.items() if name.startswith("param/")}
        optim = {name[len("optim/"):]: value for name, value in arrays.items() if name.startswith("optim/")}
        try:
            self.model.load_params(params)
            self.optimizer.load_state_dict(optim)
        except ValueError as error:
            raise CheckpointError(path, str(error)) from None
        try:
            self.shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
            self.model.rng.bit_generator.state = meta["rng"]["dropout"]
        except (KeyError, TypeError, ValueError) as error:
            reason = f"damaged random generator state, cannot resume ({error!r})"
            raise CheckpointError(path, reason) from None
        self.epoch, self.batch, self.loss_sum, self.elapsed, self.history = progress
        self.started = time.perf_counter()

    def save_history(self, plot=False):
        """Write ``history.json`` and ``history.csv`` (and with ``plot``, ``loss.png``)."""
        atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))
        if self.history:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(self.history[0]))
            writer.writeheader()
            writer.writerows(self.history)
            atomic_write_text(self.run_dir / "history.csv", buffer.getvalue())
        if plot:
            from .plots import plot_loss_curves  # matplotlib is slow to import; only when drawing
            plot_loss_curves(self.history, self.run_dir / "loss.png", baseline=self.dataset.baseline)


def evaluate(model, inputs, targets, batch_size=EVAL_BATCH_SIZE):
    """Mean cross-entropy and next-token accuracy of ``model`` on windows ``(N, T)``, dropout off.

    Returns ``(loss, accuracy)`` as floats, or ``(None, None)`` when there are no windows.
    """
    if len(inputs) == 0:
        return None, None
    total_loss, correct, count = 0.0, 0, 0
    for ids, wanted in iterate_batches(inputs, targets, batch_size):
        logits = model.forward(ids, training=False)  # (T, B, V), or (B, V) for output "last"
        if model.config["output"] == "last":
            wanted = wanted[-1]
        log_probs = log_softmax(logits.astype(np.float64))
        picked = np.take_along_axis(log_probs, wanted[..., None], axis=-1)
        total_loss -= float(picked.sum())
        correct += int((logits.argmax(axis=-1) == wanted).sum())
        count += wanted.size
    return total_loss / count, correct / count


def _is_best(record, history):
    key = "val_loss" if record["val_loss"] is not None else "train_loss"
    return all(record[key] < old[key] for old in history if old.get(key) is not None)


def _progress_bar(enabled, total, done, description):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=done, desc=description, leave=False, unit="batch")


class _InterruptFlag:
    """Turn the first Ctrl-C into a flag the loop checks between batches.

    A KeyboardInterrupt can land anywhere, even halfway through ``optimizer.step``, leaving some
    weights updated and others not. Checking a flag between batches stops at a consistent point.
    A second Ctrl-C raises KeyboardInterrupt at once. Only the main thread may install handlers;
    elsewhere Ctrl-C keeps its default behaviour.
    """

    def __init__(self):
        self.requested = False
        self.previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def run_settings(path, meta):
    """``(event settings, TrainConfig, Vocabulary)`` a run checkpoint was made with, to resume it.

    ``meta`` is the checkpoint's metadata (from ``load_run``). Raises ``CheckpointError`` naming
    ``path`` when a field is missing or damaged.
    """
    try:
        settings = EventSettings.from_dict(meta["event_settings"])
        config = TrainConfig.from_dict(meta["train_config"])
        vocab = Vocabulary(meta["vocabulary"])
    except KeyError as error:
        raise CheckpointError(path, f"damaged metadata, cannot resume: no {error}") from None
    except (TypeError, ValueError, AttributeError, ConfigError, VocabularyError) as error:
        raise CheckpointError(path, f"damaged metadata, cannot resume: {error}") from None
    run_progress(path, meta)
    return settings, config, vocab


def run_progress(path, meta, batches_per_epoch=None):
    """``(epoch, batch, loss_sum, elapsed, history)`` from run metadata, each checked.

    ``batch`` (batches done in the unfinished epoch) may not exceed ``batches_per_epoch``.
    Raises ``CheckpointError`` naming ``path`` for a missing or impossible value.
    """
    def damaged(reason):
        return CheckpointError(path, f"damaged metadata, cannot resume: {reason}")

    values = []
    for key in ("epoch", "batch"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise damaged(f"{key} must be an integer >= 0, got {value!r}")
        values.append(value)
    if batches_per_epoch is not None and values[1] > batches_per_epoch:
        raise damaged(f"batch {values[1]} is past the end of an epoch ({batches_per_epoch} batches)")
    for key in ("loss_sum", "elapsed"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise damaged(f"{key} must be a number, got {value!r}")
        values.append(value)
    history = meta.get("history")
    if not isinstance(history, list) or not all(_is_record(record) for record in history):
        raise damaged("history must be a list of epoch records")
    return (*values, history)


def _is_record(record):
    """Whether ``record`` looks like a history record ``finish_epoch`` writes: its keys, numbers or None."""
    keys = {"epoch", "train_loss", "val_loss", "val_perplexity", "val_accuracy", "baseline_loss",
            "baseline_accuracy", "elapsed"}
    return isinstance(record, dict) and set(record) == keys and all(
        value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        for value in record.values())


def load_run(path):
    """Read a run checkpoint for resuming or generating: ``(path, arrays, meta)``.

    ``path`` is a ``.npz`` file or a run folder (then its ``last.npz``); the returned ``path`` is the
    ``.npz`` file actually read. ``arrays`` maps ``"param/<name>"`` and ``"optim/<key>"`` to arrays,
    ``meta`` is the JSON metadata. Raises ``CheckpointError``
    if it is not a checkpoint written by ``train``.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "last.npz").exists():
            raise CheckpointError(path, "no last.npz in this folder: not a run folder, or its run "
                                        "stopped before it saved anything")
        path = path / "last.npz"
    arrays, meta = load_checkpoint(path)
    missing = [key for key in ("model_config", "vocabulary", "event_settings", "rng") if key not in meta]
    if meta.get("kind") != CHECKPOINT_KIND or missing:
        raise CheckpointError(path, "not a training checkpoint of lstm-music (written by `lstm-music train`)")
    return path, arrays, meta
