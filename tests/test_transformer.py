"""Transformer and Universal Transformer: attention normalisation, masks, reference attention, ACT."""

import math

import numpy as np
import pytest
import torch

from heed.agents.parts import MODELS as TABLE
from heed.agents.parts import build_model
from heed.agents.transformer import (
    MultiHeadSelfAttention,
    UniversalTransformer,
    UTACTConfig,
    UTConfig,
    attention_mask,
    segment_positions,
    sinusoid,
)

pytestmark = pytest.mark.usefixtures("one_thread")


MODELS = {
    "transformer": {"d_model": 16, "heads": 2, "layers": 2},
    "ut": {"d_model": 16, "heads": 2, "depth": 3},
    "ut-act": {"d_model": 16, "heads": 2, "depth": 4, "tau": 0.01},
}


def make(name, **fields):
    """Model ``name`` of the table of parts with the tiny sizes above, ``[B, T, 5] -> [B, T, 3]``."""
    return build_model(TABLE[name][0](**{**MODELS[name], **fields}), 5, 3)


def build(name, causal=False):
    torch.manual_seed(0)
    return make(name, causal=causal).eval()


def inputs(batch=2, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, 5, generator=g)


def test_attention_matches_numpy_reference():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2)
    x = torch.randn(1, 4, 8)
    out, weights = attn(x, attention_mask(None, 4, False, x.device))
    w_qkv, b_qkv = attn.qkv.weight.detach().numpy(), attn.qkv.bias.detach().numpy()
    qkv = x[0].numpy() @ w_qkv.T + b_qkv  # [T, 3d]
    heads = []
    for h in range(2):
        q, k, v = (qkv[:, i * 8 + h * 4 : i * 8 + h * 4 + 4] for i in range(3))
        s = q @ k.T / math.sqrt(4)
        a = np.exp(s - s.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        np.testing.assert_allclose(weights[0, h].detach().numpy(), a, rtol=1e-5, atol=1e-6)
        heads.append(a @ v)
    ref = np.concatenate(heads, 1) @ attn.out.weight.detach().numpy().T + attn.out.bias.detach().numpy()
    np.testing.assert_allclose(out[0].detach().numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_rows_sum_to_one(name):
    _, att, _ = build(name)(inputs())
    maps = att["attention"]
    assert maps.dim() == 5 and maps.shape[-1] == maps.shape[-2] == 6
    ran = maps.sum(dim=(-1, -2, -3, 0)) > 0  # UT+ACT pads the depth steps it did not run with zeros
    torch.testing.assert_close(maps[:, ran].sum(-1), torch.ones_like(maps[:, ran].sum(-1)))


@pytest.mark.parametrize("name", list(MODELS))
def test_causal_mask_blocks_the_future(name):
    model, x = build(name, causal=True), inputs()
    out, att, _ = model(x)
    y = x.clone()
    y[:, 4:] = torch.randn(2, 2, 5)
    out2, _, _ = model(y)
    torch.testing.assert_close(out[:, :4], out2[:, :4])
    assert not torch.allclose(out[:, 4:], out2[:, 4:])
    future = torch.ones(6, 6).triu(1).bool()
    assert att["attention"][..., future].abs().max() == 0


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_is_invisible(name):
    model, x = build(name), inputs(steps=4)
    out, _, _ = model(x)
    padded = torch.cat([x, torch.zeros(2, 3, 5)], dim=1)  # zero vectors = padding
    out_p, att, _ = model(padded)
    torch.testing.assert_close(out_p[:, :4], out, atol=1e-5, rtol=1e-5)
    assert att["attention"][..., 4:].abs().max() == 0
    # explicit mask: garbage in padded positions changes nothing
    junk = torch.cat([x, torch.randn(2, 3, 5)], dim=1)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[:, 4:] = True
    out_j, _, _ = model(junk, pad_mask=pad)
    torch.testing.assert_close(out_j[:, :4], out, atol=1e-5, rtol=1e-5)


def test_ut_act_halting_and_ponder():
    torch.manual_seed(0)
    model = UniversalTransformer(5, 3, UTACTConfig(d_model=16, heads=2, depth=5, tau=0.5, halting_bias=-1.0))
    x = torch.cat([inputs(steps=4), torch.zeros(2, 2, 5)], dim=1)
    _, att, aux = model(x)
    halting, ponder = att["halting"], att["ponder"]
    torch.testing.assert_close(halting[:, :4].sum(-1), torch.ones(2, 4))
    assert halting[:, 4:].abs().max() == 0 and ponder[:, 4:].abs().max() == 0
    assert (ponder[:, :4] > 1).all()
    assert aux.item() == pytest.approx(0.5 * ponder[:, :4].mean(1).mean().item(), rel=1e-5)
    aux.backward()
    assert model.halt.weight.grad.abs().sum() > 0


def test_ut_weights_are_tied_over_depth():
    count = [
        sum(p.numel() for p in UniversalTransformer(5, 3, UTConfig(d_model=16, heads=2, depth=d)).parameters())
        for d in (1, 6)
    ]
    assert count[0] == count[1]


def test_tiny_training_step():
    torch.manual_seed(0)
    model = build_model(UTACTConfig(d_model=16, heads=2, depth=3), 5, 3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = inputs(batch=8, steps=5)
    y = (x[..., 0] > 0).long() + (x[..., 1] > 0).long()
    losses = []
    for _ in range(25):
        logits, _, aux = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))
        opt.zero_grad()
        (loss + aux).backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_segment_positions_restart_after_the_marker():
    x = torch.zeros(2, 7, 3)
    x[0, 2, 1] = 1.0  # marker (unit 1) at step 2 -> steps 3.. restart at 0
    x[1, 0, 1] = x[1, 4, 1] = 1.0  # two markers
    pos = segment_positions(x, 1)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3], [0, 0, 1, 2, 3, 0, 1]]


@pytest.mark.parametrize("name", list(MODELS))
def test_reset_unit_gives_queries_the_positions_of_the_inputs(name):
    """Copy layout (3 symbols, delimiter on unit 3, 3 queries): with ``reset_unit=3`` query i gets the
    positional embedding of input i; the model without it keeps absolute positions 4-6; outputs differ."""
    torch.manual_seed(0)
    model = make(name, reset_unit=3).eval()
    plain = make(name).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.zeros(1, 7, 5)
    x[0, torch.arange(3), torch.tensor([0, 2, 1])] = 1.0
    x[0, 3, 3] = 1.0
    x[0, 4:, 4] = 1.0
    expected = sinusoid(torch.tensor([[0, 1, 2, 3, 0, 1, 2]]), 16)
    torch.testing.assert_close(model.prepare(x, None)[3], expected)
    torch.testing.assert_close(plain.prepare(x, None)[3], sinusoid(torch.arange(7), 16))
    assert not torch.allclose(model(x)[0][:, 4:], plain(x)[0][:, 4:])


def test_random_offsets_shift_training_positions_only():
    """Training mode: each sequence's positions are 0..T-1 plus one offset in [0, K]; eval mode: no offset."""
    torch.manual_seed(0)
    model = make("transformer", max_offset=50)
    x = inputs(batch=16, steps=6)
    torch.testing.assert_close(model.eval().prepare(x, None)[3], sinusoid(torch.arange(6), 16))
    pos = model.train().prepare(x, None)[3]  # [B, T, d]
    offsets = []
    for b in range(16):
        match = [o for o in range(51) if torch.allclose(pos[b], sinusoid(torch.arange(6) + o, 16), atol=1e-5)]
        assert len(match) == 1
        offsets += match
    assert len(set(offsets)) > 1  # offsets differ between sequences
