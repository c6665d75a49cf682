"""``--compile``: a core's step under ``torch.compile`` computes what the eager step computes, its
checkpoints load into an eager model (and back), and a failed compilation leaves the core eager.

A cold inductor compilation of even a tiny core takes minutes of CPU (g++ included), so the suite
compiles with the ``aot_eager`` backend (the same dynamo capture and AOTAutograd forward/backward
split, no code generation); ``HEED_INDUCTOR_TESTS=1`` also runs the equivalence test with inductor,
the backend the trainers use (measured by hand when the compile path changes).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from heed.agents.common.checkpoint import latest_checkpoint, load_checkpoint
from heed.agents.common.errors import HeedError
from heed.agents.common.session import RunConfig, RunFlags, start_run
from heed.agents.cores.base import chunks, compile_step, map_state
from heed.agents.cores.dnc import DNCConfig, DNCCore
from heed.agents.cores.ntm import NTMConfig, NTMCore

pytestmark = pytest.mark.usefixtures("one_thread")

INDUCTOR = pytest.mark.skipif(os.environ.get("HEED_INDUCTOR_TESTS") != "1",
                              reason="inductor compiles for minutes; set HEED_INDUCTOR_TESTS=1")


@pytest.fixture
def aot_eager(monkeypatch):
    """compile_step with the aot_eager backend (graph capture and autograd split, no C++)."""
    import heed.agents.cores.base as base

    monkeypatch.setattr(base, "COMPILE_BACKEND", "aot_eager")

TINY = {
    "ntm": lambda: NTMCore(3, NTMConfig(hidden_size=6, memory_size=5, memory_width=4)),
    "dnc": lambda: DNCCore(3, DNCConfig(hidden_size=6, memory_size=5, memory_width=4)),
}


def run_and_grad(core: nn.Module, xs: torch.Tensor, resets: torch.Tensor | None):
    """Outputs, final state, attention and every parameter's gradient of one unroll."""
    out, state, attention = core.unroll(xs, resets=resets)
    weights = torch.linspace(-1.0, 1.0, out.numel()).view_as(out)  # a loss that reaches every output
    loss = (out * weights).sum() + sum(v.square().sum() for v in attention.values())
    core.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in core.named_parameters()}
    return out.detach(), map_state(lambda s: s.detach(), state), {k: v.detach() for k, v in attention.items()}, grads


def assert_close(a, b, what: str) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m: f"{what}: {m}")


def test_chunks_are_full_chunks_then_single_steps():
    assert chunks(10, 4) == [(0, 4), (4, 8), (8, 9), (9, 10)]
    assert chunks(8, 4) == [(0, 4), (4, 8)]
    assert chunks(3, 4) == [(0, 1), (1, 2), (2, 3)]
    assert chunks(3, 1) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=[INDUCTOR, pytest.mark.slow])])
@pytest.mark.parametrize("steps_per_graph", [1, 4])
@pytest.mark.parametrize("name", list(TINY))
def test_compiled_step_matches_eager(name, steps_per_graph, backend, monkeypatch):
    import heed.agents.cores.base as base

    monkeypatch.setattr(base, "COMPILE_BACKEND", backend)
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = TINY[name]()
    compiled = copy.deepcopy(eager)
    assert compile_step(compiled, batch_size=3, steps_per_graph=steps_per_graph).failure is None
    assert compiled.compiled_steps.steps == steps_per_graph and eager.compiled_steps is None
    xs = torch.randn(3, 10, 3)  # with K = 4: chunks of steps 0-3 and 4-7, then steps 8 and 9 one by one
    resets = torch.zeros(3, 10, dtype=torch.bool)
    resets[1, 5] = True  # in the middle of the second chunk
    resets[2, 9] = True  # in the steps left over
    for rows in (None, resets):  # without resets, every chunk meets the graph the compilation built
        want, got = run_and_grad(eager, xs, rows), run_and_grad(compiled, xs, rows)
        assert_close(got[0], want[0], "outputs")
        for a, b in zip(got[1], want[1]):
            if a is not None:
                assert_close(a, b, "state")
        assert sorted(got[2]) == sorted(want[2])
        for key in want[2]:
            assert_close(got[2][key], want[2][key], f"attention {key}")
        for key in want[3]:
            assert_close(got[3][key], want[3][key], f"gradient of {key}")
    given = eager.initial_state(3)  # a state passed in is read, never changed (not even requires_grad)
    flags = [s.requires_grad for s in given if s is not None]
    assert_close(compiled.unroll(xs, given)[0], eager.unroll(xs, given)[0], "from a given state")
    assert [s.requires_grad for s in given if s is not None] == flags
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):  # another batch, eagerly (evaluation)
        small = torch.randn(2, 6, 3)
        assert_close(compiled.unroll(small)[0], eager.unroll(small)[0], "eager evaluation")
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix


def test_failed_compilation_leaves_the_core_eager(monkeypatch):
    import heed.agents.cores.base as base

    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    torch._dynamo.reset()
    torch.manual_seed(0)
    core = TINY["ntm"]()
    eager = copy.deepcopy(core)
    monkeypatch.setattr(base, "COMPILE_BACKEND", broken)
    failure = compile_step(core, batch_size=2).failure
    assert failure is not None and "no C++ compiler found" in failure and "\n" not in failure
    assert core.compiled_steps is None
    assert all(p.grad is None for p in core.parameters())  # the trial step left no gradient
    xs = torch.randn(2, 3, 3)
    torch.testing.assert_close(core.unroll(xs)[0], eager.unroll(xs)[0], rtol=0, atol=0)


@dataclass(frozen=True)
class Toy:
    """A trainer config that does not compile."""

    steps: int = 1
    run: RunFlags = field(default_factory=RunConfig)


def test_compile_is_refused_where_nothing_compiles(tmp_path):
    with pytest.raises(HeedError, match="--compile is not available for toy runs"):
        start_run("toy", Toy(run=RunConfig(run_dir=tmp_path / "toy", compile=True, progress=False)))
    assert not (tmp_path / "toy").exists()


def test_compile_needs_a_core(tmp_path):
    from heed.agents.parts import MODELS
    from heed.agents.trainers.supervised import Config, main

    model = MODELS["transformer"][0]()
    with pytest.raises(HeedError, match="model:transformer has no core"):
        main(Config(task="copy", model=model, run=RunConfig(run_dir=tmp_path / "t", compile=True, progress=False)))
    assert not (tmp_path / "t").exists()


def test_compiled_run_checkpoints_load_eagerly_and_resume(tmp_path, capsys, aot_eager):
    from heed.agents.trainers import sequence_utils as su
    from heed.agents.trainers.supervised import Config, main

    run = tmp_path / "run"
    tiny = NTMConfig(hidden_size=6, memory_size=5, memory_width=4)
    cfg = Config(task="copy", model=tiny, total_sequences=8, batch_size=4, eval_sequences=4, eval_every=8,
                 log_every=4, image_every=4, task_options="max_len=2",
                 run=RunConfig(run_dir=run, progress=False, compile=True))
    out = main(cfg)
    assert out["updates"] == 2 and "compiled the ntm step" in capsys.readouterr().err
    eager, _, _ = su.load_sequence_model(str(run))  # an eager model of the stored config
    saved = load_checkpoint(latest_checkpoint(run)).tensors
    assert sorted(saved) == sorted(eager.state_dict())
    assert all(torch.equal(v, saved[k]) for k, v in eager.state_dict().items())
    # resume eagerly (--compile is a runtime option: it may differ on --resume)
    again = main(dataclasses.replace(cfg, total_sequences=12, run=RunConfig(resume=run, progress=False)))
    assert again["updates"] == 3 and "compiled the ntm step" not in capsys.readouterr().err
    # and compiled again: --compile added on --resume of a run whose config.json now says eager
    assert '"compile": false' in (run / "config.json").read_text()
    third = main(dataclasses.replace(cfg, total_sequences=16, run=RunConfig(resume=run, progress=False, compile=True)))
    assert third["updates"] == 4 and "compiled the ntm step" in capsys.readouterr().err
