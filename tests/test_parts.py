"""The table of parts: every core drives every user, configs reach the command line typed, and a flag
the chosen part does not take is refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.parts import CORES, MODELS, build_core, build_model, part_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"hidden_size": 6, "memory_size": 4, "memory_width": 3, "max_steps": 3}


def tiny(name: str):
    """Core ``name`` of the table with tiny sizes (only the fields it has)."""
    config_class = CORES[name][0]
    fields = {f.name for f in dataclasses.fields(config_class) if f.init}
    return config_class(**{k: v for k, v in TINY.items() if k in fields})


def test_tables_name_their_configs_and_build():
    for table in (CORES, MODELS):
        for name, (config_class, _) in table.items():
            cfg = config_class()
            assert cfg.name == name and part_from_dict(dataclasses.asdict(cfg)) == cfg
    logits, _, aux = build_model(tiny("gru"), 3, 2)(torch.randn(2, 4, 3))
    assert logits.shape == (2, 4, 2) and aux.item() == 0.0
    with pytest.raises(HeedError, match="unknown core 'ut'"):  # a model is no core
        build_core(MODELS["ut"][0](), 3)


@pytest.mark.parametrize("name", list(CORES))
def test_every_core_trains_supervised(tmp_path, name):
    from heed.agents.trainers import sequence_utils as su
    from heed.agents.trainers.supervised import Config, main

    run = tmp_path / "run"
    out = main(Config(task="copy", model=tiny(name), run=RunConfig(run_dir=run, progress=False), total_sequences=8,
                      batch_size=4, eval_sequences=4, eval_every=8, log_every=4, image_every=0,
                      task_options="max_len=2"))
    assert out["updates"] == 2 and np.isfinite(out["bits_per_sequence"])
    model, _, _ = su.load_sequence_model(str(run))  # the stored config rebuilds the same model
    saved = load_checkpoint(latest_checkpoint(run)).tensors
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", list(CORES))
def test_every_core_drives_a_ppo_policy(tmp_path, name):
    from heed.agents.trainers import ppo

    out = ppo.main(ppo.Config(core=tiny(name), memory_length=1, total_steps=16, n_envs=2, n_steps=8,
                              eval_episodes=0, run=RunConfig(run_dir=tmp_path / "run", progress=False)))
    assert out["num_timesteps"] == 16
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["core"]
    assert part_from_dict(saved) == tiny(name)


def test_act_ponder_cost_enters_the_ppo_loss():
    from heed.agents.ppo import PPOConfig, RecurrentPPO
    from heed.agents.recurrent_policy import RecurrentActorCritic
    from heed.agents.trainers import ppo

    def train(tau: float) -> list[float]:
        torch.manual_seed(0)
        env = ppo.make_vec_env("heed/MemoryLength-v0", 2, 0, {"memory_length": 1})
        policy = RecurrentActorCritic(3, 2, dataclasses.replace(tiny("act"), tau=tau))
        model = RecurrentPPO(policy, env, PPOConfig(n_steps=8, n_epochs=1, n_minibatches=1), seed=0)
        model.collect_rollout()
        stats = model.train()
        return stats["aux_loss"], [p.detach().clone() for p in policy.core.halt.parameters()]

    zero, halt0 = train(0.0)
    cost, halt1 = train(0.5)
    assert zero == 0.0 and cost > 0.0
    assert not all(torch.equal(a, b) for a, b in zip(halt0, halt1))  # the cost moves the halting unit


@pytest.mark.parametrize("name", list(CORES))
def test_every_core_drives_the_glimpse_ram(tmp_path, name):
    from heed.agents.trainers.glimpse import BUDGET, Config, main

    budget = dataclasses.replace(BUDGET, steps=2, eval_every=2, checkpoint_every=2, log_every=1)
    res = main(Config(dataset="mnist", model="ram", glimpses=2, budget=budget, batch_size=4, hidden=8, core=tiny(name),
                      eval_size=10, mc_samples=1,
                      run=RunConfig(run_dir=tmp_path / "run", progress=False)))
    assert res["step"] == 2 and 0 <= res["test_error"] <= 100


def test_command_line_core_choice_and_refused_flags(tmp_path, capsys):
    from heed.scripts.train import run

    for argv in (
        ["ppo", "core:lstm", "--core.memory-size", "64"],  # an LSTM has no memory: refused, not dropped
        ["ppo", "core:nmt"],  # unknown core
        ["supervised", "model:transformer", "--model.memory-size", "8"],
        ["glimpse", "core:rnn", "--core.read-heads", "2"],
        ["ppo", "--hidden-size", "8"],  # the old flat flags are gone
        ["supervised", "--model-options", "depth=2"],
    ):
        with pytest.raises(SystemExit) as exc:
            run(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()
    run(["ppo", "--total-steps", "16", "--n-envs", "2", "--n-steps", "8", "--eval-episodes", "0", "--no-progress",
         "--run-dir", str(tmp_path / "ppo"), "core:ntm", "--core.memory-size", "5", "--core.hidden-size", "6"])
    saved = json.loads((tmp_path / "ppo" / "config.json").read_text())["core"]
    assert saved["name"] == "ntm" and saved["memory_size"] == 5 and saved["memory_width"] == 8  # PPO's default
