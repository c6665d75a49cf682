"""The fast NTM and DNC steps compute what the step before the speed-up computed (issue 17, item 5).

Below is a plain copy of the step as it was (commit 50859c9): the addressing functions with a slice
per field, an unfold for the shift, ``pow`` for sharpening, broadcast outer products for the write,
an explicit identity mask for the link diagonal and one einsum per link direction. The fast cores
must match it in outputs, attention, final state and every gradient, over random inputs and several
head counts, and their parameters (names and shapes) must be what the old step reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from heed.agents.cores.base import reset_state
from heed.agents.cores.dnc import DNCConfig, DNCCore
from heed.agents.cores.ntm import NTMConfig, NTMCore

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1e-6


# ------------------------------------------------------------------ the step as it was (reference)


def ref_content(memory, keys, strength):
    dots = torch.bmm(keys, memory.transpose(1, 2))
    norm_k = (keys * keys).sum(-1).add(EPS).sqrt()
    norm_m = (memory * memory).sum(-1).add(EPS).sqrt()
    return torch.softmax(strength.unsqueeze(-1) * dots / (norm_k.unsqueeze(-1) * norm_m.unsqueeze(1)), dim=-1)


def ref_shift(weights, shift):
    radius, n = shift.shape[-1] // 2, weights.shape[-1]
    padded = torch.cat([weights[..., n - radius :], weights, weights[..., :radius]], dim=-1)
    return (padded.unfold(-1, n, 1) * shift.flip(-1).unsqueeze(-1)).sum(-2)


def ref_sharpen(weights, gamma, eps=1e-12):
    powered = (weights + eps).pow(gamma.unsqueeze(-1))
    return powered / (powered.sum(-1, keepdim=True) + eps)


def ref_write(memory, weights, erase, add):
    if weights.shape[1] == 1:
        w = weights[:, 0].unsqueeze(-1)
        return torch.addcmul(memory * (1.0 - w * erase[:, 0].unsqueeze(1)), w, add[:, 0].unsqueeze(1))
    keep = torch.prod(1.0 - weights.unsqueeze(-1) * erase.unsqueeze(2), dim=1)
    return memory * keep + torch.einsum("bwn,bwm->bnm", weights, add)


def ref_ntm_step(core: NTMCore, x, state):
    batch = x.shape[0]
    R, W, Mw = core.read_heads, core.write_heads, core.memory_width
    h, keep_h, c = core.control(torch.cat([x, state.reads.reshape(batch, -1)], dim=-1), state.h, state.c)
    params = core.interface(h).clamp(-core.clip, core.clip)
    heads = R + W
    addr = params[:, : heads * core.address_size].view(batch, heads, core.address_size)
    key, beta = addr[..., :Mw], F.softplus(addr[..., Mw])
    gate, gamma = torch.sigmoid(addr[..., Mw + 1]), 1.0 + F.softplus(addr[..., Mw + 2])
    shift = torch.softmax(addr[..., Mw + 3 :], dim=-1)
    memory = state.memory
    g = gate.unsqueeze(-1)
    weights = g * ref_content(memory, key, beta) + (1.0 - g) * state.weights
    weights = ref_sharpen(ref_shift(weights, shift), gamma)
    read_w = weights[:, :R]
    reads = torch.bmm(read_w, memory)
    attention = {"read": read_w}
    if W:
        rest = params[:, heads * core.address_size :].view(batch, W, 2 * Mw)
        memory = ref_write(memory, weights[:, R:], torch.sigmoid(rest[..., :Mw]), rest[..., Mw:])
        attention["write"] = weights[:, R:]
    out = torch.cat([h, reads.reshape(batch, -1)], dim=-1)
    return out, type(state)(keep_h, c, reads, weights, memory), attention


def ref_allocation(usage):
    usage = EPS + (1.0 - EPS) * usage
    sorted_usage, order = torch.sort(usage, dim=-1)
    exclusive = torch.cumprod(torch.cat([torch.ones_like(sorted_usage[:, :1]), sorted_usage[:, :-1]], dim=-1), dim=-1)
    return torch.zeros_like(usage).scatter(-1, order, (1.0 - sorted_usage) * exclusive)


def ref_dnc_step(core: DNCCore, x, state):
    B, R, W, M = x.shape[0], core.read_heads, core.write_heads, core.memory_width
    h, c = core.controller(torch.cat([x, state.reads.reshape(B, -1)], dim=-1), (state.h, state.c))
    parts = torch.split(core.interface(h).clamp(-core.clip, core.clip), core.sizes, dim=-1)
    read_keys, read_strength = parts[0].view(B, R, M), 1.0 + F.softplus(parts[1])
    write_keys, write_strength = parts[2].view(B, W, M), 1.0 + F.softplus(parts[3])
    erase, write_vectors = torch.sigmoid(parts[4]).view(B, W, M), parts[5].view(B, W, M)
    free_gates, alloc_gates, write_gates = torch.sigmoid(parts[6]), torch.sigmoid(parts[7]), torch.sigmoid(parts[8])
    modes = torch.softmax(parts[9].view(B, R, core.num_modes), dim=-1)

    psi = torch.prod(1.0 - free_gates.unsqueeze(-1) * state.read_weights, dim=1)
    written = 1.0 - torch.prod(1.0 - state.write_weights, dim=1)
    usage = (state.usage + written - state.usage * written) * psi
    allocs, u, gates = [], usage, alloc_gates * write_gates
    for head in range(W):
        a = ref_allocation(u)
        allocs.append(a)
        u = u + (1.0 - u) * gates[:, head : head + 1] * a
    allocation = torch.stack(allocs, dim=1)
    ga, gw = alloc_gates.unsqueeze(-1), write_gates.unsqueeze(-1)
    write_w = gw * (ga * allocation + (1.0 - ga) * ref_content(state.memory, write_keys, write_strength))
    memory = ref_write(state.memory, write_w, erase, write_vectors)
    w_i, w_j = write_w.unsqueeze(-1), write_w.unsqueeze(-2)
    n = state.link.shape[-1]
    link = ((1.0 - w_i - w_j) * state.link + w_i * state.precedence.unsqueeze(-2)) * (1.0 - torch.eye(n, dtype=x.dtype))
    precedence = (1.0 - write_w.sum(-1, keepdim=True)) * state.precedence + write_w

    content = ref_content(memory, read_keys, read_strength)
    fwd = torch.einsum("bwij,brj->brwi", link, state.read_weights)
    bwd = torch.einsum("bwji,brj->brwi", link, state.read_weights)
    back = (modes[..., :W].unsqueeze(-1) * bwd).sum(2)
    ahead = (modes[..., W + 1 :].unsqueeze(-1) * fwd).sum(2)
    read_w = back + modes[..., W : W + 1] * content + ahead
    reads = torch.bmm(read_w, memory)
    out = torch.cat([h, reads.reshape(B, -1)], dim=-1)
    new = type(state)(h, c, reads, memory, read_w, write_w, usage, link, precedence)
    attention = {"read": read_w, "write": write_w, "allocation": allocation, "read_modes": modes}
    return out, new, attention


# ---------------------------------------------------------------------------------------- checks


def run(core, step, xs, resets):
    """Unroll ``step`` over ``xs [B, T, D]`` with resets; a loss on outputs and the final state."""
    initial = core.initial_state(xs.shape[0])
    state, outs, atts = initial, [], []
    for t in range(xs.shape[1]):
        state = reset_state(state, initial, resets[:, t])
        out, state, att = step(xs[:, t], state)
        outs.append(out)
        atts.append(att)
    outs = torch.stack(outs, 1)
    loss = outs.sin().sum() + sum((leaf * leaf).sum() for leaf in state if leaf is not None)
    return outs, state, atts, loss


def check_same(core, ref_step, steps=12, batch=3):
    """Outputs, states, attention and gradients (inputs and every parameter) of both steps agree."""
    core = core.double()
    with torch.no_grad():
        for p in core.parameters():  # away from the initial values, so every path carries weight
            p.add_(torch.randn_like(p) * 0.5)
    xs = torch.randn(batch, steps, core.input_size, dtype=torch.float64)
    resets = torch.zeros(batch, steps, dtype=torch.bool)
    resets[1, steps // 2] = True
    results = []
    for step in (core.forward, lambda x, s: ref_step(core, x, s)):
        x = xs.clone().requires_grad_()
        core.zero_grad()
        outs, state, atts, loss = run(core, step, x, resets)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in core.named_parameters() if p.grad is not None}
        results.append((outs, state, atts, x.grad, grads))
    (o1, s1, a1, gx1, g1), (o2, s2, a2, gx2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-9, atol=1e-10)
    for leaf1, leaf2 in zip(s1, s2):
        assert (leaf1 is None) == (leaf2 is None)
        if leaf1 is not None:
            torch.testing.assert_close(leaf1, leaf2, rtol=1e-9, atol=1e-10)
    for att1, att2 in zip(a1, a2):
        assert att1.keys() == att2.keys()
        for key in att1:
            torch.testing.assert_close(att1[key], att2[key], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gx1, gx2, rtol=1e-8, atol=1e-9)
    assert g1.keys() == g2.keys() and len(g1) > 0
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-8, atol=1e-9, msg=name)


@pytest.mark.parametrize(
    "reads, writes, controller, shift_range",
    [(1, 1, "lstm", 1), (2, 1, "lstm", 1), (3, 2, "feedforward", 2), (1, 0, "lstm", 1), (2, 3, "lstm", 0)],
)
def test_ntm_step_equals_the_step_before_the_speed_up(reads, writes, controller, shift_range):
    torch.manual_seed(reads * 10 + writes)
    cfg = NTMConfig(
        hidden_size=7, memory_size=9, memory_width=4, read_heads=reads, write_heads=writes,
        controller=controller, shift_range=shift_range, weight_init="random",
    )
    check_same(NTMCore(3, cfg), ref_ntm_step)


@pytest.mark.parametrize("reads, writes", [(1, 1), (2, 1), (3, 2), (1, 3)])
def test_dnc_step_equals_the_step_before_the_speed_up(reads, writes):
    torch.manual_seed(reads * 10 + writes)
    core = DNCCore(3, DNCConfig(hidden_size=7, memory_size=6, memory_width=4, read_heads=reads, write_heads=writes))
    check_same(core, ref_dnc_step, steps=15)


def test_float32_paper_sizes_agree_within_rounding():
    """At the sizes the benchmarks use (float32), both steps give the same outputs and gradients."""
    torch.manual_seed(0)
    for core, ref in ((NTMCore(1, NTMConfig()), ref_ntm_step), (DNCCore(1, DNCConfig()), ref_dnc_step)):
        xs = torch.randn(4, 20, 1)
        resets = torch.zeros(4, 20, dtype=torch.bool)
        got = []
        for step in (core.forward, lambda x, s, core=core, ref=ref: ref(core, x, s)):
            core.zero_grad()
            outs, _, _, loss = run(core, step, xs, resets)
            loss.backward()
            got.append((outs, [p.grad.clone() for p in core.parameters() if p.grad is not None]))
        torch.testing.assert_close(got[0][0], got[1][0], rtol=1e-4, atol=1e-5)
        for a, b in zip(got[0][1], got[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------- benchmarks and the n-gram figure


def test_bench_loads_the_before_folder_with_its_own_addressing(tmp_path):
    """--before runs the old core file with the old addressing file, and leaves heed's imports alone."""
    import shutil
    import sys

    import heed.agents.cores.addressing as current
    from heed.scripts.bench_ntm import Heed, load_before

    cores = Path(current.__file__).parent
    for name in ("ntm.py", "addressing.py"):
        shutil.copy(cores / name, tmp_path / name)
    with open(tmp_path / "addressing.py", "a") as f:
        f.write("\nBEFORE_MARK = 1\n")
    core_class = load_before(tmp_path, "ntm.py", "NTMCore")
    assert sys.modules[core_class.__module__].content_weights.__module__ == "heed_before_addressing"
    assert sys.modules["heed.agents.cores.addressing"] is current and not hasattr(current, "BEFORE_MARK")
    bench = Heed(2, 0, "copy", NTMConfig(hidden_size=4, memory_size=6, memory_width=3), core_class=core_class)
    assert type(bench.model.core) is core_class and bench.step() == 2


