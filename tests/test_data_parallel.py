"""Data parallelism (fast/data_parallel.py): a batch as two halves, the second in a helper process.

The promise under test: the helper changes where the second half is computed, never the numbers.
"""
import numpy as np
import pytest

from lstm_from_scratch.fast import data_parallel
from lstm_from_scratch.fast.data_parallel import DataParallel, HelperWarning, combine, split_batch
from lstm_from_scratch.fast.model import FastModel
from lstm_from_scratch.nn.gradcheck import relative_error
from lstm_from_scratch.nn.optim import SGD, clip_grad_norm

V, T = 13, 6

CONFIGS = {
    "lstm+dropout, sequence": {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7},
                                                           {"type": "dropout", "rate": 0.3}]},
    "embedding, 2 lstms, dense, last": {
        "vocab_size": V, "input": "embedding", "embedding_dim": 4, "output": "last",
        "layers": [{"type": "lstm", "hidden_size": 6}, {"type": "dropout", "rate": 0.2},
                   {"type": "lstm", "hidden_size": 5}, {"type": "dense", "units": 4, "activation": "relu"}]},
}


def batch(B, output, seed=0):
    ids, targets = np.random.default_rng(seed).integers(0, V, (2, T, B))
    return ids, (targets[-1] if output == "last" else targets)


def train_steps(config, start_helper, B, steps=3, kill_at=None):
    """``steps`` clipped SGD steps through DataParallel, as train.py takes them: every step's loss and
    gradients, the final weights, and whether a helper process computed the second halves."""
    model = FastModel(config, dtype=np.float64, seed=4)
    optimizer = SGD(0.5, momentum=0.9)
    ids, targets = batch(B, config.get("output", "sequence"))
    record = []
    with DataParallel(model, start_helper=start_helper) as parallel:
        for step in range(steps):
            if step == kill_at:
                parallel.helper.kill()
                parallel.helper.wait()
            loss, grads = parallel.loss(ids, targets)
            record.append((loss, {name: grad.copy() for name, grad in grads.items()}))
            clip_grad_norm(grads, 1.0)
            optimizer.step(model.params, grads)  # the helper must see the new weights next step
        used_helper = parallel.helper is not None
    return record, {name: value.copy() for name, value in model.params.items()}, used_helper


def assert_same(record_a, record_b):
    for (loss_a, grads_a), (loss_b, grads_b) in zip(record_a, record_b, strict=True):
        assert loss_a == loss_b
        for key in grads_a:
            np.testing.assert_array_equal(grads_a[key], grads_b[key], err_msg=key)


def test_split_batch_gives_the_first_half_the_extra_sequence():
    ids = np.arange(2 * 5).reshape(2, 5)
    (ids_1, targets_1), (ids_2, targets_2), weight = split_batch(ids, ids[-1])
    assert ids_1.shape == (2, 3) and ids_2.shape == (2, 2) and weight == 3 / 5
    np.testing.assert_array_equal(np.concatenate([ids_1, ids_2], axis=1), ids)
    np.testing.assert_array_equal(np.concatenate([targets_1, targets_2]), ids[-1])


def test_combine_is_the_weighted_mean():
    first, second = np.array([1.0, 2.0]), np.array([4.0, 8.0])
    assert combine(first, second, 0.75) is first
    np.testing.assert_allclose(first, [1.75, 3.5])
    np.testing.assert_array_equal(second, [4.0, 8.0])  # only read


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("B", [2, 5])
def test_the_same_numbers_with_or_without_the_helper(name, B):
    alone, weights_alone, used_alone = train_steps(CONFIGS[name], False, B)
    helped, weights_helped, used_helper = train_steps(CONFIGS[name], True, B)
    assert not used_alone and used_helper
    assert_same(alone, helped)
    for key, value in weights_alone.items():
        np.testing.assert_array_equal(weights_helped[key], value, err_msg=key)


def test_without_dropout_the_halves_give_the_whole_batch():
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    ids, targets = batch(5, "sequence")
    loss, grads = FastModel(config, dtype=np.float64, seed=2).loss(ids, targets)
    grads = {name: grad.copy() for name, grad in grads.items()}
    with DataParallel(FastModel(config, dtype=np.float64, seed=2), start_helper=True) as parallel:
        loss_halves, grads_halves = parallel.loss(ids, targets)
        assert parallel.helper is not None
    assert loss_halves == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads_halves[name], grads[name], rtol=1e-11, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradients_through_the_helper_along_random_directions(name, rng):
    """End to end, through both processes, in float64 with centered differences: the derivative of
    DataParallel.loss along random directions, dropout on (masks held fixed by restoring model.rng)."""
    config = CONFIGS[name]
    model = FastModel(config, dtype=np.float64, seed=5)
    ids, targets = batch(5, config.get("output", "sequence"), seed=1)
    eps, errors = 1e-5, []
    with DataParallel(model, start_helper=True) as parallel:
        state = model.rng.bit_generator.state

        def loss_and_grads():
            model.rng.bit_generator.state = state  # the same split seed and masks every time
            return parallel.loss(ids, targets, training=True)

        for _ in range(3):
            directions = {key: rng.standard_normal(value.shape) for key, value in model.params.items()}
            _, grads = loss_and_grads()
            analytic = sum(np.sum(grads[key] * d) for key, d in directions.items())
            originals = {key: value.copy() for key, value in model.params.items()}
            losses = []
            for sign in (1, -1):
                for key, d in directions.items():
                    model.params[key][...] = originals[key] + sign * eps * d
                losses.append(loss_and_grads()[0])
            for key in directions:
                model.params[key][...] = originals[key]
            errors.append(relative_error(analytic, (losses[0] - losses[1]) / (2 * eps)))
        assert parallel.helper is not None
    print(f"worst relative error DataParallel {name} along 3 random directions: {max(errors):.2e}")
    assert max(errors) < 1e-6


