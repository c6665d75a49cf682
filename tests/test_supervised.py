"""The supervised trainer, losses, evaluation, recording and benchmark entry points (tiny budgets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig
from heed.agents.cores.lstm import LSTMConfig
from heed.agents.cores.ntm import NTMConfig
from heed.agents.trainers import sequence_utils as su
from heed.agents.trainers.supervised import Config, main

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "agents" / "pretrained" / "ntm-copy"
TINY = {"batch_size": 4, "eval_sequences": 4, "eval_every": 8, "log_every": 4, "task_options": "max_len=3"}


def flags(**kw) -> RunConfig:
    """The run options of a quiet CPU test run."""
    return RunConfig(**{"device": "cpu", "progress": False, **kw})


pytestmark = pytest.mark.usefixtures("one_thread")



def test_bits_loss_matches_manual():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=g)
    targets = (torch.rand(2, 3, 4, generator=g) > 0.5).float()
    mask = torch.tensor([[0.0, 1, 1], [1, 0, 1]])
    loss, m = su.sequence_loss(logits, targets, mask, "bits")
    p = torch.sigmoid(logits).numpy()
    t, mk = targets.numpy(), mask.numpy()[..., None]
    bits = -(t * np.log2(p) + (1 - t) * np.log2(1 - p)) * mk
    assert math.isclose(float(m["bits_per_sequence"]), bits.sum() / 2, rel_tol=1e-5)
    assert math.isclose(float(loss), bits.sum() * math.log(2) / 2, rel_tol=1e-5)
    wrong = (((p > 0.5) != (t > 0.5)) * mk).sum()
    assert float(m["bit_errors_per_sequence"]) == wrong / 2 and math.isclose(float(m["bit_error_rate"]), wrong / 16)


def test_classes_loss_and_error_rates():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [2.0, 0.0]]])
    targets = torch.tensor([[0, 1], [0, 1]])
    loss, m = su.sequence_loss(logits, targets, torch.ones(2, 2), "classes")
    assert float(m["error_rate"]) == 0.25 and float(m["sequence_error_rate"]) == 0.5
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), targets.reshape(-1))
    assert math.isclose(float(loss), float(expected), rel_tol=1e-6)


def test_parse_options_and_errors():
    assert su.parse_options("a=1,b=lstm c=0.5 d=true", "x") == {"a": 1, "b": "lstm", "c": 0.5, "d": True}
    assert su.parse_options('{"memory_size": 16}', "x") == {"memory_size": 16}
    with pytest.raises(HeedError, match="key=value"):
        su.parse_options("oops", "model-options")
    with pytest.raises(HeedError, match="Did you mean: copy"):
        su.build_task("coppy", {})
    with pytest.raises(HeedError, match="Did you mean: .*ntm"):
        su.legacy_model_config("nttm", {})
    # an old checkpoint's options: those the model takes are kept, the ones its builder dropped are not
    assert su.legacy_model_config("lstm", {"hidden_size": 7, "memory_size": 9, "tau": None}) == LSTMConfig(hidden_size=7)
    with pytest.raises(HeedError, match="total-sequences"):
        main(Config(total_sequences=-1, run=flags()))


def test_train_resume_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    cfg = Config(task="copy", model=LSTMConfig(hidden_size=8), run=flags(seed=3, run_dir=run), total_sequences=16,
                 checkpoint_every=8, image_every=0, **TINY)
    out = main(cfg)
    assert out["sequences"] == 16 and out["updates"] == 4
    ckpt = load_checkpoint(latest_checkpoint(run), expect_kind="sequence-model")
    assert ckpt.counters["sequences"] == 16
    assert ckpt.meta["model"] == {"name": "lstm", "hidden_size": 8, "learn_initial_state": False}
    model, _, _ = su.load_sequence_model(str(run))
    assert model.core.hidden_size == 8
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["sequences"] == 16
    out2 = main(Config(run=flags(resume=run), total_sequences=24))
    assert out2["sequences"] == 24 and out2["updates"] == 6
    assert load_checkpoint(latest_checkpoint(run)).counters["sequences"] == 24
    # resuming continues the same data stream as an uninterrupted run
    straight = main(Config(task="copy", model=LSTMConfig(hidden_size=8), run=flags(seed=3, run_dir=tmp_path / "straight"),
                           total_sequences=24, checkpoint_every=100, image_every=0, **TINY))
    a = load_checkpoint(latest_checkpoint(run)).tensors
    b = load_checkpoint(latest_checkpoint(tmp_path / "straight")).tensors
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert straight["sequences"] == 24


def test_ntm_run_logs_images_and_rmsprop(tmp_path):
    ntm = NTMConfig(hidden_size=8, memory_size=8, memory_width=4, controller="feedforward")
    cfg = Config(task="repeat-copy", model=ntm, run=flags(run_dir=tmp_path / "ntm"), total_sequences=8, optimizer="rmsprop",
                 learning_rate=1e-4, clip_grad_value=10, image_every=4,
                 **{**TINY, "task_options": "max_len=2,max_repeats=2"})
    out = main(cfg)
    assert out["sequences"] == 8 and np.isfinite(out["bits_per_sequence"])
    events = list((tmp_path / "ntm").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_evaluate_memory_on_shipped_checkpoint(tmp_path):
    from heed.scripts.evaluate_memory import Config as EvalConfig
    from heed.scripts.evaluate_memory import main as evaluate

    assert (PRETRAINED / "weights.safetensors").exists() and (PRETRAINED / "meta.json").exists()
    rows = evaluate(EvalConfig(checkpoint=PRETRAINED, lengths=(5, 20), sequences=8, batch_size=8,
                               json_out=tmp_path / "eval.json", export=tmp_path / "fp16"))
    assert su.model_config_from_meta(json.loads((PRETRAINED / "meta.json").read_text())) == NTMConfig()  # old meta
    assert [r["length"] for r in rows] == [5, 20]
    assert rows[0]["bit_error_rate"] < 0.01 and rows[1]["bit_error_rate"] < 0.01  # the shipped model copies
    assert json.loads((tmp_path / "eval.json").read_text())[0]["length"] == 5
    assert load_checkpoint(tmp_path / "fp16").tensors["core.interface.weight"].dtype == torch.float16


def test_record_memory_on_shipped_checkpoint(tmp_path):
    from heed.scripts.record_memory import Config as RecordConfig
    from heed.scripts.record_memory import main as record

    paths = record(RecordConfig(checkpoint=PRETRAINED, length=6, out_dir=tmp_path, video="gif"))
    for key in ("weightings", "copy_figure", "video"):
        assert Path(paths[key]).stat().st_size > 0


def test_bench_needs_the_reference_checkout(tmp_path):
    from heed.scripts.bench_ntm import Config as BenchConfig
    from heed.scripts.bench_ntm import main as bench

    with pytest.raises(HeedError, match="pytorch-ntm"):
        bench(BenchConfig(reference=tmp_path / "missing"))


def test_ngram_run_logs_the_bayes_optimum_and_summarize_reads_it(tmp_path, capsys):
    """metrics.jsonl carries the Bayes-optimal cost of the held-out set; summarize_runs turns it into a row."""
    from heed.envs.algorithmic import DynamicNGramsTask
    from heed.scripts import summarize_runs

    run = tmp_path / "ng"
    tiny = dict(TINY, task_options="length=30")
    main(Config(task="dynamic-ngrams", model=LSTMConfig(hidden_size=8), run=flags(seed=2, run_dir=run), total_sequences=8,
                checkpoint_every=8, image_every=0, **tiny))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    eval_set = su.fixed_batches(DynamicNGramsTask(length=30), 4, 4, seed=2 + 1_000_003)  # the trainer's held-out set
    want = float(np.mean(DynamicNGramsTask(length=30).optimal_bits(eval_set[0])))
    assert all(r["eval_optimal_bits_per_sequence"] == pytest.approx(want) for r in rows)
    row = summarize_runs.supervised_row(run)
    assert row["task"] == "dynamic-ngrams (length=30)" and row["sequences"] == 8
    assert row["best"] == min(r["eval_bits_per_sequence"] for r in rows)
    assert row["last"] == rows[-1]["eval_bits_per_sequence"]
    summarize_runs.main(summarize_runs.Config(runs=(run, tmp_path / "not-a-run")))
    assert "| ng | dynamic-ngrams (length=30) | lstm |" in capsys.readouterr().out
    with pytest.raises(HeedError, match="none of the paths"):
        summarize_runs.main(summarize_runs.Config(runs=(tmp_path / "not-a-run",)))
