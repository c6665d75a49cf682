"""The attentive reader (agents/reader.py): where its attention may go, what it reads, and the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heed.agents.common.session import RunConfig
from heed.agents.parts import build_model, part_from_dict, part_to_dict
from heed.agents.reader import AttentiveReader, ReaderConfig, split_story
from heed.agents.trainers import sequence_utils as su
from heed.agents.trainers.supervised import Config, main
from heed.envs.babi import BabiTask
from heed.scripts import reader_attention

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ReaderConfig(hidden_size=8, embed_size=8, attention_size=8)


@pytest.mark.parametrize("encoding", ["facts", "words"])
@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_attention_is_a_distribution_over_the_story_only(encoding, attention):
    torch.manual_seed(0)
    task = BabiTask(task=1, encoding=encoding)
    batch = task.sample(6, np.random.default_rng(1))
    inputs = torch.as_tensor(batch.inputs)
    model = build_model(ReaderConfig(hidden_size=8, embed_size=8, attention=attention), task.input_size, 6)
    logits, att, _ = model(inputs)
    weights = att["attention"]  # [B, T, T]
    target_step = torch.as_tensor(batch.mask).argmax(1)  # where the task scores the answer
    for b in range(inputs.shape[0]):
        last = int(target_step[b])
        row = weights[b, last]
        torch.testing.assert_close(row[:last].sum(), torch.tensor(1.0))
        assert (row[:last] > 0).all() and (row[last:] == 0).all()  # 0 on the query step and on padding
        others = torch.ones(weights.shape[1], dtype=torch.bool)
        others[last] = False
        assert (weights[b, others] == 0).all() and (logits[b, others] == 0).all()
        assert logits[b, last].abs().sum() > 0


def test_padding_does_not_change_the_answer():
    torch.manual_seed(0)
    task = BabiTask(task=1, encoding="words")
    inputs = torch.as_tensor(task.sample(3, np.random.default_rng(2)).inputs)
    model = AttentiveReader(task.input_size, 6, SMALL)
    longer = torch.cat([inputs, inputs.new_zeros(3, 7, inputs.shape[-1])], 1)
    last = split_story(inputs)[2]  # [B]: the question step
    a, att_a, _ = model(inputs)
    b, att_b, _ = model(longer)
    rows = torch.arange(3)
    torch.testing.assert_close(a[rows, last], b[rows, last])
    torch.testing.assert_close(att_a["attention"][rows, last], att_b["attention"][rows, last, : inputs.shape[1]])


def test_one_hot_key_is_attended_and_read():
    model = AttentiveReader(5, 3, ReaderConfig(hidden_size=2, attention="dot"))
    with torch.no_grad():
        model.query.weight.copy_(40.0 * torch.eye(4))  # W u = 40 u: scores 40 u.h_s / 2
    annotations = torch.eye(4)[None, [0, 1, 2, 3, 0]]  # [1, 5, 4]; step 4 is the (excluded) query step
    story = torch.tensor([[True, True, True, True, False]])
    question = torch.eye(4)[None, 2]  # the key of step 2
    alpha, summary = model.read(question, annotations, story)
    assert alpha.argmax().item() == 2 and alpha[0, 2] > 0.99 and alpha[0, 4] == 0
    torch.testing.assert_close(summary, (alpha[..., None] * annotations).sum(1))


def test_additive_scores_match_a_numpy_reference():
    torch.manual_seed(1)
    model = AttentiveReader(5, 3, ReaderConfig(hidden_size=3, attention_size=4))
    h = torch.randn(2, 6, 6)
    u = torch.randn(2, 6)
    story = torch.tensor([[True] * 5 + [False], [True] * 2 + [False] * 4])
    alpha, _ = model.read(u, h, story)
    W, bias = model.query.weight.detach().numpy(), model.query.bias.detach().numpy()
    U, w = model.keys.weight.detach().numpy(), model.score_vector.detach().numpy()
    for b in range(2):
        n = int(story[b].sum())
        e = np.array([w @ np.tanh(W @ u[b].numpy() + bias + U @ h[b, s].numpy()) for s in range(n)])
        expected = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(alpha[b, :n].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
        assert (alpha[b, n:] == 0).all()


def test_trains_through_the_supervised_trainer(tmp_path):
    assert part_from_dict(part_to_dict(SMALL)) == SMALL
    cfg = Config(task="babi", model=SMALL, task_options="task=1,encoding=words", total_sequences=8, batch_size=4,
                 eval_sequences=4, eval_every=8, log_every=4, image_every=4,
                 run=RunConfig(device="cpu", progress=False, run_dir=tmp_path / "run"))
    out = main(cfg)
    assert out["updates"] == 2 and 0.0 <= out["error_rate"] <= 1.0
    model, _, _ = su.load_sequence_model(str(tmp_path / "run"))  # the checkpoint rebuilds the reader
    assert isinstance(model, AttentiveReader) and model.cfg == SMALL
    summary = reader_attention.main(reader_attention.Config(run=tmp_path / "run", out=tmp_path / "map.png", questions=5))
    assert (tmp_path / "map.png").stat().st_size > 0
    assert 0.0 <= summary["support_share"] <= 1.0 and 0.0 < summary["chance_share"] < 1.0


@pytest.mark.parametrize("encoding", ["facts", "words"])
def test_story_steps_line_up_with_the_task_layout(encoding):
    task = BabiTask(task=2, encoding=encoding)
    qa = task.sample_qa(np.random.default_rng(5))
    steps = task.labels(task.sample(1, np.random.default_rng(5)).inputs[0])  # decoded from the layout
    labels, owner = reader_attention.step_sentences(task, qa)
    assert len(labels) == len(steps) - 1 and len(owner) == len(labels)  # all but the query step
    if encoding == "words":
        assert labels == steps[:-1]
