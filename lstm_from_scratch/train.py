"""The training loop: shuffled batches, clipped gradients, an optimizer step; validation; checkpoints.

Two steps, so each can be read (and tested) on its own:

1. ``prepare_data(sequences, settings, config)`` turns chunk sequences (one per MIDI file) into a
   ``Dataset``: the vocabulary, training and validation windows ``(N, T)`` split *by file*, and the
   unigram baseline the net has to beat.
2. ``train(dataset, model_config, config, run_dir)`` runs the epochs. One training step is::

       loss, grads = model.loss(inputs, targets)      # forward + backpropagation through time
       clip_grad_norm(grads, config.clip)             # tame exploding gradients (Pascanu et al.)
       optimizer.step(model.params, grads)            # the only place weights change

   ``engine`` chooses the code that computes ``model.loss``: "plain" (``nn/``, the default here) or
   "fast" (``fast/``; with ``processes=2`` the loss of each batch comes from
   ``fast.DataParallel.loss``, as two halves in two processes). The step is the same three lines.

   After each epoch, and every ``validate_every`` seconds inside one, it measures the validation
   loss, perplexity and next-token accuracy, appends a record to the history and writes
   ``RUN_DIR/last.npz`` (and ``best.npz`` when validation improved), ``history.json`` and
   ``history.csv``; at the end it draws ``loss.png``. It stops after ``epochs``, after ``minutes``, when
   ``patience`` validations have not improved, or at a signal (Ctrl-C, SIGTERM, SIGHUP), which saves.

Resuming is exact: a checkpoint stores the parameters, the optimizer's buffers and the state of both
random generators (the one that shuffles batches, and draws their keys, and the one behind dropout),
so "2 epochs" and "1 epoch, stop, resume for 1 more" give bit-identical weights, from any save.
"""
import csv
import dataclasses
import hashlib
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
from .data import (DataError, Transposition, count_windows, iterate_batches, num_batches, split_by_file,
                   unigram_baseline, windows_from_sequences)
from .errors import LstmMusicError
from .music.events import EventSettings, pitch_range, transpose_chunk
from .engines import EngineError, check_engine, make_model
from .music.vocab import UnknownTokenError, Vocabulary, VocabularyError
from .nn.model import validate_config
from .nn.optim import clip_grad_norm, make_optimizer

