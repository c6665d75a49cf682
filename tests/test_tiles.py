"""The 3x3 tile policy: tiles as the env cuts them, the env's reward for a known classifier, REINFORCE, the trainer."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

import heed.envs  # noqa: F401  (registers the heed/ ids)
from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.glimpse import TilePolicy, build_model, hybrid_loss
from heed.agents.glimpse.tiles import CENTRE_TILE, cut_tiles, tiles_from_locations
from heed.agents.trainers.glimpse import BUDGET, Config, main
from heed.analysis.glimpse_figures import tile_choice_counts

pytestmark = pytest.mark.usefixtures("one_thread")


def _episode(env: gym.Env, index: int, tiles: list[int], answer) -> tuple[list[np.ndarray], float, dict]:
    """Play one episode: the centre first, then ``tiles``, then ``answer(glimpses)``; the glimpses seen and the reward."""
    obs, _ = env.reset(seed=0, options={"index": index})
    seen = [obs["glimpse"][0]]
    for tile in tiles:
        obs, reward, terminated, _, _ = env.step({"location": tile, "label": 0})
        assert reward == 0.0 and not terminated
        seen.append(obs["glimpse"][0])
    _, reward, terminated, _, info = env.step({"location": 0, "label": answer(seen)})
    assert terminated
    return seen, reward, info


def test_cut_tiles_are_the_env_glimpses():
    env = gym.make("heed/GlimpseGrid-v0", glimpses=9).unwrapped
    order = [0, 1, 2, 3, 5, 6, 7, 8]
    seen, _, _ = _episode(env, 7, order, lambda _: 0)
    tiles = cut_tiles(torch.from_numpy(env._canvas[None]))[0].numpy()  # [9, 10, 10]
    for glimpse, k in zip(seen, [CENTRE_TILE, *order]):
        np.testing.assert_array_equal(glimpse, tiles[k])
    # the 28x28 digit is every tile's pixels put back together (one pixel of padding round the edge)
    whole = tiles.reshape(3, 3, 10, 10).transpose(0, 2, 1, 3).reshape(30, 30)
    np.testing.assert_array_equal(whole[1:29, 1:29], env._canvas)


@pytest.mark.parametrize("constant", [0, 3])
def test_env_reward_for_a_constant_classifier(constant):
    env = gym.make("heed/GlimpseGrid-v0", glimpses=4, split="test").unwrapped
    for index in range(12):
        _, reward, info = _episode(env, index, [0, 2, 6], lambda _: constant)
        assert reward == float(info["label"] == constant)


def test_env_reward_is_the_tile_classifier_outcome():
    """The model's answer from the tiles the env showed earns 1 exactly when it is the true class."""
    torch.manual_seed(0)
    model = TilePolicy(glimpses=4, hidden=32)
    env = gym.make("heed/GlimpseGrid-v0", glimpses=4, split="test").unwrapped
    chosen = [1, 5, 7]
    tiles = torch.tensor([[CENTRE_TILE, *chosen]])
    for index in range(20):
        def answer(seen: list[np.ndarray]) -> int:
            # the classifier sees only these tiles: rebuild an image from them alone
            image = np.zeros((30, 30), np.float32)
            for k, glimpse in zip(tiles[0].tolist(), seen):
                r, c = divmod(k, 3)
                image[r * 10 : r * 10 + 10, c * 10 : c * 10 + 10] = glimpse
            with torch.no_grad():
                return int(model(torch.from_numpy(image[None, 1:29, 1:29]), tiles).logits.argmax())

        _, reward, info = _episode(env, index, chosen, answer)
        with torch.no_grad():
            full = int(model(torch.from_numpy(env._canvas[None]), tiles).logits.argmax())
        assert reward == float(full == info["label"])  # unseen tiles do not change the answer


@pytest.mark.parametrize("policy", ["learned", "random"])
def test_tiles_are_distinct_and_start_at_the_centre(policy):
    torch.manual_seed(1)
    model = TilePolicy(glimpses=9, hidden=16, policy=policy)
    out = model(torch.rand(50, 28, 28))
    chosen = tiles_from_locations(out.locations)  # [50, 9]
    assert (chosen[:, 0] == CENTRE_TILE).all()
    assert all(sorted(row) == list(range(9)) for row in chosen.tolist())  # every tile once
    assert (out.extent == 10).all()
    if policy == "random":
        assert (out.log_pi == 0).all() and (out.baseline == 0).all()
    else:
        assert (out.log_pi[:, 0] == 0).all() and (out.log_pi[:, 1:-1] < 0).all()
        assert (out.log_pi[:, -1] == 0).all()  # the last tile is forced: probability 1


