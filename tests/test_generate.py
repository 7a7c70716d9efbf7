"""The sampler (roulette wheel, temperature, top-k) and generation with a model at batch 1."""
import numpy as np
import pytest

from lstm_from_scratch.checkpoint import CheckpointError
from lstm_from_scratch.generate import (
    apply_temperature, generate, prime_model, roulette_wheel, sample_index, top_k_filter)
from lstm_from_scratch.music.vocab import Vocabulary
from lstm_from_scratch.nn.losses import softmax
from lstm_from_scratch.nn.model import Model

# The 0.999 quantile of the chi-squared distribution with 4 degrees of freedom (standard tables).
CHI2_999_DF4 = 18.467


def test_roulette_frequencies_follow_p_chi_squared():
    weights = np.array([0.5, 1.0, 1.5, 0.75, 1.25])  # need not sum to 1
    expected_share = weights / weights.sum()
    rng = np.random.default_rng(7)
    draws = 20_000
    counts = np.bincount([roulette_wheel(weights, rng) for _ in range(draws)], minlength=5)
    expected = expected_share * draws
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic < CHI2_999_DF4, (counts, expected)


def test_roulette_is_a_biased_coin_when_it_should_be():
    # A wrong sampler (for example argmax, or uniform) fails this: shares must be ~ 0.9 / 0.1.
    rng = np.random.default_rng(3)
    draws = np.array([roulette_wheel([9.0, 1.0], rng) for _ in range(5000)])
    assert 0.08 < draws.mean() < 0.12


