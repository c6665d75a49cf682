"""Graphs for the DNC graph tasks (Graves et al. 2016): the graph type, random graphs, the input
encoding and the oracles (traversal, BFS shortest path, relation endpoints).

A graph is a set of labelled triples ``(source, edge, destination)``. Labels are integers 0-999,
written as 3 decimal digits, each a 10-way one-hot: 30 channels per label, 90 per triple. Phase
channels follow the triple (see :data:`QUERY` and :data:`ANSWER`), 92 input channels in all. A target
is a triple as 9 digits (9 softmaxes of 10, loss kind ``"digits"``); a missing part of a query triple is
all zeros.

Random graphs follow the paper's Methods: ``N`` points uniform in the unit square; each node's ``K``
nearest neighbours (``K`` drawn per node from the lesson's range) are its out-edges; node labels are
distinct draws from 0-999 and each source node's edge labels are distinct draws from the edge alphabet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: labels are 0..LABELS-1, written as DIGITS decimal digits
LABELS = 1000
DIGITS = 3
#: channels of one encoded label and of one triple
LABEL_SIZE = DIGITS * 10
TRIPLE_SIZE = 3 * LABEL_SIZE
#: the phase channels after the triple: 1 on query steps, 1 on answer steps (planning steps: neither)
QUERY = TRIPLE_SIZE
ANSWER = TRIPLE_SIZE + 1
INPUT_SIZE = TRIPLE_SIZE + 2
#: a target triple: 9 digits, each a class of 10
TARGET_DIGITS = 3 * DIGITS

Triple = tuple[int, int, int]


def label_digits(label: int) -> list[int]:
    """``label`` (0-999) -> its 3 decimal digits, most significant first: 407 -> [4, 0, 7]."""
    if not 0 <= label < LABELS:
        raise ValueError(f"label {label} is outside 0..{LABELS - 1}")
    return [(label // 10 ** (DIGITS - 1 - i)) % 10 for i in range(DIGITS)]


def encode_triple(triple: Sequence[int | None], out: np.ndarray | None = None) -> np.ndarray:
    """A triple ``(s, e, d)`` -> float32 ``[90]``: label j's digit i is one-hot at ``30 j + 10 i + digit``.

    A part given as ``None`` stays all zeros (a query's missing part). Written into ``out`` when given.
    """
    vec = np.zeros(TRIPLE_SIZE, np.float32) if out is None else out
    for j, label in enumerate(triple):
        if label is None:
            continue
        for i, digit in enumerate(label_digits(int(label))):
            vec[LABEL_SIZE * j + 10 * i + digit] = 1.0
    return vec


def triple_digits(triple: Triple) -> np.ndarray:
    """The target of an answer step: int64 ``[9]``, the digits of source, edge and destination."""
    return np.asarray([d for label in triple for d in label_digits(int(label))], np.int64)


def digits_to_triple(digits: Sequence[int]) -> Triple:
    """The inverse of :func:`triple_digits`: 9 digits -> ``(s, e, d)``."""
    values = [int(d) for d in digits]
    labels = [sum(values[j * DIGITS + i] * 10 ** (DIGITS - 1 - i) for i in range(DIGITS)) for j in range(3)]
    return labels[0], labels[1], labels[2]


def decode_triple(vec: np.ndarray) -> tuple[int | None, int | None, int | None]:
    """The inverse of :func:`encode_triple` (a label with no one-hot digit decodes to ``None``)."""
    vec = np.asarray(vec)[:TRIPLE_SIZE].reshape(3, DIGITS, 10)
    parts: list[int | None] = []
    for j in range(3):
        if not vec[j].any():
            parts.append(None)
            continue
        parts.append(int(sum(int(np.argmax(vec[j, i])) * 10 ** (DIGITS - 1 - i) for i in range(DIGITS))))
    return parts[0], parts[1], parts[2]


def modal_digits(logits: np.ndarray) -> np.ndarray:
    """The modal output: ``[..., 9 * 10]`` logits (or probabilities) -> int64 ``[..., 9]`` digits (argmax of each softmax)."""
    logits = np.asarray(logits)
    return logits.reshape(*logits.shape[:-1], TARGET_DIGITS, 10).argmax(-1)


@dataclass
class Graph:
    """A labelled directed graph: node labels, and triples of node indices and edge labels.

    Attributes:
        labels: int ``[N]``, the label (0-999) of each node.
        edges: ``(source index, edge label, destination index)`` per edge.
        names: optional node names (real graphs); ``edge_names``: optional name per edge label.
        pos: optional ``[N, 2]`` coordinates (random points, or a map's schematic x/y).
    """

    labels: np.ndarray
    edges: list[Triple]
    names: list[str] = field(default_factory=list)
    edge_names: dict[int, str] = field(default_factory=dict)
    pos: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.labels)

    def out_edges(self, node: int) -> list[tuple[int, int]]:
        """``[(edge label, destination index), ...]`` of ``node``'s out-edges."""
        return [(e, d) for s, e, d in self.edges if s == node]

    def labelled(self, triple: Triple) -> Triple:
        """A triple of node indices -> the same triple in labels (what the network sees)."""
        s, e, d = triple
        return int(self.labels[s]), int(e), int(self.labels[d])


def random_graph(rng: np.random.Generator, nodes: int, degree: tuple[int, int],
                 edge_alphabet: int = LABELS) -> Graph:
    """Points uniform in the unit square; each node's K nearest neighbours are its out-edges.

    Args:
        rng: the generator; nodes: N (>= 2); degree: ``(lo, hi)``, K drawn per node, capped at N - 1;
        edge_alphabet: edge labels are distinct per source node, drawn from ``0..edge_alphabet-1``.
    """
    pos = rng.uniform(0.0, 1.0, size=(nodes, 2))
    labels = rng.choice(LABELS, size=nodes, replace=False)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    edges: list[Triple] = []
    for s in range(nodes):
        k = min(int(rng.integers(degree[0], degree[1] + 1)), nodes - 1, edge_alphabet)
        near = np.argsort(dist[s], kind="stable")[:k]
        for e, d in zip(rng.choice(edge_alphabet, size=k, replace=False), near):
            edges.append((s, int(e), int(d)))
    return Graph(labels=labels, edges=edges, pos=pos)


def traverse(graph: Graph, start: int, edge_labels: Sequence[int]) -> list[Triple] | None:
    """Follow ``edge_labels`` from ``start``; the path's triples (node indices), or ``None`` where a
    node has no out-edge of the next label. Where a label leaves a node twice, the first edge is taken."""
    path, node = [], start
    for label in edge_labels:
        nxt = [d for e, d in graph.out_edges(node) if e == label]
        if not nxt:
            return None
        path.append((node, int(label), nxt[0]))
        node = nxt[0]
    return path


def endpoints(graph: Graph, start: int, edge_labels: Sequence[int]) -> set[int]:
    """Every node reached from ``start`` along ``edge_labels`` (any branch where a label repeats)."""
    frontier = {start}
    for label in edge_labels:
        frontier = {d for s, e, d in graph.edges if s in frontier and e == label}
    return frontier


def distances_to(graph: Graph, goal: int) -> np.ndarray:
    """Hops from every node to ``goal`` (BFS over reversed edges); -1 where ``goal`` is unreachable."""
    into: dict[int, list[int]] = {}
    for s, _, d in graph.edges:
        into.setdefault(d, []).append(s)
    dist = np.full(graph.size, -1, np.int64)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        node = queue.popleft()
        for s in into.get(node, []):
            if dist[s] < 0:
                dist[s] = dist[node] + 1
                queue.append(s)
    return dist


def next_step(graph: Graph, node: int, dist: np.ndarray) -> Triple:
    """The optimal planner's move from ``node`` (one hop closer to the goal of ``dist``); ties go to
    the destination with the smallest label, so the planner is deterministic."""
    moves = [(int(graph.labels[d]), (node, e, d)) for e, d in graph.out_edges(node) if dist[d] == dist[node] - 1]
    return min(moves)[1]


def shortest_path(graph: Graph, start: int, goal: int) -> list[Triple] | None:
    """A shortest path from ``start`` to ``goal`` as triples (the planner's tie-break), or ``None``."""
    dist = distances_to(graph, goal)
    if dist[start] < 0:
        return None
    path, node = [], start
    while node != goal:
        path.append(next_step(graph, node, dist))
        node = path[-1][2]
    return path


def is_shortest_path(graph: Graph, start: int, goal: int, path: Sequence[Triple]) -> bool:
    """Whether ``path`` (triples of node indices) is one of the shortest paths from ``start`` to ``goal``."""
    dist = distances_to(graph, goal)
    if dist[start] < 0 or len(path) != dist[start]:
        return False
    node, edges = start, set(graph.edges)
    for triple in path:
        if triple[0] != node or tuple(triple) not in edges:
            return False
        node = triple[2]
    return node == goal
