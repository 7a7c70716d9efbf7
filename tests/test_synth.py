"""The additive synth: right length, finite, in range, no clicks, loudness follows velocity; WAV files."""
import wave
from collections import namedtuple

import numpy as np
import pytest

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.music import synth
from lstm_from_scratch.music.synth import SynthError, render_notes, write_wav

# A stand-in with the fields of events.Note: seconds, MIDI pitch and velocity.
Note = namedtuple("Note", "start end pitch velocity")
RATE = 8000  # a low rate keeps the tests fast


def release_samples(rate=RATE):
    return int(round(synth.RELEASE * rate))


def test_length_range_and_dtype():
    notes = [Note(0.0, 0.5, 60, 80), Note(0.25, 1.0, 64, 100), Note(0.5, 1.0, 67, 60)]
    samples = render_notes(notes, sample_rate=RATE)
    assert samples.shape == (RATE * 1 + release_samples(),)
    assert samples.dtype == np.float32
    assert np.all(np.isfinite(samples))
    assert np.max(np.abs(samples)) == pytest.approx(synth.PEAK, rel=1e-4)


def test_no_notes_give_silence_that_writes(tmp_path):
    samples = render_notes([], sample_rate=RATE)
    assert samples.shape == (0,) and samples.dtype == np.float32
    path = write_wav(samples, tmp_path / "empty.wav", RATE)
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 0 and wav.getframerate() == RATE


def test_note_starts_and_ends_without_clicks():
    samples = render_notes([Note(0.1, 0.4, 69, 100)], sample_rate=RATE)
    start, end = int(0.1 * RATE), int(0.4 * RATE) + release_samples()
    assert np.all(samples[:start] == 0)  # silence before the note
    assert np.all(samples[end:] == 0)
    # The first and last samples of the note are near zero: no jump from or to silence.
    assert abs(samples[start]) < 0.01 and abs(samples[end - 1]) < 0.05
    # The attack ramps up: the first millisecond is quieter than the loudest part.
    assert np.max(np.abs(samples[start:start + RATE // 1000])) < 0.3 * np.max(np.abs(samples))


def test_pitch_is_the_strongest_frequency():
    rate = 16000
    samples = render_notes([Note(0.0, 1.0, 69, 100)], sample_rate=rate)  # A4 = 440 Hz
    spectrum = np.abs(np.fft.rfft(samples[:rate]))
    frequencies = np.fft.rfftfreq(rate, 1.0 / rate)
    assert frequencies[np.argmax(spectrum)] == pytest.approx(440.0, abs=2.0)
    # the second harmonic is there too, weaker
    second = spectrum[np.argmin(np.abs(frequencies - 880.0))]
    assert 0.1 * spectrum.max() < second < spectrum.max()


def test_harmonics_above_nyquist_are_dropped():
    rate = 8000
    samples = render_notes([Note(0.0, 0.5, 103, 100)], sample_rate=rate)  # G7, about 3136 Hz
    spectrum = np.abs(np.fft.rfft(samples))
    frequencies = np.fft.rfftfreq(len(samples), 1.0 / rate)
    # 2 x 3136 Hz is above 4000 Hz; aliased, it would appear at 8000 - 6272 = 1728 Hz
    alias = spectrum[np.argmin(np.abs(frequencies - 1728.0))]
    assert alias < 0.01 * spectrum.max()


def test_velocity_sets_loudness():
    soft, loud = Note(0.0, 0.3, 60, 40), Note(0.5, 0.8, 60, 120)
    samples = render_notes([soft, loud], sample_rate=RATE)
    soft_peak = np.max(np.abs(samples[: int(0.4 * RATE)]))
    loud_peak = np.max(np.abs(samples[int(0.5 * RATE):]))
    assert loud_peak > 3 * soft_peak


def test_many_notes_never_clip():
    rng = np.random.default_rng(0)
    notes = [Note(0.0, 1.0, int(p), 127) for p in rng.choice(np.arange(40, 90), 30, replace=False)]
    samples = render_notes(notes, sample_rate=RATE)
    assert np.max(np.abs(samples)) <= 1.0


@pytest.mark.parametrize("note", [Note(0.5, 0.5, 60, 80), Note(-1.0, 0.5, 60, 80),
                                  Note(0.0, float("nan"), 60, 80), Note(0.0, 1.0, 128, 80)])
def test_bad_notes_are_refused(note):
    with pytest.raises(SynthError, match="note"):
        render_notes([note], sample_rate=RATE)


def test_bad_sample_rate_is_refused():
    with pytest.raises(SynthError, match="sample_rate"):
        render_notes([Note(0, 1, 60, 80)], sample_rate=44.1)


def test_wav_round_trip(tmp_path):
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0], dtype=np.float32)
    path = write_wav(samples, tmp_path / "out.wav", sample_rate=RATE)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        assert wav.getnframes() == len(samples)
        values = np.frombuffer(wav.readframes(len(samples)), dtype="<i2")
    assert values.tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767]  # clipped at +-1
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temporary file left


@pytest.mark.parametrize("samples", [np.zeros((2, 3)), np.array([0.0, np.nan])])
def test_bad_samples_are_refused(samples, tmp_path):
    with pytest.raises(SynthError):
        write_wav(samples, tmp_path / "bad.wav", RATE)
    assert not list(tmp_path.iterdir())


def test_unwritable_path_is_a_project_error(tmp_path):
    with pytest.raises(LstmMusicError, match="cannot write"):
        write_wav(np.zeros(10), tmp_path / "no-such-folder" / "out.wav", RATE)


def test_render_midi_to_wav(tmp_path):
    pytest.importorskip("lstm_from_scratch.music.events")
    from lstm_from_scratch.music import corpus

    midi = corpus.builtin_midi_dir() / "ode_to_joy.mid"
    samples = synth.render_midi_to_wav(midi, tmp_path / "ode.wav", sample_rate=RATE)
    piece = next(p for p in corpus.builtin_pieces() if p.name == "ode_to_joy")
    assert len(samples) == pytest.approx(piece.duration_seconds * RATE + release_samples(), abs=2)
    with wave.open(str(tmp_path / "ode.wav")) as wav:
        assert wav.getnframes() == len(samples) and wav.getframerate() == RATE