def test_benches_refuse_missing_folders(tmp_path):
    from heed.agents.common.errors import HeedError
    from heed.scripts.bench_dnc import Config as DNCBench
    from heed.scripts.bench_dnc import main as bench_dnc
    from heed.scripts.bench_ntm import load_before

    with pytest.raises(HeedError, match="pip install --target"):
        bench_dnc(DNCBench(reference=tmp_path / "missing"))
    with pytest.raises(HeedError, match="lacks"):
        load_before(tmp_path, "dnc.py", "DNCCore")


def test_ngram_figure_scores_like_the_trainer_and_the_bayes_optimum(tmp_path):
    """The figure script's bits per sequence equal the trainer's evaluation (model) and the task's
    own Bayes-optimal cost (optimum) on the same fresh sequences."""
    import numpy as np

    from heed.agents.common.session import RunConfig
    from heed.agents.cores.lstm import LSTMConfig
    from heed.agents.trainers import sequence_utils as su
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import ngram_figure

    run = tmp_path / "ng"
    main(Config(task="dynamic-ngrams", model=LSTMConfig(hidden_size=5), total_sequences=8, batch_size=4,
                eval_sequences=4, eval_every=8, log_every=4, image_every=0, checkpoint_every=8,
                task_options="length=30", run=RunConfig(seed=3, run_dir=run, progress=False)))
    out = tmp_path / "ng.png"
    result = ngram_figure.main(ngram_figure.Config(checkpoints=(run, run), sequences=6, batch_size=4, out=out))
    assert out.stat().st_size > 0 and [r["model"] for r in result["models"]] == ["lstm", "lstm'"]
    model, task, _ = su.load_sequence_model(str(run))
    batches = su.fixed_batches(task, 6, 4, 12345)
    want_bayes = float(np.mean(np.concatenate([task.optimal_bits(b) for b in batches])))
    assert result["bayes_bits_per_sequence"] == pytest.approx(want_bayes, rel=1e-9)
    assert result["models"][0]["bits_per_sequence"] == pytest.approx(
        su.evaluate(model, task, batches)["bits_per_sequence"], rel=1e-4)
    assert result["models"][0]["above_bayes"] == pytest.approx(result["models"][0]["bits_per_sequence"] - want_bayes, rel=1e-6)
