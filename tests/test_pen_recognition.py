"""Pen recognition: CTC decoding, edit distance, the BLSTM, the env's reward and a tiny training run."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from heed.agents.common.errors import HeedError
from heed.agents.handwriting_ctc import (
    BLSTM,
    BLSTMConfig,
    collate,
    ctc_loss,
    greedy_decode,
    prefix_beam_decode,
    reverse_within,
)
from heed.agents.parts import build_model, part_from_dict, part_to_dict
from heed.agents.trainers import pen
from heed.analysis.sequential import sequential_jacobian
from heed.envs.handwriting import ALPHABET, decode_labels, encode_labels
from heed.envs.pen_env import PenRecognitionEnv, ctc_collapse, edit_distance


def _spikes(path: list[int], classes: int, high: float = 0.9) -> np.ndarray:
    """Log probabilities ``[T, K]`` that put ``high`` on the path's class at every step."""
    probs = np.full((len(path), classes), (1 - high) / (classes - 1))
    probs[np.arange(len(path)), path] = high
    return np.log(probs)


def test_greedy_decoding_of_a_spike_sequence():
    # blank = 0; the spikes spell 1 1 _ 2 _ 2 3 3 -> merge repeats, drop blanks -> 1 2 2 3
    path = [0, 1, 1, 0, 2, 0, 2, 3, 3, 0]
    assert ctc_collapse(path) == [1, 2, 2, 3]
    assert greedy_decode(_spikes(path, 4)) == [1, 2, 2, 3]
    assert prefix_beam_decode(_spikes(path, 4), beam=4) == [1, 2, 2, 3]
    assert decode_labels([9, 10]) == "hi" and encode_labels("h i").tolist() == [9, 1, 10]  # space = 1, a = 2


def test_beam_finds_the_labelling_greedy_misses():
    # two steps, P(blank) = 0.6, P(a) = 0.4 each: best path '' (0.36), but P('a') = .16 + .24 + .24 = 0.64
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy_decode(lp) == []
    assert prefix_beam_decode(lp, beam=2) == [1]


def test_prefix_beam_matches_brute_force_on_small_problems():
    rng = np.random.default_rng(0)
    for _ in range(5):
        steps, classes = 5, 3
        lp = np.log(rng.dirichlet(np.ones(classes) * 0.7, size=steps))
        totals: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(classes), repeat=steps):
            key = tuple(ctc_collapse(path))
            totals[key] = totals.get(key, 0.0) + math.exp(sum(lp[t, k] for t, k in enumerate(path)))
        best = max(totals, key=totals.get)
        assert tuple(prefix_beam_decode(lp, beam=500, prune=-math.inf)) == best


def test_ctc_loss_is_minus_log_of_the_summed_paths():
    # one line 'a' (label 1) over two steps of a 3-class output: paths aa, a_, _a
    logits = torch.randn(1, 2, 3)
    lp = torch.log_softmax(logits, -1)[0]
    expected = -torch.logsumexp(torch.stack([lp[0, 1] + lp[1, 1], lp[0, 1] + lp[1, 0], lp[0, 0] + lp[1, 1]]), 0)
    batch = pen.PenBatch  # the real collate needs pen samples; build the fields by hand
    fake = batch(inputs=torch.zeros(1, 2, 3), lengths=torch.tensor([2]), labels=torch.tensor([1]),
                 label_lengths=torch.tensor([1]), texts=["a"])
    assert torch.allclose(ctc_loss(logits, fake), expected, atol=1e-5)


@pytest.mark.parametrize(("a", "b", "d"), [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2), ("same", "same", 0),
    (["once", "having"], ["once", "haying"], 1), (["a", "b", "c"], ["c"], 2),
])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == d and edit_distance(b, a) == d


def test_error_rates():
    rates = pen.error_rates(["once havin", "tho"], ["once having", "the"])
    assert rates["cer"] == pytest.approx(2 / 14) and rates["wer"] == pytest.approx(2 / 3)


def test_blstm_equals_a_packed_bidirectional_lstm():
    samples = pen.write_lines(4, "train", np.random.default_rng(0), max_words=1)
    batch = collate(samples)
    model = BLSTM(3, len(ALPHABET) + 1, BLSTMConfig(hidden_size=8, layers=2))
    reference = torch.nn.LSTM(3, 8, 2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(2):
            for ours, suffix in ((model.forward_layers[layer], ""), (model.backward_layers[layer], "_reverse")):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, f"{name}_l{layer}{suffix}").copy_(getattr(ours, f"{name}_l0"))
        packed = pack_padded_sequence(batch.inputs, batch.lengths, batch_first=True, enforce_sorted=False)
        hidden = pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=batch.inputs.shape[1])[0]
        expected = model.readout(hidden)
        logits = model(batch.inputs, batch.lengths)[0]
    valid = torch.arange(batch.inputs.shape[1])[None] < batch.lengths[:, None]
    assert logits.shape == (4, batch.inputs.shape[1], len(ALPHABET) + 1)
    torch.testing.assert_close(logits[valid], expected[valid], atol=1e-5, rtol=1e-4)
    x = torch.arange(10.0).view(2, 5, 1)
    assert reverse_within(x, torch.tensor([3, 5]))[:, :, 0].tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


