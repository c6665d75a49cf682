"""Pondering over a bAbI story: per-sentence aggregation, the supporting-vs-distractor contrast, the
story figure, and why the story's halting learns nothing from the question's loss unless a halted
position shows its mean field (docs/ponder.md)."""

import numpy as np
import pytest
import torch

from heed.agents.transformer import UniversalTransformer, UTACTConfig
from heed.analysis import ponder_figures as pf

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sentence_ponder_is_the_mean_over_each_sentences_steps():
    rho = np.array([2.0, 3.0, 4.0, 1.5, 2.5, 6.0, 0.0])  # the last step (e.g. <answer>) in no sentence
    got = pf.sentence_ponder(rho, [(0, 3), (3, 5), (5, 6)])
    np.testing.assert_allclose(got, [(2 + 3 + 4) / 3, (1.5 + 2.5) / 2, 6.0])
    np.testing.assert_allclose(pf.sentence_ponder(rho, [(t, t + 1) for t in range(7)]), rho)
    with pytest.raises(ValueError):
        pf.sentence_ponder(rho, [(5, 9)])


def test_support_contrast_by_hand():
    stories = [np.array([2.0, 5.0, 2.0, 3.0]), np.array([4.0, 2.0]), np.array([3.0, 3.0, 3.0]), np.array([7.0])]
    supports = [[1, 3], [1], [0], [0]]  # the last story has no distractor: out of the per-story share
    got = pf.support_contrast(stories, supports)
    # supporting facts: 5, 3 | 2 | 3 | 7 -> mean 20 / 5; distractors: 2, 2 | 4 | 3, 3 -> 14 / 5
    assert got["support"] == pytest.approx(4.0) and got["distractor"] == pytest.approx(2.8)
    # per story (first three): support 4, 2, 3; distractors 2, 4, 3
    assert got["story_support"] == pytest.approx(3.0) and got["story_distractor"] == pytest.approx(3.0)
    assert got["share_higher"] == pytest.approx(1 / 3) and got["share_equal"] == pytest.approx(1 / 3)
    assert got["stories"] == 3


def test_story_figure_is_written(tmp_path):
    path = pf.ponder_story(["Mary went to the office.", "John moved to the garden.", "Where is Mary?"],
                           [3.1, 2.0, 4.2], [0], tmp_path / "story.png")
    assert path.stat().st_size > 0


def _model(expose: bool, attend: bool = False) -> UniversalTransformer:
    torch.manual_seed(0)
    cfg = UTACTConfig(d_model=16, heads=2, depth=5, tau=0.0, halting_bias=-1.0, expose_mean_field=expose,
                      attend_readout=attend)
    return UniversalTransformer(5, 3, cfg)


def _inputs() -> torch.Tensor:
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(1))
    x[1, 4:] = 0.0  # the second story is shorter: two padding steps
    return x


@pytest.mark.parametrize(("expose", "attend"), [(False, False), (True, False), (False, True)])
def test_halting_sums_to_one_per_position(expose, attend):
    _, att, _ = _model(expose, attend)(_inputs())
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.testing.assert_close(att["halting"].sum(-1)[real], torch.ones(int(real.sum())))
    assert att["halting"][~real].abs().max() == 0 and att["ponder"][~real].abs().max() == 0


@pytest.mark.parametrize(("expose", "attend"), [(False, False), (True, False), (False, True)])
def test_the_question_reaches_the_storys_halting_only_through_the_mean_field(expose, attend):
    """The loss scores the last real step only (the question). The gradient of its output with respect to
    the halting unit's output at every other step is exactly zero when halted positions show their last
    state, and not zero when they show their mean field or the readout attends to every mean field."""
    model, x = _model(expose, attend), _inputs()
    outputs = []

    def keep(_module, _inputs, out):
        out.retain_grad()
        outputs.append(out)

    handle = model.halt.register_forward_hook(keep)
    logits, att, _ = model(x)
    handle.remove()
    (logits[0, -1].sum() + logits[1, 3].sum()).backward()  # the questions of both stories
    story = torch.zeros(2, 6, dtype=torch.bool)
    story[0, :5], story[1, :3] = True, True
    grad = torch.stack([o.grad[..., 0] for o in outputs])  # [depth steps, B, T]
    assert (att["halting"][story] > 0).sum(-1).min() >= 2  # every story position ran >= 2 steps
    if expose or attend:
        assert grad[:, story].abs().sum() > 1e-6
    else:
        assert grad[:, story].abs().max() == 0
    assert grad[:, 0, 5].abs().sum() > 0 and grad[:, 1, 3].abs().sum() > 0  # a question's own halting learns


def test_a_low_halting_bias_with_zero_weights_starts_every_position_at_the_cap():
    """``zero_halting_weights`` with bias logit(0.1): h = 0.1 at every position and step at initialisation,
    so (depth 5, eps 0.01) p = 0.1, 0.1, 0.1, 0.1 and the remainder 1 - 0.4 = 0.6 at the cap, rho = 5 + 0.6."""
    torch.manual_seed(0)
    cfg = UTACTConfig(d_model=16, heads=2, depth=5, halting_bias=float(np.log(0.1 / 0.9)), zero_halting_weights=True)
    model, x = UniversalTransformer(5, 3, cfg), _inputs()
    firsts = []
    handle = model.halt.register_forward_hook(lambda _m, _i, out: firsts.append(torch.sigmoid(out[..., 0])))
    _, att, aux = model(x)
    handle.remove()
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.testing.assert_close(firsts[0], torch.full((2, 6), 0.1))  # the first step, every position
    want = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.6])
    torch.testing.assert_close(att["halting"][real], want.expand(int(real.sum()), 5))
    torch.testing.assert_close(att["ponder"][real], torch.full((int(real.sum()),), 5.6))
    torch.testing.assert_close(aux, torch.tensor(cfg.tau * 5.6))
    default = UniversalTransformer(5, 3, UTACTConfig(d_model=16, heads=2, depth=5, halting_bias=-2.2))
    assert default.halt.weight.abs().sum() > 0  # without the option the weights keep PyTorch's init


def test_the_readout_attends_over_real_positions_only():
    _, att, _ = _model(False, True)(_inputs())
    read = att["readout"]  # [B, H, T, T]
    torch.testing.assert_close(read.sum(-1), torch.ones(2, 2, 6))
    assert read[1, :, :, 4:].abs().max() == 0  # nobody reads the second story's padding
