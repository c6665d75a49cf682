"""The character language model: the text corpus, the SHA-RNN, bits per character and generation."""

from __future__ import annotations

import math
import subprocess
import sys
from pydoc_data.topics import topics

import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.cores.act import ACTConfig
from heed.agents.parts import build_model
from heed.agents.sharnn import SHARNNConfig, window_mask
from heed.agents.trainers import sequence_utils as su
from heed.agents.trainers.supervised import Config as TrainConfig
from heed.agents.trainers.supervised import main as train
from heed.analysis.ponder_figures import ponder_by_char_class
from heed.envs.tasks import TASKS
from heed.envs.text import VOCAB, TextTask, clean, corpus_text, decode, encode, one_hot
from heed.scripts import generate as gen


def test_corpus_is_deterministic_and_the_splits_share_no_paragraph() -> None:
    train_text, held_text = corpus_text("train"), corpus_text("validation")
    assert 0.03 < len(held_text) / (len(train_text) + len(held_text)) < 0.3
    train_paras, held_paras = set(train_text.split("\n\n")), set(held_text.split("\n\n"))
    assert held_paras and not train_paras & held_paras
    # every paragraph of the documentation is in exactly one split (tabs and typography cleaned)
    source = {clean(b).strip("\n") for text in topics.values() for b in text.split("\n\n")} - {""}
    assert {p.strip("\n") for p in train_paras | held_paras} == {p for p in source if p.strip()}
    # quoting between topics is not leakage: long validation lines are (nearly all) unseen in training
    lines = [line for p in held_paras for line in p.splitlines() if len(line) > 60]
    assert len(lines) > 50 and sum(line in train_text for line in lines) < 0.05 * len(lines)
    corpus_text.cache_clear()
    assert corpus_text("train") == train_text
    assert set(train_text) <= set(VOCAB) and len(VOCAB) == TextTask.input_size == 96


def test_windows_are_next_character_targets_and_seeded() -> None:
    task = TASKS["text"](window=50)
    batch = task.sample(4, np.random.default_rng(7))
    assert batch.inputs.shape == (4, 50, 96) and batch.targets.shape == (4, 50) and batch.targets.dtype == np.int64
    assert np.array_equal(batch.inputs.argmax(-1)[:, 1:], batch.targets[:, :-1])  # target t is input t + 1
    assert np.array_equal(batch.inputs.sum(-1), np.ones((4, 50)))
    again = task.sample(4, np.random.default_rng(7))
    assert np.array_equal(again.inputs, batch.inputs) and np.array_equal(again.targets, batch.targets)
    text = decode(np.concatenate([batch.inputs[0].argmax(-1), batch.targets[0, -1:]]))
    assert text in corpus_text("train")


def test_random_ids_are_drawn_afresh_in_tags() -> None:
    task = TextTask(window=400, id_every=100, id_length=6)
    starts = np.array([0])
    a = decode(task.windows(starts, np.random.default_rng(1))[0])
    b = decode(task.windows(starts, np.random.default_rng(2))[0])
    assert a.count("<id>") >= 2 and a.count("<id>") == a.count("</id>")
    digits = [a[i + 4:i + 10] for i in range(len(a)) if a.startswith("<id>", i) and a.find("</id>", i) == i + 10]
    assert digits and all(d.isdigit() for d in digits)
    assert a != b and a.replace("<id>", "").split("</id>")[1:] != []  # the IDs differ between draws ...
    def strip(s: str) -> str:  # the text without the ID digits
        return "".join(c for i, c in enumerate(s)
                       if not any(s.startswith("<id>", j) and j + 4 <= i < j + 10 for j in range(max(0, i - 10), i + 1)))

    assert strip(a) == strip(b)  # ... and nothing else does


def test_options_are_checked() -> None:
    with pytest.raises(HeedError, match="window"):
        TextTask(window=10**9)
    with pytest.raises(HeedError, match="split"):
        TextTask(split="test")
    with pytest.raises(HeedError, match="outside the vocabulary"):
        encode("caf\u00e9")


