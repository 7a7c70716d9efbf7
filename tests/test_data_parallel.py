"""Data parallelism (nn/data_parallel.py): a batch as two halves, the second in a helper process.

The promise under test: the helper changes where the second half is computed, never the numbers.
"""
import os
import time

import numpy as np
import pytest

from lstm_from_scratch.nn import data_parallel
from lstm_from_scratch.nn.data_parallel import DataParallel, combine, split_batch
from lstm_from_scratch.nn.gradcheck import relative_error
from lstm_from_scratch.nn.model import Model
from lstm_from_scratch.nn.optim import SGD, Adam, RMSprop, clip_grad_norm

V, T = 13, 6

CONFIGS = {
    "lstm+dropout, sequence": {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7},
                                                           {"type": "dropout", "rate": 0.3}]},
    "embedding, 2 lstms, dense, last": {
        "vocab_size": V, "input": "embedding", "embedding_dim": 4, "output": "last",
        "layers": [{"type": "lstm", "hidden_size": 6}, {"type": "dropout", "rate": 0.2},
                   {"type": "lstm", "hidden_size": 5}, {"type": "dense", "units": 4, "activation": "relu"}]},
}


@pytest.fixture
def helper_at_once(monkeypatch):
    """Start the helper at the first step, however small the model, and whatever NumPy's BLAS."""
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 0.0)
    monkeypatch.setattr(data_parallel, "one_blas_thread", lambda: True)


def batch(B, output, seed=0):
    ids, targets = np.random.default_rng(seed).integers(0, V, (2, T, B))
    return ids, (targets[-1] if output == "last" else targets)


def train_steps(config, processes, B, steps=3, dtype=np.float64):
    """Three SGD steps through DataParallel; every step's loss, grads and final state, and whether a
    helper process did the second halves."""
    model = Model(config, dtype=dtype, seed=4)
    optimizer = SGD(0.5, momentum=0.9)
    ids, targets = batch(B, config.get("output", "sequence"))
    record = []
    with DataParallel(model, processes) as parallel:
        for _ in range(steps):
            loss, grads = parallel.loss(ids, targets)
            record.append((loss, {name: grad.copy() for name, grad in grads.items()},
                           [array.copy() for pair in model.final_state for array in pair]))
            optimizer.step(model.params, grads)  # the helper must see the new weights next step
        used_helper = parallel.helper is not None
    return record, used_helper


def test_split_batch_gives_the_first_half_the_extra_sequence():
    ids = np.arange(2 * 5).reshape(2, 5)
    (ids_1, targets_1), (ids_2, targets_2), weight = split_batch(ids, ids[-1])
    assert ids_1.shape == (2, 3) and ids_2.shape == (2, 2) and weight == 3 / 5
    np.testing.assert_array_equal(np.concatenate([ids_1, ids_2], axis=1), ids)
    np.testing.assert_array_equal(np.concatenate([targets_1, targets_2]), ids[-1])


def test_combine_is_the_weighted_mean():
    first, second = np.array([1.0, 2.0]), np.array([4.0, 8.0])
    assert combine(first, second, 0.75) is second
    np.testing.assert_allclose(second, [1.75, 3.5])
    np.testing.assert_array_equal(combine(np.array([1.0, 3.0]), np.array([4.0, 8.0]), 0.5), [2.5, 5.5])


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("B", [2, 5])
def test_the_same_numbers_with_or_without_the_helper(name, B, helper_at_once):
    alone, used_alone = train_steps(CONFIGS[name], 1, B)
    helped, used_helper = train_steps(CONFIGS[name], 2, B)
    assert not used_alone and used_helper
    for (loss_a, grads_a, state_a), (loss_h, grads_h, state_h) in zip(alone, helped):
        assert loss_a == loss_h
        for key in grads_a:
            np.testing.assert_array_equal(grads_a[key], grads_h[key], err_msg=key)
        for a, h in zip(state_a, state_h):
            np.testing.assert_array_equal(a, h)


