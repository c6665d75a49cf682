"""bench_dqn's side-by-side run: optional contenders skip with one line, the table has every row."""

import importlib.util

import pytest

from heed.scripts import bench_dqn

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(rounds=1, window_steps=8, warmup=40, buffer_size=64, heed_envs=(1,))


def test_missing_contenders_are_skipped_with_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tianshou", "torchrl") else real(name, *a))
    table = bench_dqn.main(bench_dqn.Config(contenders=("tianshou", "torchrl"), **TINY))
    out = capsys.readouterr().out
    assert "skipping tianshou: it is not installed (pip install tianshou)" in out
    assert "skipping torchrl: it is not installed (pip install torchrl)" in out
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[2:]]
    assert rows == ["SB3 DQN (1 env)", "heed DuelingDQN in SB3's learn() (1 env)", "heed Dueling DQN (1 env)",
                    "heed Dueling DQN + PER (1 env)", "floor: heed update incl. sampling", "floor: bare network update"]
    assert "1.00×" in table.splitlines()[2]  # SB3 against itself


@pytest.mark.parametrize("name", sorted(bench_dqn.CONTENDERS))
def test_an_installed_contender_learns_and_is_timed(name):
    pytest.importorskip(name)
    run, handle, label = bench_dqn.CONTENDERS[name](bench_dqn.Config(**TINY))
    try:
        assert run(8) > 0 and "(1 env)" in label
    finally:
        handle.close()
