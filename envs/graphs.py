"""The DNC graph tasks (Graves et al. 2016, Methods): traversal, shortest path and inference, with
their curricula, on random graphs or on the two real graphs (``graph="underground"``/``"family-tree"``).

An episode, one step per row of ``inputs [T, 92]`` (encoding in :mod:`heed.envs.graph_encoding`):

1. the graph: every triple ``(source, edge, destination)`` once, in random order;
2. the query, with the query channel on: traversal ``(start, e_1, _)``, ``(_, e_2, _)``, ...;
   shortest path ``(start, _, goal)``; inference ``(start, relation, _)``;
3. ``planning`` empty steps (the paper's optional planning phase);
4. the answer, with the answer channel on, one step per answer triple; the targets there are the
   triples' 9 digits (loss kind ``"digits"``), elsewhere the mask is 0. In shortest path (structured
   prediction) the previous answer triple is fed back as the input of the next answer step: the
   optimal planner's as written here. Training mixes in the network's own answers (the paper's
   structured prediction: the planner's answer is kept with probability ``beta``, 0.8, the network's
   own previous answer fed back otherwise; the trainer applies it, as only it has the network, see
   ``heed.agents.trainers.sequence_utils.feed_back``); an evaluator feeds back only the network's own.

Curricula: a task with ``lesson = k`` draws its graphs from lesson k of its table (nodes, out-degree and
path length ranges), and 10 % of examples from a lesson before k; a trainer moves ``lesson`` on once
the modal-output accuracy reaches ``pass_rate`` (90 %, 80 % for shortest path). The tables grow from
the first to the last lesson of Extended Data Tables 3-5 as REFERENCE.md gives them (traversal: nodes
3-10 -> 10-40, degree 2-4 -> 2-6, path 1 -> 1-20); the lessons in between are our interpolation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from heed.envs.errors import require
from heed.envs.graph_encoding import (
    ANSWER,
    INPUT_SIZE,
    QUERY,
    TARGET_DIGITS,
    Graph,
    Triple,
    distances_to,
    encode_triple,
    endpoints,
    random_graph,
    shortest_path,
    traverse,
    triple_digits,
)
from heed.envs.real_graphs import REAL_GRAPHS, family_relations, named_graph
from heed.envs.sequence import Batch, check_options

#: (nodes lo, hi, out-degree lo, hi, path length lo, hi) per lesson
Lesson = tuple[int, int, int, int, int, int]
TRAVERSAL_LESSONS: tuple[Lesson, ...] = (
    (3, 10, 2, 4, 1, 1), (3, 10, 2, 4, 1, 2), (5, 15, 2, 4, 1, 3), (5, 20, 2, 4, 1, 4), (5, 20, 2, 4, 1, 5),
    (5, 20, 2, 5, 1, 6), (5, 25, 2, 5, 1, 7), (8, 25, 2, 5, 1, 8), (8, 30, 2, 5, 1, 10), (8, 30, 2, 6, 1, 12),
    (10, 30, 2, 6, 1, 14), (10, 35, 2, 6, 1, 16), (10, 40, 2, 6, 1, 18), (10, 40, 2, 6, 1, 20),
)
SHORTEST_PATH_LESSONS: tuple[Lesson, ...] = (
    (5, 10, 2, 3, 1, 1), (5, 10, 2, 3, 1, 2), (5, 15, 2, 3, 1, 2), (5, 15, 2, 3, 1, 3), (5, 20, 2, 3, 1, 3),
    (5, 20, 2, 4, 1, 3), (8, 20, 2, 4, 1, 4), (8, 25, 2, 4, 1, 4), (8, 25, 2, 4, 1, 5), (10, 25, 2, 4, 1, 5),
    (10, 30, 2, 4, 1, 6), (10, 30, 2, 5, 1, 6), (10, 35, 2, 5, 1, 7), (10, 40, 2, 5, 1, 8), (10, 40, 2, 5, 1, 10),
)
#: inference: the path length is the relation's length (2-5 edges)
INFERENCE_LESSONS: tuple[Lesson, ...] = (
    (3, 10, 2, 4, 2, 2), (5, 10, 2, 4, 2, 2), (5, 15, 2, 4, 2, 2), (5, 15, 2, 4, 2, 3), (5, 20, 2, 4, 2, 3),
    (5, 20, 2, 5, 2, 3), (8, 20, 2, 5, 2, 3), (8, 20, 2, 5, 2, 4), (8, 25, 2, 5, 2, 4), (8, 25, 2, 6, 2, 4),
    (10, 25, 2, 6, 2, 4), (10, 30, 2, 6, 2, 5), (10, 30, 2, 6, 2, 5), (10, 35, 2, 6, 2, 5), (10, 35, 2, 6, 2, 5),
    (10, 40, 2, 6, 2, 5), (10, 40, 2, 6, 2, 5),
)
#: the share of examples drawn from an earlier lesson
EARLIER_SHARE = 0.1
#: inference: edge labels come from an alphabet of 8 (the family tree's edge types keep labels 0-7);
#: 400 relation labels (from RELATION_BASE on) each alias a fixed edge sequence of length 2-5
EDGE_ALPHABET = 8
RELATIONS = 400
RELATION_BASE = 100


def relation_table() -> dict[int, tuple[int, ...]]:
    """Relation label -> the edge labels it aliases: the family tree's relations first, then random
    sequences (a fixed seed, so the table is the same in every process)."""
    table = {RELATION_BASE + i: seq for i, seq in enumerate(family_relations().values())}
    rng, seen = np.random.default_rng(2016), set(table.values())
    while len(table) < RELATIONS:
        seq = tuple(int(e) for e in rng.integers(0, EDGE_ALPHABET, size=int(rng.integers(2, 6))))
        if seq not in seen:
            seen.add(seq)
            table[RELATION_BASE + len(table)] = seq
    return table


@dataclass
class Episode:
    """One question: the graph, the query triples (labels; ``None`` = missing part), the answer triples
    (node indices), and whether answers are fed back (shortest path). ``relation`` names an inference
    query's edge sequence."""

    graph: Graph
    query: list[tuple[int | None, int | None, int | None]]
    answer: list[Triple]
    feedback: bool = False
    relation: tuple[int, ...] = ()


