"""Evaluate a model trained on a DNC graph task on a real graph, and draw the DNC's memory as it answers.

    python scripts/graph_eval.py --checkpoint runs/graphs/dnc-traversal --graph underground --out-dir docs/figures/graphs
    python scripts/graph_eval.py --curve runs/graphs/dnc-traversal runs/graphs/lstm-traversal --out curve.png

Asks ``--questions`` questions on the real graph (traversal: random 7-step routes on the Zone 1
Underground; shortest path: 4-step routes; inference: 4-step relations in the family tree) and reports
the accuracy by the modal output: per answer triple, and per question (every triple right). Shortest
path is scored as structured prediction: the network's own previous answer is fed back, and a
question counts when its answers form one of the shortest paths. Writes ``graph_eval.json`` and, for a
model with a recurrent core, ``memory.png`` (write and read weightings, usage, the final temporal link
matrix of one question; for a DNC) and ``answer_map.png`` (that question's answer on the map).
With ``--curve`` it reads the runs' ``metrics.jsonl`` instead and draws their curriculum curves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from heed.agents.common.cli import parse_config
from heed.agents.common.errors import cli_main, require
from heed.agents.common.safe_io import OutputFolder, disk_errors
from heed.agents.common.validate import Range, SeedRange, validate
from heed.agents.trainers import sequence_utils as su
from heed.analysis import graph_figures as gf
from heed.envs import graph_encoding as ge
from heed.envs.graphs import Episode, encode_episodes


@dataclass(frozen=True)
class Config:
    """Real-graph accuracy of a graph-task checkpoint, and figures of one answer."""

    checkpoint: Path | None = None
    """run dir or checkpoint dir of a model trained on graph-traversal, graph-shortest-path or graph-inference"""
    curve: tuple[Path, ...] = ()
    """instead of --checkpoint: run dirs whose curriculum curves (lesson and accuracy against training
    sequences and CPU-seconds, from metrics.jsonl) are drawn together into --out"""
    out: Path = Path("recordings/graphs/curriculum.png")
    """the curve's file with --curve (.png, .pdf or .svg)"""
    graph: Literal["underground", "family-tree", "random"] = "underground"
    """the test graph (family-tree for inference; random: the checkpoint's last lesson)"""
    questions: Annotated[int, Range(1, 10_000)] = 100
    """how many questions"""
    steps: Annotated[int, Range(0, 64)] = 0
    """path length of a question (0: the paper's: 7 traversal, 4 shortest path and inference)"""
    seed: Annotated[int, SeedRange] = 0
    """seed of the questions"""
    out_dir: Path = Path("recordings/graphs")
    """where graph_eval.json and the figures go"""
    figures: bool = True
    """draw memory.png and answer_map.png for the first question"""
    title: str = ""
    """the curve's title with --curve"""
    overwrite: bool = False
    """replace existing files of the output names that heed did not write"""


@torch.no_grad()
def answer(model: torch.nn.Module, episodes: list[Episode], planning: int, rng: np.random.Generator,
           record: bool = False) -> tuple[np.ndarray, object, dict[str, np.ndarray]]:
    """Step the model's core through the episodes, its own modal answers fed back where the task does
    (:func:`heed.agents.trainers.sequence_utils.feed_back` at beta = 0).

    Returns ``(modal digits [B, T, 9], the batch, recording of episode 0)``: the recording holds
    ``write [T, N]``, ``read [T, R, N]``, ``usage [T, N]`` and the final ``link [N, N]`` of a DNC.
    """
    batch = encode_episodes(episodes, planning, rng)
    inputs, mask = torch.as_tensor(batch.inputs), torch.as_tensor(batch.mask)
    rows = torch.as_tensor([ep.feedback for ep in episodes])
    inputs = su.feed_back(model, inputs, mask, 0.0, rng, rows=rows)
    core = model.core
    state = core.initial_state(inputs.shape[0])
    B, T, _ = inputs.shape
    digits = np.zeros((B, T, ge.TARGET_DIGITS), np.int64)
    rec: dict[str, list] = {"write": [], "read": [], "usage": []}
    for t in range(T):
        out, state, attention = core(inputs[:, t], state)
        digits[:, t] = ge.modal_digits(model.readout(out).numpy())
        if record and "write" in attention:
            rec["write"].append(attention["write"][0, 0].numpy())
            rec["read"].append(attention["read"][0].numpy())
            rec["usage"].append(state.usage[0].numpy())
    out_rec = {k: np.stack(v) for k, v in rec.items() if v}
    if record and hasattr(state, "link"):
        out_rec["link"] = state.link[0, 0].numpy()
    return digits, batch, out_rec


def score(episodes: list[Episode], digits: np.ndarray, mask: np.ndarray) -> tuple[list[list[bool]], list[bool]]:
    """Per answer triple whether it is right, and per question whether the question is answered.

    Traversal and inference: the modal triple equals the target triple. Shortest path: each triple is
    an edge of a shortest path continuing the network's own previous answers, and the question is
    answered when they form a whole shortest path from start to goal.
    """
    triples, questions = [], []
    for b, ep in enumerate(episodes):
        said = [ge.digits_to_triple(digits[b, t]) for t in np.flatnonzero(mask[b] > 0)]
        g = ep.graph
        if not ep.feedback:
            ok = [s == g.labelled(a) for s, a in zip(said, ep.answer)]
            triples.append(ok)
            questions.append(all(ok))
            continue
        index = {int(label): i for i, label in enumerate(g.labels)}
        start, goal = ep.answer[0][0], ep.answer[-1][2]
        dist, node, ok = ge.distances_to(g, goal), start, []
        for s, e, d in said:
            src, dst = index.get(s, -1), index.get(d, -1)
            good = src == node and (src, e, dst) in set(g.edges) and dist[dst] == dist[src] - 1
            ok.append(bool(good))
            node = dst if good else -1
        triples.append(ok)
        questions.append(all(ok) and node == goal)
    return triples, questions


