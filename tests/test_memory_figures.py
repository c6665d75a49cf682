"""The NTM figures of the lecture: the lag-diagonal measure, the copy length-generalisation figure and
table (NTM against LSTM), repeat-copy recordings with task options, and their bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main
from heed.analysis.memory_figures import copy_source_share, generalisation_figure, memory_still, touched_rows
from heed.envs.algorithmic import CopyTask, RepeatCopyTask

ROOT = Path(__file__).resolve().parents[1]
NTM = ROOT / "agents" / "pretrained" / "ntm-copy"
LSTM = ROOT / "agents" / "pretrained" / "lstm-copy"

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ the lag-diagonal measure


def test_copy_source_share_on_a_hand_built_matrix():
    s = np.zeros((5, 5))
    s[3] = [1.0, 0.0, 0.0, 3.0, 0.0]  # step 3 copies input 0: 1 of 4, and not its largest entry
    s[4] = [0.0, 2.0, 0.0, 0.0, 2.0]  # step 4 copies input 1: 2 of 4, a tie counts the first (its own)
    diag = copy_source_share(s, {4: 1, 3: 0})
    np.testing.assert_allclose(diag.share, [0.25, 0.5])  # in the order of the output steps
    assert diag.mean_share == pytest.approx(0.375)
    assert diag.peak_rate == pytest.approx(0.5)
    clean = copy_source_share(np.eye(4), {t: t for t in range(4)})
    assert clean.mean_share == 1.0 and clean.peak_rate == 1.0
    assert copy_source_share(np.zeros((2, 2)), {1: 0}).mean_share == 0.0  # an all-zero row: no share, no peak


@pytest.mark.parametrize("matrix, sources", [(np.zeros(4), {0: 0}), (np.eye(3), {}), (np.eye(3), {3: 0}),
                                             (np.eye(3), {0: -1})])
def test_copy_source_share_refuses_bad_input(matrix, sources):
    with pytest.raises(ValueError):
        copy_source_share(matrix, sources)


@pytest.mark.parametrize("task", [CopyTask().fixed_length(4), RepeatCopyTask(min_repeats=3, max_repeats=3).fixed_length(3)])
def test_copy_sources_point_at_the_copied_inputs(task):
    from heed.scripts.sequential_jacobian import copy_sources

    batch = task.sample(1, np.random.default_rng(0))
    sources = copy_sources(task.name, batch.inputs[0], task.bits)
    scored = [t for t in np.nonzero(batch.mask[0])[0] if batch.targets[0, t, : task.bits].any()]
    assert set(scored) <= set(sources)
    assert len(sources) == (4 if task.name == "copy" else 3 * 3)  # every answer step but the end marker
    for t, s in sources.items():  # the target at t is the input vector at s (the task's own data)
        np.testing.assert_array_equal(batch.targets[0, t, : task.bits], batch.inputs[0, s, : task.bits])
    assert copy_sources("associative-recall", batch.inputs[0], task.bits) == {}


def test_sequential_jacobian_of_the_shipped_ntm_has_a_lag_diagonal(tmp_path):
    from heed.scripts.sequential_jacobian import Config, run

    summary = run(Config(checkpoint=NTM, length=5, out=tmp_path / "j.png", progress=False))
    assert summary["copy_answer_steps"] == 5 and (tmp_path / "j.png").stat().st_size > 0
    assert summary["copy_diagonal_peak_rate"] == 1.0 and summary["copy_diagonal_share"] > 0.3


def test_touched_rows_and_memory_still(tmp_path):
    write = np.zeros((4, 10))
    write[np.arange(4), [2, 3, 4, 5]] = 1.0
    read = np.zeros((4, 10))
    read[0, 9] = 0.05  # below 0.1; with the default 0.01 the shortest circular run wraps: 9, 0, ..., 5
    np.testing.assert_array_equal(touched_rows([write, read]), [9, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(touched_rows([write, read], 0.1), [2, 3, 4, 5])
    read[1, 7] = 0.5  # rows 2-5 and 7 (and 9 at 0.01): no wrap is shorter now
    np.testing.assert_array_equal(touched_rows([write, read], 0.1), [2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(touched_rows([write, read]), [2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(touched_rows([np.zeros((3, 5))]), np.arange(5))
    memory = np.random.default_rng(0).random((4, 10, 3))
    assert memory_still(memory, write, read, tmp_path / "m.png").stat().st_size > 0
    assert memory_still(memory[:, :, :1], None, None, tmp_path / "h.png").stat().st_size > 0  # no heads (LSTM)


# ------------------------------------------------------------------ copy length generalisation, NTM vs LSTM


def test_generalisation_figure(tmp_path):
    rng = np.random.default_rng(0)
    panels = {n: {"targets": rng.random((n, 8)), "NTM": rng.random((n, 8))} for n in (3, 7)}
    assert generalisation_figure(panels, tmp_path / "g.png").stat().st_size > 0
    with pytest.raises(ValueError):
        generalisation_figure({3: panels[3], 7: {"NTM": panels[7]["NTM"]}}, tmp_path / "bad.png")


def test_copy_generalisation_table_and_figure(tmp_path):
    from heed.scripts.copy_generalisation import Config, main

    paths = main(Config(lengths=(3, 30), sequences=8, out_dir=tmp_path))
    assert Path(paths["figure"]).stat().st_size > 0
    rows = json.loads(Path(paths["table"]).read_text())["rows"]
    assert [r["length"] for r in rows["NTM"]] == [3, 30] == [r["length"] for r in rows["LSTM"]]
    assert rows["NTM"][1]["bit_error_rate"] == 0.0  # the NTM copies past its training length ...
    assert rows["LSTM"][1]["bit_error_rate"] > 0.2  # ... the LSTM does not


def _cli(module, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda: module.main(parse_config(module.Config, args=argv)))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    return err


@pytest.mark.parametrize("argv, says", [
    (["--lengths", "0"], "lengths"),
    (["--lengths"], "at least one length"),
    (["--lengths", "5", "5"], "repeated"),
    (["--sequences", "-3"], "sequences"),
    (["--ntm", "no/such/checkpoint"], "no/such/checkpoint"),
    (["--lstm", str(ROOT / "README.md")], "README.md"),
])
def test_copy_generalisation_bad_input_is_one_line(argv, says, capsys, tmp_path):
    from heed.scripts import copy_generalisation

    assert says in _cli(copy_generalisation, [*argv, "--out-dir", str(tmp_path)], capsys)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.fixture(scope="module")
def repeat_copy_run(tmp_path_factory) -> Path:
    """A tiny NTM trained for 8 sequences on repeat copy (a checkpoint of that task, not a good model)."""
    from heed.agents.common.session import RunConfig
    from heed.agents.cores.ntm import NTMConfig
    from heed.agents.trainers.supervised import Config, main

    run = tmp_path_factory.mktemp("rc") / "run"
    main(Config(task="repeat-copy", model=NTMConfig(hidden_size=8, memory_size=8, memory_width=4),
                run=RunConfig(device="cpu", progress=False, run_dir=run), total_sequences=8, batch_size=4,
                eval_sequences=4, eval_every=8, log_every=4, image_every=0))
    return run


def test_copy_generalisation_refuses_a_model_of_another_task(repeat_copy_run, capsys, tmp_path):
    from heed.scripts import copy_generalisation

    assert "not copy" in _cli(copy_generalisation, ["--lstm", str(repeat_copy_run), "--out-dir", str(tmp_path)], capsys)


def test_record_memory_task_options_fix_the_repeats(repeat_copy_run, tmp_path, capsys):
    from heed.scripts import record_memory

    record_memory.main(record_memory.Config(checkpoint=repeat_copy_run, length=3, video="gif", out_dir=tmp_path,
                                            task_options="min_repeats=4,max_repeats=4"))
    record = json.loads((tmp_path / "recording.json").read_text())
    assert record["steps"] == 3 + 1 + 4 * 3 + 1
    assert (tmp_path / "memory.gif").stat().st_size > 0 and (tmp_path / "memory.png").stat().st_size > 0
    for bad, says in (("bits=4", "sizes"), ("repeats=3", "no option"), ("min_repeats=0", "min_repeats"),
                      ("min_repeats=5,max_repeats=4", "max_repeats")):
        argv = ["--checkpoint", str(repeat_copy_run), "--task-options", bad, "--out-dir", str(tmp_path / "x")]
        assert says in _cli(record_memory, argv, capsys)
