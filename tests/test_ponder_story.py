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


def _model(expose: bool) -> UniversalTransformer:
    torch.manual_seed(0)
    cfg = UTACTConfig(d_model=16, heads=2, depth=5, tau=0.0, halting_bias=-1.0, expose_mean_field=expose)
    return UniversalTransformer(5, 3, cfg)


def _inputs() -> torch.Tensor:
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(1))
    x[1, 4:] = 0.0  # the second story is shorter: two padding steps
    return x


@pytest.mark.parametrize("expose", [False, True])
def test_halting_sums_to_one_per_position(expose):
    _, att, _ = _model(expose)(_inputs())
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    torch.testing.assert_close(att["halting"].sum(-1)[real], torch.ones(int(real.sum())))
    assert att["halting"][~real].abs().max() == 0 and att["ponder"][~real].abs().max() == 0


@pytest.mark.parametrize("expose", [False, True])
def test_the_question_reaches_the_storys_halting_only_through_the_mean_field(expose):
    """The loss scores the last real step only (the question). The gradient of its output with respect to
    the halting unit's output at every other step is exactly zero when halted positions show their last
    state, and not zero when they show their mean field."""
    model, x = _model(expose), _inputs()
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
    if expose:
        assert grad[:, story].abs().sum() > 1e-6
    else:
        assert grad[:, story].abs().max() == 0
    assert grad[:, 0, 5].abs().sum() > 0 and grad[:, 1, 3].abs().sum() > 0  # a question's own halting learns
