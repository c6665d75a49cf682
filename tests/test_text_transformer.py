"""Issue 18, the decoder-only Transformer on text, the SHA-RNN's head per layer, and sampling:
causality by the sequential Jacobian, rotary positions against a complex-number reference,
temperature -> 0 against greedy decoding, the nucleus, and the text figures/benchmark entry points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.parts import build_model
from heed.agents.sharnn import Head, SHARNNConfig
from heed.agents.trainers.supervised import Config as TrainConfig
from heed.agents.trainers.supervised import main as train
from heed.agents.transformer import TransformerConfig, rotary_tables, rotate
from heed.envs.text import VOCAB, decode, encode, one_hot
from heed.scripts import generate as gen

STEPS = 7


def _sensitivity(model: torch.nn.Module, features: int) -> torch.Tensor:
    """``S[t, t'] = sum |d y_t / d x_t'|`` of a model on one random sequence ``[1, STEPS, features]``."""
    x = torch.randn(1, STEPS, features, dtype=torch.double)
    jac = torch.autograd.functional.jacobian(lambda inp: model(inp)[0], x)[0, :, :, 0]  # [T, K, T', D]
    return jac.abs().sum(dim=(1, 3))


def _assert_causal(sensitivity: torch.Tensor) -> None:
    future = torch.triu(torch.ones(STEPS, STEPS, dtype=torch.bool), diagonal=1)
    assert sensitivity[future].max() == 0  # y_t ignores x_t' for t' > t
    assert (sensitivity[~future] > 0).all()  # and reads every x_t' with t' <= t


@pytest.mark.parametrize("positions", ["sinusoid", "learned", "rotary"])
def test_causal_transformer_is_causal_by_the_sequential_jacobian(positions: str) -> None:
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=8, heads=2, layers=2, causal=True, positions=positions, max_len=16)
    model = build_model(cfg, 5, 4).double().eval()
    _assert_causal(_sensitivity(model, 5))
    # the same model without the causal mask reads the future: the test above can fail
    open_model = build_model(TransformerConfig(d_model=8, heads=2, layers=2, positions=positions, max_len=16), 5, 4)
    open_model.load_state_dict(model.state_dict())
    sensitivity = _sensitivity(open_model.double().eval(), 5)
    assert sensitivity[torch.triu(torch.ones(STEPS, STEPS, dtype=torch.bool), diagonal=1)].min() > 0


def test_rotary_matches_complex_multiplication_and_depends_on_offsets_only() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 8)  # [B, H, T, d_k]
    positions = torch.arange(5)
    rotated = rotate(x, rotary_tables(positions, 8))
    # reference: unit pairs as complex numbers z_i, times exp(i t theta_i), theta_i = 10000^(-2i/d)
    z = torch.complex(x[..., 0::2].double(), x[..., 1::2].double())
    theta = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.double) / 8)
    ref = z * torch.exp(1j * positions.double()[:, None] * theta)
    torch.testing.assert_close(rotated[..., 0::2].double(), ref.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotated[..., 1::2].double(), ref.imag, atol=1e-5, rtol=1e-5)
    # q_t . k_j after rotation is a function of t - j: shifting every position by 11 changes nothing
    q, k = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    dots = rotate(q, rotary_tables(positions, 8)) @ rotate(k, rotary_tables(positions, 8)).transpose(-1, -2)
    shifted = rotate(q, rotary_tables(positions + 11, 8)) @ rotate(k, rotary_tables(positions + 11, 8)).transpose(-1, -2)
    torch.testing.assert_close(dots, shifted, atol=1e-4, rtol=1e-4)


def test_learned_positions_refuse_a_sequence_beyond_their_table() -> None:
    model = build_model(TransformerConfig(d_model=8, heads=2, causal=True, positions="learned", max_len=4), 96, 96)
    model(torch.as_tensor(one_hot(np.arange(4)))[None])
    with pytest.raises(HeedError, match="learned positions go up to 3"):
        model(torch.as_tensor(one_hot(np.arange(5)))[None])
    with pytest.raises(HeedError, match="even head width"):
        build_model(TransformerConfig(d_model=6, heads=2, positions="rotary"), 96, 96)


@pytest.mark.parametrize("head_per_layer", [False, True])
def test_sha_rnn_layers_are_causal_and_place_their_heads(head_per_layer: bool) -> None:
    torch.manual_seed(0)
    cfg = SHARNNConfig(hidden_size=8, window=3, boom_factor=2, layers=3, head_per_layer=head_per_layer)
    model = build_model(cfg, 5, 4).double()
    _assert_causal(_sensitivity(model, 5))
    heads = [m for m in model.modules() if isinstance(m, Head)]
    assert len(heads) == (3 if head_per_layer else 1)
    _, attention, _ = model(torch.randn(2, STEPS, 5, dtype=torch.double))
    assert attention["attention"].shape == (2, STEPS, STEPS)
    if head_per_layer:
        layers = attention["layer_attention"]  # [B, T, L, T]
        assert layers.shape == (2, STEPS, 3, STEPS)
        torch.testing.assert_close(layers[:, :, -1], attention["attention"])
        assert torch.allclose(layers.sum(-1), torch.ones(2, STEPS, 3, dtype=torch.double))
    else:
        assert "layer_attention" not in attention


def _greedy_by_hand(model: torch.nn.Module, prompt: str, length: int, context: int | None) -> str:
    ids = list(encode(prompt))
    with torch.no_grad():
        for _ in range(length):
            window = ids if context is None else ids[-context:]
            logits = model(torch.as_tensor(one_hot(np.asarray(window)))[None])[0]
            ids.append(int(logits[0, -1].argmax()))
    return decode(ids)


@pytest.mark.parametrize("context", [None, 6])
def test_transformer_sampling_at_temperature_zero_is_greedy(context: int | None) -> None:
    torch.manual_seed(3)
    model = build_model(TransformerConfig(d_model=16, heads=2, causal=True, positions="rotary"), 96, 96).eval()
    greedy = _greedy_by_hand(model, "The ", 12, context)
    assert gen.generate(model, "The ", 12, temperature=0.0, context=context) == greedy
    assert gen.generate(model, "The ", 12, temperature=1e-6, seed=4, context=context) == greedy
    assert gen.generate(model, "The ", 12, temperature=1.0, top_p=1e-9, seed=4, context=context) == greedy


def test_nucleus_keeps_the_fewest_most_likely_classes() -> None:
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()
    g = torch.Generator().manual_seed(0)
    assert {gen.next_char(logits, 1.0, 0, g, top_p=0.7) for _ in range(300)} == {1, 3}  # 0.5 + 0.3 >= 0.7
    assert {gen.next_char(logits, 1.0, 0, g, top_p=0.79) for _ in range(300)} == {1, 3}
    assert {gen.next_char(logits, 1.0, 0, g, top_p=0.81) for _ in range(300)} == {1, 2, 3}
    assert {gen.next_char(logits, 1.0, 0, g, top_p=0.5) for _ in range(100)} == {1}


def test_train_the_transformer_on_text_then_generate(tmp_path, capsys) -> None:
    run = tmp_path / "tf"
    model = TransformerConfig(d_model=16, heads=2, layers=1, causal=True, positions="learned", max_len=20)
    out = train(TrainConfig(task="text", model=model, run=RunConfig(run_dir=run, progress=False), total_sequences=8,
                            batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=0,
                            task_options="window=20"))
    assert out["updates"] == 2 and math.isclose(out["bits_per_step"], out["loss"] / math.log(2), rel_tol=1e-5)
    # the default context is the training window, so 40 characters never exceed the 20 learned positions
    text = gen.main(gen.Config(checkpoint=run, prompt="def ", length=40, top_k=5, top_p=0.9, bpc_chars=40))
    assert text.startswith("def ") and len(text) == 44 and set(text) <= set(VOCAB)
    with pytest.raises(HeedError, match="learned positions"):
        gen.main(gen.Config(checkpoint=run, prompt="def ", length=30, context=30))
    assert "validation bits per character" in capsys.readouterr().out


def _fake_trial(sweep_dir, group: str, seed: int, bits: list[float], cpu: list[float]) -> None:
    """A finished trial of a sweep: bpc and CPU seconds logged at steps 100, 200, ... (TensorBoard)."""
    import json

    from torch.utils.tensorboard import SummaryWriter

    run = sweep_dir / f"{group}__seed={seed}"
    with SummaryWriter(str(run)) as writer:
        for i, (b, c) in enumerate(zip(bits, cpu)):
            writer.add_scalar("eval/bits_per_step", b, 100 * (i + 1))
            writer.add_scalar("charts/cpu_seconds", c, 100 * (i + 1))
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    (sweep_dir / "trials" / f"{run.name}.json").write_text(json.dumps({"status": "done", "group": group, "seed": seed}))


def test_bpc_curves_puts_several_sweeps_on_one_cpu_axis(tmp_path) -> None:
    from heed.scripts import bpc_curves

    for seed, last in zip((1, 2, 3, 4), (1.0, 2.0, 3.0, 10.0)):
        _fake_trial(tmp_path / "a", "model-lstm_model.hidden-size=200", seed, [4.0, last], [10.0, 20.0])
    _fake_trial(tmp_path / "b", "model-act", 1, [4.0, 3.0, 2.5], [5.0, 15.0, 30.0])
    out = tmp_path / "fig" / "bpc.png"
    finals = bpc_curves.main(bpc_curves.Config(sweep_dirs=(tmp_path / "a", tmp_path / "b"), out=out, resamples=50))
    # IQM of (1, 2, 3, 10) trims one value per end: (2 + 3) / 2; the x axis is CPU seconds, not steps
    assert finals["lstm hidden-size=200 (4 seeds)"] == {"seeds": 4, "cpu_seconds": 20.0, "iqm": 2.5}
    assert finals["act (1 seed)"] == {"seeds": 1, "cpu_seconds": 30.0, "iqm": 2.5}
    assert out.stat().st_size > 0
    with pytest.raises(HeedError, match="in two of the sweep folders"):
        bpc_curves.main(bpc_curves.Config(sweep_dirs=(tmp_path / "b", tmp_path / "b"), out=out, resamples=50))


def test_text_attention_draws_every_head(tmp_path) -> None:
    from heed.scripts import text_attention as ta

    runs = {}
    for name, model in (("sha", SHARNNConfig(hidden_size=8, window=4, layers=2, head_per_layer=True)),
                        ("tf", TransformerConfig(d_model=8, heads=2, layers=2, causal=True, positions="rotary"))):
        runs[name] = tmp_path / name
        train(TrainConfig(task="text", model=model, run=RunConfig(run_dir=runs[name], progress=False),
                          total_sequences=4, batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=0,
                          task_options="window=20"))
    out = ta.main(ta.Config(checkpoints=(runs["sha"], runs["tf"]), out_dir=tmp_path / "fig", chars=20))
    assert set(out) == {"sha-rnn", "transformer"}
    assert set(out["sha-rnn"]) == {"block 0", "block 1"}
    assert set(out["transformer"]) == {f"layer {i} head {h}" for i in range(2) for h in range(2)}
    assert all(0.0 <= v <= 3.0 for v in out["sha-rnn"].values())  # the head reads at most 3 characters back
    assert (tmp_path / "fig" / "transformer_attention.png").stat().st_size > 0
    with pytest.raises(HeedError, match="training window"):
        ta.main(ta.Config(checkpoints=(runs["tf"],), out_dir=tmp_path / "fig", chars=21))
    # the look-back by hand: the diagonal reads 0 back; all weight on the first key reads t back
    assert ta.mean_look_back(torch.eye(5)) == 0.0
    first = torch.zeros(5, 5)
    first[:, 0] = 1.0
    assert ta.mean_look_back(first) == pytest.approx(2.0)


def test_the_reference_gpt_is_heeds_transformer_written_plainly() -> None:
    """With heed's weights copied in, the nanoGPT-style reference of bench_text computes the same logits."""
    from heed.scripts.bench_text import Config as BenchConfig
    from heed.scripts.bench_text import ReferenceGPT
    from heed.scripts.bench_text import main as bench

    torch.manual_seed(0)
    heed = build_model(TransformerConfig(d_model=16, heads=4, layers=2, causal=True, positions="learned", max_len=12),
                       96, 96).eval()
    ref = ReferenceGPT(96, 16, 2, 4, 12).eval()
    with torch.no_grad():
        ref.wte.weight.copy_((heed.embed.weight.T + heed.embed.bias) * 4.0)  # heed scales by sqrt(d) = 4
        ref.wpe.weight.copy_(heed.position_table)
        for mine, theirs in zip(heed.blocks, ref.blocks):
            for a, b in ((mine.norm1, theirs.ln_1), (mine.norm2, theirs.ln_2), (mine.attn.qkv, theirs.c_attn),
                         (mine.attn.out, theirs.c_proj), (mine.ff[0], theirs.mlp[0]), (mine.ff[2], theirs.mlp[2])):
                b.load_state_dict(a.state_dict())
        ref.ln_f.load_state_dict(heed.norm.state_dict())
        ref.lm_head.load_state_dict(heed.readout.state_dict())
    ids = torch.randint(0, 96, (3, 12))
    torch.testing.assert_close(ref(ids), heed(torch.as_tensor(one_hot(ids.numpy())))[0], atol=1e-4, rtol=1e-4)
    results = bench(BenchConfig(batch_size=2, window=8, repeats=1, warmup=0, gen_chars=2, gen_repeats=1, d_model=8))
    assert len(results) == 5 and all(r["train_chars_per_cpu_s"] > 0 and r["generate_chars_per_cpu_s"] > 0
                                     for r in results.values())
    learned = results["Transformer 8x2, learned pos. (heed)"]["parameters"]
    assert learned - results["Transformer 8x2, nanoGPT-style reference"]["parameters"] == 8  # heed's embedding bias


@pytest.mark.parametrize("positions", ["sinusoid", "learned", "rotary"])
def test_fused_training_path_equals_the_explicit_softmax(positions):
    """A training step (train mode, gradients on, no padding) takes the fused attention kernel and keeps
    no weights; its outputs and gradients equal the evaluation path's explicit softmax."""
    from heed.agents.transformer import TransformerModel

    torch.manual_seed(0)
    model = TransformerModel(10, 7, TransformerConfig(d_model=32, heads=4, layers=2, causal=True, positions=positions))
    x = torch.randn(3, 20, 10)
    grads = []
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        out, attention, _ = model(x)
        out.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        assert ("attention" in attention) is (not training)
        if training:
            fused = out.detach()
    torch.testing.assert_close(fused, out.detach(), atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
