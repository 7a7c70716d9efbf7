"""Priming and roulette-wheel sampling: a trained model writes new music, one token at a time.

Generation runs the model at batch size 1 (B = 1):

1. **Prime.** Feed the prime tokens through the model one step at a time, so the LSTM's state
   `(h, c)` (each `(1, H)`) summarises "the music so far".
2. **Sample.** Turn the last logits `(V,)` into probabilities (temperature, optional top-k), draw
   one token id with the roulette wheel, feed it back in with `model.step`, and repeat.

The roulette wheel is the seed project's sampler: token i is picked with probability
`p_i / sum(p)`. We spin it as `searchsorted(cumsum(p), u * total)` with an explicit
`np.random.Generator`, so a fixed seed reproduces a piece exactly and rounding can never make it
crash ("probabilities do not sum to 1" is a classic bug of `rng.choice(V, p=p)`).
"""
import dataclasses
import math
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError
from .errors import DataError
from .music import events
from .engines import check_engine, make_model
from .music.vocab import Vocabulary, VocabularyError
from .train import load_run

# Temperatures at or below this are treated as 0: the argmax, exactly (dividing by ~0 would overflow).
MIN_TEMPERATURE = 1e-6


# ----------------------------------------------------------------------------------------------
# Sampling one token
# ----------------------------------------------------------------------------------------------

def roulette_wheel(probs, rng):
    """Draw one index i with probability `probs[i] / sum(probs)`.

    `probs` is `(V,)`, non-negative, and need not sum to 1. Picture a wheel whose slices have
    the widths `probs`: `cumsum` gives the slice edges, a uniform `u * total` is where the ball
    lands, and `searchsorted` finds the slice. `side="right"` skips zero-width slices, and if
    `u * total` rounds up to the total itself we take the last slice that has any width.
    """
    probs = np.asarray(probs, dtype=np.float64)
    # (The array methods, not np.cumsum and np.searchsorted: the same functions without their
    # Python wrappers, which count at one draw per generated token.)
    edges = probs.cumsum()
    total = float(edges[-1])
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"cannot sample: the probabilities sum to {total}")
    index = int(edges.searchsorted(rng.random() * total, side="right"))
    if index == len(probs):  # u * total rounded up to total: take the last slice that has width
        index = int(np.flatnonzero(probs > 0)[-1])
    return index


sample_index = roulette_wheel  # an older name for the same function, kept for existing callers


