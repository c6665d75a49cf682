"""Speed of the character language models (issue 18): training and generation characters per CPU
second, side by side in one process, one thread, against a small causal Transformer written the
nanoGPT way.

    python scripts/bench_text.py --repeats 30 --json-out runs/bench_text.json

Models, the sizes of the issue-18 sweep: the LSTM (``model:lstm``, 200 units), the SHA-RNN
(``model:sha-rnn``, 128 units, window 64), heed's causal Transformer (``model:transformer``, d 96, 2
layers, 4 heads, ReLU feed-forward 4d) with rotary and with learned positions, and
:class:`ReferenceGPT`: the same network written plainly, nanoGPT's way (a token ``nn.Embedding``
plus a learned position table, one fused ``qkv`` projection, ``F.scaled_dot_product_attention``
with ``is_causal=True``, no attention weights kept). Written here, not imported: nothing is
downloaded.

Training: one update (forward, cross-entropy, backward, Adam) on a batch of ``--batch-size`` windows
of ``--window`` characters of the ``text`` task; the models take turns, one update each per round, for
``--repeats`` rounds after ``--warmup`` (so all see the same machine load); reported is the median (and
min-max) of ``batch x window / CPU seconds`` (``time.process_time``). Generation: ``--gen-chars``
characters from a prompt at temperature 1 with a context of ``--window`` characters (heed's
:func:`heed.scripts.generate.generate`), ``--gen-repeats`` turns, the models and modes taking turns:
heed with its cache (Transformer, SHA-RNN: each character read once while the text fits in the window,
then the last ``--window`` re-read for each), without it (``cache=False``: the window re-read for
every character), and streaming (``stream=True``: rotary Transformer and SHA-RNN roll on past the
window); the reference has no key/value cache: it crops its ids to the last ``--window`` and runs the
whole window for every character, as nanoGPT's ``generate`` does. Median characters per CPU second.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main
from heed.agents.common.safe_io import claim_output_file, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.kv_cache import CachedReader
from heed.agents.parts import build_model
from heed.agents.sharnn import SHARNNConfig
from heed.agents.transformer import TransformerConfig
from heed.envs.text import VOCAB, TextTask, encode
from heed.scripts.generate import generate


@dataclass(frozen=True)
class Config:
    """Training and generation characters per CPU second of the text models."""

    batch_size: Annotated[int, Range(1, 4096)] = 32
    """windows per training update"""
    window: Annotated[int, Range(2, 4096)] = 100
    """characters per window (and the generation context)"""
    repeats: Annotated[int, Range(1, 100_000)] = 30
    """timed training rounds (one update per model each)"""
    warmup: Annotated[int, Range(0, 1000)] = 3
    """untimed rounds first"""
    gen_chars: Annotated[int, Range(1, 100_000)] = 200
    """characters written per generation turn"""
    gen_repeats: Annotated[int, Range(1, 1000)] = 5
    """timed generation turns per model"""
    d_model: Annotated[int, Range(2, 4096)] = 96
    """Transformer width (heed's and the reference's)"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the weights, the batches and the sampling"""
    json_out: Path | None = None
    """also write the numbers as JSON here"""


class ReferenceBlock(nn.Module):
    """nanoGPT's pre-norm block: ``x + attn(ln x)``, ``x + mlp(ln x)``, attention by SDPA."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, d_model = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d_model, dim=2)  # each [B, T, d]
        q, k, v = (t.view(batch, steps, self.heads, d_model // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d_k]
        x = x + self.c_proj(y.transpose(1, 2).reshape(batch, steps, d_model))
        return x + self.mlp(self.ln_2(x))


class ReferenceGPT(nn.Module):
    """A small causal Transformer written the nanoGPT way: ``ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.wte, self.wpe = nn.Embedding(vocab, d_model), nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(ReferenceBlock(d_model, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))  # [B, T, d]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
        """nanoGPT's loop: crop to the last ``max_len`` ids, sample the next from the last logits."""
        for _ in range(length):
            logits = self(ids[:, -self.max_len:])[:, -1]  # [B, V]
            ids = torch.cat([ids, torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)], dim=1)
        return ids


def heed_models(cfg: Config) -> dict[str, nn.Module]:
    """The heed models of the issue-18 sweep (and the Transformer with learned positions), by label."""
    vocab = len(VOCAB)
    transformer = {"d_model": cfg.d_model, "layers": 2, "heads": 4, "causal": True}
    configs = {
        "LSTM 200": LSTMConfig(hidden_size=200),
        "SHA-RNN 128, window 64": SHARNNConfig(hidden_size=128, window=64),
        f"Transformer {cfg.d_model}x2, rotary (heed)": TransformerConfig(**transformer, positions="rotary"),
        f"Transformer {cfg.d_model}x2, learned pos. (heed)": TransformerConfig(**transformer, positions="learned",
                                                                               max_len=cfg.window),
    }
    return {name: build_model(c, vocab, vocab) for name, c in configs.items()}