def test_without_dropout_the_halves_give_the_whole_batch(helper_at_once):
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    ids, targets = batch(5, "sequence")
    whole = Model(config, dtype=np.float64, seed=2)
    loss, grads = whole.loss(ids, targets)
    grads = {name: grad.copy() for name, grad in grads.items()}
    state = [array.copy() for pair in whole.final_state for array in pair]
    halves = Model(config, dtype=np.float64, seed=2)
    with DataParallel(halves) as parallel:
        loss_halves, grads_halves = parallel.loss(ids, targets)
        assert parallel.helper is not None
    assert loss_halves == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads_halves[name], grads[name], rtol=1e-11, atol=1e-14, err_msg=name)
    for a, b in zip(state, (array for pair in halves.final_state for array in pair)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradients_through_the_helper_along_random_directions(name, helper_at_once, rng):
    """End to end, through both processes, in float64 with centered differences: the derivative of
    DataParallel.loss along random directions, dropout on (masks held fixed by restoring model.rng)."""
    config = CONFIGS[name]
    model = Model(config, dtype=np.float64, seed=5)
    ids, targets = batch(5, config.get("output", "sequence"), seed=1)
    eps, errors = 1e-5, []
    with DataParallel(model) as parallel:
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


def test_a_helper_that_dies_leaves_the_numbers_alone(helper_at_once):
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=4)
    model = Model(config, dtype=np.float64, seed=4)
    optimizer = SGD(0.5, momentum=0.9)
    ids, targets = batch(4, "sequence")
    with DataParallel(model) as parallel, pytest.warns(data_parallel.HelperWarning, match="the helper process"):
        for step in range(4):
            if step == 2:
                parallel.helper.process.kill()
                parallel.helper.process.wait()
            loss, grads = parallel.loss(ids, targets)
            assert loss == expected[step][0]
            optimizer.step(model.params, grads)
        assert parallel.helper is None and parallel.helper_failed  # why, in words


def test_no_shared_memory_file_is_left_behind(helper_at_once):
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if folder is None:
        pytest.skip("no /dev/shm here")
    before = {name for name in os.listdir(folder) if name.startswith("lstm-music-")}
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    model = Model(config, seed=1)
    with DataParallel(model) as parallel:
        for B in (4, 6):  # a new shape: a new block of shared memory
            parallel.loss(*batch(B, "sequence"))
        process = parallel.helper.process
    assert process.poll() is not None  # closed: the helper has ended
    assert {name for name in os.listdir(folder) if name.startswith("lstm-music-")} == before


def test_a_batch_of_one_is_not_split():
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}
    ids, targets = batch(1, "sequence")
    model = Model(config, dtype=np.float64, seed=1)
    expected = model.loss(ids, targets)[0]
    with DataParallel(Model(config, dtype=np.float64, seed=1)) as parallel:
        assert parallel.loss(ids, targets)[0] == expected
    with pytest.raises(ValueError, match="processes must be 1 or 2"):
        DataParallel(model, processes=3)


def test_an_interrupted_step_does_not_leave_a_reply_for_the_next(helper_at_once, monkeypatch):
    """Ctrl-C between the command to the helper and its reply: the next step must not read that
    stale reply as its own. The helper is stopped, a fresh one starts, and the numbers stay right."""
    config = CONFIGS["lstm+dropout, sequence"]
    ids, targets = batch(4, "sequence")
    expected = DataParallel(Model(config, dtype=np.float64, seed=4), processes=1)
    model = Model(config, dtype=np.float64, seed=4)
    real = data_parallel._half_loss
    calls = []

    def interrupted_once(*args):
        if args[0] is model:
            calls.append(1)
            if len(calls) == 2:  # the second step's first half: the helper already has its command
                raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(data_parallel, "_half_loss", interrupted_once)
    with DataParallel(model) as parallel:
        assert parallel.loss(ids, targets)[0] == expected.loss(ids, targets)[0]
        first = parallel.helper
        with pytest.raises(KeyboardInterrupt):
            parallel.loss(ids, targets)
        assert parallel.helper is None and first.process.poll() is not None
        model.rng.bit_generator.state = expected.model.rng.bit_generator.state  # the same next seed
        assert parallel.loss(ids, targets)[0] == expected.loss(ids, targets)[0]
        assert parallel.helper is not None and parallel.helper is not first
    expected.close()


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/true"])
def test_a_helper_that_cannot_start_leaves_the_numbers_alone(executable, helper_at_once, monkeypatch):
    """No such program (OSError), or one that exits at once (no reply): this process computes both
    halves, with the same numbers."""
    if executable == "/bin/true" and not os.path.exists(executable):
        pytest.skip("no /bin/true here")
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    monkeypatch.setattr(data_parallel.sys, "executable", executable)
    with pytest.warns(data_parallel.HelperWarning, match="goes on in one process"):
        got, used_helper = train_steps(config, 2, 4, steps=2)
    assert not used_helper
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]