def apply_temperature(logits, temperature=1.0):
    """Turn logits `(V,)` into probabilities `(V,)`, sharpened or flattened by `temperature`.

    `softmax(logits / T)`: T = 1 keeps the model's own distribution, T < 1 favours likely
    tokens, T > 1 flattens towards uniform. As T -> 0 the distribution becomes one-hot on the
    argmax; we return exactly that for T <= MIN_TEMPERATURE instead of dividing by ~0.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    probs = np.array(logits, dtype=np.float64)  # a copy, in float64: the steps below work in it
    if temperature <= MIN_TEMPERATURE:
        one_hot = np.zeros_like(probs)
        one_hot[np.argmax(probs)] = 1.0
        return one_hot
    # softmax(logits / T) in place: the steps of nn.losses.softmax (shift by the largest, exp, divide
    # by the sum), without its new arrays, since generation does this once for every token.
    if temperature != 1:
        probs /= temperature
    probs -= probs.max()
    np.exp(probs, out=probs)
    probs /= probs.sum()
    return probs


def top_k_filter(probs, k=None):
    """Keep the `k` largest probabilities of `probs` `(V,)`, zero the rest (None keeps all).

    The survivors are not renormalised; the roulette wheel divides by their sum anyway.
    Ties at the k-th value are broken by index (stable sort), so the result is deterministic.
    """
    if k is None or k >= len(probs):
        return probs
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    keep = np.argsort(-probs, kind="stable")[:k]
    filtered = np.zeros_like(probs)
    filtered[keep] = probs[keep]
    return filtered


# ----------------------------------------------------------------------------------------------
# Generating a sequence
# ----------------------------------------------------------------------------------------------

class NoteRules:
    """Grammar rules for sampling event chunks, applied as a mask before each draw.

    1. A note-off only for a pitch that is sounding. A note-off for a silent pitch does nothing
       when played, yet a small net puts real probability on them (15-20% of its note-offs in our
       demo runs), so its notes end late or never. The rule gives that probability to the chunks
       that can happen. The sustain pedal likewise: released only while down, pressed only while up.
    2. With ``max_held_beats``, a note (or the sustain pedal) held that long must end next: only
       the note-offs of the overdue pitches (and the pedal release) are allowed, and the net still
       chooses among them. Event nets forget which notes they started; without this, a forgotten
       bass note drones to the end of the piece, and a forgotten pedal blurs everything after it.

    Tempo chunks are always allowed; they only move the clock by their delta.
    ``allowed()`` is a bool mask ``(V,)``; ``update(token)`` follows time and the sounding notes.
    """

    PEDAL = 128  # the sustain pedal's slot in the arrays indexed by pitch (0..127)

    def __init__(self, vocab, ticks_per_beat=4, max_held_beats=None):
        V = len(vocab)
        self.delta = np.zeros(V, dtype=np.int64)
        self.off_pitch = np.full(V, -1)  # the pitch a chunk ends (PEDAL: a pedal release), -1 for others
        self.on_pitch = np.full(V, -1)  # the pitch a chunk starts (PEDAL: a pedal press)
        for index, token in enumerate(vocab.tokens):
            try:
                event = events.parse_chunk(token)
            except events.ChunkError:  # not an event chunk: no rule applies to it
                continue
            self.delta[index] = event.delta
            if isinstance(event, events.NoteEvent):
                is_off = not event.is_on or event.velocity == 0  # a note-on with velocity 0 ends a note
                (self.off_pitch if is_off else self.on_pitch)[index] = event.pitch
            elif isinstance(event, events.ControlEvent) and event.control == events.SUSTAIN_PEDAL:
                (self.on_pitch if event.value >= 64 else self.off_pitch)[index] = self.PEDAL
        # Which chunks end something, which pitch (0 for the others, masked out), which press the pedal:
        # fixed by the vocabulary, so worked out once here, not at every generated token.
        self.is_off = self.off_pitch >= 0
        self.off_pitch_or_0 = np.where(self.is_off, self.off_pitch, 0)
        self.pedal_press = self.on_pitch == self.PEDAL
        self.max_ticks = None if not max_held_beats else max_held_beats * ticks_per_beat
        self.now = 0
        self.started = np.full(129, -1)  # tick each sounding pitch (and the pedal) started at, -1 if not

    def allowed(self):
        """A bool mask (V,): True for each chunk these rules let the net play next."""
        is_off, off_pitch = self.is_off, self.off_pitch_or_0
        sounding = self.started >= 0
        if self.max_ticks is not None:
            overdue = sounding & (self.now - self.started >= self.max_ticks)
            must_end = is_off & overdue[off_pitch]
            if must_end.any():
                return must_end
        return (~is_off | sounding[off_pitch]) & ~(self.pedal_press & sounding[self.PEDAL])

    def update(self, token):
        """Follow one played chunk (an int id): advance the clock by its delta, start or end its note."""
        self.now += self.delta[token]
        if self.on_pitch[token] >= 0:
            if self.on_pitch[token] != self.PEDAL or self.started[self.PEDAL] < 0:  # a held pedal keeps its start
                self.started[self.on_pitch[token]] = self.now
        elif self.off_pitch[token] >= 0:
            self.started[self.off_pitch[token]] = -1


def prime_model(model, prime_ids):
    """Run the model over `prime_ids` (a list of P >= 1 ids), one step at a time, at batch 1.

    Returns `(logits, state)`: the logits `(V,)` after the last prime token (the distribution of
    the first new token) and the state to continue from: a list with one `(h, c)` per LSTM
    layer, each `(1, H)`.
    """
    if len(prime_ids) == 0:
        raise ValueError("the prime needs at least one token")
    state = model.initial_state(1)
    for token in prime_ids:
        logits, state = model.step(np.array([token]), state)
    return logits[0], state


def generate(model, vocab, prime_ids, length, temperature=1.0, top_k=None, rng=None, rule=None):
    """Generate `length` new token ids after priming the model with `prime_ids`.

    `model` is an `nn.model.Model` (or a fast engine's `FastModel`) whose vocabulary is `vocab`
    (its size is checked);
    `prime_ids` is a list of P >= 1 ids, shape `(P,)`; `rng` an `np.random.Generator` (a fixed
    seed gives the same piece). `rule` (optional, e.g. `NoteRules(vocab)`) zeroes the chunks it
    does not allow before each draw. Returns a list of `length` ints (without the prime).
    """
    if len(vocab) != model.config["vocab_size"]:
        raise CheckpointError(None, f"the vocabulary has {len(vocab)} tokens but the model "
                                    f"expects {model.config['vocab_size']}")
    rng = np.random.default_rng() if rng is None else rng
    was_training = getattr(model, "training", False)
    model.set_training(False)  # dropout off while generating
    try:
        logits, state = prime_model(model, prime_ids)
        if rule is not None:  # the prime's notes are sounding too: the rules must know them
            for token in prime_ids:
                rule.update(token)
        new_ids = []
        for _ in range(length):
            probs = apply_temperature(logits, temperature)
            if rule is not None:
                allowed = probs * rule.allowed()
                probs = allowed if allowed.sum() > 0 else probs  # never leave nothing to draw
            token = roulette_wheel(top_k_filter(probs, top_k), rng)
            if rule is not None:
                rule.update(token)
            new_ids.append(token)
            logits, state = model.step(np.array([token]), state)
            logits = logits[0]
    finally:
        model.set_training(was_training)
    return new_ids


# ----------------------------------------------------------------------------------------------
# From a checkpoint to a MIDI file
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainedModel:
    """A model restored from a training checkpoint, with what it needs to make music.

    ``token_counts`` ``(V,)`` counts each token in the training data (for the default prime);
    ``ticks_per_beat`` is the resolution the chunks' deltas count in.
    """
    model: object  # an nn.model.Model, or with engine="fast" a fast.FastModel
    vocab: Vocabulary
    settings: events.EventSettings
    ticks_per_beat: int
    token_counts: np.ndarray
    path: Path
    meta: dict


def load_trained(path, engine="plain"):
    """Load a checkpoint written by ``train`` (a ``.npz`` file, or a run folder for its ``last.npz``)
    into a model of ``engine`` ("plain" or "fast"; either loads any checkpoint).

    Raises ``CheckpointError`` naming the file when it cannot be read, or when its parameters,
    vocabulary and model config do not belong together.
    """
    check_engine(engine)
    path, arrays, meta = load_run(path)
    try:
        vocab = Vocabulary(meta["vocabulary"])
        events.validate_chunks(vocab.tokens, "its vocabulary")  # every id must decode to a playable chunk
        settings = events.EventSettings.from_dict(meta["event_settings"])
        ticks_per_beat = meta.get("ticks_per_beat", settings.grid)
        if type(ticks_per_beat) is not int or not 1 <= ticks_per_beat <= 32767:  # bool is not int here
            raise ValueError(f"ticks_per_beat must be an integer in 1..32767, got {ticks_per_beat!r}")
        model = make_model(meta["model_config"], engine)
        if len(vocab) != model.config["vocab_size"]:
            raise ValueError(f"its vocabulary has {len(vocab)} chunks but its model expects "
                             f"{model.config['vocab_size']}")
        params = {name[len("param/"):]: value for name, value in arrays.items() if name.startswith("param/")}
        for name, value in params.items():  # a diverged or edited file: NaN, integer or complex weights
            if value.dtype.kind != "f":
                raise ValueError(f"parameter {name} holds {value.dtype} values, not floats")
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name} holds NaN or inf values, not finite floats")
        model.load_params(params)
        counts = np.asarray(meta.get("token_counts") or np.ones(len(vocab)), dtype=np.float64)
        usable = counts.shape == (len(vocab),) and np.isfinite(counts).all() and counts.min() >= 0
        if not usable or counts.sum() <= 0:
            raise ValueError("its token counts must be one count >= 0 per vocabulary chunk, not all 0")
    except MemoryError:
        raise CheckpointError(path, "its model config needs more memory than this computer has") from None
    except (ValueError, TypeError, KeyError, VocabularyError, events.ChunkError) as error:
        raise CheckpointError(path, f"inconsistent checkpoint: {error}") from None
    return TrainedModel(model, vocab, settings, ticks_per_beat, counts, path, meta)


def default_prime(trained, rng):
    """A one-token prime: a note-on chunk drawn with `rng`, as often as it occurred in training.

    Returns a list with one id. Starting from a real note (rather than a note-off, or a fixed
    token) gives each seed a different opening; the state starts at zero, as in training. The
    note is the first of the piece: ``make_piece`` writes it, so the net may end it.
    """
    weights = trained.token_counts.copy()
    note_on = np.zeros(len(weights), dtype=bool)
    for index, token in enumerate(trained.vocab.tokens):
        event = events.parse_chunk(token)
        note_on[index] = isinstance(event, events.NoteEvent) and event.is_on and event.velocity > 0
    if (weights * note_on).sum() > 0:
        weights = weights * note_on
    return [roulette_wheel(weights, rng)]


def prime_from_file(path, trained, on_skip=None):
    """Prime ids from a MIDI file, a folder of them or a chunk text file, in the checkpoint's settings.

    MIDI is encoded with the checkpoint's own event settings. Chunk text is used as written, so
    text whose header names other settings is refused (``DataError`` naming the differences):
    its chunks would mean other things to the model, or nothing at all. Returns ``(ids,
    skipped)``: the ids of the known chunks (all pieces of a text file, in order) and how many
    chunks were not in the vocabulary and were left out. Raises ``DataError`` when no chunk of the
    file is in the vocabulary, ``MidiError``/``ChunkError`` for a broken file. ``on_skip(error)``
    hears of each broken file skipped in a folder.
    """
    if Path(path).suffix.lower() == ".txt" and Path(path).is_file():
        _, made_with = events.read_chunk_text_file(path)
        if made_with is not None and made_with != trained.settings:
            theirs, ours = made_with.differences(trained.settings)
            raise DataError(f"{path}: its chunks were made with event settings {theirs}, the model's "
                            f"are {ours}; prime with the MIDI file instead, which is encoded with the "
                            f"model's settings")
    sequences = events.load_data(path, trained.settings, on_skip=on_skip)
    ids, skipped = trained.vocab.encode_skipping([c for piece in sequences for c in piece.chunks])
    if len(ids) == 0:
        raise DataError(f"{path}: none of its {skipped} chunks is in the model's vocabulary, "
                        f"so it cannot prime the model")
    return ids.tolist(), skipped


def write_piece(trained, ids, midi_path, tempo=events.DEFAULT_TEMPO, name="generated"):
    """Decode ids to chunks and write ``midi_path`` and, next to it, the chunk text (``.txt``).

    ids: `(L,)` integer token ids, without a time or batch axis.
    Returns ``(chunks, text_path)``: the L chunk strings and the text file's path. The MIDI's
    ticks per beat are the checkpoint's, so the deltas mean what they meant in training. The text
    holds the chunks as the net wrote them; the MIDI file is always well formed, whatever they say
    (see ``events.chunks_to_midi``): tempo chunks set its tempo (``tempo``, microseconds per beat,
    until the first), pedal chunks become pedal events, and a pedal left down is released at the end.
    """
    midi_path = Path(midi_path)
    chunks = trained.vocab.decode(np.asarray(ids, dtype=np.int64))
    events.chunks_to_midi(chunks, midi_path, ticks_per_beat=trained.ticks_per_beat, tempo=tempo)
    text_path = midi_path.with_suffix(".txt")
    piece = events.ChunkSequence(name, chunks, trained.ticks_per_beat)
    events.write_chunk_text(text_path, [piece], trained.settings)
    return chunks, text_path
