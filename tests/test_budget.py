"""The small trainers' shared budget flags and update step (draw, glimpse, pen, synthesis)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch

from heed.agents.common.budget import BudgetConfig, cosine_lr, optimise
from heed.agents.common.errors import HeedError
from heed.agents.common.run import config_to_dict
from heed.agents.common.session import RunConfig
from heed.agents.common.validate import config_from_dict
from heed.agents.trainers import draw, glimpse, pen, synthesis

TRAINERS = {"draw": draw, "glimpse": glimpse, "pen": pen, "synthesis": synthesis}
BUDGET_FIELDS = [f.name for f in dataclasses.fields(BudgetConfig)]
SHIPPED_PEN = Path(pen.__file__).resolve().parents[1] / "pretrained" / "pen-blstm" / "meta.json"

#: every trainer's flags as they were before the budget flags were nested (subcommands aside)
# --compile/--no-compile: the shared RunConfig's (session 8); trainers other than supervised refuse --compile
RUN_FLAGS = ["--seed", "--device", "--threads", "--run-dir", "--resume", "--progress", "--no-progress",
             "--compile", "--no-compile"]
BUDGET_FLAGS = ["--steps", "--max-cpu-seconds", "--lr", "--grad-clip", "--eval-every", "--checkpoint-every",
                "--log-every"]
FLAGS = {
    "draw": ["--batch-size", "--eval-size", "--source", "--image-size", "--time-steps", "--hidden", "--latent",
             "--read-size", "--write-size", "--attention", "--no-attention"],
    "glimpse": ["--dataset", "--model", "--glimpses", "--batch-size", "--sigma", "--patch", "--scales", "--hidden",
                "--read-size", "--mc-samples", "--eval-size", "--source"],
    "pen": ["--batch-size", "--min-words", "--max-words", "--eval-size", "--beam"],
    "synthesis": ["--batch-size", "--min-words", "--max-words", "--pool-size", "--refresh", "--eval-size",
                  "--hidden-size", "--layers", "--mixtures", "--window-mixtures", "--window", "--no-window",
                  "--kappa-init"],
}
#: each trainer's own defaults (steps, max_cpu_seconds, lr, grad_clip, eval_every, checkpoint_every, log_every)
DEFAULTS = {
    "draw": (10_000, 0.0, 1e-3, 10.0, 1000, 500, 50),
    "glimpse": (6000, 0.0, 1e-3, 5.0, 2000, 1000, 50),
    "pen": (20_000, 0.0, 2e-3, 10.0, 500, 250, 50),
    "synthesis": (20_000, 0.0, 1e-3, 10.0, 250, 250, 25),
}


def _line(w0: list[float], x: list[float]) -> tuple[torch.nn.Parameter, torch.optim.Optimizer, torch.Tensor]:
    """A parameter ``w``, plain SGD on it, and the loss ``w . x`` (so the gradient is ``x``)."""
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=123.0)
    return w, opt, (w * torch.tensor(x, dtype=torch.float64)).sum()


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 1.0])
def test_optimise_sets_the_cosine_rate_and_clips_the_norm(progress):
    lr = 0.1 * (0.05 + 0.95 * (1 + math.cos(math.pi * progress)) / 2)  # by hand
    assert cosine_lr(0.1, progress) == pytest.approx(lr, rel=1e-12)
    w, opt, loss = _line([1.0, 2.0], [3.0, 4.0])  # gradient (3, 4), norm 5
    norm = optimise(opt, loss, [w], progress, base_lr=0.1, grad_clip=1.0)
    assert norm == pytest.approx(5.0) and opt.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)
    clipped = torch.tensor([3.0, 4.0], dtype=torch.float64) / (5.0 + 1e-6)  # scaled to norm 1
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64) - lr * clipped)


def test_optimise_without_clip_or_decay():
    w, opt, loss = _line([1.0, 2.0], [3.0, 4.0])
    assert optimise(opt, loss, [w], 0.5, base_lr=0.1, grad_clip=0.0) == pytest.approx(5.0)  # reported, not clipped
    lr = 0.1 * 0.525
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 3 * lr, 2.0 - 4 * lr], dtype=torch.float64))
    w, opt, loss = _line([1.0, 2.0], [0.3, 0.4])  # norm 0.5, under the clip
    optimise(opt, loss, [w], 0.9, base_lr=0.1, grad_clip=1.0, decay=False)
    assert opt.param_groups[0]["lr"] == 123.0  # decay=False leaves the optimiser's rate (synthesis)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 123 * 0.3, 2.0 - 123 * 0.4], dtype=torch.float64))


def test_optimise_matches_the_inline_update_it_replaced():
    """Bit for bit: Adam on a small net, the rate set, gradients zeroed, backward, clip, step (the old loop body)."""
    import numpy as np

    def net_and_opt():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        return net, torch.optim.Adam(net.parameters(), lr=1e-2)

    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    a, opt_a = net_and_opt()
    b, opt_b = net_and_opt()
    for step in range(5):
        p = step / 5
        for group in opt_a.param_groups:
            group["lr"] = 1e-2 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * p)))
        loss = (a(x) ** 2).mean() * 100
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5)
        opt_a.step()
        optimise(opt_b, (b(x) ** 2).mean() * 100, b.parameters(), p, 1e-2, 0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_each_trainer_keeps_its_own_budget_defaults(kind):
    budget = TRAINERS[kind].Config().budget
    assert tuple(getattr(budget, name) for name in BUDGET_FIELDS) == DEFAULTS[kind]


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_old_flat_config_loads_into_the_nested_config(kind):
    cls = TRAINERS[kind].Config
    new = config_to_dict(cls())
    flat = {k: v for k, v in new.items() if k != "budget"}
    flat.update(new["budget"], steps=7, lr=0.25)  # the layout before the budget was nested
    loaded = config_from_dict(cls, flat, "old config")
    assert loaded == dataclasses.replace(cls(), budget=dataclasses.replace(cls().budget, steps=7, lr=0.25))
    del flat["log_every"]  # a field the old file lacks takes this trainer's default
    assert config_from_dict(cls, flat).budget.log_every == DEFAULTS[kind][-1]
    assert config_from_dict(cls, new) == cls()  # and today's layout round-trips
    with pytest.raises(HeedError, match="--steps must be >= 1"):
        config_from_dict(cls, {**flat, "steps": 0})


def test_the_shipped_recogniser_config_loads():
    meta = json.loads(SHIPPED_PEN.read_text())
    assert "steps" in meta["config"] and "budget" not in meta["config"]  # written with the old flat layout
    cfg = config_from_dict(pen.Config, meta["config"], "pen-blstm")
    assert (cfg.budget.lr, cfg.budget.max_cpu_seconds, cfg.budget.steps) == (2e-3, 600.0, 20_000)
    assert cfg.model.hidden_size == 64 and cfg.run.seed == 1


def _help_flags(cls: type) -> list[str]:
    import tyro

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        tyro.cli(cls, args=["--help"])
    flags = []
    for line in out.getvalue().splitlines():
        match = re.match(r"^\s{1,3}(--[a-z][\w.-]*)(?:[^,]*, (--[a-z][\w.-]*))?", line)
        if match:
            flags += [g for g in match.groups() if g and g != "--help"]
    return flags


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_the_command_line_flags_are_unchanged(kind, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert sorted(_help_flags(TRAINERS[kind].Config)) == sorted(FLAGS[kind] + BUDGET_FLAGS + RUN_FLAGS)


def test_an_old_layout_run_resumes_under_the_override_rule(tmp_path):
    run_dir = tmp_path / "draw"
    tiny = draw.DrawConfig(time_steps=2, hidden=8, latent=2)
    budget = dataclasses.replace(draw.BUDGET, steps=2, eval_every=2, checkpoint_every=1)
    draw.main(draw.Config(model=tiny, budget=budget, eval_size=10,
                          run=RunConfig(run_dir=run_dir, progress=False)))
    saved = json.loads((run_dir / "config.json").read_text())
    flat = {k: v for k, v in saved.items() if k != "budget"} | saved["budget"]
    (run_dir / "config.json").write_text(json.dumps(flat))  # as the committed trainer wrote it
    resume = RunConfig(resume=run_dir, progress=False)
    with pytest.raises(HeedError, match="^--lr cannot change on --resume"):
        draw.main(draw.Config(budget=dataclasses.replace(draw.BUDGET, steps=3, lr=0.5), run=resume))
    out = draw.main(draw.Config(budget=dataclasses.replace(draw.BUDGET, steps=3), run=resume))
    assert out["step"] == 3
    rewritten = json.loads((run_dir / "config.json").read_text())["budget"]
    assert rewritten["steps"] == 3 and rewritten["eval_every"] == 2 and rewritten["checkpoint_every"] == 1
