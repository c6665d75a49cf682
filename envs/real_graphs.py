"""The two real test graphs of the DNC paper, written by hand for heed: the Zone 1 London Underground
(``envs/data/london_underground.json``) and an invented family tree (``envs/data/family_tree.json``).

Both load as :class:`~heed.envs.graph_encoding.Graph` with names. Node labels are drawn afresh for
every question (random distinct labels 0-999, as in training); the Underground's 26 edge names
("Central line eastbound", ...) too; the family tree's 8 edge types keep the fixed labels 0-7 that the
inference task's relation table is written in (:data:`FAMILY_EDGE_TYPES` order), so that a relation
such as "maternal great-uncle" means the same edge sequence in training and test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from heed.envs.errors import HeedError
from heed.envs.graph_encoding import LABELS, Graph

REAL_GRAPHS = ("underground", "family-tree")
_FILES = {"underground": "london_underground.json", "family-tree": "family_tree.json"}


@cache
def load_json(name: str) -> dict[str, Any]:
    """The shipped data file of ``name`` ("underground" or "family-tree"), parsed."""
    if name not in _FILES:
        raise HeedError(f"unknown graph '{name}': use {', '.join(REAL_GRAPHS)}")
    text = resources.files("heed.envs").joinpath("data", _FILES[name]).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class NamedGraph:
    """A real graph by name: station/person names, edges as ``(source, edge type, destination)``
    indices, the edge type names, and ``[N, 2]`` map coordinates (x east, y north; family: generation)."""

    names: tuple[str, ...]
    edges: tuple[tuple[int, int, int], ...]
    edge_names: tuple[str, ...]
    pos: np.ndarray

    def index(self, name: str) -> int:
        return self.names.index(name)

    def with_labels(self, rng: np.random.Generator | None, fixed_edge_labels: bool = False) -> Graph:
        """This graph with fresh random node labels (and edge labels unless ``fixed_edge_labels``:
        then edge type i has label i). ``rng=None`` numbers nodes 0..N-1 (for tests and figures)."""
        n, k = len(self.names), len(self.edge_names)
        nodes = np.arange(n) if rng is None else rng.choice(LABELS, size=n, replace=False)
        types = np.arange(k) if (rng is None or fixed_edge_labels) else rng.choice(LABELS, size=k, replace=False)
        edges = [(s, int(types[e]), d) for s, e, d in self.edges]
        return Graph(labels=np.asarray(nodes), edges=edges, names=list(self.names),
                     edge_names={int(types[i]): name for i, name in enumerate(self.edge_names)}, pos=self.pos)


def _underground() -> NamedGraph:
    data = load_json("underground")
    names = tuple(data["stations"])
    latlon = np.asarray([data["stations"][s] for s in names], np.float64)
    pos = np.stack([(latlon[:, 1] + 0.14) * 0.62, latlon[:, 0] - 51.51], axis=1)  # x east, y north (~equal scale)
    edge_names: list[str] = []
    edges: list[tuple[int, int, int]] = []
    for line in data["lines"]:
        stops = [names.index(s) for s in line["stations"]]
        pairs = list(zip(stops[:-1], stops[1:])) + ([(stops[-1], stops[0])] if line.get("loop") else [])
        for direction, ordered in ((line["forward"], pairs), (line["backward"], [(b, a) for a, b in pairs])):
            label = f"{line['line']} {direction}"
            if label not in edge_names:
                edge_names.append(label)
            edges += [(a, edge_names.index(label), b) for a, b in ordered]
    return NamedGraph(names, tuple(edges), tuple(edge_names), pos)


def _family_tree() -> NamedGraph:
    data = load_json("family-tree")
    people = data["people"]
    names = tuple(people)
    types = data["edge_types"]
    edges: set[tuple[int, int, int]] = set()

    def add(a: str, kind: str, b: str) -> None:
        edges.add((names.index(a), types.index(kind), names.index(b)))

    generation = dict.fromkeys(names, 0)
    for fam in data["families"]:
        father, mother, children = fam["father"], fam["mother"], fam["children"]
        add(father, "wife", mother)
        add(mother, "husband", father)
        for child in children:
            generation[child] = max(generation[father], generation[mother]) + 1
            add(child, "father", father)
            add(child, "mother", mother)
            for parent in (father, mother):
                add(parent, "son" if people[child] == "m" else "daughter", child)
            for other in children:
                if other != child:
                    add(child, "brother" if people[other] == "m" else "sister", other)
    for fam in data["families"]:  # spouses who married in sit beside their partner's generation
        gen = max(generation[fam["father"]], generation[fam["mother"]])
        generation[fam["father"]] = generation[fam["mother"]] = gen
    order: dict[int, int] = {}
    pos = np.zeros((len(names), 2))
    for i, name in enumerate(names):
        g = generation[name]
        pos[i] = (order.get(g, 0), -g)
        order[g] = order.get(g, 0) + 1
    return NamedGraph(names, tuple(sorted(edges)), tuple(types), pos)


@cache
def named_graph(name: str) -> NamedGraph:
    """The real graph ``name`` ("underground" or "family-tree")."""
    if name not in REAL_GRAPHS:
        raise HeedError(f"unknown graph '{name}': use {', '.join(REAL_GRAPHS)}")
    return _underground() if name == "underground" else _family_tree()


def family_relations() -> dict[str, tuple[int, ...]]:
    """The family tree's relations: name -> the edge types (indices) it aliases."""
    data = load_json("family-tree")
    return {name: tuple(data["edge_types"].index(e) for e in seq) for name, seq in data["relations"].items()}


#: the family tree's edge types, in the order of their fixed labels 0-7
FAMILY_EDGE_TYPES: tuple[str, ...] = ("father", "mother", "son", "daughter", "husband", "wife", "brother", "sister")
