"""Incremental decoding (agents/kv_cache.py): the causal Transformer's key/value cache (learned, rotary and
sinusoid positions) and the SHA-RNN's cache give, step by step, the logits of a full forward over the same
prefix; cached greedy generation writes the same text as uncached; past the window, ``stream`` rolls on
as a band-masked (sliding-window) forward would."""

from __future__ import annotations

import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.kv_cache import CachedReader, KeyValues
from heed.agents.parts import build_model
from heed.agents.sharnn import SHARNNConfig
from heed.agents.transformer import TransformerConfig, rotary_tables
from heed.scripts import generate as gen

pytestmark = pytest.mark.usefixtures("one_thread")

V = 96  # the text task's vocabulary


def _transformer(positions: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, heads=2, layers=2, causal=True, positions=positions, max_len=32, **kw)
    return build_model(cfg, V, V).eval()


def _sharnn(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SHARNNConfig(hidden_size=16, window=4, boom_factor=2, **kw), V, V).eval()


MODELS = {
    "transformer-learned": lambda: _transformer("learned"),
    "transformer-rotary": lambda: _transformer("rotary"),
    "transformer-sinusoid": lambda: _transformer("sinusoid"),
    "sha-rnn": lambda: _sharnn(),
    "sha-rnn-3-layers-heads": lambda: _sharnn(layers=3, head_per_layer=True),
}


def _inputs(ids) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(ids), V).float()[None]  # [1, T, V]


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_cached_steps_give_the_full_forwards_logits(name: str) -> None:
    """A 5-step prefill, then one step at a time and one chunk of 3: every step's logits equal those of
    ``model(prefix)`` (explicit softmax over the whole prefix) to 1e-5."""
    model = MODELS[name]()
    ids = torch.randint(0, V, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    full = model(_inputs(ids))[0][0]  # [T, K]: causal, so row t is the forward over ids[:t + 1]
    cache = model.empty_cache(1)
    got = []
    for lo, hi in [(0, 5), *((t, t + 1) for t in range(5, 17)), (17, 20)]:
        logits, cache = model.extend(_inputs(ids[lo:hi]), cache)
        got.append(logits[0])
    torch.testing.assert_close(torch.cat(got), full, atol=1e-5, rtol=1e-5)
    for t in (1, 9, 19):  # and against a forward that never saw the later steps
        torch.testing.assert_close(torch.cat(got)[t], model(_inputs(ids[: t + 1]))[0][0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("context", [None, 7])
def test_cached_greedy_text_equals_uncached(name: str, context: int | None) -> None:
    """Greedy decoding writes the same characters with and without the cache, inside the window and past
    it (context 7 < 4 + 20 characters: the cache restarts from the last 7 for each new character)."""
    model = MODELS[name]()
    uncached = gen.generate(model, "The ", 20, temperature=0.0, context=context, cache=False)
    assert gen.generate(model, "The ", 20, temperature=0.0, context=context) == uncached
    assert gen.generate(model, "The ", 20, temperature=1e-6, seed=3, context=context) == uncached
    # sampled text is the same too: the same draws from (to float rounding) the same probabilities
    assert gen.generate(model, "The ", 20, 1.0, seed=3, context=context, cache=False) == gen.generate(
        model, "The ", 20, 1.0, seed=3, context=context)


@torch.no_grad()
def test_streaming_rotary_is_a_sliding_window_forward() -> None:
    """Past the window, ``stream`` keeps the last W - 1 keys and values of every layer: each new step's
    logits equal a full forward in which every query attends to the last W keys only (band mask)."""
    model, window = _transformer("rotary"), 6
    ids = torch.randint(0, V, (18,), generator=torch.Generator().manual_seed(2)).tolist()
    steps = len(ids)
    t = torch.arange(steps)
    band = ((t[:, None] - t[None, :] >= 0) & (t[:, None] - t[None, :] < window))[None, None]  # [1, 1, T, T]
    x, rope = model.embed(_inputs(ids)) * 4.0, rotary_tables(t, model.head_width)  # sqrt(d_model) = 4
    for block in model.blocks:
        x, _ = block(x, band, rope)
    reference = model.readout(model.norm(x))[0]  # [T, K]
    reader = CachedReader(model, _inputs, context=window, stream=True)
    got = torch.stack([reader(ids[: n + 1]) for n in range(steps)])
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
    # the rolling cache never holds more than the window
    assert reader._cache.layers[0].keys.shape[2] == window and reader._cache.steps == steps
    # without stream the later steps re-read a fresh window: a different model past the window
    exact = CachedReader(model, _inputs, context=window)
    assert not torch.allclose(torch.stack([exact(ids[: n + 1]) for n in range(steps)])[-1], reference[-1])


def test_streaming_sha_rnn_runs_its_lstm_on_and_absolute_positions_re_read() -> None:
    """SHA-RNN with ``stream``: the LSTM runs on past the window, so the text is what the model writes
    reading everything (context None); learned positions cannot roll: ``stream`` changes nothing."""
    model = _sharnn(layers=2)
    everything = gen.generate(model, "The ", 20, temperature=0.0, context=None, cache=False)
    assert gen.generate(model, "The ", 20, temperature=0.0, context=5, stream=True) == everything
    assert gen.generate(model, "The ", 20, temperature=0.0, context=5) != everything  # re-reading differs
    learned = _transformer("learned")
    assert learned.slide(learned.empty_cache(1), 3) is None
    assert gen.generate(learned, "The ", 20, temperature=0.0, context=5, stream=True) == gen.generate(
        learned, "The ", 20, temperature=0.0, context=5, cache=False)


def test_models_that_cannot_decode_incrementally_fall_back_and_limits_hold() -> None:
    """A non-causal Transformer has no cache (it re-reads); learned positions past their table are one
    clear error with the cache too; the head's cache keeps W - 1 steps; KeyValues trims by steps."""
    torch.manual_seed(0)
    bidirectional = build_model(TransformerConfig(d_model=16, heads=2, positions="rotary"), V, V).eval()
    assert bidirectional.empty_cache(1) is None and not CachedReader(bidirectional, _inputs).cached
    assert len(gen.generate(bidirectional, "ab", 3, temperature=0.0)) == 5
    short = build_model(TransformerConfig(d_model=16, heads=2, causal=True, positions="learned", max_len=6), V, V)
    with pytest.raises(HeedError, match="learned positions go up to 5; this input needs 6"):
        gen.generate(short.eval(), "The ", 5, temperature=0.0)
    assert len(gen.generate(short, "The ", 5, temperature=0.0, context=6)) == 9
    model = _sharnn()
    _, cache = model.extend(_inputs(list(range(10))), model.empty_cache(1))
    assert cache[0].keys.shape == (1, 3, 16) and cache[0].hidden.shape == (1, 1, 16)
    kv = KeyValues(torch.arange(10.0).view(1, 1, 10, 1), torch.zeros(1, 1, 10, 1))
    assert kv.last(3).keys.flatten().tolist() == [7.0, 8.0, 9.0] and kv.last(0).keys.shape[2] == 0