def main(cfg: Config) -> dict:
    """Ask the questions; write ``graph_eval.json`` (and the figures); return the accuracies.
    With ``--curve``: draw the runs' curriculum curves instead."""
    validate(cfg)
    require((cfg.checkpoint is None) != (not cfg.curve), "give either --checkpoint (evaluate a model) or "
            "--curve RUN_DIR [RUN_DIR ...] (draw curriculum curves), not both or neither")
    if cfg.curve:
        return curve(cfg)
    model, task, ckpt = su.load_sequence_model(str(cfg.checkpoint))
    require(task.name.startswith("graph-"), f"checkpoint '{cfg.checkpoint}' was trained on '{task.name}', "
            "not on a graph task (graph-traversal, graph-shortest-path, graph-inference)")
    require(hasattr(model, "core"), "graph-eval steps a recurrent core; this model has none")
    require(cfg.graph in task.graphs, f"task '{task.name}' is tested on {', '.join(task.graphs)}, not {cfg.graph}")
    lesson = int(ckpt.counters.get("lesson", task.lesson) or 1)
    task = type(task)(lesson=lesson, graph=cfg.graph, steps=cfg.steps, planning=task.planning)
    out = OutputFolder(cfg.out_dir, cfg.overwrite)
    names = ["graph_eval.json"] + (["memory.png", "answer_map.png"] if cfg.figures else [])
    files = {n: out.claim(n) for n in names}
    rng = np.random.default_rng(cfg.seed)
    episodes = [task.episode(rng) for _ in range(cfg.questions)]
    triples, questions, first = [], [], {}
    for lo in range(0, len(episodes), 16):
        chunk = episodes[lo: lo + 16]
        digits, batch, rec = answer(model, chunk, task.planning, rng, record=lo == 0 and cfg.figures)
        t_ok, q_ok = score(chunk, digits, batch.mask)
        triples += t_ok
        questions += q_ok
        if lo == 0:
            first = {"rec": rec, "batch": batch, "ok": t_ok[0]}
    result = {"checkpoint": str(cfg.checkpoint), "task": task.name, "graph": cfg.graph, "lesson_trained": lesson,
              "model": ckpt.meta.get("core"), "questions": cfg.questions, "steps": (cfg.steps or task.real_steps) if cfg.graph != "random" else "the lesson's",
              "seed": cfg.seed, "triple_accuracy": float(np.mean([x for q in triples for x in q])),
              "question_accuracy": float(np.mean(questions)), "sequences_trained": ckpt.counters.get("sequences")}
    with disk_errors(cfg.out_dir):
        files["graph_eval.json"].write_text(json.dumps(result, indent=2) + "\n")
        if cfg.figures:
            _figures(cfg, episodes[0], first, files, result)
    print(json.dumps(result))
    return result


def curve(cfg: Config) -> dict:
    """Draw the curriculum curve of each run in ``cfg.curve`` into ``cfg.out``; return the last point of each."""
    require(cfg.out.suffix.lower() in (".png", ".pdf", ".svg"), f"--out '{cfg.out}' must end in .png, .pdf or .svg")
    target = OutputFolder(cfg.out.parent, cfg.overwrite, flag="--out").claim(cfg.out.name)
    runs, names = {}, []
    for run_dir in cfg.curve:
        name = run_dir.resolve().name
        names.append(name if name not in names else str(run_dir))
        runs[names[-1]] = gf.read_curriculum(run_dir)
    with disk_errors(cfg.out.parent):
        gf.curriculum_curve(runs, target, title=cfg.title)
    result = {name: {k: float(v[-1]) for k, v in values.items()} for name, values in runs.items()}
    print(json.dumps({"curve": str(cfg.out), "last": result}))
    return result


def _figures(cfg: Config, ep: Episode, first: dict, files: dict, result: dict) -> None:
    rec, batch, g = first["rec"], first["batch"], ep.graph
    E, Q = len(g.edges), len(ep.query)
    steps = np.flatnonzero(batch.mask[0] > 0)
    what = f"{result['model']} ({result['task']}, lesson {result['lesson_trained']}) on the {cfg.graph}"
    if rec:
        T = int(steps[-1]) + 1
        phases = {"graph": (0, E), "query": (E, E + Q), "planning": (E + Q, int(steps[0])), "answer": (int(steps[0]), T)}
        gf.memory_figure(rec["write"][:T], rec["read"][:T], rec["usage"][:T], rec["link"], phases,
                         files["memory.png"], title=f"DNC memory: {what}")
    route = " then ".join(g.edge_names.get(e, str(e)) for _, e, _ in ep.answer) if cfg.graph != "random" else ""
    names = g.names or [str(int(x)) for x in g.labels]
    gf.map_figure(g.pos if g.pos is not None else np.random.default_rng(0).uniform(size=(g.size, 2)),
                  [(s, d) for s, _, d in g.edges], names,
                  [(s, d, ok) for (s, _, d), ok in zip(ep.answer, first["ok"])], files["answer_map.png"],
                  title=f"{what}: from {names[ep.answer[0][0]]}: {route}"[:220], start=ep.answer[0][0])


if __name__ == "__main__":
    cli_main(lambda: main(parse_config(Config, prog="graph_eval.py", description=__doc__)))