def test_reinforce_moves_the_policy_towards_rewarded_tiles():
    """Rewarded when the second tile is 0: the REINFORCE term alone raises pi(tile 0)."""
    torch.manual_seed(2)
    model = TilePolicy(glimpses=2, hidden=8)
    opt = torch.optim.SGD(model.chooser.parameters(), lr=0.5)
    x = torch.rand(256, 28, 28)
    for _ in range(30):
        out = model(x)
        hit = torch.from_numpy(tiles_from_locations(out.locations)[:, 1] == 0)
        # logits that make the classifier right exactly when tile 0 was chosen (reward 1)
        labels = torch.where(hit, out.logits.argmax(-1), (out.logits.argmax(-1) + 1) % 10)
        loss, _ = hybrid_loss(out, labels, learned_policy=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hits = tiles_from_locations(model(x).locations)[:, 1] == 0
    assert hits.mean() > 0.5  # from 1/8 at the start (8 unseen tiles)


def test_tile_choice_counts_per_class():
    tiles = np.array([[4, 0, 1], [4, 0, 2], [4, 8, 0]])
    counts = tile_choice_counts(tiles, np.array([3, 3, 5]), num_classes=10, skip_first=True)
    assert counts.shape == (10, 3, 3)
    assert counts[3].ravel().tolist() == [2, 1, 1, 0, 0, 0, 0, 0, 0]
    assert counts[5].ravel().tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert counts[[0, 1, 2, 4, 6, 7, 8, 9]].sum() == 0


@pytest.mark.parametrize("model", ["tiles", "random-tiles"])
def test_trainer_tiny_run(tmp_path, model):
    run = replace(RunConfig(), run_dir=str(tmp_path / model), progress=False, seed=1)
    cfg = Config(dataset="mnist", model=model, glimpses=4, budget=replace(BUDGET, steps=3, eval_every=2), hidden=16,
                 batch_size=8, eval_size=20, mc_samples=2, run=run)
    results = main(cfg)
    assert results["model"] == model and results["step"] == 3 and 0 <= results["test_error"] <= 100
    assert isinstance(build_model(model, 28, 4, 8, 1, hidden=16), TilePolicy)


def test_trainer_refuses_tiles_off_mnist(tmp_path):
    run = replace(RunConfig(), run_dir=str(tmp_path / "bad"), progress=False)
    with pytest.raises(HeedError, match="--dataset mnist"):
        main(Config(dataset="cluttered60", model="tiles", glimpses=4, run=run))
    with pytest.raises(HeedError, match="at most the 9 tiles"):
        main(Config(dataset="mnist", model="tiles", glimpses=10, run=run))
    assert not (tmp_path / "bad").exists()


def test_record_tiles_writes_the_heat_map(tmp_path):
    from heed.scripts.record_tiles import Config as RecordConfig
    from heed.scripts.record_tiles import main as record

    run = replace(RunConfig(), run_dir=str(tmp_path / "run"), progress=False, seed=1)
    main(Config(dataset="mnist", model="tiles", glimpses=3, budget=replace(BUDGET, steps=1), hidden=8, batch_size=4, eval_size=10,
                mc_samples=1, run=run))
    out = record(RecordConfig(run_dir=str(tmp_path / "run"), out=str(tmp_path / "fig"), count=40))
    assert out["figure"].exists() and out["counts"].sum() == 40 * 2  # two chosen tiles per digit
    assert len(out["error_per_class"]) == 10
    run = replace(run, run_dir=str(tmp_path / "ram"))
    main(Config(dataset="mnist", model="random", glimpses=2, budget=replace(BUDGET, steps=1), hidden=8, batch_size=4, eval_size=10,
                mc_samples=1, run=run))
    with pytest.raises(HeedError, match="tiles or random-tiles"):
        record(RecordConfig(run_dir=str(tmp_path / "ram"), out=str(tmp_path / "fig")))