class FixedRng:
    """A stand-in generator whose `random()` returns a chosen value."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


def test_roulette_never_picks_a_zero_width_slice_even_at_the_edges():
    probs = np.array([0.0, 0.3, 0.0, 0.7, 0.0])
    assert roulette_wheel(probs, FixedRng(0.0)) == 1          # u = 0 skips the empty first slice
    assert roulette_wheel(probs, FixedRng(0.3)) == 3          # exactly on an edge: next real slice
    assert roulette_wheel(probs, FixedRng(np.nextafter(1.0, 0))) == 3
    assert roulette_wheel(probs, FixedRng(1.0)) == 3          # "rounded up to the total"


def test_roulette_handles_unnormalised_float32_rounding():
    # float32 probabilities summing to 1 +- rounding: rng.choice(p=...) would raise here.
    probs = softmax(np.random.default_rng(0).normal(size=1000).astype(np.float32) * 5)
    rng = np.random.default_rng(1)
    picks = [roulette_wheel(probs, rng) for _ in range(200)]
    assert all(0 <= pick < 1000 for pick in picks)
    assert sample_index is roulette_wheel


def test_roulette_refuses_all_zero_probabilities():
    with pytest.raises(ValueError, match="sum to"):
        roulette_wheel(np.zeros(3), np.random.default_rng(0))


def test_temperature_one_is_softmax_and_near_zero_is_argmax():
    logits = np.array([1.0, 3.0, 2.9, -1.0])
    np.testing.assert_allclose(apply_temperature(logits, 1.0), softmax(logits))
    for temperature in (0.0, 1e-9, 1e-6):
        np.testing.assert_array_equal(apply_temperature(logits, temperature), [0, 1, 0, 0])
    # Low temperature sharpens, high temperature flattens.
    assert apply_temperature(logits, 0.5)[1] > softmax(logits)[1] > apply_temperature(logits, 5.0)[1]
    with pytest.raises(ValueError):
        apply_temperature(logits, -1.0)


def test_temperature_is_exactly_softmax_of_the_scaled_logits():
    # apply_temperature works in place in one copy, for speed; the numbers must stay those of
    # softmax(logits / T), so that a seed gives the same piece as before. The logits are left alone.
    logits = np.random.default_rng(3).normal(size=300).astype(np.float32) * 4
    kept = logits.copy()
    for temperature in (1.0, 0.7, 1.3):
        expected = softmax(logits.astype(np.float64) / temperature)
        np.testing.assert_array_equal(apply_temperature(logits, temperature), expected)
    np.testing.assert_array_equal(logits, kept)


def test_tiny_positive_temperature_does_not_overflow():
    probs = apply_temperature(np.array([1e4, -1e4, 0.0]), 2e-6)
    assert np.all(np.isfinite(probs)) and probs.argmax() == 0


def test_top_k_keeps_the_k_largest():
    probs = np.array([0.1, 0.4, 0.2, 0.3])
    np.testing.assert_array_equal(top_k_filter(probs, 2), [0, 0.4, 0, 0.3])
    np.testing.assert_array_equal(top_k_filter(probs, None), probs)
    np.testing.assert_array_equal(top_k_filter(probs, 10), probs)
    rng = np.random.default_rng(0)
    assert {roulette_wheel(top_k_filter(probs, 1), rng) for _ in range(50)} == {1}


def small_model(vocab_size=6, seed=0):
    config = {"vocab_size": vocab_size, "input": "onehot",
              "layers": [{"type": "lstm", "hidden_size": 5}], "output": "sequence"}
    return Model(config, seed=seed), Vocabulary([f"{i}_no_60_80" for i in range(vocab_size)])


def test_generate_is_reproducible_with_a_seed():
    model, vocab = small_model()
    first = generate(model, vocab, [0, 1, 2], 40, rng=np.random.default_rng(5))
    second = generate(model, vocab, [0, 1, 2], 40, rng=np.random.default_rng(5))
    other = generate(model, vocab, [0, 1, 2], 40, rng=np.random.default_rng(6))
    assert first == second
    assert first != other
    assert len(first) == 40 and all(0 <= token < 6 for token in first)


def test_generate_at_temperature_zero_follows_the_argmax_chain():
    model, vocab = small_model()
    ids = generate(model, vocab, [2], 10, temperature=0.0, rng=np.random.default_rng(0))
    # Replay by hand: each token is the argmax of the logits after the previous one.
    logits, state = prime_model(model, [2])
    for token in ids:
        assert token == int(np.argmax(logits))
        logits, state = model.step(np.array([token]), state)
        logits = logits[0]


def test_priming_step_by_step_matches_a_forward_pass():
    model, _ = small_model()
    prime = [0, 3, 1, 4]
    logits, _ = prime_model(model, prime)
    full = model.forward(np.array(prime).reshape(-1, 1))  # (T, 1, V)
    np.testing.assert_allclose(logits, full[-1, 0], rtol=1e-5, atol=1e-6)


def test_generate_refuses_a_vocabulary_of_the_wrong_size():
    model, _ = small_model()
    with pytest.raises(CheckpointError, match="vocabulary has 3"):
        generate(model, Vocabulary(["0_no_60_80", "0_no_61_80", "0_no_62_80"]), [0], 5)


def test_note_rules_allow_note_offs_only_for_sounding_pitches():
    from lstm_from_scratch.generate import NoteRules
    vocab = Vocabulary(["0_no_60_80", "0_nf_60_0", "2_nf_60_0", "0_no_62_80", "2_nf_62_0", "1_no_64_0"])
    rules = NoteRules(vocab)
    # "1_no_64_0" is a note-on with velocity 0: a note-off, and 64 is silent.
    np.testing.assert_array_equal(rules.allowed(), [1, 0, 0, 1, 0, 0])
    rules.update(0)  # 60 starts
    np.testing.assert_array_equal(rules.allowed(), [1, 1, 1, 1, 0, 0])
    rules.update(2)  # 60 ends
    np.testing.assert_array_equal(rules.allowed(), [1, 0, 0, 1, 0, 0])


def test_note_rules_end_notes_held_too_long():
    from lstm_from_scratch.generate import NoteRules
    vocab = Vocabulary(["0_no_60_80", "4_no_62_80", "0_nf_60_0", "4_nf_60_0", "4_nf_62_0"])
    rules = NoteRules(vocab, ticks_per_beat=4, max_held_beats=2)
    rules.update(0)                  # 60 starts at tick 0
    rules.update(1)                  # 62 starts at tick 4: 60 held 1 beat, fine
    assert rules.allowed().tolist() == [True, True, True, True, True]
    rules.update(1)                  # tick 8: 60 held 2 beats, must end now (62 re-struck)
    assert rules.allowed().tolist() == [False, False, True, True, False]


def test_generate_with_rules_never_ends_a_silent_note():
    from lstm_from_scratch.generate import NoteRules
    tokens = [f"{d}_{kind}_{p}_{0 if kind == 'nf' else 80}"
              for d in (0, 2) for kind in ("no", "nf") for p in (60, 62, 64)]
    vocab = Vocabulary(tokens)
    model, _ = small_model(vocab_size=len(vocab), seed=4)
    ids = generate(model, vocab, [vocab.index("0_no_60_80")], 300, rng=np.random.default_rng(0),
                   rule=NoteRules(vocab, max_held_beats=1))
    sounding = {60}
    for token in vocab.decode(ids):
        _, kind, pitch, _ = token.split("_")
        if kind == "nf":
            assert int(pitch) in sounding, token
            sounding.discard(int(pitch))
        else:
            sounding.add(int(pitch))