def shell_script(folder, body):
    """An executable /bin/sh script running ``body``, to stand in for Python as the helper (skips
    the test where there is no such shell). Returns its path as a string."""
    if os.name != "posix":
        pytest.skip("needs a shell script")
    script = folder / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_helper_that_never_answers_is_given_up(helper_at_once, monkeypatch, tmp_path):
    """A helper that hangs (here: a program that ignores its commands and sleeps) is given up after
    REPLY_SECONDS; this process computes both halves, with the same numbers."""
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    monkeypatch.setattr(data_parallel.sys, "executable", shell_script(tmp_path, "exec sleep 60"))
    monkeypatch.setattr(data_parallel, "REPLY_SECONDS", 0.3)
    started = time.monotonic()
    with pytest.warns(data_parallel.HelperWarning, match="did not answer within 0.3 s"):
        got, used_helper = train_steps(config, 2, 4, steps=2)
    assert time.monotonic() - started < 10
    assert not used_helper
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]


OPTIMIZERS = {
    "adam": lambda: Adam(0.05),
    "rmsprop": lambda: RMSprop(0.02),
    "sgd, nesterov": lambda: SGD(0.3, momentum=0.9, nesterov=True),
    "plain sgd": lambda: SGD(0.3),
}


def trained_state(model, optimizer):
    """(copies of the weights, the optimizer's state): what assert_same_training compares."""
    return {name: array.copy() for name, array in model.params.items()}, optimizer.state_dict()


def train_with_a_load_between(parallel, optimizer):
    """Five steps; at the fourth, the optimizer state of the second is loaded between loss() and
    update()."""
    for step in range(5):
        parallel.loss(*batch(4, "sequence", seed=step))
        if step == 1:
            saved = optimizer.state_dict()
        if step == 3:
            optimizer.load_state_dict(saved)
        parallel.update(0.5)


BATCH_SIZES = (5, 5, 4, 5)  # a new batch size: a new block of shared memory for the helper


def train_with_update(processes, optimizer_name, clip=0.5, batch_sizes=BATCH_SIZES):
    """Four steps of DataParallel.loss + DataParallel.update; the final weights, the optimizer's
    state and whether the helper did its part of the updates. With the fixture ``helper_at_step_2``
    the optimizer already has its buffers when the helper starts."""
    config = CONFIGS["lstm+dropout, sequence"]
    model = Model(config, dtype=np.float64, seed=4)
    own = dict(model.params)
    optimizer = OPTIMIZERS[optimizer_name]()
    with DataParallel(model, processes, optimizer) as parallel:
        for step, B in enumerate(batch_sizes):
            parallel.loss(*batch(B, "sequence", seed=step))
            parallel.update(clip)  # clip 0.5: these gradients are clipped at most steps
        helped = parallel.helper is not None
    for name, array in model.params.items():  # after close, the model's own arrays are back
        assert array is own[name]
    return (*trained_state(model, optimizer), helped)


def assert_same_training(expected, got):
    for name in expected[0]:
        np.testing.assert_array_equal(got[0][name], expected[0][name], err_msg=name)
    assert sorted(got[1]) == sorted(expected[1])
    for key in expected[1]:
        np.testing.assert_array_equal(got[1][key], expected[1][key], err_msg=key)


@pytest.fixture
def helper_at_step_2(monkeypatch):
    """Start the helper at the second step: the first takes more than no time at all."""
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 1e-9)
    monkeypatch.setattr(data_parallel, "one_blas_thread", lambda: True)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_update_gives_the_numbers_of_one_process(optimizer_name, helper_at_step_2):
    alone = train_with_update(1, optimizer_name)
    helped = train_with_update(2, optimizer_name)
    assert not alone[2] and helped[2]
    assert_same_training(alone, helped)
    # ... which are those of the plain clip and step, too.
    config = CONFIGS["lstm+dropout, sequence"]
    model, optimizer = Model(config, dtype=np.float64, seed=4), OPTIMIZERS[optimizer_name]()
    with DataParallel(model, 1) as parallel:
        for step, B in enumerate(BATCH_SIZES):
            _, grads = parallel.loss(*batch(B, "sequence", seed=step))
            clip_grad_norm(grads, 0.5)
            optimizer.step(model.params, grads)
    assert_same_training(alone, trained_state(model, optimizer))