CHECKPOINT_KIND = "lstm_from_scratch.run"
EVAL_BATCH_SIZE = 256  # validation has no backward pass, so bigger batches are cheap ...
EVAL_LOGITS = 2**22  # ... up to this many logits a batch (16 MB in float32)
# Validation uses at most this many windows of the validation pieces, evenly spaced through them: on a
# large folder, measuring every window every minute would cost more than it tells.
VALIDATION_WINDOWS = 4096
# The clock the run's seconds are measured with (a test may put a fake one here).
_clock = time.perf_counter
# The TrainConfig fields a resumed run may change: when to stop, and how often to validate and save.
RESUMABLE = ("epochs", "minutes", "patience", "validate_every", "save_every")


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
    """A training or model setting that cannot work (for example a negative learning rate).

    ``field`` names the ``TrainConfig`` field at fault, when there is one, and the message starts with
    it, so that the command line can put its own option's name there (``--lr`` for ``lr``).
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainConfig:
    """How to train: every field is a plain number, string or None, so the config is stored as JSON.

    ``seq_len`` is T, the window length (steps of backpropagation through time); ``step`` is how far
    apart windows start; ``clip`` is the largest global gradient norm (0 turns clipping off);
    ``momentum`` is used by SGD only. ``seed`` fixes the initial weights, the train/validation split,
    the batch order, the keys of the transposed windows and the dropout masks. ``transpose`` = N moves
    every training window by a random shift in -N..+N semitones each time it is batched (data
    augmentation: a tune is the same tune in another key).

    When to stop: after ``epochs`` passes over the training windows (None: no limit), after
    ``minutes`` of training (None: no limit), or when ``patience`` validations in a row have not
    improved on the best (None: never); at least one of ``epochs`` and ``minutes`` must be set.
    ``validate_every`` and ``save_every`` are seconds of training between validations inside an
    epoch, and between saves of ``last.npz`` (every validation saves too). The fields in ``RESUMABLE``
    may change when a run is resumed; the others are the run's own. Which code computes the steps
    (the engine) is not a setting of the run: see ``train``.
    """
    optimizer: str = "adam"
    lr: float = 0.003
    momentum: float = 0.9
    epochs: object = 10
    batch_size: int = 32
    seq_len: int = 32
    step: int = 4
    clip: float = 5.0
    seed: int = 0
    val_fraction: float = 0.1
    transpose: int = 0
    minutes: object = None
    patience: object = None
    validate_every: float = 60.0
    save_every: float = 120.0

    def __post_init__(self):
        positive = {"batch_size": self.batch_size, "seq_len": self.seq_len, "step": self.step}
        if self.epochs is not None:
            positive["epochs"] = self.epochs
        if self.patience is not None:
            positive["patience"] = self.patience
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}", name)
        for name in ("minutes", "validate_every", "save_every"):
            value = getattr(self, name)
            if value is None and name == "minutes":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}", name)
        if self.epochs is None and self.minutes is None:
            raise ConfigError("epochs or minutes must be given (or both): the run needs an end", "epochs")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be a positive number (the learning rate), got {self.lr!r}", "lr")
        if not self.clip >= 0:
            raise ConfigError(f"clip must be >= 0 (0 turns clipping off), got {self.clip!r}", "clip")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}", "seed")
        if isinstance(self.transpose, bool) or not isinstance(self.transpose, int) or not 0 <= self.transpose <= 12:
            raise ConfigError(f"transpose must be an integer in 0..12 semitones, got {self.transpose!r}",
                              "transpose")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}", "val_fraction")
        if self.optimizer not in ("sgd", "adam", "rmsprop"):
            raise ConfigError(f"optimizer must be sgd, adam or rmsprop, got {self.optimizer!r}", "optimizer")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclasses.dataclass
class Dataset:
    """Encoded training data. ``train_x``/``train_y`` are ``(N, T)`` int64 windows of the training
    pieces, in their own keys, whose targets are the inputs shifted by one token; ``val_x``/``val_y``
    are ``(M, T)`` (M may be 0).

    ``transposition`` is ``None``, or (with ``TrainConfig.transpose``) the ``data.Transposition`` that
    moves each training window into a random key each time it is batched. ``baseline`` is
    ``data.unigram_baseline`` on the validation targets; ``token_counts`` ``(V,)`` counts each token in
    the training pieces, in every key they are trained in; ``ticks_per_beat`` is the resolution of the
    chunks. ``fingerprint`` identifies the pieces and event settings (see ``data_fingerprint``).
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
    transposition: object = None
    fingerprint: dict = None


def prepare_data(sequences, settings, config, vocab=None):
    """Chunk sequences -> a ``Dataset``, split by file with ``config.seed``.

    ``sequences`` is a list of ``ChunkSequence`` (one per piece), made with event ``settings``.
    With ``config.transpose`` = N, every training window (never a validation one) is moved by a
    random shift in -N..N semitones each time it is batched, within the range that keeps its piece's
    pitches in 0..127; the vocabulary then holds the training pieces' chunks in all those keys.
    The vocabulary is built from every piece (training and validation), so validation never meets an
    unknown chunk. Pass ``vocab`` (e.g. a checkpoint's) to encode with it instead; a chunk it does not
    know then raises ``DataError``.
    """
    sequences = list(sequences)
    if not sequences:
        raise DataError("no pieces to train on")
    split_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[0])
    train_pieces, val_pieces = split_by_file(sequences, config.val_fraction, split_rng)
    shift_ranges = [_shift_range(piece, config.transpose) for piece in train_pieces]
    if vocab is None:
        chunks = {chunk for piece in val_pieces for chunk in piece.chunks}
        for piece, (low, high) in zip(train_pieces, shift_ranges):
            distinct = set(piece.chunks)
            for semitones in range(low, high + 1):
                chunks.update(transpose_chunk(chunk, semitones) for chunk in distinct)
        vocab = Vocabulary.build([chunks])
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
    transposition, counts = None, np.bincount(np.concatenate(train_ids), minlength=len(vocab))
    if config.transpose:
        table = _transposition_table(vocab, config.transpose)
        windows = [count_windows(len(ids), config.seq_len, config.step) for ids in train_ids]
        low, high = (np.repeat([r[k] for r in shift_ranges], windows) for k in (0, 1))
        transposition = Transposition(table, low, high)
        counts = sum(np.bincount(table[semitones + config.transpose][ids], minlength=len(vocab))
                     for ids, (lo, hi) in zip(train_ids, shift_ranges) for semitones in range(lo, hi + 1))
    ticks = [piece.ticks_per_beat for piece in sequences]
    return Dataset(
        vocab=vocab, settings=settings, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        baseline=unigram_baseline(train_ids, val_y, len(vocab)), token_counts=counts,
        ticks_per_beat=max(set(ticks), key=ticks.count),
        train_names=[piece.name for piece in train_pieces],
        val_names=[piece.name for piece in val_pieces],
        transposition=transposition, fingerprint=data_fingerprint(sequences, settings))


def _shift_range(piece, max_shift):
    """(low, high): the shifts in -max_shift..max_shift that keep every pitch of ``piece`` in 0..127."""
    pitches = pitch_range(piece.chunks, piece.name)
    if pitches is None:
        return 0, 0
    return max(-max_shift, -pitches[0]), min(max_shift, 127 - pitches[1])


def _transposition_table(vocab, max_shift):
    """(2 * max_shift + 1, V) int64: row s + max_shift maps each token id to the id of the token moved
    by s semitones, or to -1 when that token is not in the vocabulary (it never is asked for: a
    window is only moved within its piece's range, whose chunks are all in the vocabulary)."""
    table = np.full((2 * max_shift + 1, len(vocab)), -1, dtype=np.int64)
    for token_id, token in enumerate(vocab.tokens):
        for semitones in range(-max_shift, max_shift + 1):
            moved = transpose_chunk(token, semitones)
            if moved is not None and moved in vocab:
                table[semitones + max_shift, token_id] = vocab.index(moved)
    return table


def data_fingerprint(sequences, settings):
    """What a run was trained on, to tell it from other data on ``--resume``: a dict with the event
    settings and, per piece, its name and a hash of its chunks (the first 16 hex digits of SHA-256)."""
    pieces = []
    for piece in sequences:
        text = f"{piece.ticks_per_beat}\n" + " ".join(piece.chunks)
        pieces.append([piece.name, hashlib.sha256(text.encode()).hexdigest()[:16]])
    return {"settings": settings.to_dict(), "pieces": pieces}


