"""Pondering tasks: targets against independent solvers, the env's reward and options (the Gymnasium
contract for every id is in tests/test_envs.py)."""

import gymnasium as gym
import numpy as np
import pytest

import heed.envs  # noqa: F401  (registers the ids)
from heed.agents.cores.act import ACTConfig
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.transformer import TransformerConfig, UTACTConfig
from heed.envs.ponder import addition_digits
from heed.envs.tasks import TASKS

pytestmark = pytest.mark.usefixtures("one_thread")


TRUTH = {  # gate index -> python function of (a, b), written independently of GATES
    0: lambda a, b: a and b,
    1: lambda a, b: a or b,
    2: lambda a, b: a != b,
    3: lambda a, b: not (a and b),
    4: lambda a, b: not (a or b),
    5: lambda a, b: a == b,
    6: lambda a, b: a and not b,
    7: lambda a, b: (not a) and b,
    8: lambda a, b: a or not b,
    9: lambda a, b: (not a) or b,
}


def test_parity_against_counting():
    batch = TASKS["parity"]().sample(200, np.random.default_rng(0))
    assert batch.inputs.shape == (200, 1, 64) and batch.targets.shape == (200, 1, 1)
    nonzero = (batch.inputs != 0).sum(-1).ravel()
    assert nonzero.min() >= 1 and nonzero.max() <= 64 and len(set(nonzero.tolist())) > 30
    assert set(np.unique(batch.inputs)) <= {-1.0, 0.0, 1.0}
    for x, y in zip(batch.inputs[:, 0], batch.targets[:, 0, 0]):
        plus = sum(1 for v in x.tolist() if v == 1.0)
        assert y == plus % 2


def test_logic_against_gate_functions():
    batch = TASKS["logic"]().sample(100, np.random.default_rng(1))
    for x, y, m in zip(batch.inputs, batch.targets, batch.mask):
        steps = int(m.sum())
        assert m[:steps].all() and not m[steps:].any()
        c = bool(x[0, 0])
        for t in range(steps):
            assert t == 0 or x[t, 0] == 0
            b = bool(x[t, 1])
            chunks = x[t, 2:].reshape(10, 10)
            used = [int(np.argmax(ch)) for ch in chunks if ch.sum() == 1]
            assert 1 <= len(used) <= 10 and all(ch.sum() == 0 for ch in chunks[len(used) :])
            for gate in used:
                c = bool(TRUTH[gate](c, b))
            assert y[t, 0] == float(c)


def test_addition_against_python_ints():
    batch = TASKS["addition"]().sample(100, np.random.default_rng(2))
    for x, y, m in zip(batch.inputs, batch.targets, batch.mask):
        steps = int((x.sum(-1) > 0).sum())
        assert m[0] == 0 and m[1:steps].all()
        total = 0
        for t in range(steps):
            digits = x[t].reshape(5, 10)
            number = sum(int(np.argmax(d)) * 10**i for i, d in enumerate(digits) if d.sum() == 1)
            total += number
            decoded = addition_digits(y[t])
            text = "".join(str(d) for d in decoded if d < 10)[::-1]
            assert int(text) == total
            assert all(d == 10 for d in decoded[len(str(total)) :])


@pytest.mark.parametrize("name", ["seqcopy", "reverse"])
def test_copy_and_reverse_targets(name):
    batch = TASKS[name](min_len=3, max_len=40).sample(20, np.random.default_rng(3))
    for x, y, m in zip(batch.inputs, batch.targets, batch.mask):
        n = int(x[:, -2].argmax())  # delimiter position = length
        seq = x[:n, :8].argmax(-1)
        want = seq[::-1] if name == "reverse" else seq
        assert (y[n + 1 : 2 * n + 1] == want).all() and m.sum() == n
    long = TASKS[name](min_len=400, max_len=400).sample(2, np.random.default_rng(4))
    assert long.inputs.shape == (2, 801, 10)


@pytest.mark.parametrize("wrong", [False, True])
def test_env_reward_is_minus_wrong_answers(wrong):
    """Class tasks: reward -1 per wrong answer on a scored step; the labels come in ``info``."""
    env = gym.make("heed/Reverse-v0", min_len=2, max_len=5, symbols=8)
    _, info = env.reset(seed=0)
    total, done, scored, steps = 0.0, False, 0, 0
    while not done:
        action = (info["target"] + 1) % 8 if wrong and info["scored"] else info["target"]
        scored += info["scored"]
        _, r, done, _, info = env.step(action)
        total, steps = total + r, steps + 1
    assert scored == (steps - 1) // 2 and total == (-scored if wrong else 0.0)