def test_a_helper_that_fails_in_its_update_is_undone_and_redone(helper_at_step_2, monkeypatch):
    """The helper answers an update with an error after it changed its part of the weights and
    buffers (here: scribbled over them). This process must put its backup back, give the helper up
    and do the helper's part itself, to the very same numbers."""
    expected = train_with_update(1, "adam")
    real_reply = data_parallel._Helper.reply

    def failing_update_reply(helper):
        answer = real_reply(helper)
        if helper.last_command["op"] == "update" and helper.last_command["step"] == 3:
            for part, _ in data_parallel._backed_up(helper.arrays):
                part[...] = np.nan  # a half-done update, as far as anyone can tell
            raise data_parallel.HelperError("the helper process stopped")
        return answer

    real_send = data_parallel._Helper.send

    def remembering_send(helper, command):
        helper.last_command = command
        return real_send(helper, command)

    monkeypatch.setattr(data_parallel._Helper, "reply", failing_update_reply)
    monkeypatch.setattr(data_parallel._Helper, "send", remembering_send)
    with pytest.warns(data_parallel.HelperWarning, match="the helper process stopped"):
        got = train_with_update(2, "adam")
    assert not got[2]  # given up at step 3
    assert_same_training(expected, got)


@pytest.mark.parametrize("when", ["before the command", "after the command"])
def test_a_helper_killed_while_it_updates(when, helper_at_step_2, monkeypatch):
    """Killed before the update command reaches it (this process does the whole update), or right
    after (before, during or after its part). The same numbers either way."""
    expected = train_with_update(1, "rmsprop")
    real_send = data_parallel._Helper.send

    def send_and_kill(helper, command):
        doomed = command["op"] == "update" and command["step"] == 2
        if doomed and when == "before the command":
            helper.process.kill()
            helper.process.wait()
        real_send(helper, command)
        if doomed and when == "after the command":
            helper.process.kill()

    monkeypatch.setattr(data_parallel._Helper, "send", send_and_kill)
    with pytest.warns(data_parallel.HelperWarning):
        got = train_with_update(2, "rmsprop")
    assert not got[2]
    assert_same_training(expected, got)


def test_update_without_an_optimizer_says_so():
    model = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64)
    with DataParallel(model, 1) as parallel:
        parallel.loss(*batch(4, "sequence"))
        with pytest.raises(ValueError, match="needs the optimizer"):
            parallel.update(5.0)


# The cases below come from a review of the shared update: each one failed before its fix.

def test_the_state_loaded_between_loss_and_update_is_what_a_failed_update_undoes_to(helper_at_step_2, monkeypatch):
    """optimizer.load_state_dict between loss() and update(), then the helper fails at the very end
    of that update: the backup it undoes to must hold the loaded buffers, not those of the step."""
    def run(processes, fail):
        model, optimizer = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=4), Adam(0.05)
        real_reply, real_send = data_parallel._Helper.reply, data_parallel._Helper.send

        def remembering_send(helper, command):
            helper.last_command = command
            return real_send(helper, command)

        def failing_reply(helper):
            answer = real_reply(helper)
            if fail and helper.last_command["op"] == "update" and helper.last_command["backup"]:
                raise data_parallel.HelperError("the helper process stopped")  # the update after the load
            return answer

        monkeypatch.setattr(data_parallel._Helper, "send", remembering_send)
        monkeypatch.setattr(data_parallel._Helper, "reply", failing_reply)
        with DataParallel(model, processes, optimizer) as parallel:
            train_with_a_load_between(parallel, optimizer)
        return trained_state(model, optimizer)

    expected = run(1, False)
    assert_same_training(expected, run(2, False))
    with pytest.warns(data_parallel.HelperWarning):
        assert_same_training(expected, run(2, True))


def test_close_after_loading_a_fresh_optimizer_state(helper_at_once):
    """A fresh optimizer's state has no buffers: close() must still stop the helper and give the
    model its own arrays back."""
    model, optimizer = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=4), Adam(0.05)
    own = dict(model.params)
    parallel = DataParallel(model, 2, optimizer)
    for step in range(2):
        parallel.loss(*batch(4, "sequence", seed=step))
        parallel.update(0.5)
    process = parallel.helper.process
    optimizer.load_state_dict(Adam(0.05).state_dict())
    parallel.close()
    assert parallel.helper is None and process.poll() is not None
    assert all(model.params[name] is own[name] for name in own)
    assert not any(optimizer.buffers[kind] for kind in optimizer.buffer_names)