def transpose_piece(piece, semitones):
    """``piece`` (a ``ChunkSequence``) with every pitch moved by ``semitones``; ``None`` if a pitch
    would leave MIDI's 0..127. Deltas, velocities, tempo and pedal chunks stay as they are."""
    chunks = [transpose_chunk(chunk, semitones) for chunk in piece.chunks]
    if None in chunks:
        return None
    return dataclasses.replace(piece, name=f"{piece.name} ({semitones:+d})", chunks=chunks)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns.

    ``stopped`` says why the run ended: "epochs" (``config.epochs`` reached), "minutes" (the time
    budget), "patience" (validation stopped improving), or the name of the signal that stopped it
    ("SIGINT" for Ctrl-C, "SIGTERM", "SIGHUP"). ``interrupted`` is True for a signal: ``last.npz`` then
    holds the exact point reached, ``epoch`` finished epochs plus ``batch`` batches of the next one.
    """
    model: object  # an nn.model.Model, or a fast.FastModel
    history: list
    run_dir: Path
    interrupted: bool = False
    epoch: int = 0
    batch: int = 0
    stopped: str = "epochs"


@dataclasses.dataclass
class Progress:
    """Where a run is, for ``train``'s ``on_progress`` callback (called after every batch).

    ``epoch`` is the epoch under way (from 1) of ``epochs`` (None: no limit, ``minutes`` decides);
    ``batch`` of ``batches`` is its last finished batch; ``loss`` the mean training loss since the last
    validation; ``elapsed`` the run's training seconds; ``left`` an estimate of the seconds left (None
    until there is one); ``session_batches`` and ``session_seconds`` count the batches and seconds of
    this session alone, for the speed.
    """
    epoch: int
    epochs: object
    batch: int
    batches: int
    loss: float
    elapsed: float
    left: object
    session_batches: int
    session_seconds: float


def train(dataset, model_config, config, run_dir, progress=True, on_epoch=None, resume=False,
          engine="plain", processes=1, on_progress=None):
    """Train a model on ``dataset`` and write checkpoints, history and a loss plot to ``run_dir``.

    - ``model_config``: an ``nn.model`` config dict; its ``vocab_size`` is set from the vocabulary.
    - ``config``: a ``TrainConfig``. ``config.epochs`` and ``config.minutes`` are totals to reach, also
      when resuming; the run ends at the first of them.
    - ``progress``: show a tqdm bar with the running training loss.
    - ``on_epoch``: called with each history record (a dict) as soon as it is made: one at the end of
      every epoch, and one at every validation inside an epoch (``config.validate_every``).
    - ``on_progress``: called with a ``Progress`` after every batch.
    - ``resume``: continue from ``run_dir/last.npz``. Its data (pieces and event settings), model
      config, vocabulary and training settings (all but those in ``RESUMABLE``) must match, or
      ``CheckpointError`` says what differs, before anything is written.
    - ``engine``: "plain" (``nn/``) or "fast" (``fast/``); see ``engines.py``. ``processes=2`` (fast
      engine only) computes each batch as two halves, the second in a helper process, which starts
      when NumPy's BLAS runs one thread on two or more cores (``lstm-music`` sets that up; from
      Python, set ``OPENBLAS_NUM_THREADS=1`` before NumPy is imported). Each engine and process
      count gives its own numbers (they differ by rounding, and two processes draw their dropout
      masks differently), the same from run to run. Every history record says which engine ran.

    Validation runs at the end of every epoch and every ``config.validate_every`` seconds of
    training inside one; ``best.npz`` is the state with the lowest validation loss so far, and
    ``last.npz`` is also written every ``config.save_every`` seconds, so a killed run loses at most
    that much. Ctrl-C, SIGTERM and SIGHUP finish the current batch, save ``last.npz`` and return with
    ``interrupted=True``; resuming from any save gives the weights of a run never stopped, bit for
    bit. A NaN, infinite or exploding loss raises ``TrainingDiverged``.
    """
    try:
        check_engine(engine, processes)
    except EngineError as error:
        raise ConfigError(str(error)) from None
    run_dir = Path(run_dir)
    try:
        model_config = validate_config({**model_config, "vocab_size": len(dataset.vocab)})
        model = make_model(model_config, engine, seed=config.seed)
    except (ValueError, TypeError, KeyError) as error:  # TypeError: a field of the wrong type
        if resume:  # the config came from the checkpoint's metadata
            raise CheckpointError(run_dir / "last.npz", f"damaged metadata, cannot resume: model "
                                                        f"config: {error}") from None
        raise ConfigError(str(error)) from None
    optimizer_settings = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = make_optimizer(config.optimizer, config.lr, **optimizer_settings)
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1])
    run = _RunState(model, optimizer, shuffle_rng, dataset, config, run_dir, engine, processes)
    if resume:
        run.restore(run_dir / "last.npz")
    run_dir.mkdir(parents=True, exist_ok=True)

    with _InterruptFlag() as interrupt, run:
        stopped = run.over()
        while stopped is None:
            epoch = run.epoch + 1
            # Kept so that a save inside the epoch stores the generator as it was *before* this
            # epoch's shuffle: a resume redraws the same order (and keys) and skips the batches done.
            run.epoch_rng_state = shuffle_rng.bit_generator.state
            stopped = run.train_epoch(epoch, progress, interrupt, on_epoch, on_progress)
            if stopped is None:  # the epoch is done
                record = run.validate(epoch, end_of_epoch=True)
                if on_epoch is not None:
                    on_epoch(record)
                # at the time the save holds, so that a resumed run agrees on whether the time is up
                stopped = run.over(record["elapsed"])
        if stopped in _InterruptFlag.SIGNALS:
            run.save(run_dir / "last.npz", run.epoch_rng_state)
            run.save_history(plot=bool(run.history))
            return TrainResult(model, run.history, run_dir, True, run.epoch, run.batch, stopped)
    run.save_history(plot=True)
    return TrainResult(model, run.history, run_dir, False, run.epoch, run.batch, stopped)


class _RunState:
    """Everything a run carries from batch to batch, and how to save and restore it exactly."""

    def __init__(self, model, optimizer, shuffle_rng, dataset, config, run_dir, engine, processes):
        self.model, self.optimizer, self.shuffle_rng = model, optimizer, shuffle_rng
        self.dataset, self.config, self.run_dir = dataset, config, run_dir
        self.engine, self.processes = engine, processes
        # The loss of a batch and its gradients: model.loss, or the same as two halves computed in two
        # processes (fast/data_parallel.py).
        self.parallel = None
        self.batch_loss = model.loss
        if processes == 2:
            from .fast import DataParallel
            self.parallel = DataParallel(model)
            self.batch_loss = self.parallel.loss
        self.val_x, self.val_y = _evenly_spaced(dataset.val_x, dataset.val_y, VALIDATION_WINDOWS)
        self.batches_per_epoch = num_batches(len(dataset.train_x), config.batch_size)
        self.epoch = 0           # epochs finished
        self.batch = 0           # batches finished in the epoch under way
        self.loss_sum = 0.0      # sum of the losses of the batches since the last validation ...
        self.loss_count = 0      # ... and how many there were
        self.elapsed = 0.0       # training seconds before this session
        self.history = []
        self.epoch_rng_state = shuffle_rng.bit_generator.state
        self.started = _clock()
        self.session_batches = 0
        self.last_validation = self.last_save = 0.0  # seconds() at the last of each
        self.stale = 0  # validations since the best one (for config.patience)
        self.validation_seconds = 0.0  # how long the last validation took
        # A fresh net scores about ln V (a uniform guess); ten times that means the run blew up.
        self.uniform = math.log(len(dataset.vocab))
        self.exploded = 10 * max(self.uniform, 1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.parallel is not None:
            self.parallel.close()  # stops the helper; the model keeps the weights it reached

    def seconds(self):
        return self.elapsed + _clock() - self.started

    def over(self, now=None):
        """Why the run should stop at a batch's end: "epochs", "minutes" or "patience"; or None.
        ``now`` is the run's seconds at that point (by default, now)."""
        config = self.config
        now = self.seconds() if now is None else now
        if config.epochs is not None and self.epoch >= config.epochs:
            return "epochs"
        if config.minutes is not None and now >= 60 * config.minutes:
            return "minutes"
        if config.patience is not None and self.stale >= config.patience:
            return "patience"
        return None

    def train_epoch(self, epoch, progress, interrupt, on_epoch, on_progress):
        """Run the remaining batches of ``epoch``. Returns None when they are all done; else why it
        stopped between two batches: a signal's name, "minutes" (the run has validated and saved)."""
        data, config, model = self.dataset, self.config, self.model
        batches = iterate_batches(data.train_x, data.train_y, config.batch_size, self.shuffle_rng,
                                  shifts=data.transposition)
        of = "" if config.epochs is None else f"/{config.epochs}"
        bar = _progress_bar(progress, self.batches_per_epoch, self.batch, f"epoch {epoch}{of}")
        try:
            for inputs, targets in islice(batches, self.batch, None):  # skip batches done before a resume
                if model.config["output"] == "last":
                    targets = targets[-1]  # only the token after each window is predicted
                # A diverging run overflows (exp, tanh, a huge step) before its loss turns inf or
                # NaN; the check reports that with advice, so NumPy's own warnings would be noise.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss, grads = self.batch_loss(inputs, targets, training=True)
                if not math.isfinite(loss) or loss > self.exploded:
                    raise TrainingDiverged(loss, epoch, self.batch + 1, self.uniform, config.lr, config.clip)
                with np.errstate(over="ignore", invalid="ignore"):
                    clip_grad_norm(grads, config.clip)
                    self.optimizer.step(model.params, grads)
                self.batch += 1
                self.session_batches += 1
                self.loss_sum += loss
                self.loss_count += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.loss_sum / self.loss_count:.3f}", refresh=False)
                if on_progress is not None:
                    on_progress(self.progress(epoch))
                if interrupt.signal is not None:
                    return interrupt.signal
                if self.batch == self.batches_per_epoch:
                    break  # the epoch's end: validated and saved by the caller
                now = self.seconds()
                # Stop early enough for the last validation to end within the budget.
                if config.minutes is not None and now + self.validation_seconds >= 60 * config.minutes:
                    self.validate(epoch, end_of_epoch=False, callback=on_epoch)
                    return "minutes"
                if now - self.last_validation >= config.validate_every and len(self.val_x):
                    self.validate(epoch, end_of_epoch=False, callback=on_epoch)
                elif now - self.last_save >= config.save_every:
                    self.save(self.run_dir / "last.npz", self.epoch_rng_state)
                    self.save_history()
        finally:
            if bar is not None:
                bar.close()
        return None

    def progress(self, epoch):
        elapsed, session = self.seconds(), _clock() - self.started
        config, left = self.config, None
        if self.session_batches >= 5:  # a speed to go on
            per_batch = session / self.session_batches
            if config.epochs is not None:
                left = per_batch * ((config.epochs - epoch + 1) * self.batches_per_epoch - self.batch)
            if config.minutes is not None:
                budget = max(0.0, 60 * config.minutes - elapsed)
                left = budget if left is None else min(left, budget)
        return Progress(epoch, config.epochs, self.batch, self.batches_per_epoch,
                        self.loss_sum / max(self.loss_count, 1), elapsed, left, self.session_batches, session)

    def validate(self, epoch, end_of_epoch, callback=None):
        """Measure the validation loss, append a history record, and save ``last.npz`` (and
        ``best.npz`` when validation improved). At an epoch's end the run moves on to the next epoch."""
        began = self.seconds()
        val_loss, val_accuracy = evaluate(self.model, self.val_x, self.val_y)
        self.validation_seconds = self.seconds() - began
        record = {
            "epoch": epoch,
            "batch": self.batch,
            "epochs": epoch - 1 + self.batch / max(self.batches_per_epoch, 1),
            "train_loss": self.loss_sum / max(self.loss_count, 1),
            "val_loss": val_loss,
            "val_perplexity": None if val_loss is None else math.exp(min(val_loss, 700.0)),
            "val_accuracy": val_accuracy,
            "baseline_loss": self.dataset.baseline["cross_entropy"],
            "baseline_accuracy": self.dataset.baseline["accuracy"],
            "elapsed": self.seconds(),
            "engine": self.engine,
            "processes": self.processes,
        }
        improved = _is_best(record, self.history)
        self.stale = 0 if improved else self.stale + 1
        self.history.append(record)
        self.loss_sum, self.loss_count = 0.0, 0
        if end_of_epoch:
            self.epoch, self.batch = epoch, 0
            self.epoch_rng_state = self.shuffle_rng.bit_generator.state  # where the next epoch starts
        self.save(self.run_dir / "last.npz", self.epoch_rng_state)
        if improved:
            self.save(self.run_dir / "best.npz", self.epoch_rng_state)
        self.save_history()
        self.last_validation = self.last_save = record["elapsed"]
        if callback is not None:
            callback(record)
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
            "data": data.fingerprint,
            "ticks_per_beat": data.ticks_per_beat,
            "token_counts": data.token_counts.tolist(),
            "baseline": data.baseline,
            "epoch": self.epoch,
            "batch": self.batch,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "elapsed": self.seconds(),
            "rng": {"shuffle": shuffle_state, "dropout": self.model.rng.bit_generator.state},
            "engine": {"name": self.engine, "processes": self.processes},
            "stale": self.stale,
            "history": self.history,
        }

    def save(self, path, shuffle_state):
        arrays = {f"param/{name}": value for name, value in self.model.params.items()}
        arrays.update({f"optim/{key}": value for key, value in self.optimizer.state_dict().items()})
        save_checkpoint(path, arrays, self.meta(shuffle_state))
        if path.name == "last.npz":
            self.last_save = self.seconds()

    def restore(self, path):
        """Load ``path`` (a ``last.npz``) into this run, refusing one made for other data or settings."""
        arrays, meta = load_checkpoint(path)
        check_same_data(meta, self.dataset.fingerprint, path)
        current = self.meta(None)
        expected = {key: current[key] for key in ("kind", "vocabulary", "event_settings", "model_config")}
        stored = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
        expected["train_config"] = {**self.config.to_dict(), **{key: stored.get(key) for key in RESUMABLE}}
        if "processes" in stored:  # runs from before the engine switch kept it there; ignore it
            expected["train_config"]["processes"] = stored["processes"]
        check_compatible(meta, expected, path)
        progress = run_progress(path, meta, self.batches_per_epoch)
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
        self.loss_count = meta.get("loss_count", self.batch)
        self.stale = meta.get("stale", 0)
        self.epoch_rng_state = meta["rng"]["shuffle"]
        self.started = _clock()
        self.last_validation = self.last_save = self.elapsed

    def save_history(self, plot=False):
        """Write ``history.json`` and ``history.csv`` (and with ``plot``, ``loss.png``)."""
        atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))
        if self.history:
            buffer = io.StringIO()
            columns = list(dict.fromkeys(key for record in self.history for key in record))
            writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self.history)
            atomic_write_text(self.run_dir / "history.csv", buffer.getvalue())
        if plot:
            from .plots import plot_loss_curves  # matplotlib is slow to import; only when drawing
            plot_loss_curves(self.history, self.run_dir / "loss.png", baseline=self.dataset.baseline)