def test_window_mask_matches_a_loop() -> None:
    mask = window_mask(7, 3, torch.device("cpu"))
    for t in range(7):
        for j in range(7):
            assert bool(mask[t, j]) == (t - 3 < j <= t)


@pytest.mark.parametrize("window", [2, 50])
def test_sha_rnn_is_causal_by_the_sequential_jacobian(window: int) -> None:
    torch.manual_seed(0)
    model = build_model(SHARNNConfig(hidden_size=8, window=window, boom_factor=2), 5, 4).double()
    x = torch.randn(1, 6, 5, dtype=torch.double)
    jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[0], x)[0, :, :, 0]  # [T, K, T', D]
    sensitivity = jac.abs().sum(dim=(1, 3))  # [T, T']
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    assert sensitivity[future].max() == 0  # y_t ignores x_{t'} for t' > t
    assert (sensitivity[~future] > 0).all()  # and depends on every x_{t'} with t' <= t


def test_sha_rnn_head_attends_only_inside_its_window() -> None:
    model = build_model(SHARNNConfig(hidden_size=8, window=3), 96, 96)
    _, attention, aux = model(torch.as_tensor(TextTask(window=9).sample(2, np.random.default_rng(0)).inputs))
    weights = attention["attention"]  # [B, T, T]
    assert weights.shape == (2, 9, 9) and float(aux) == 0.0
    assert torch.allclose(weights.sum(-1), torch.ones(2, 9))
    assert weights[:, ~window_mask(9, 3, torch.device("cpu"))].abs().max() == 0


def test_bits_per_step_is_the_cross_entropy_in_bits() -> None:
    logits, targets = torch.randn(2, 5, 96), torch.randint(0, 96, (2, 5))
    mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 0.0, 0.0, 0.0]])
    _, metrics = su.sequence_loss(logits, targets, mask, "classes")
    nats = [-torch.log_softmax(logits[b, t], -1)[targets[b, t]] for b in range(2) for t in range(5) if mask[b, t]]
    assert math.isclose(float(metrics["bits_per_step"]), float(sum(nats) / len(nats)) / math.log(2), rel_tol=1e-5)


