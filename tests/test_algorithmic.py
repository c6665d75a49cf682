"""The NTM tasks: targets checked by independent solvers that only read the inputs; the env's reward
(the Gymnasium contract for every id is in tests/test_envs.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import heed.envs  # noqa: F401  (registers the heed/ ids)
from heed.envs.algorithmic import DynamicNGramsTask, ngram_bayes_optimal_bits
from heed.envs.tasks import TASKS

RNG = np.random.default_rng(123)
NTM_TASKS = ["copy", "repeat-copy", "associative-recall", "dynamic-ngrams", "priority-sort"]


pytestmark = pytest.mark.usefixtures("one_thread")



def solve_copy(x, bits):
    seq = []
    for row in x:
        if row[bits] == 1:
            break
        seq.append(row[:bits])
    return [list(v) for v in seq]


def test_copy_targets():
    task = TASKS["copy"]()
    for _ in range(5):
        b = task.sample(3, RNG)
        for x, y, m in zip(b.inputs, b.targets, b.mask):
            want = solve_copy(x, 8)
            assert 1 <= len(want) <= 20
            assert [list(v) for v in y[m == 1]] == want


def test_repeat_copy_targets():
    task = TASKS["repeat-copy"]()
    for _ in range(5):
        b = task.sample(2, RNG)
        for x, y, m in zip(b.inputs, b.targets, b.mask):
            seq = solve_copy(x, 8)
            repeats = round(x[len(seq), 9] * 10)
            want = [v + [0.0] for v in seq] * repeats + [[0.0] * 8 + [1.0]]
            assert [list(v) for v in y[m == 1]] == want


def test_associative_recall_targets():
    task = TASKS["associative-recall"]()
    for _ in range(5):
        b = task.sample(3, RNG)
        for x, y, m in zip(b.inputs, b.targets, b.mask):
            items, current, query, mode = [], None, [], "items"
            for row in x:
                if mode == "items":
                    if row[6] == 1:
                        current = []
                        items.append(current)
                    elif row[7] == 1:
                        mode = "query"
                    else:
                        current.append(tuple(row[:6]))
                elif mode == "query":
                    if row[7] == 1:
                        break
                    query.append(tuple(row[:6]))
            index = next(i for i, item in enumerate(items) if item == query)
            assert 2 <= len(items) <= 6
            assert [tuple(v) for v in y[m == 1]] == items[index + 1]


def test_priority_sort_targets():
    task = TASKS["priority-sort"]()
    b = task.sample(4, RNG)
    for x, y, m in zip(b.inputs, b.targets, b.mask):
        pairs = [(row[8], tuple(row[:8])) for row in x if row[9] == 0 and (row[:8].any() or row[8] != 0)]
        pairs = pairs[:20]
        want = [v for _, v in sorted(pairs, key=lambda p: -p[0])[:16]]
        assert [tuple(v) for v in y[m == 1]] == want


def test_dynamic_ngrams_targets_and_bayes_optimum():
    task = DynamicNGramsTask(length=60)
    bits = task.sample_bits(3, RNG)
    b = task.batch_from_bits(bits)
    np.testing.assert_array_equal(b.targets[:, :-1, 0], b.inputs[:, 1:, 0])
    assert b.mask.sum(1).tolist() == [55.0] * 3
    # the estimator with plain dict counting
    want = []
    for row in bits:
        counts, cost = {}, 0.0
        for t in range(5, len(row)):
            ctx = tuple(row[t - 5 : t])
            n0, n1 = counts.get(ctx, (0, 0))
            p1 = (n1 + 0.5) / (n0 + n1 + 1)
            cost -= np.log2(p1 if row[t] else 1 - p1)
            counts[ctx] = (n0 + (row[t] == 0), n1 + (row[t] == 1))
        want.append(cost)
    np.testing.assert_allclose(ngram_bayes_optimal_bits(bits), want)
    long = DynamicNGramsTask().sample_bits(64, np.random.default_rng(0))
    assert ngram_bayes_optimal_bits(long).mean() < 195  # it learns: fewer bits than guessing
    # the task's own optimum reads the bits back out of a Batch (inputs x_0.., targets x_1..)
    np.testing.assert_allclose(task.optimal_bits(b), want)


@pytest.mark.parametrize("name", NTM_TASKS)
def test_fixed_length_and_shapes(name):
    task = TASKS[name]()
    b = task.fixed_length(7).sample(2, RNG)
    assert b.inputs.shape[:2] == b.targets.shape[:2] == b.mask.shape
    assert b.inputs.shape[2] == task.input_size and b.targets.shape[2] == task.output_size
    assert b.inputs.dtype == np.float32 and task.loss == "bits"
    if name == "copy":
        assert b.mask.sum(1).tolist() == [7.0, 7.0]


@pytest.mark.parametrize("env_id", [TASKS[name].env_id for name in NTM_TASKS])
def test_reward_is_minus_bit_errors(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    total, scored, steps = 0.0, 0, 0
    done = False
    while not done:
        action = info["target"].astype(np.int8)
        if info["scored"]:
            action = 1 - action  # every bit wrong
            scored += action.size
        obs, reward, done, _truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        total += reward
        steps += 1
    assert total == -scored and scored > 0


def test_perfect_actions_score_zero():
    env = gym.make("heed/Copy-v0", max_len=5)
    _, info = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        _obs, reward, done, _, info = env.step(info["target"].astype(np.int8))
        total += reward
    assert total == 0.0
