"""Notes -> sound: a small additive synthesizer, so a generated piece can be heard without a MIDI player.

Each note is a sum of a few sine waves (the fundamental and its harmonics) shaped by an envelope;
the notes are added together and the result is scaled to fit in [-1, 1]. ``write_wav`` stores it as a
16-bit mono WAV file with the standard library's ``wave`` module.

A note is anything with ``start`` and ``end`` (seconds), ``pitch`` (MIDI 0..127) and ``velocity``
(1..127) attributes, such as ``events.Note`` from ``events.midi_to_notes``. ``end`` is when the sound
stops: for a piano with its sustain pedal, when the pedal lets the key go (``midi_to_notes(path,
pedal=True)`` gives such notes, and ``render_midi_to_wav`` uses them).
"""
import io
import wave
from pathlib import Path

import numpy as np

from lstm_from_scratch.atomic import atomic_write_bytes
from lstm_from_scratch.errors import LstmMusicError

DEFAULT_SAMPLE_RATE = 22050  # samples per second: enough for notes up to about 10 kHz

# Relative amplitudes of harmonics 1, 2, 3, 4: a string-like tone. A pure sine (only the first)
# sounds thin; real instruments add energy at whole multiples of the fundamental frequency, and
# the falling weights keep the tone soft rather than buzzy.
HARMONICS = (1.0, 0.5, 0.25, 0.125)

ATTACK = 0.01  # seconds from silence to full level
DECAY = 0.15  # time constant (seconds) of the fall from full level towards the sustain level
SUSTAIN = 0.5  # level held while the key is down, relative to the peak
RELEASE = 0.08  # seconds to fade out after the note ends
PEAK = 0.89  # the loudest sample after normalising, about -1 dB: headroom against clipping
# The longest piece we render. Memory grows with length (a note held for a minute needs about
# 130 MB of work arrays at 22050 Hz), and one lost note-off can make a MIDI file last for days.
MAX_SECONDS = 20 * 60


class SynthError(LstmMusicError):
    """Samples or notes that cannot be rendered or written; the message names the thing and the reason."""


def midi_to_hz(pitch):
    """MIDI pitch -> frequency in Hz: A4 (pitch 69) is 440 Hz, and each semitone is a factor 2 ** (1/12)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def envelope(held_samples, total_samples, sample_rate):
    """The loudness curve of one note, shape ``(total_samples,)``, values in [0, 1].

    ``held_samples`` is how long the key is down; the rest (``total_samples - held_samples``) is the
    release. Attack, decay and sustain while held, then a linear fade from wherever the level is.
    """
    t = np.arange(total_samples) / sample_rate
    # A sound that jumps from silence to full level (or back) makes a click: the jump has energy at
    # every frequency. A 10 ms ramp in and a short fade out are too fast to hear as a swell but
    # remove the click.
    attack = np.minimum(t / ATTACK, 1.0)
    decay = SUSTAIN + (1.0 - SUSTAIN) * np.exp(-np.maximum(t - ATTACK, 0.0) / DECAY)
    held_seconds = held_samples / sample_rate
    release = np.clip(1.0 - (t - held_seconds) / RELEASE, 0.0, 1.0)
    return attack * decay * release


def render_notes(notes, sample_rate=DEFAULT_SAMPLE_RATE):
    """Render notes to audio samples, shape ``(N,)`` float32 in [-1, 1].

    N covers the last note's end plus its release. Velocity sets each note's loudness; the sum is
    then scaled so its loudest sample is ``PEAK``. No notes give an empty array, shape ``(0,)``.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
        raise SynthError(f"sample_rate must be an integer of at least 1000 Hz, got {sample_rate!r}")
    notes = list(notes)
    if not notes:
        return np.zeros(0, dtype=np.float32)
    for note in notes:
        if not (np.isfinite(note.start) and np.isfinite(note.end) and 0 <= note.start < note.end):
            raise SynthError(f"note {note!r}: needs 0 <= start < end, in seconds")
        if not 0 <= note.pitch <= 127:
            raise SynthError(f"note {note!r}: pitch must be in 0..127")
    end = max(note.end for note in notes)
    if end > MAX_SECONDS:
        raise SynthError(f"the piece lasts {end / 3600:.1f} hours; the synth renders at most "
                         f"{MAX_SECONDS // 60} minutes")
    release_samples = int(round(RELEASE * sample_rate))
    length = int(np.ceil(end * sample_rate)) + release_samples
    out = np.zeros(length, dtype=np.float64)
    nyquist = sample_rate / 2.0
    for note in notes:
        first = int(round(note.start * sample_rate))
        held = max(1, int(round((note.end - note.start) * sample_rate)))
        total = min(held + release_samples, length - first)
        t = np.arange(total) / sample_rate  # (total,) seconds since the note started
        frequency = float(midi_to_hz(note.pitch))
        # Harmonics at or above half the sample rate cannot be represented: they would fold back
        # ("alias") to wrong, unmusical frequencies. Leave them out.
        numbers = np.arange(1, len(HARMONICS) + 1)
        keep = numbers * frequency < nyquist
        weights = np.asarray(HARMONICS)[keep]
        phases = 2.0 * np.pi * frequency * np.outer(numbers[keep], t)  # (harmonics, total)
        tone = weights @ np.sin(phases) / weights.sum()  # (total,), peak about 1
        # Loudness grows faster than linearly with velocity, as on a piano; squaring gives the
        # dynamics (p, mf, f) clearly different levels.
        amplitude = (min(max(note.velocity, 0), 127) / 127.0) ** 2
        out[first:first + total] += amplitude * envelope(held, total, sample_rate) * tone
    peak = np.max(np.abs(out))
    if peak > 0:
        # Many notes at once add up past 1.0 and would clip (a harsh distortion); scale the whole
        # piece down together, which keeps the balance between loud and soft notes.
        out *= PEAK / peak
    return out.astype(np.float32)


def wav_bytes(samples, sample_rate=DEFAULT_SAMPLE_RATE):
    """Samples ``(N,)`` in [-1, 1] -> the bytes of a 16-bit mono WAV file (values outside are clipped)."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise SynthError(f"samples must have shape (N,), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise SynthError("samples contain NaN or infinity")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
        raise SynthError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    # 16-bit PCM: integers -32767..32767, little-endian, as the WAV format stores them.
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_wav(samples, path, sample_rate=DEFAULT_SAMPLE_RATE):
    """Write samples ``(N,)`` as a 16-bit mono WAV file at ``path``, atomically. Returns ``Path(path)``."""
    data = wav_bytes(samples, sample_rate)
    path = Path(path)
    try:
        atomic_write_bytes(path, data)  # a crash never leaves half a WAV file
    except OSError as error:
        raise SynthError(f"{path}: cannot write: {error.strerror or error}") from error
    return path


def render_midi_to_wav(midi_path, wav_path, sample_rate=DEFAULT_SAMPLE_RATE):
    """Render a MIDI file to a WAV file. Returns the samples, shape ``(N,)`` float32.

    Notes come from ``events.midi_to_notes`` with ``pedal=True``: tempo changes respected, drums
    dropped, and a note released while the sustain pedal is down rings on until the pedal comes up,
    as on a piano. Raises ``MidiError`` for a file that cannot be read.
    """
    from lstm_from_scratch.music import events  # here, so the synth works on notes without MIDI code

    try:
        samples = render_notes(events.midi_to_notes(midi_path, pedal=True), sample_rate)
    except SynthError as error:
        raise SynthError(f"{midi_path}: {error}") from None
    write_wav(samples, wav_path, sample_rate)
    return samples