def test_a_helper_that_dies_leaves_the_numbers_alone():
    config = CONFIGS["lstm+dropout, sequence"]
    expected, weights_expected, _ = train_steps(config, False, 4, steps=4)
    with pytest.warns(HelperWarning, match="the helper process failed"):
        got, weights, used_helper = train_steps(config, True, 4, steps=4, kill_at=2)
    assert not used_helper  # given up on, and stopped
    assert_same(expected, got)
    for key, value in weights_expected.items():
        np.testing.assert_array_equal(weights[key], value, err_msg=key)


def test_close_gives_the_model_private_arrays_with_the_trained_values():
    model = FastModel(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=1)
    private = dict(model.params)
    with DataParallel(model, start_helper=True) as parallel:
        parallel.loss(*batch(4, "sequence"))
        assert all(model.params[name] is not private[name] for name in private)  # on the shared block
        for value in model.params.values():
            value += 1.0  # an update, seen by both processes
        reached = {name: value.copy() for name, value in model.params.items()}
        block = parallel.block
    assert parallel.block is None and parallel.helper is None
    for name, value in model.params.items():
        assert value is private[name]  # the model's own arrays again ...
        np.testing.assert_array_equal(value, reached[name])  # ... holding the values reached
        assert value is model.layers[int(name.split(".")[0])].params[name.split(".")[2]]
    with pytest.raises(FileNotFoundError):  # the block is gone from the system
        data_parallel.shared_memory.SharedMemory(block.name)


def test_a_batch_of_one_gives_the_whole_batch():
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    ids, targets = batch(1, "sequence")
    loss, _ = FastModel(config, dtype=np.float64, seed=2).loss(ids, targets)
    with DataParallel(FastModel(config, dtype=np.float64, seed=2), start_helper=True) as parallel:
        assert parallel.loss(ids, targets)[0] == pytest.approx(loss, rel=1e-13)


def test_a_bigger_batch_than_the_first_is_computed_here_to_the_same_numbers():
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    model = FastModel(config, dtype=np.float64, seed=2)
    with DataParallel(model, start_helper=True) as parallel:
        parallel.loss(*batch(4, "sequence"))  # the shared block has room for 4 sequences
        loss_big, _ = parallel.loss(*batch(6, "sequence", seed=3))
        assert parallel.helper is not None
    with DataParallel(FastModel(config, dtype=np.float64, seed=2), start_helper=False) as parallel:
        parallel.loss(*batch(4, "sequence"))
        assert parallel.loss(*batch(6, "sequence", seed=3))[0] == loss_big


def test_the_helper_starts_only_for_slow_steps_beside_a_one_thread_blas(monkeypatch):
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    monkeypatch.setattr(data_parallel, "can_use_helper", lambda: True)
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", float("inf"))
    with DataParallel(FastModel(config, seed=1)) as parallel:
        parallel.loss(*batch(4, "sequence"))
        parallel.loss(*batch(4, "sequence"))
        assert parallel.helper is None  # too fast to pay
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 0.0)
    with DataParallel(FastModel(config, seed=1)) as parallel:
        parallel.loss(*batch(4, "sequence"))
        assert parallel.helper is not None
    monkeypatch.setattr(data_parallel, "can_use_helper", lambda: False)
    with DataParallel(FastModel(config, seed=1)) as parallel:
        parallel.loss(*batch(4, "sequence"))
        assert parallel.helper is None


@pytest.mark.parametrize("variables, cores, expected", [
    ({"OPENBLAS_NUM_THREADS": "1"}, 2, True),
    ({"OMP_NUM_THREADS": "1"}, 4, True),
    ({"OPENBLAS_NUM_THREADS": "2"}, 2, False),  # a BLAS on both cores would fight the helper
    ({}, 2, False),
    ({"OPENBLAS_NUM_THREADS": "1"}, 1, False),  # one core: nothing to gain
])
def test_can_use_helper(variables, cores, expected, monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(data_parallel.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert data_parallel.can_use_helper() is expected


UNGUARDED_SCRIPT = """
import numpy as np
from lstm_from_scratch.fast import DataParallel, FastModel
print("the script ran", flush=True)          # no `if __name__ == "__main__":` guard, as in many notebooks' scripts
model = FastModel({"vocab_size": 9, "layers": [{"type": "lstm", "hidden_size": 5}]})
ids, targets = np.random.default_rng(0).integers(0, 9, (2, 6, 4))
with DataParallel(model, start_helper=True) as parallel:
    parallel.loss(ids, targets)
    print("helper:", parallel.helper is not None, flush=True)
"""


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    # Was: the helper, started by multiprocessing's spawn, imported the main script again and ran it
    # from the top: every line of a user's script twice, and a helper that tried to start a helper.
    import subprocess
    import sys
    script = tmp_path / "train_me.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the script ran", "helper: True"]
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr
