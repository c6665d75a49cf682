"""Memory cores: addressing against plain numpy loops, gradients, the core contract, stability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from heed.agents.cores import addressing as A
from heed.agents.cores.base import reset_state, unroll
from heed.agents.cores.dnc import DNCConfig
from heed.agents.cores.ntm import NTMConfig, NTMCore
from heed.agents.parts import CORES, build_core, part_from_dict, part_to_dict

EPS = A.EPS


pytestmark = pytest.mark.usefixtures("one_thread")



def rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


# ------------------------------------------------------------------------------- numpy references


def np_content(memory, keys, beta):
    B, N, _ = memory.shape
    H = keys.shape[1]
    out = np.zeros((B, H, N))
    for b in range(B):
        for h in range(H):
            k = keys[b, h]
            scores = []
            for i in range(N):
                m = memory[b, i]
                cos = (k @ m) / (np.sqrt(k @ k + EPS) * np.sqrt(m @ m + EPS))
                scores.append(beta[b, h] * cos)
            e = np.exp(np.array(scores) - max(scores))
            out[b, h] = e / e.sum()
    return out


def np_shift(w, s):
    B, H, N = w.shape
    r = s.shape[-1] // 2
    out = np.zeros_like(w)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                for j in range(N):
                    offset = (i - j) % N
                    offset = offset - N if offset > N // 2 else offset
                    if -r <= offset <= r:
                        out[b, h, i] += w[b, h, j] * s[b, h, offset + r]
    return out


def np_allocation(usage):
    usage = EPS + (1 - EPS) * usage
    out = np.zeros_like(usage)
    for b in range(usage.shape[0]):
        order = np.argsort(usage[b], kind="stable")
        prod = 1.0
        for j in order:
            out[b, j] = (1 - usage[b, j]) * prod
            prod *= usage[b, j]
    return out


def np_link(link, prec, w):
    B, W, N, _ = link.shape
    out = np.zeros_like(link)
    for b in range(B):
        for h in range(W):
            for i in range(N):
                for j in range(N):
                    if i != j:
                        out[b, h, i, j] = (1 - w[b, h, i] - w[b, h, j]) * link[b, h, i, j] + w[b, h, i] * prec[b, h, j]
    return out


# ------------------------------------------------------------------------------- addressing


def test_content_weights_match_numpy_and_survive_zero_memory():
    memory, keys, beta = rand(2, 7, 5, seed=1) - 0.5, rand(2, 3, 5, seed=2) - 0.5, rand(2, 3, seed=3) * 5
    got = A.content_weights(memory, keys, beta).numpy()
    np.testing.assert_allclose(got, np_content(memory.numpy(), keys.numpy(), beta.numpy()), rtol=1e-10)
    zero = torch.zeros(1, 4, 3, requires_grad=True)
    key = torch.zeros(1, 1, 3, requires_grad=True)
    w = A.content_weights(zero, key, torch.ones(1, 1))
    w.pow(2).sum().backward()
    assert torch.allclose(w, torch.full_like(w, 0.25)) and torch.isfinite(zero.grad).all() and torch.isfinite(key.grad).all()


def test_circular_shift_matches_numpy():
    w, s = rand(2, 2, 6, seed=4), torch.softmax(rand(2, 2, 3, seed=5) * 4, -1)
    np.testing.assert_allclose(A.circular_shift(w, s).numpy(), np_shift(w.numpy(), s.numpy()), rtol=1e-12)
    one_hot = torch.zeros(1, 1, 5, dtype=torch.float64)
    one_hot[0, 0, 4] = 1
    forward = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    assert A.circular_shift(one_hot, forward)[0, 0].argmax() == 0  # wraps around


def test_sharpen_matches_numpy_and_gamma_at_least_one():
    w = torch.softmax(rand(2, 3, 6, seed=6), -1)
    gamma = A.one_plus_softplus(rand(2, 3, seed=7) * 4 - 2)
    assert (gamma >= 1).all()
    ref = (w.numpy() + 1e-12) ** gamma.numpy()[..., None]
    ref = ref / (ref.sum(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(A.sharpen(w, gamma).numpy(), ref, rtol=1e-12)
    zeros = torch.zeros(1, 1, 4, requires_grad=True)
    g = torch.ones(1, 1, requires_grad=True)
    A.sharpen(zeros, g).sum().backward()
    assert torch.isfinite(zeros.grad).all() and torch.isfinite(g.grad).all()


@pytest.mark.parametrize("heads", [1, 3])
def test_erase_add_matches_numpy(heads):
    B, N, M = 2, 5, 4
    memory, w = rand(B, N, M, seed=8), torch.softmax(rand(B, heads, N, seed=9), -1)
    e, a = rand(B, heads, M, seed=10), rand(B, heads, M, seed=11) - 0.5
    ref = memory.numpy().copy()
    for b in range(B):
        for i in range(N):
            keep = np.ones(M)
            for h in range(heads):
                keep *= 1 - w[b, h, i].item() * e[b, h].numpy()
            ref[b, i] = ref[b, i] * keep + sum(w[b, h, i].item() * a[b, h].numpy() for h in range(heads))
    np.testing.assert_allclose(A.erase_add_write(memory, w, e, a).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(A.read_memory(memory, w).numpy(), np.einsum("bhn,bnm->bhm", w.numpy(), memory.numpy()))


def test_allocation_linkage_usage_match_numpy():
    usage = rand(3, 7, seed=12)
    np.testing.assert_allclose(A.allocation_weights(usage).numpy(), np_allocation(usage.numpy()), rtol=1e-10)
    assert (A.allocation_weights(usage).sum(-1) <= 1 + 1e-9).all()
    link = rand(2, 1, 5, 5, seed=13) * 0.2
    prec = torch.softmax(rand(2, 1, 5, seed=14), -1) * 0.5
    w = torch.softmax(rand(2, 1, 5, seed=15), -1) * 0.9
    np.testing.assert_allclose(A.update_link(link, prec, w).numpy(), np_link(link.numpy(), prec.numpy(), w.numpy()))
    np.testing.assert_allclose(
        A.update_precedence(prec, w).numpy(), (1 - w.numpy().sum(-1, keepdims=True)) * prec.numpy() + w.numpy()
    )
    free, read = rand(2, 2, seed=16), torch.softmax(rand(2, 2, 5, seed=17), -1)
    psi = A.retention(free, read)
    np.testing.assert_allclose(psi.numpy(), np.prod(1 - free.numpy()[..., None] * read.numpy(), axis=1))
    u = A.update_usage(usage[:2, :5], w, psi)
    ref = (usage[:2, :5].numpy() + w[:, 0].numpy() - usage[:2, :5].numpy() * w[:, 0].numpy()) * psi.numpy()
    np.testing.assert_allclose(u.numpy(), ref)
    fwd = A.directional_weights(link, read, forward=True)
    bwd = A.directional_weights(link, read, forward=False)
    np.testing.assert_allclose(fwd[:, :, 0].numpy(), np.einsum("bij,brj->bri", link[:, 0].numpy(), read.numpy()))
    np.testing.assert_allclose(bwd[:, :, 0].numpy(), np.einsum("bji,brj->bri", link[:, 0].numpy(), read.numpy()))


def test_gradcheck_float64():
    memory = (rand(1, 5, 3, seed=20) - 0.5).requires_grad_()
    keys = (rand(1, 2, 3, seed=21) - 0.5).requires_grad_()
    beta = (rand(1, 2, seed=22) * 3).requires_grad_()
    assert torch.autograd.gradcheck(A.content_weights, (memory, keys, beta))
    w = torch.softmax(rand(1, 2, 5, seed=23), -1).requires_grad_()
    s = torch.softmax(rand(1, 2, 3, seed=24), -1).requires_grad_()
    gamma = (1 + rand(1, 2, seed=25)).requires_grad_()
    assert torch.autograd.gradcheck(A.circular_shift, (w, s))
    assert torch.autograd.gradcheck(A.sharpen, (w, gamma))
    e, a = rand(1, 2, 3, seed=26).requires_grad_(), rand(1, 2, 3, seed=27).requires_grad_()
    assert torch.autograd.gradcheck(A.erase_add_write, (memory, w, e, a))
    usage = rand(2, 6, seed=28).requires_grad_()
    assert torch.autograd.gradcheck(A.allocation_weights, (usage,))
    link, prec = (rand(1, 1, 4, 4, seed=29) * 0.3).requires_grad_(), (rand(1, 1, 4, seed=30) * 0.3).requires_grad_()
    ww = (rand(1, 1, 4, seed=31) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(A.update_link, (link, prec, ww))
    core = NTMCore(3, NTMConfig(hidden_size=4, memory_size=5, memory_width=3)).double()
    x = rand(2, 3, seed=32).requires_grad_()
    state = core.initial_state(2)
    assert torch.autograd.gradcheck(lambda x: core(x, state)[0], (x,))


# ------------------------------------------------------------------------------- core contract


#: tiny sizes for every core that has such a field (the contract tests run over the whole table)
TINY = {"hidden_size": 6, "memory_size": 6, "memory_width": 5, "max_steps": 4}
#: variants beside each table entry's tiny defaults
VARIANTS = {
    "ntm-2r": NTMConfig(hidden_size=6, memory_size=8, memory_width=5, read_heads=2, write_heads=1),
    "ntm-ff": NTMConfig(hidden_size=6, memory_size=8, memory_width=5, controller="feedforward"),
    "dnc-2w": DNCConfig(hidden_size=6, memory_size=6, memory_width=5, read_heads=2, write_heads=2),
}


def tiny_config(name):
    if name in VARIANTS:
        return VARIANTS[name]
    config_class = CORES[name][0]
    fields = {f.name for f in dataclasses.fields(config_class) if f.init}
    extra = {"learn_initial_state": True} if "learn_initial_state" in fields else {}
    return config_class(**{k: v for k, v in TINY.items() if k in fields}, **extra)


def make_core(name):
    torch.manual_seed(0)
    return build_core(tiny_config(name), 4)


EVERY_CORE = [*CORES, *VARIANTS]
MEMORY = [n for n in EVERY_CORE if n.startswith(("ntm", "dnc"))]


def perturb(core):
    with torch.no_grad():
        for p in core.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # learned initial states away from zero


def test_every_core_config_round_trips_and_names_its_entry():
    for name, (config_class, _) in CORES.items():
        cfg = tiny_config(name)
        assert cfg.name == name and type(cfg) is config_class
        assert part_from_dict(part_to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", EVERY_CORE)
def test_unroll_equals_step_loop_and_resets_restore_initial_state(name):
    core = make_core(name)
    perturb(core)
    xs = torch.randn(3, 7, 4)
    out, final, _att = core.unroll(xs)
    state, steps = core.initial_state(3), []
    for t in range(7):
        o, state, _ = core(xs[:, t], state)
        steps.append(o)
    torch.testing.assert_close(out, torch.stack(steps, 1), rtol=1e-5, atol=1e-6)
    assert out.shape == (3, 7, core.output_size)
    # a reset at step 4 makes the rest identical to a fresh run from step 4
    resets = torch.zeros(3, 7, dtype=torch.bool)
    resets[1, 4] = True
    out_r, _, _ = unroll(core, xs, resets=resets)
    fresh, _, _ = unroll(core, xs[1:2, 4:])
    torch.testing.assert_close(out_r[1, 4:], fresh[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_r[0], out[0])
    back = reset_state(final, core.initial_state(3), torch.ones(3, dtype=torch.bool))
    for got, want in zip(back, core.initial_state(3)):
        assert (got is None and want is None) or torch.equal(got, want)


@pytest.mark.parametrize("name", EVERY_CORE)
def test_batch_rows_independent_and_state_on_the_core_device(name):
    core = make_core(name)
    perturb(core)
    xs = torch.randn(4, 5, 4)
    out, final, _ = core.unroll(xs)
    xs2 = xs.clone()
    xs2[1:] = torch.randn(3, 5, 4)
    out2, _, _ = core.unroll(xs2)
    torch.testing.assert_close(out2[0], out[0])
    assert not torch.allclose(out2[1], out[1])
    for leaf in [*core.initial_state(2), *final]:
        assert leaf is None or leaf.device == core.device
    meta = core.to("meta")  # a device move takes the initial state along (nothing allocated on the CPU)
    assert all(leaf is None or leaf.device.type == "meta" for leaf in meta.initial_state(2))


@pytest.mark.parametrize("name", MEMORY)
def test_weightings_are_distributions_and_batches_independent(name):
    core = make_core(name)
    xs = torch.randn(4, 6, 4)
    out, _, att = core.unroll(xs)
    assert set(att) >= {"read", "write"}
    for key in ("read", "write"):
        sums = att[key].sum(-1)
        if name.startswith("ntm"):
            torch.testing.assert_close(sums, torch.ones_like(sums))
        else:
            assert (sums <= 1 + 1e-5).all() and (att[key] >= 0).all()
    if name == "dnc-2w":
        assert att["read_modes"].shape == (4, 6, 2, 5) and att["allocation"].shape == (4, 6, 2, 6)
        torch.testing.assert_close(att["read_modes"].sum(-1), torch.ones(4, 6, 2))
    xs2 = xs.clone()
    xs2[1:] = torch.randn(3, 6, 4)
    out2, _, _ = core.unroll(xs2)
    torch.testing.assert_close(out2[0], out[0])
    assert not torch.allclose(out2[1], out[1])


@pytest.mark.parametrize("name", list(CORES))
def test_no_nan_over_1000_zero_steps(name):
    core = make_core(name)
    xs = torch.zeros(2, 1000, 4)
    out, _state, att = core.unroll(xs)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(v).all() for v in att.values())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in core.parameters())


def test_memory_starts_at_small_constant_and_state_on_device():
    core = NTMCore(3, NTMConfig(memory_size=4, memory_width=2))
    state = core.initial_state(2)
    assert torch.equal(state.memory, torch.full((2, 4, 2), 1e-6))
    assert state.memory.device == core.device
    torch.testing.assert_close(state.weights.sum(-1), torch.ones(2, 2))