def encode_episodes(episodes: list[Episode], planning: int, rng: np.random.Generator) -> Batch:
    """Episodes -> a padded :class:`Batch` (inputs ``[B, T, 92]``, targets int64 ``[B, T, 9]``, mask ``[B, T]``).

    The graph's triples come in an order drawn from ``rng``; padding follows the answer (mask 0).
    """
    lengths = [len(ep.graph.edges) + len(ep.query) + planning + len(ep.answer) for ep in episodes]
    T = max(lengths)
    inputs = np.zeros((len(episodes), T, INPUT_SIZE), np.float32)
    targets = np.zeros((len(episodes), T, TARGET_DIGITS), np.int64)
    mask = np.zeros((len(episodes), T), np.float32)
    for b, ep in enumerate(episodes):
        g = ep.graph
        for t, i in enumerate(rng.permutation(len(g.edges))):
            encode_triple(g.labelled(g.edges[i]), inputs[b, t])
        t = len(g.edges)
        for q in ep.query:
            encode_triple(q, inputs[b, t])
            inputs[b, t, QUERY] = 1.0
            t += 1
        t += planning
        for k, triple in enumerate(ep.answer):
            inputs[b, t, ANSWER] = 1.0
            if ep.feedback and k > 0:
                encode_triple(g.labelled(ep.answer[k - 1]), inputs[b, t])
            targets[b, t] = triple_digits(g.labelled(triple))
            mask[b, t] = 1.0
            t += 1
    return Batch(inputs, targets, mask)


def answer_steps(batch_mask: np.ndarray) -> list[np.ndarray]:
    """The answer steps of each episode: ``mask [B, T]`` -> B arrays of step indices."""
    return [np.flatnonzero(m > 0) for m in np.asarray(batch_mask)]