class _Bigram(torch.nn.Module):
    """A fixed character model: logits of the next character depend on the current one only."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.randn(96, 96, generator=torch.Generator().manual_seed(3))

    def forward(self, inputs: torch.Tensor):
        return inputs @ self.table, {}, torch.zeros(())


def test_temperature_zero_is_greedy_and_tiny_temperatures_agree() -> None:
    model = _Bigram()
    ids = list(encode("The "))
    for _ in range(20):  # greedy decoding by hand
        ids.append(int(model.table[ids[-1]].argmax()))
    greedy = decode(ids)
    assert gen.generate(model, "The ", 20, temperature=0.0) == greedy
    assert gen.generate(model, "The ", 20, temperature=1e-4, seed=5) == greedy
    assert gen.generate(model, "The ", 20, temperature=1.0, top_k=1, seed=5) == greedy
    assert gen.generate(model, "The ", 20, temperature=1.0, seed=5) == gen.generate(model, "The ", 20, 1.0, seed=5)


def test_top_k_draws_only_among_the_k_most_likely() -> None:
    logits = torch.tensor([0.0, 3.0, 2.0, 1.0])
    g = torch.Generator().manual_seed(0)
    assert {gen.next_char(logits, 5.0, 2, g) for _ in range(200)} == {1, 2}


def test_a_prompt_outside_the_vocabulary_is_one_line() -> None:
    with pytest.raises(HeedError, match="outside the vocabulary"):
        gen.generate(_Bigram(), "na\u00efve", 3)
    done = subprocess.run([sys.executable, "-m", "heed.scripts.cli", "generate", "--checkpoint", "nowhere",
                           "--prompt", "x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("model", [SHARNNConfig(hidden_size=16, window=8), ACTConfig(hidden_size=16, max_steps=3)])
def test_train_then_generate_in_process(tmp_path, model, capsys) -> None:
    run = tmp_path / "run"
    out = train(TrainConfig(task="text", model=model, run=RunConfig(run_dir=run, progress=False), total_sequences=8,
                            batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=0,
                            task_options="window=20"))
    assert out["updates"] == 2 and math.isclose(out["bits_per_step"], out["loss"] / math.log(2), rel_tol=1e-5)
    text = gen.main(gen.Config(checkpoint=run, prompt="def ", length=10, bpc_chars=40))
    assert text.startswith("def ") and len(text) == 14 and set(text) <= set(VOCAB)
    assert "validation bits per character" in capsys.readouterr().out
    with pytest.raises(HeedError, match="outside the vocabulary"):
        gen.main(gen.Config(checkpoint=run, prompt="\u00fcber"))
    assert one_hot(np.array([2])).argmax() == 2


def test_ponder_by_character_class_on_a_hand_made_text() -> None:
    """Per-class mean ponder of a hand-labelled text: letters, space, punctuation, digits, ID digits."""
    text = "ab c.\n<id>12</id>7"
    ponder = np.arange(1.0, len(text) + 1)  # rho_t = t + 1
    ids = np.zeros(len(text), bool)
    ids[10:12] = True  # the "12" inside the tag
    # by hand: a b c | i d | i d -> letters at 0,1,3,7,8,14,15; symbols < > < / > at 6,9,12,13,16
    expected = {
        "letter": (np.mean([1, 2, 4, 8, 9, 15, 16]), 7),
        "space": (3.0, 1),
        "sentence punctuation": (5.0, 1),
        "newline": (6.0, 1),
        "other symbol": (np.mean([7, 10, 13, 14, 17]), 5),
        "ID digit": (np.mean([11, 12]), 2),
        "digit": (18.0, 1),
    }
    got = ponder_by_char_class(text, ponder, ids)
    assert set(got) == set(expected)
    for name, (mean, count) in expected.items():
        assert got[name][1] == count, name
        assert got[name][0] == pytest.approx(mean), name
    # without an ID mask the tag's digits count as plain digits
    plain = ponder_by_char_class(text, ponder)
    assert "ID digit" not in plain and plain["digit"] == (pytest.approx(np.mean([11, 12, 18])), 3)
    with pytest.raises(ValueError):
        ponder_by_char_class(text, ponder[:-1])


def test_record_ponder_on_text_counts_every_held_out_character_once(tmp_path) -> None:
    """record_ponder on a text run: classes cover the held-out characters, IDs are found, figure written."""
    from heed.scripts import record_ponder as rp

    run = tmp_path / "act"
    train(TrainConfig(task="text", model=ACTConfig(hidden_size=8, max_steps=3), run=RunConfig(run_dir=run, progress=False),
                      total_sequences=4, batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=0,
                      task_options="window=20"))
    out = rp.main(rp.Config(checkpoint=run, out_dir=tmp_path / "rec", text_chars=400, passage_chars=60, id_every=50))
    by_class = out["ponder_by_class"]
    assert out["characters"] == 400 == sum(v["characters"] for v in by_class.values())
    assert by_class["ID digit"]["characters"] % 8 == 0 and by_class["ID digit"]["characters"] > 0
    assert 1.0 <= out["ponder"] <= 3.0 + 1e-6  # max_steps=3 bounds N + R
    mean = sum(v["ponder"] * v["characters"] for v in by_class.values()) / out["characters"]
    assert mean == pytest.approx(out["ponder"], rel=1e-5)
    assert len(out["passage"]) == len(out["passage_ponder"]) == 60 and "<id>" in out["passage"]
    assert (tmp_path / "rec" / "ponder_under_text.png").stat().st_size > 0