def test_babi_env_task_option():
    env = gym.make("heed/Babi-v0", task=3).unwrapped
    assert env.task.task == 3
    env.reset(seed=0, options={"task": 2})
    assert env.task.task == 2


@pytest.mark.parametrize(
    "task,model,task_options",
    [
        ("parity", ACTConfig(hidden_size=8, max_steps=4, tau=0.01), "size=8"),
        ("babi", UTACTConfig(d_model=16, heads=2, depth=3, tau=0.01), "task=0,max_statements=3"),
    ],
)
def test_train_then_record_in_process(tmp_path, task, model, task_options):
    import json

    from heed.scripts.record_ponder import Config as RecordConfig
    from heed.scripts.record_ponder import main as record

    core = model.name
    result = _train_tiny(tmp_path, task=task, model=model, task_options=task_options)
    assert result["sequences"] == 32
    story = tmp_path / "figures" / "story.png"
    summary = record(
        RecordConfig(checkpoint=tmp_path / "run", out_dir=tmp_path / "rec", sequences=16, batch_size=8,
                     story_figure=story if task == "babi" else None)
    )
    saved = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert saved["task"] == task and summary["core"] == core
    if task == "parity":
        assert 0.0 <= saved["error"] <= 1.0 and saved["ponder"] > 1.0
        assert (tmp_path / "rec" / "ponder_vs_nonzero.png").stat().st_size > 0
    else:
        assert set(saved) >= {"task1", "task2", "task3"} and saved["task2"]["ponder"] > 1.0
        assert 1.0 < saved["task2"]["ponder_question"] <= 3.0 + 1e-6  # depth=3 bounds N + R
        for name in ("attention.png", "ponder_vs_facts.png", "ponder_question_vs_facts.png", "ponder_story.png"):
            assert (tmp_path / "rec" / name).stat().st_size > 0
        assert story.stat().st_size > 0 and saved["story"]["figure"][-1] == str(story)
        contrast = saved["task2"]["support_vs_distractor"]
        assert 1.0 < contrast["support"] <= 3.0 + 1e-6 and 0.0 <= contrast["share_higher"] <= 1.0
        assert len(saved["story"]["ponder"]) == len(saved["story"]["sentences"]) == 9  # 8 facts, the question


def test_copy_record_reports_accuracy_by_output_index(tmp_path):
    import json

    from heed.scripts.record_ponder import Config as RecordConfig
    from heed.scripts.record_ponder import main as record

    _train_tiny(
        tmp_path,
        task="seqcopy",
        model=TransformerConfig(d_model=16, heads=2, layers=1, reset_unit=8, max_offset=60),
        task_options="max_len=4",
    )
    record(RecordConfig(checkpoint=tmp_path / "run", out_dir=tmp_path / "rec", sequences=8, eval_lengths=(3, 50)))
    saved = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert list(saved["length3"]["symbol_accuracy_by_output_index"]) == ["0-2"]
    buckets = saved["length50"]["symbol_accuracy_by_output_index"]
    assert list(buckets) == ["0-39", "40-49"]
    # equal-length sequences: the index-weighted mean of the buckets is the overall symbol accuracy
    weighted = (40 * buckets["0-39"] + 10 * buckets["40-49"]) / 50
    assert weighted == pytest.approx(saved["length50"]["symbol_accuracy"], abs=1e-6)


def test_checkpoint_stores_resolved_task_options(tmp_path):
    """A run started without options records the task defaults, so changing a default later
    cannot change what the checkpoint is rebuilt with."""
    from heed.agents.trainers.sequence_utils import load_sequence_model

    _train_tiny(tmp_path, task="babi", model=LSTMConfig(hidden_size=8), task_options="max_statements=3",
                total_sequences=16)
    _, task, ckpt = load_sequence_model(str(tmp_path / "run"))
    assert ckpt.meta["task_options"] == {"task": 1, "min_statements": 2, "max_statements": 3, "encoding": "facts"}
    assert task.encoding == "facts" and task.max_statements == 3


def _train_tiny(tmp_path, **fields):
    """A few updates of the supervised trainer into ``tmp_path/run``; returns its result."""
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers import supervised

    base = dict(
        total_sequences=32, batch_size=16, eval_sequences=16, image_every=0,
        run=RunConfig(run_dir=tmp_path / "run", progress=False),
    )
    return supervised.main(supervised.Config(**{**base, **fields}))