@dataclass(frozen=True)
class _GraphTask:
    """What the three graph tasks share: options, lessons, sampling and encoding."""

    lesson: int = 1
    """the curriculum lesson (1..lessons) graphs are drawn from (ignored on a real graph)"""
    graph: str = "random"
    """random, underground or family-tree"""
    steps: int = 0
    """path length on a real graph (0: the paper's test length)"""
    planning: int = 0
    """empty steps between query and answer"""

    env_id: ClassVar[str]
    name: ClassVar[str]
    loss: ClassVar[str] = "digits"
    input_size: ClassVar[int] = INPUT_SIZE
    output_size: ClassVar[int] = TARGET_DIGITS * 10
    pass_rate: ClassVar[float] = 0.9
    feedback: ClassVar[bool] = False
    """whether each answer step after the first is given the previous answer (structured prediction)"""
    table: ClassVar[tuple[Lesson, ...]]
    real_steps: ClassVar[int]
    option_ranges: ClassVar[dict[str, tuple[int, int]]]
    graphs: ClassVar[tuple[str, ...]] = ("random", *REAL_GRAPHS)

    def __init_subclass__(cls, **kwargs) -> None:
        """Each task declares its option ranges (``lesson`` up to its own table's length)."""
        super().__init_subclass__(**kwargs)
        cls.option_ranges = {"lesson": (1, len(cls.table)), "steps": (0, 64), "planning": (0, 1000)}

    def __post_init__(self) -> None:
        check_options(self.name, {k: getattr(self, k) for k in self.option_ranges}, self.option_ranges)
        require(self.graph in self.graphs, f"task '{self.name}': graph must be one of {', '.join(self.graphs)}, "
                f"got {self.graph!r}")

    @property
    def lessons(self) -> int:
        """How many lessons the curriculum has."""
        return len(self.table)

    def at_lesson(self, lesson: int):
        """The same task at another lesson."""
        return dataclasses.replace(self, lesson=lesson)

    def draw_lesson(self, rng: np.random.Generator) -> Lesson:
        """The current lesson, or (with probability 0.1 once past lesson 1) an earlier one."""
        k = self.lesson
        if k > 1 and rng.random() < EARLIER_SHARE:
            k = int(rng.integers(1, k))
        return self.table[k - 1]

    def episode(self, rng: np.random.Generator) -> Episode:
        """One question (random graph of a lesson, or one of the real graph)."""
        if self.graph == "random":
            lo_n, hi_n, lo_d, hi_d, lo_l, hi_l = self.draw_lesson(rng)
            return self.random_episode(rng, int(rng.integers(lo_n, hi_n + 1)), (lo_d, hi_d),
                                       int(rng.integers(lo_l, hi_l + 1)))
        return self.real_episode(rng, self.steps or self.real_steps)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return encode_episodes([self.episode(rng) for _ in range(batch_size)], self.planning, rng)

    def random_episode(self, rng: np.random.Generator, nodes: int, degree: tuple[int, int], length: int) -> Episode:
        raise NotImplementedError

    def real_episode(self, rng: np.random.Generator, length: int) -> Episode:
        raise NotImplementedError


def _random_walk(graph: Graph, rng: np.random.Generator, length: int) -> list[Triple]:
    node, path = int(rng.integers(graph.size)), []
    for _ in range(length):
        out = graph.out_edges(node)
        e, d = out[int(rng.integers(len(out)))]
        path.append((node, e, d))
        node = d
    return path


def _traversal_episode(graph: Graph, path: list[Triple]) -> Episode:
    start = int(graph.labels[path[0][0]])
    query = [(start if k == 0 else None, e, None) for k, (_, e, _) in enumerate(path)]
    return Episode(graph, query, path)


@dataclass(frozen=True)
class TraversalTask(_GraphTask):
    """Follow a sequence of edge labels from a start node; answer the path's triples."""

    name: ClassVar[str] = "graph-traversal"
    env_id: ClassVar[str] = "heed/GraphTraversal-v0"
    table: ClassVar[tuple[Lesson, ...]] = TRAVERSAL_LESSONS
    real_steps: ClassVar[int] = 7
    graphs: ClassVar[tuple[str, ...]] = ("random", "underground")

    def random_episode(self, rng, nodes, degree, length):
        graph = random_graph(rng, nodes, degree)
        return _traversal_episode(graph, _random_walk(graph, rng, length))

    def real_episode(self, rng, length):
        graph = named_graph(self.graph).with_labels(rng)
        return _traversal_episode(graph, _random_walk(graph, rng, length))


def _shortest_episode(graph: Graph, start: int, goal: int) -> Episode:
    path = shortest_path(graph, start, goal)
    return Episode(graph, [(int(graph.labels[start]), None, int(graph.labels[goal]))], path, feedback=True)