def test_ctrl_c_just_after_the_step_command(helper_at_once, monkeypatch):
    """A KeyboardInterrupt right after the step command was written, caught by the caller (as in a
    notebook): the helper's reply to it must not be read as the next step's. (No dropout here: the
    interrupted step has drawn its dropout seed, so its retry would draw other masks.)"""
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 7}]}

    def run(processes, interrupt):
        model, optimizer = Model(config, dtype=np.float64, seed=4), Adam(0.05)
        real_send = data_parallel._Helper.send
        armed = [interrupt]

        def send_then_interrupt(helper, command):
            real_send(helper, command)
            if armed[0] and command["op"] == "step" and command["id"] == 2:
                armed[0] = False
                raise KeyboardInterrupt

        monkeypatch.setattr(data_parallel._Helper, "send", send_then_interrupt)
        losses = []
        with DataParallel(model, processes, optimizer) as parallel:
            for step in range(4):
                try:
                    loss, _ = parallel.loss(*batch(4, "sequence", seed=step))
                except KeyboardInterrupt:
                    loss, _ = parallel.loss(*batch(4, "sequence", seed=step))
                losses.append(loss)
                parallel.update(0.5)
        return losses, trained_state(model, optimizer)

    expected, got = run(1, False), run(2, True)
    assert got[0] == expected[0]
    assert_same_training(expected[1], got[1])


def test_a_numpy_learning_rate_and_an_optimizer_of_ones_own(helper_at_once):
    """A float32 lr (from a schedule, say) goes to the helper as a plain number; a subclass that
    keeps its parent's name is updated whole in this process, since the helper would rebuild the
    parent class."""
    class Halved(SGD):  # not SGD's update: the helper must not stand in for it
        def _update(self, param, grad, velocity=None):
            super()._update(param, grad / 2, velocity)

    for make in (lambda: Adam(np.float32(0.05)), lambda: Halved(0.3, momentum=0.9)):
        results = []
        for processes in (1, 2):
            model, optimizer = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=4), make()
            with DataParallel(model, processes, optimizer) as parallel:
                for step in range(3):
                    parallel.loss(*batch(4, "sequence", seed=step))
                    parallel.update(0.5)
                assert (parallel.helper is not None) == (processes == 2)
            results.append(trained_state(model, optimizer))
        assert_same_training(*results)


def test_no_room_for_the_shared_memory(helper_at_once, monkeypatch):
    """/dev/shm full: the temporary folder instead. No room anywhere: one process, said once. The
    room is claimed up front: a too-full /dev/shm would otherwise kill the process (SIGBUS)."""
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here")
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    real = os.posix_fallocate
    folders = []

    def full_shm(fd, offset, size):
        folders.append(os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")))
        if folders[-1] == "/dev/shm":
            raise OSError(28, "No space left on device")
        return real(fd, offset, size)

    monkeypatch.setattr(data_parallel.os, "posix_fallocate", full_shm)
    got, used_helper = train_steps(config, 2, 4, steps=2)
    assert used_helper and folders[-1] != "/dev/shm"
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]

    def no_room(fd, offset, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data_parallel.os, "posix_fallocate", no_room)
    with pytest.warns(data_parallel.HelperWarning, match="No space left"):
        got, used_helper = train_steps(config, 2, 4, steps=2)
    assert not used_helper
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]


def test_a_helper_given_up_is_stopped_even_when_warnings_are_errors(helper_at_once, monkeypatch):
    config = CONFIGS["lstm+dropout, sequence"]
    model = Model(config, dtype=np.float64, seed=4)
    parallel = DataParallel(model, 2, Adam(0.05))
    parallel.loss(*batch(4, "sequence"))
    process = parallel.helper.process
    process.kill()
    process.wait()
    with pytest.raises(data_parallel.HelperWarning):  # the project's pytest settings make it an error
        parallel.update(0.5)
    assert parallel.helper is None and parallel.helper_failed
    parallel.close()


def test_no_helper_beside_a_blas_that_uses_every_core(monkeypatch):
    """It would fight BLAS's threads for the cores: this process computes both halves instead."""
    monkeypatch.setattr(data_parallel, "MIN_STEP_SECONDS", 0.0)
    monkeypatch.setattr(data_parallel, "one_blas_thread", lambda: False)
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    got, used_helper = train_steps(config, 2, 4, steps=2)
    assert not used_helper
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]