def check_same_data(meta, fingerprint, path, data="the data given"):
    """Raise ``CheckpointError`` naming ``path`` when ``fingerprint`` (``data_fingerprint`` of the data
    given now, called ``data`` in the message) is not that of the run's training data, saying what
    differs. Runs from before the fingerprint was kept are let through (their vocabulary is still
    checked)."""
    stored = meta.get("data")
    if not isinstance(stored, dict) or fingerprint is None:
        return
    if _settings_of(stored.get("settings")) != _settings_of(fingerprint["settings"]):
        raise CheckpointError(path, "the run was made with other event settings ("
                                    f"{_short_json(stored.get('settings'))}, now "
                                    f"{_short_json(fingerprint['settings'])})")
    then = {name: digest for name, digest in stored.get("pieces", [])}
    now = {name: digest for name, digest in fingerprint["pieces"]}
    if then == now:
        return
    missing = sorted(set(then) - set(now))
    new = sorted(set(now) - set(then))
    changed = sorted(name for name in set(then) & set(now) if then[name] != now[name])
    parts = [f"{len(names)} {what} ({_names(names)})" for what, names in
             (("missing", missing), ("new", new), ("changed", changed)) if names]
    raise CheckpointError(path, f"{data} is not the data the run was trained on ({len(then)} "
                                f"{_plural(len(then), 'piece')}): " + ", ".join(parts)
                          + "; give the same DATA to --resume, or train a new run with --out")


