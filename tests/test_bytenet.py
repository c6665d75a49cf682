"""ByteNet (agents/bytenet.py): causality, receptive fields, padding, decoding, the command line (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from heed.agents.bytenet import ByteNetConfig, receptive_fields
from heed.agents.common.errors import HeedError
from heed.agents.parts import build_model, part_from_dict, part_to_dict
from heed.analysis.sequential import sensitivity_matrix
from heed.envs.translation import DateTask, Pair, TranslationTask, encode_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ByteNetConfig(channels=8, kernel_size=3, levels=2, encoder_repeats=1, decoder_repeats=1)


def _model(task, cfg: ByteNetConfig = TINY, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, task.input_size, task.output_size).double().eval()


def _inputs(task, pairs) -> torch.Tensor:
    return torch.from_numpy(encode_pairs(pairs, len(task.source_vocab), task.output_size).inputs).double()


def test_receptive_field_formula():
    assert receptive_fields(TINY) == (6, 3)  # r_dec = 1 * 2 * (1 + 2), r_enc = 1 * 1 * (1 + 2)
    assert receptive_fields(ByteNetConfig()) == (124, 62)
    assert receptive_fields(ByteNetConfig(kernel_size=5, levels=3, encoder_repeats=3)) == (56, 42)


@pytest.mark.parametrize("cfg", [TINY, ByteNetConfig(channels=6, kernel_size=5, levels=2, decoder_repeats=2)])
def test_decoder_is_causal_and_sees_exactly_its_receptive_field(cfg):
    """The sequential Jacobian ``||d logits_t / d x_s||``: on decoder inputs it is nonzero exactly for
    ``t - r_dec <= s <= t`` (nothing after t); on source words exactly for
    ``t - r_dec - r_enc <= j <= min(t, S - 1) + r_enc`` (the docstring's formula; the unfolding
    stops at S)."""
    task = TranslationTask()
    rng = np.random.default_rng(0)
    s_len, m_len = 14, 30  # the target is longer than the source: the unfolding runs past S
    pair = Pair(
        tuple(int(i) for i in rng.integers(len(task.source_vocab), size=s_len)),
        tuple(int(i) for i in rng.integers(1, task.output_size, size=m_len - 1)),
        (),
    )
    model = _model(task, cfg)
    inputs = _inputs(task, [pair])
    sens = sensitivity_matrix(lambda x: model(x)[0], inputs)[0]  # [T, T]
    r_dec, r_enc = receptive_fields(cfg)
    t = np.arange(m_len)[:, None]
    on_target = sens[s_len:, s_len:].numpy() > 0  # [M, M]: output step t, decoder input step s
    s = np.arange(m_len)[None, :]
    assert np.array_equal(on_target, (s <= t) & (s >= t - r_dec))
    on_source = sens[s_len:, :s_len].numpy() > 0  # [M, S]
    j = np.arange(s_len)[None, :]
    reached = (t - r_dec <= s_len - 1) & (j >= t - r_dec - r_enc) & (j <= np.minimum(t, s_len - 1) + r_enc)
    assert np.array_equal(on_source, reached)
    assert on_source[0, r_enc] and not on_source[0, r_enc + 1]  # the encoder looks ahead r_enc words
    assert (sens[:s_len] == 0).all()  # no logits on source steps


def test_a_row_does_not_depend_on_the_batch_padding():
    task = TranslationTask(max_clauses=3)
    model = _model(task)
    short, long = sorted(task.sample_pairs(2, np.random.default_rng(3)), key=lambda p: len(p.source))
    assert len(short.source) < len(long.source)
    alone = model(_inputs(task, [short]))[0]
    both = model(_inputs(task, [short, long]))[0]
    ls, s, m = len(short.source), len(long.source), len(short.target) + 1
    assert torch.allclose(alone[0, ls : ls + m], both[0, s : s + m], atol=1e-10)


def test_greedy_equals_decoding_by_the_teacher_forced_forward():
    """Greedy decoding (incremental, through beam_search) against a loop that re-encodes the layout
    with the prefix written so far and takes the full forward's argmax at the next step."""
    task = DateTask()
    model = _model(task, seed=2)
    pairs = task.sample_pairs(3, np.random.default_rng(1))
    classes, alignment = model.greedy(_inputs(task, pairs), max_len=7)
    assert alignment is None
    for pair, row in zip(pairs, classes.tolist()):
        prefix: list[int] = []
        for _ in range(8):
            probe = Pair(pair.source, tuple(prefix), ())
            logits = model(_inputs(task, [probe]))[0][0, len(pair.source) + len(prefix)]
            prefix.append(int(logits.argmax()))
            if prefix[-1] == 0:
                break
        assert row[: len(prefix)] == prefix and all(c == 0 for c in row[len(prefix) :])
    wide, _ = model.beam(_inputs(task, pairs), width=3, max_len=7)
    assert wide.shape[0] == 3 and wide.shape[1] <= 8  # at most max_len + 1 classes


def test_config_round_trip_and_bad_options_are_one_line():
    cfg = part_from_dict(part_to_dict(TINY))
    assert cfg == TINY
    task = DateTask()
    with pytest.raises(HeedError, match="kernel_size must be odd"):
        build_model(ByteNetConfig(kernel_size=4), task.input_size, task.output_size)
    with pytest.raises(HeedError, match="seq2seq layout"):
        build_model(TINY, 5, 10)
    with pytest.raises(HeedError, match="levels"):
        part_from_dict({"name": "bytenet", "levels": 40})


def test_train_then_draw_the_implicit_map(tmp_path, capsys):
    """``heed train supervised --task translation model:bytenet`` and ``heed translation-figures``, in-process."""
    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import translation_figures as tf

    out = main(
        Config(
            task="translation",
            model=TINY,
            total_sequences=8,
            batch_size=4,
            eval_sequences=4,
            eval_every=8,
            log_every=4,
            image_every=4,
            task_options="max_clauses=1",
            run=RunConfig(run_dir=tmp_path / "runs" / "bytenet", progress=False),
        )
    )
    assert out["updates"] == 2
    summary = tf.main(
        tf.Config(runs=(tmp_path / "runs",), out_dir=tmp_path / "figs", sentences=6, gradient_sentences=3, beam=2)
    )
    (run,) = summary["runs"]
    assert run["model"] == "bytenet" and run["attention_share"] is None and 0 <= run["gradient_share"] <= 1
    assert 0 <= summary["bytenet_implicit_share"] <= 1
    assert (tmp_path / "figs" / "bytenet_implicit.png").stat().st_size > 1000
    assert not (tmp_path / "figs" / "implicit.png").exists()  # that one is RNNencdec's
    assert "| bytenet | 1 |" in capsys.readouterr().out
