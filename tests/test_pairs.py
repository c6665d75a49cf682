"""MNIST pairs (Ba et al. 2014): the two-digit canvases, DRAM's per-object labels and their REINFORCE credit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from heed.agents.glimpse import RAM, GlimpseOutput, build_model, hybrid_loss, mc_predict
from heed.envs.errors import HeedError
from heed.envs.mnist import DATASETS, fixed_test_set, load_digits, make_canvases, sample_indices
from heed.envs.mnist_pairs import pair_boxes, pair_indices, precedes

PAIRS = DATASETS["mnist-pairs"]


def _find_digits(canvas: np.ndarray, digits) -> list[tuple[int, int, int]]:
    """Every ``(top, left, index)`` where a 28x28 window of ``canvas`` equals source digit ``index``
    exactly (an independent search: every window against every digit's bytes)."""
    lookup = {(digits.images[i].astype(np.float32) / 255.0).tobytes(): i for i in range(len(digits))}
    windows = sliding_window_view(canvas, (28, 28))  # [S-27, S-27, 28, 28]
    return [(y, x, lookup[w.tobytes()]) for (y, x) in np.ndindex(windows.shape[:2])
            if (w := np.ascontiguousarray(windows[y, x])).tobytes() in lookup]


def test_boxes_never_overlap_and_come_in_reading_order():
    rng = np.random.default_rng(0)
    seen_axes = set()
    for _ in range(2000):
        (y1, x1), (y2, x2) = pair_boxes(60, rng)
        assert 0 <= min(y1, x1, y2, x2) and max(y1, x1, y2, x2) <= 32
        assert abs(x1 - x2) >= 28 or abs(y1 - y2) >= 28  # disjoint 28x28 boxes
        # left to right; boxes sharing a column: top to bottom
        assert x1 + 28 <= x2 or (x2 + 28 > x1 and y1 < y2)
        seen_axes.add("columns" if abs(x1 - x2) >= 28 else "rows")
    assert seen_axes == {"columns", "rows"}
    assert precedes((0, 0), (0, 30)) and not precedes((0, 30), (0, 0))
    assert precedes((0, 10), (30, 5)) and not precedes((30, 5), (0, 10))  # share columns: top first
    with pytest.raises(ValueError):
        pair_boxes(50, rng)


def test_pair_canvas_holds_both_digits_whole_with_labels_in_order():
    d = load_digits("train")
    rng = np.random.default_rng(1)
    idx = sample_indices(PAIRS, len(d), 6, rng)
    assert idx.shape == (6, 2) and np.all(idx[:, 0] != idx[:, 1])
    out = make_canvases(PAIRS, d, idx, rng)
    assert out.shape == (6, 60, 60) and out.dtype == np.float32
    for b in range(6):
        found = _find_digits(out[b], d)
        assert sorted(i for _, _, i in found) == sorted(idx[b].tolist())  # each digit once, whole
        # nothing else on the canvas: its ink is the two digits' ink (no overlap, no clipping)
        np.testing.assert_allclose(out[b].sum(), (d.images[idx[b]] / 255.0).sum(), rtol=1e-5)
        box = {i: (y, x) for y, x, i in found}
        assert precedes(box[idx[b, 0]], box[idx[b, 1]])  # the first label is the first digit in order
    labels = d.labels[idx]
    assert labels.shape == (6, 2) and labels.sum(1).max() <= 18
    with pytest.raises(HeedError, match="indices"):
        make_canvases(PAIRS, d, idx[:, 0], rng)


def test_pairs_are_deterministic_per_seed_and_the_test_set_is_held_out():
    train, test = load_digits("train"), load_digits("test")
    x1, y1 = fixed_test_set(PAIRS, test, n=50)
    x2, y2 = fixed_test_set(PAIRS, test, n=50)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (50, 2) and len(np.unique(y1)) == 10
    x3, _ = fixed_test_set(PAIRS, test, n=50, seed=7)
    assert not np.array_equal(x1, x3)
    for b in range(5):  # held-out: the canvases are made of test digits only, in label order
        found = _find_digits(x1[b], test)
        assert len(found) == 2 and not _find_digits(x1[b], train)
        first, second = (found if precedes(found[0][:2], found[1][:2]) else found[::-1])
        assert [test.labels[first[2]], test.labels[second[2]]] == y1[b].tolist()
    a = make_canvases(PAIRS, train, pair_indices(len(train), 4, np.random.default_rng(3)), np.random.default_rng(3))
    b = make_canvases(PAIRS, train, pair_indices(len(train), 4, np.random.default_rng(3)), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    first = pair_indices(100, 100, np.random.default_rng(0), distinct_first=True)[:, 0]
    assert sorted(first.tolist()) == list(range(100))  # each test digit leads exactly one pair


def test_dram_emits_one_label_per_block_from_the_state_after_it():
    """Label 0 of an 8-glimpse DRAM is what a 4-glimpse RAM with the same weights says after the same path."""
    torch.manual_seed(0)
    dram = build_model("dram", 60, glimpses=8, patch=12, scales=3, hidden=32, objects=2)
    x = torch.rand(3, 60, 60)
    torch.manual_seed(5)
    out = dram(x)
    assert out.logits.shape == (3, 2, 10) and out.locations.shape == (3, 8, 2) and out.label_steps == (3, 7)
    short = RAM(60, 12, 3, glimpses=4, hidden=32)
    state = {k: v for k, v in dram.state_dict().items() if not k.startswith("classifier")}
    state.update({"classifier.weight": dram.classifier.weight[:10], "classifier.bias": dram.classifier.bias[:10]})
    short.load_state_dict(state)
    torch.manual_seed(5)
    ref = short(x)
    torch.testing.assert_close(ref.locations, out.locations[:, :4])
    torch.testing.assert_close(ref.logits, out.logits[:, 0])
    ram = build_model("ram", 60, glimpses=8, patch=12, scales=3, hidden=32, objects=2)
    assert ram(x).label_steps == (7, 7)  # the single-object RAM reads both labels at the end
    assert mc_predict(dram, x, samples=3).shape == (3, 2, 10)
    assert build_model("cnn", 60, glimpses=8, patch=12, scales=3, objects=2)(x).logits.shape == (3, 2, 10)
    with pytest.raises(HeedError):
        build_model("dram", 60, glimpses=8, patch=12, scales=3)  # one object
    with pytest.raises(HeedError):
        build_model("tiles", 28, glimpses=4, patch=12, scales=1, objects=2)


def test_each_location_is_credited_with_the_labels_it_can_still_change():
    """d loss / d log_pi[b, t] = -(G_t - b_t) / B with G_t = sum of the rewards of labels read at or after t."""
    b, t = 4, 4
    labels = torch.tensor([[1, 2], [1, 2], [1, 2], [1, 2]])
    logits = torch.full((b, 2, 10), -5.0)
    right = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)  # which labels each image gets right
    for i in range(b):
        for o in range(2):
            logits[i, o, labels[i, o] if right[i, o] else 0] = 5.0
    log_pi = torch.zeros(b, t, requires_grad=True)
    baseline = torch.full((b, t), 0.25)
    out = GlimpseOutput(logits, torch.zeros(b, t, 2), log_pi, baseline, torch.zeros(b, t), (1, 3))
    loss, stats = hybrid_loss(out, labels, learned_policy=True)
    loss.backward()
    expected = torch.zeros(b, t)
    for i in range(b):
        for step in range(t):
            ret = sum(float(right[i, o]) for o, s in enumerate((1, 3)) if s >= step)
            expected[i, step] = -(ret - 0.25) / b
    torch.testing.assert_close(log_pi.grad, expected)
    assert stats["reward"] == pytest.approx(0.5)


def test_tiny_pairs_training_reports_pair_digit_and_sum_errors(tmp_path):
    from heed.agents.common.session import RunConfig
    from heed.agents.cores.lstm import LSTMConfig
    from heed.agents.trainers.glimpse import BUDGET, Config, errors, main

    pred, y = torch.tensor([[3, 5], [1, 2], [4, 4]]), torch.tensor([[5, 3], [1, 2], [4, 9]])
    assert errors(pred, y) == pytest.approx(
        {"test_error": 200 / 3, "test_error_digit": 50.0, "test_error_sum": 100 / 3})
    for model in ("dram", "cnn"):
        cfg = Config(dataset="mnist-pairs", model=model, glimpses=4, batch_size=4, hidden=16,
                     budget=dataclasses.replace(BUDGET, steps=2, log_every=1),
                     core=LSTMConfig(hidden_size=16), eval_size=10, mc_samples=2,
                     run=RunConfig(run_dir=tmp_path / model, device="cpu", progress=False))
        res = main(cfg)
        assert res["step"] == 2 and res["dataset"] == "mnist-pairs" and res["test_images"] == 10
        assert res["test_error_digit"] <= res["test_error"] and 0 <= res["test_error_sum"] <= 100
    from heed.scripts import record_glimpses as record

    paths = record.main(record.Config(run_dir=str(tmp_path / "dram"), count=2, out=str(tmp_path / "rec"),
                                      name="pairs_path"))
    assert paths["still"].name == "pairs_path.png" and paths["still"].stat().st_size > 1000
    with pytest.raises(HeedError, match="plain file name"):
        record.main(record.Config(run_dir=str(tmp_path / "dram"), out=str(tmp_path / "rec"), name="../x"))
    with pytest.raises(HeedError, match="multiple of 2"):
        main(Config(dataset="mnist-pairs", model="dram", glimpses=5, run=RunConfig(run_dir=tmp_path / "bad")))


def test_pairs_env_rewards_the_fraction_of_labels_right():
    import gymnasium as gym

    env = gym.make("heed/GlimpsePairs-v0", split="test", glimpses=2)
    obs, info = env.reset(seed=3, options={"index": 17})
    assert obs["glimpse"].shape == (3, 12, 12)
    labels = env.unwrapped._label
    test = load_digits("test")
    assert test.labels[17] in labels.tolist()  # the chosen digit is one of the two
    found = _find_digits(env.unwrapped._canvas, test)
    first, second = found if precedes(found[0][:2], found[1][:2]) else found[::-1]
    assert [test.labels[first[2]], test.labels[second[2]]] == labels.tolist()  # left to right
    env.step({"location": np.zeros(2, np.float32), "label": labels})
    wrong_second = labels.copy()
    wrong_second[1] = (labels[1] + 1) % 10
    _, reward, done, _, info = env.step({"location": np.zeros(2, np.float32), "label": wrong_second})
    assert done and reward == 0.5 and not info["correct"]
    flat = gym.make("heed/GlimpsePairs-v0", split="test", glimpses=2, flat_actions=True)
    flat.reset(seed=3, options={"index": 17})
    scores = np.full(22, -1.0, np.float32)
    scores[2 + labels[0]] = scores[12 + labels[1]] = 1.0
    flat.step(scores)
    _, reward, _, _, info = flat.step(scores)
    assert reward == 1.0 and info["correct"]