@pytest.mark.parametrize("variables, expected", [
    ({"OPENBLAS_NUM_THREADS": "1"}, True),
    ({"OMP_NUM_THREADS": "1"}, True),
    ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, False),  # OpenBLAS reads its own first
    ({}, False),  # unset: BLAS takes every core
])
def test_one_blas_thread_from_the_variables(variables, expected, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_threadpoolctl)
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert data_parallel.one_blas_thread() is expected


# From a second review.

def test_a_helper_stopped_before_its_new_backup_is_not_undone_to_the_old_one(helper_at_step_2, monkeypatch):
    """A state loaded between loss() and update() makes the helper back up again, under a new step
    number. Here it never gets to (stopped, then killed): the backup it still has, from before the
    load, must not be put back."""
    import signal

    def run(processes, stop):
        model, optimizer = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=4), Adam(0.05)
        real_send = data_parallel._Helper.send

        def stop_send_kill(helper, command):
            doomed = stop and command["op"] == "update" and command["backup"]
            if doomed:
                os.kill(helper.process.pid, signal.SIGSTOP)
            real_send(helper, command)
            if doomed:
                helper.process.kill()

        monkeypatch.setattr(data_parallel._Helper, "send", stop_send_kill)
        with DataParallel(model, processes, optimizer) as parallel:
            train_with_a_load_between(parallel, optimizer)
        return trained_state(model, optimizer)

    expected = run(1, False)
    with pytest.warns(data_parallel.HelperWarning):
        assert_same_training(expected, run(2, True))


def test_with_warnings_as_errors_the_update_is_whole_before_the_warning(helper_at_once, monkeypatch):
    """The project's pytest settings make a HelperWarning an error: it must come after the step's
    work, so that the weights are those of a whole update."""
    def run(processes, kill):
        model, optimizer = Model(CONFIGS["lstm+dropout, sequence"], dtype=np.float64, seed=4), Adam(0.05)
        with DataParallel(model, processes, optimizer) as parallel:
            parallel.loss(*batch(4, "sequence"))
            if kill:
                parallel.helper.process.kill()
                parallel.helper.process.wait()
                with pytest.raises(data_parallel.HelperWarning):
                    parallel.update(0.5)
            else:
                parallel.update(0.5)
        return trained_state(model, optimizer)

    assert_same_training(run(1, False), run(2, True))


def test_one_block_of_shared_memory_for_an_epoch_with_a_smaller_last_batch(helper_at_once, monkeypatch):
    blocks = []
    real = data_parallel._shared_file
    monkeypatch.setattr(data_parallel, "_shared_file", lambda size: blocks.append(size) or real(size))
    sizes = (6, 6, 3, 6, 6, 3)  # two epochs ending in a smaller batch: second halves of 3, 3, 1, ...
    expected = train_with_update(1, "adam", batch_sizes=sizes)
    assert_same_training(expected, train_with_update(2, "adam", batch_sizes=sizes))
    assert len(blocks) == 1  # the halves of 1 fit in the block made for the halves of 3


def test_a_helper_that_prints_something_else_is_given_up(helper_at_once, monkeypatch, tmp_path):
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    monkeypatch.setattr(data_parallel.sys, "executable", shell_script(tmp_path, "echo hello\nexec sleep 60"))
    with pytest.warns(data_parallel.HelperWarning, match="not a reply"):
        got, used_helper = train_steps(config, 2, 4, steps=2)
    assert not used_helper
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]


def test_a_dev_shm_we_may_not_write_to(helper_at_once, monkeypatch):
    """No permission in /dev/shm: the temporary folder instead, and the helper runs."""
    real = data_parallel.tempfile.mkstemp
    folders = []

    def refuse_dev_shm(prefix, dir):
        folders.append(dir)
        if dir == "/dev/shm":
            raise PermissionError(13, "Permission denied", dir)
        return real(prefix=prefix, dir=dir)

    monkeypatch.setattr(data_parallel.tempfile, "mkstemp", refuse_dev_shm)
    config = CONFIGS["lstm+dropout, sequence"]
    expected, _ = train_steps(config, 1, 4, steps=2)
    got, used_helper = train_steps(config, 2, 4, steps=2)
    assert used_helper and folders[-1] is None
    assert [loss for loss, _, _ in got] == [loss for loss, _, _ in expected]