def _generate_turn(model: nn.Module, cfg: Config, options: dict[str, bool], turn: int) -> str:
    """One generation turn of a heed model: ``--gen-chars`` characters after "The ", context ``--window``."""
    return generate(model, "The ", cfg.gen_chars, 1.0, seed=cfg.seed + turn, context=cfg.window, **options)


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main(cfg: Config) -> dict[str, dict[str, float]]:
    """Time every model; print a Markdown table; return ``{model: numbers}``."""
    validate(cfg)
    out = claim_output_file(cfg.json_out, flag="--json-out") if cfg.json_out else None
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    models = heed_models(cfg)
    reference = ReferenceGPT(len(VOCAB), cfg.d_model, 2, 4, cfg.window)
    task = TextTask(window=cfg.window)
    rng = np.random.default_rng(cfg.seed)

    def heed_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs, targets) -> None:
        logits, _, _ = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def reference_step(optimizer: torch.optim.Optimizer, ids, targets) -> None:
        loss = F.cross_entropy(reference(ids).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    reference_name = f"Transformer {cfg.d_model}x2, nanoGPT-style reference"
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    optimizers[reference_name] = torch.optim.Adam(reference.parameters(), lr=1e-3)
    train_seconds: dict[str, list[float]] = {name: [] for name in optimizers}
    for round_ in range(cfg.warmup + cfg.repeats):
        batch = task.sample(cfg.batch_size, rng)
        inputs, targets = torch.as_tensor(batch.inputs), torch.as_tensor(batch.targets)
        ids = inputs.argmax(-1)
        for name, optimizer in optimizers.items():
            if name == reference_name:
                seconds = _cpu(partial(reference_step, optimizer, ids, targets))
            else:
                seconds = _cpu(partial(heed_step, models[name], optimizer, inputs, targets))
            if round_ >= cfg.warmup:
                train_seconds[name].append(seconds)
    for model in (*models.values(), reference):
        model.eval()
    modes = {"": {}, "_uncached": {"cache": False}, "_stream": {"stream": True}}  # result key suffix: options
    runs: list[tuple[str, Callable[[int], object]]] = []  # (result key, one generation turn)
    start_ids = torch.as_tensor(encode("The "))[None]
    runs.append((f"{reference_name}|", lambda turn: reference.generate(
        start_ids, cfg.gen_chars, torch.Generator().manual_seed(cfg.seed + turn))))
    for name, model in models.items():
        cached = CachedReader(model, lambda ids: ids).cached
        rolls = cached and model.slide(model.empty_cache(1), 1) is not None
        for suffix, options in modes.items():
            if (suffix == "" or cached) and (suffix != "_stream" or rolls):
                runs.append((f"{name}|{suffix}", partial(_generate_turn, model, cfg, options)))
    gen_seconds: dict[str, list[float]] = {key: [] for key, _ in runs}
    for turn in range(cfg.gen_repeats):
        for key, run in runs:
            gen_seconds[key].append(_cpu(partial(run, turn)))
    chars = cfg.batch_size * cfg.window
    results: dict[str, dict[str, float]] = {}
    for name in optimizers:
        params = sum(p.numel() for p in (reference if name == reference_name else models[name]).parameters())
        rates = [chars / max(s, 1e-9) for s in train_seconds[name]]
        results[name] = {"parameters": params, "train_chars_per_cpu_s": statistics.median(rates),
                         "train_min": min(rates), "train_max": max(rates)}
    for key, seconds in gen_seconds.items():
        name, suffix = key.split("|")
        rates = [cfg.gen_chars / max(s, 1e-9) for s in seconds]
        results[name].update({f"generate{suffix}_chars_per_cpu_s": statistics.median(rates),
                              f"generate{suffix}_min": min(rates), f"generate{suffix}_max": max(rates)})
    ref_train = results[reference_name]["train_chars_per_cpu_s"]
    ref_gen = results[reference_name]["generate_chars_per_cpu_s"]

    def cell(r: dict[str, float], suffix: str) -> str:
        key = f"generate{suffix}_chars_per_cpu_s"
        if key not in r:
            return "-"
        return (f"{r[key]:,.0f} ({r[f'generate{suffix}_min']:,.0f}-{r[f'generate{suffix}_max']:,.0f}), "
                f"{r[key] / ref_gen:.2f}x")

    print(f"| model | parameters | training chars / CPU-s, median (min-max) of {cfg.repeats}, ratio | "
          f"generation chars / CPU-s, median (min-max) of {cfg.gen_repeats}, ratio: cached | uncached | "
          f"stream ({cfg.gen_chars} characters after 'The ', context {cfg.window}) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['parameters']:,} | {r['train_chars_per_cpu_s']:,.0f} ({r['train_min']:,.0f}-"
              f"{r['train_max']:,.0f}), {r['train_chars_per_cpu_s'] / ref_train:.2f}x | {cell(r, '')} | "
              f"{cell(r, '_uncached')} | {cell(r, '_stream')} |")
    if out is not None:
        with disk_errors(out.parent):
            out.write_text(json.dumps({"config": {k: str(v) for k, v in vars(cfg).items()}, "results": results},
                                      indent=1) + "\n")
    return results


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, args=sys.argv[1:], prog="bench_text.py", description=__doc__)))