@dataclass(frozen=True)
class ShortestPathTask(_GraphTask):
    """Answer a shortest path from start to goal, triple by triple, each answer fed back (structured prediction)."""

    planning: int = 10
    """empty steps between query and answer (the paper's 10)"""
    beta: float = 0.8
    """training feeds back the optimal planner's previous answer with this probability, the network's
    own otherwise (the paper's 0.8; 1 = teacher forcing)"""
    name: ClassVar[str] = "graph-shortest-path"
    feedback: ClassVar[bool] = True
    env_id: ClassVar[str] = "heed/GraphShortestPath-v0"
    pass_rate: ClassVar[float] = 0.8
    table: ClassVar[tuple[Lesson, ...]] = SHORTEST_PATH_LESSONS
    real_steps: ClassVar[int] = 4
    graphs: ClassVar[tuple[str, ...]] = ("random", "underground")

    def __post_init__(self) -> None:
        super().__post_init__()
        number = not isinstance(self.beta, bool) and isinstance(self.beta, (int, float))
        require(number and 0 <= self.beta <= 1,
                f"task '{self.name}': option beta must be a number in [0, 1], got {self.beta!r}")

    def random_episode(self, rng, nodes, degree, length):
        graph = random_graph(rng, nodes, degree)
        best: tuple[int, int, int] | None = None  # (|dist - length|, start, goal): the closest pair seen
        for _ in range(20):
            goal = int(rng.integers(graph.size))
            dist = distances_to(graph, goal)
            ok = np.flatnonzero(dist == length)
            if ok.size:
                return _shortest_episode(graph, int(rng.choice(ok)), goal)
            reach = np.flatnonzero(dist > 0)
            if reach.size:
                s = int(reach[np.argmin(np.abs(dist[reach] - length))])
                if best is None or abs(dist[s] - length) < best[0]:
                    best = (abs(int(dist[s]) - length), s, goal)
        if best is None:  # no node reaches another: impossible with out-degree >= 1
            raise RuntimeError("random graph without a reachable pair")
        return _shortest_episode(graph, best[1], best[2])

    def real_episode(self, rng, length):
        graph = named_graph(self.graph).with_labels(rng)
        while True:
            goal = int(rng.integers(graph.size))
            ok = np.flatnonzero(distances_to(graph, goal) == length)
            if ok.size:
                return _shortest_episode(graph, int(rng.choice(ok)), goal)


@dataclass(frozen=True)
class InferenceTask(_GraphTask):
    """Answer ``(start, relation, end)``, where the relation label aliases a sequence of edge labels."""

    planning: int = 10
    """empty steps between query and answer"""
    name: ClassVar[str] = "graph-inference"
    env_id: ClassVar[str] = "heed/GraphInference-v0"
    table: ClassVar[tuple[Lesson, ...]] = INFERENCE_LESSONS
    real_steps: ClassVar[int] = 4
    graphs: ClassVar[tuple[str, ...]] = ("random", "family-tree")

    def random_episode(self, rng, nodes, degree, length):
        table = relation_table()
        labels = [r for r, seq in table.items() if len(seq) == length]
        relation = int(rng.choice(labels))
        graph = random_graph(rng, nodes, (degree[0], min(degree[1], EDGE_ALPHABET)), edge_alphabet=EDGE_ALPHABET)
        start = node = int(rng.integers(graph.size))
        for label in table[relation]:  # plant the relation's path: relabel an out-edge where it is missing
            out = graph.out_edges(node)
            match = [d for e, d in out if e == label]
            if match:
                node = match[0]
                continue
            e, d = out[int(rng.integers(len(out)))]
            graph.edges[graph.edges.index((node, e, d))] = (node, int(label), d)
            node = d
        path = traverse(graph, start, table[relation])  # a later relabel can undo an earlier step: redraw
        if path is None:
            return self.random_episode(rng, nodes, degree, length)
        return self._answer(graph, start, relation, path[-1][2], table[relation])

    def real_episode(self, rng, length):
        graph = named_graph(self.graph).with_labels(rng, fixed_edge_labels=True)
        table = relation_table()
        choices = [(s, r) for r, seq in table.items() if len(seq) == length and r < RELATION_BASE + len(
            family_relations()) for s in range(graph.size) if len(endpoints(graph, s, seq)) == 1]
        require(bool(choices), f"task '{self.name}': the family tree has no {length}-step relation with one answer")
        start, relation = choices[int(rng.integers(len(choices)))]
        (end,) = endpoints(graph, start, table[relation])
        return self._answer(graph, start, relation, end, table[relation])

    @staticmethod
    def _answer(graph: Graph, start: int, relation: int, end: int, seq: tuple[int, ...]) -> Episode:
        query = [(int(graph.labels[start]), relation, None)]
        return Episode(graph, query, [(start, relation, end)], relation=seq)


__all__ = ["Episode", "InferenceTask", "ShortestPathTask", "TraversalTask", "encode_episodes", "relation_table",
           "traverse"]