def _settings_of(data):
    """Event settings from a fingerprint's dict, read as ``EventSettings.from_dict`` reads them: a run
    saved before a key existed (``tempo_map``, ``pedal``) gets the meaning it had then, so resuming it
    compares like with like. A dict that does not parse is compared as it is."""
    try:
        return EventSettings.from_dict(data)
    except (ValueError, TypeError, AttributeError):
        return data


def _names(names, shown=3):
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _short_json(value, limit=80):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plural(count, word):
    return word if count == 1 else word + "s"


def _evenly_spaced(X, Y, limit):
    """At most ``limit`` of the windows X, Y (W, T), evenly spaced through them, in order: the same
    windows at every validation, so that the records compare, and a bounded cost on a large folder."""
    if len(X) <= limit:
        return X, Y
    rows = np.linspace(0, len(X) - 1, limit).round().astype(np.int64)
    return X[rows], Y[rows]


def evaluate(model, inputs, targets, batch_size=None):
    """Mean cross-entropy and next-token accuracy of ``model`` on windows ``(N, T)``, dropout off.

    Returns ``(loss, accuracy)`` as floats, or ``(None, None)`` when there are no windows.
    ``batch_size`` windows go through the model at a time; by default as many as keep the logits of a
    batch to about ``EVAL_LOGITS`` numbers, since validation has no backward pass but a large
    vocabulary makes big logit arrays.
    """
    if len(inputs) == 0:
        return None, None
    if batch_size is None:
        batch_size = max(1, min(EVAL_BATCH_SIZE, EVAL_LOGITS // (inputs.shape[1] * model.config["vocab_size"])))
    total_loss, correct, count = 0.0, 0, 0
    for ids, wanted in iterate_batches(inputs, targets, batch_size):
        logits = model.forward(ids, training=False)  # (T, B, V), or (B, V) for output "last"
        if model.config["output"] == "last":
            wanted = wanted[-1]
        # -log p[target] = log(sum(exp(logits))) - logits[target], with the sum shifted by each row's
        # largest logit so that exp cannot overflow (see nn/losses.py); one (T, B, V) temporary.
        largest = logits.max(axis=-1, keepdims=True)
        sums = np.exp(logits - largest).sum(axis=-1, dtype=np.float64)
        log_z = largest[..., 0].astype(np.float64) + np.log(sums)
        picked = np.take_along_axis(logits, wanted[..., None], axis=-1)[..., 0].astype(np.float64)
        total_loss += float(np.sum(log_z - picked))
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
    """Turn the first Ctrl-C (SIGINT), SIGTERM or SIGHUP into a flag the loop checks between batches.

    A signal can land anywhere, even halfway through ``optimizer.step``, leaving some weights updated
    and others not. Checking a flag between batches stops at a consistent point, which the trainer
    saves. ``signal`` is the name of the first signal received ("SIGINT", ...), or None. A second
    signal raises KeyboardInterrupt at once. Only the main thread may install handlers; elsewhere the
    signals keep their default behaviour.
    """

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self):
        self.signal = None
        self.previous = {}

    def _handler(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)  # Windows has no SIGHUP
                if number is not None:
                    self.previous[number] = signal.signal(number, self._handler)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
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
    """Whether ``record`` looks like a history record ``validate`` writes: its keys, numbers or None
    (and the engine's name). Records from before the engine switch have no "engine" or "processes",
    and those from before validation inside epochs no "batch" or "epochs"."""
    keys = {"epoch", "train_loss", "val_loss", "val_perplexity", "val_accuracy", "baseline_loss",
            "baseline_accuracy", "elapsed"}
    if not isinstance(record, dict) or not keys <= set(record) <= keys | {"engine", "processes", "batch", "epochs"}:
        return False
    return record.get("engine", "plain") in ("plain", "fast") and all(
        value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        for key, value in record.items() if key != "engine")


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