def test_unidirectional_is_causal_and_bidirectional_is_not():
    x = torch.randn(1, 12, 3)
    for bidirectional in (False, True):
        model = build_model(BLSTMConfig(hidden_size=6, layers=1, bidirectional=bidirectional), 3, 5)
        jac = sequential_jacobian(lambda v, m=model: m(v)[0], x, 4)[0].norm(dim=(0, 2))  # [T]
        assert (jac[5:].max() == 0) != bidirectional
    cfg = BLSTMConfig(hidden_size=7, bidirectional=False)
    assert part_from_dict(part_to_dict(cfg)) == cfg


def test_env_reward_is_minus_the_edit_distance():
    env = PenRecognitionEnv(split="test", max_words=2)
    _, info = env.reset(seed=3)
    text = info["text"]
    labels = encode_labels(text).tolist()
    for t in range(info["length"]):  # emit the text's labels, separated by blanks, then blanks
        action = labels[t // 2] if t % 2 == 0 and t // 2 < len(labels) else 0
        _, reward, terminated, _, step_info = env.step(action)
    assert terminated and step_info["prediction"] == text and reward == 0
    env.reset(seed=3)
    for _ in range(info["length"]):
        _, reward, terminated, _, step_info = env.step(0)
    assert step_info["prediction"] == "" and reward == -len(text)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pen") / "run"
    results = pen.main(pen.Config(model=BLSTMConfig(hidden_size=6, layers=1), budget=replace(pen.BUDGET, steps=2),
                                  batch_size=2, eval_size=2,
                                  beam=2, run=pen.RunConfig(run_dir=run_dir, progress=False)))
    return run_dir, results


def test_two_step_training_then_resume_and_load(tiny_run):
    run_dir, results = tiny_run
    assert results["step"] == 2 and 0 <= results["cer"] and json.loads((run_dir / "results.json").read_text())
    resumed = pen.main(pen.Config(budget=replace(pen.BUDGET, steps=3), run=pen.RunConfig(resume=run_dir, progress=False)))
    assert resumed["step"] == 3 and resumed["model"]["hidden_size"] == 6
    model, meta = pen.load_recogniser(str(run_dir))
    assert isinstance(model, BLSTM) and meta["kind"] == "pen" and not model.training
    assert len(pen.recognise(model, pen.test_lines(2), beam=2)) == 2


def test_jacobian_command_writes_the_figure_and_counts(tiny_run, tmp_path):
    from heed.scripts import pen_jacobian

    cfg = pen_jacobian.Config(checkpoint=tiny_run[0], text="jig", char="i", count=3, out_dir=tmp_path)
    summary = pen_jacobian.main(cfg)
    assert (tmp_path / "jacobian.png").stat().st_size > 0 and (tmp_path / "summary.json").exists()
    assert summary["position"] == 1 and 0 <= summary["spike"] < summary["steps"]
    assert summary["count"]["words"] == 3
    with pytest.raises(HeedError, match="--char"):
        pen_jacobian.main(pen_jacobian.Config(checkpoint=tiny_run[0], char="Q", out_dir=tmp_path))
    with pytest.raises(HeedError, match="occurrence"):
        pen_jacobian.main(pen_jacobian.Config(checkpoint=tiny_run[0], text="once", char="o", occurrence=2,
                                              out_dir=tmp_path))


def test_spike_time_and_peak_rule():
    from heed.analysis.pen_figures import has_peak
    from heed.scripts.pen_jacobian import spike_time

    probs = np.full((10, 3), 0.1)
    probs[:, 0] = 0.8
    probs[[1, 2], 1] = [0.9, 0.95]  # class 1 fires twice: steps 1-2 and step 8
    probs[8, 1] = 0.99
    own = np.zeros(10, bool)
    own[[0, 1, 2]] = True
    assert spike_time(probs, 1, own) == 2  # the run nearest the letter's points, its highest step
    own[:] = False
    own[9] = True
    assert spike_time(probs, 1, own) == 8
    assert spike_time(probs, 2, own) == int(np.argmax(probs[:, 2]))  # never wins: the most probable step
    m = np.arange(20.0)
    assert has_peak(m, m >= 19) and not has_peak(m, m < 10) and not has_peak(m, np.zeros(20, bool))


def test_samples_command(tmp_path):
    from heed.scripts import pen_samples

    out = pen_samples.main(pen_samples.Config(out=tmp_path / "s.png", train_writers=(0,), test_writers=(1000,)))
    assert out.stat().st_size > 0
    with pytest.raises(HeedError, match="held"):
        pen_samples.main(pen_samples.Config(out=tmp_path / "t.png", test_writers=(5,)))
