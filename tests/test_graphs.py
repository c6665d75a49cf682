"""The DNC graph tasks: encoding, random graphs, oracles against networkx, the real graphs, the
``digits`` loss and its modal evaluation, the env, and the curriculum (advance and resume)."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch

from heed.envs import graph_encoding as ge
from heed.envs.graphs import InferenceTask, ShortestPathTask, TraversalTask, encode_episodes, relation_table
from heed.envs.real_graphs import FAMILY_EDGE_TYPES, family_relations, load_json, named_graph


def _nx(graph: ge.Graph) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(graph.size))
    for s, e, d in graph.edges:
        g.add_edge(s, d, label=e)
    return g


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        triple = tuple(int(x) for x in rng.integers(0, 1000, size=3))
        vec = ge.encode_triple(triple)
        assert vec.shape == (90,) and vec.sum() == 9
        assert ge.decode_triple(vec) == triple
        assert ge.digits_to_triple(ge.triple_digits(triple)) == triple
    assert ge.decode_triple(ge.encode_triple((7, None, 950))) == (7, None, 950)
    vec = ge.encode_triple((407, 0, 999))  # by hand: label j, digit i at 30 j + 10 i + digit
    assert set(np.flatnonzero(vec)) == {4, 10, 27, 30, 40, 50, 69, 79, 89}
    with pytest.raises(ValueError):
        ge.label_digits(1000)


def test_random_graph_is_k_nearest_neighbours():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(3, 15))
        g = ge.random_graph(rng, n, (2, 4))
        assert len(set(g.labels.tolist())) == n
        for s in range(n):
            out = g.out_edges(s)
            assert 2 <= len(out) <= min(4, n - 1) or len(out) == n - 1
            assert len({e for e, _ in out}) == len(out)  # edge labels unique per source
            dist = np.linalg.norm(g.pos - g.pos[s], axis=1)
            others = sorted(dist[d] for d in range(n) if d != s)
            assert sorted(dist[d] for _, d in out) == pytest.approx(others[: len(out)])


def test_traversal_and_shortest_path_oracles_against_networkx():
    rng = np.random.default_rng(2)
    for _ in range(30):
        g = ge.random_graph(rng, int(rng.integers(4, 12)), (2, 3))
        ref = _nx(g)
        node, labels, nodes = int(rng.integers(g.size)), [], []
        start = node
        for _ in range(5):  # a walk through networkx's edges
            _, d, data = list(ref.out_edges(node, data=True))[int(rng.integers(ref.out_degree(node)))]
            labels.append(data["label"])
            nodes.append(d)
            node = d
        path = ge.traverse(g, start, labels)
        assert [d for _, _, d in path] == nodes and [e for _, e, _ in path] == labels
        lengths = nx.single_source_shortest_path_length(ref, start)
        for goal in range(g.size):
            sp = ge.shortest_path(g, start, goal)
            if goal not in lengths:
                assert sp is None
                continue
            assert len(sp) == lengths[goal]
            assert [start] + [d for _, _, d in sp] in [list(p) for p in nx.all_shortest_paths(ref, start, goal)]
            assert ge.is_shortest_path(g, start, goal, sp)
    assert not ge.is_shortest_path(g, 0, 0, [(0, 0, 0)])


def test_episode_encoding_holds_graph_query_and_answer():
    rng = np.random.default_rng(3)
    task = TraversalTask(lesson=5)
    ep = task.episode(rng)
    batch = encode_episodes([ep], planning=2, rng=rng)
    x, y, m = batch.inputs[0], batch.targets[0], batch.mask[0]
    E, Q, A = len(ep.graph.edges), len(ep.query), len(ep.answer)
    assert x.shape == (E + Q + 2 + A, 92) and y.shape == (E + Q + 2 + A, 9)
    assert {ge.decode_triple(v) for v in x[:E]} == {ep.graph.labelled(t) for t in ep.graph.edges}
    assert x[E:E + Q, ge.QUERY].all() and not x[:E, ge.QUERY].any() and not x[E + Q:E + Q + 2].any()
    assert ge.decode_triple(x[E]) == (int(ep.graph.labels[ep.answer[0][0]]), ep.answer[0][1], None)
    assert np.flatnonzero(m).tolist() == list(range(E + Q + 2, E + Q + 2 + A))
    answers = [ge.digits_to_triple(d) for d in y[m > 0]]
    assert answers == [ep.graph.labelled(t) for t in ge.traverse(ep.graph, ep.answer[0][0], [q[1] for q in ep.query])]


def test_shortest_path_feeds_back_the_previous_answer():
    rng = np.random.default_rng(4)
    task = ShortestPathTask(lesson=15, planning=3)
    ep = next(e for e in (task.episode(rng) for _ in range(50)) if len(e.answer) >= 3)
    batch = encode_episodes([ep], task.planning, rng)
    steps = np.flatnonzero(batch.mask[0])
    assert ge.decode_triple(batch.inputs[0, steps[0]]) == (None, None, None)
    for k in range(1, len(steps)):
        assert ge.decode_triple(batch.inputs[0, steps[k]]) == ep.graph.labelled(ep.answer[k - 1])
    start, goal = ep.answer[0][0], ep.answer[-1][2]
    assert ge.is_shortest_path(ep.graph, start, goal, ep.answer)
    assert len(ep.answer) == nx.shortest_path_length(_nx(ep.graph), start, goal)


def test_inference_answers_follow_the_relation():
    rng = np.random.default_rng(5)
    table = relation_table()
    assert len(table) == 400 and all(2 <= len(s) <= 5 for s in table.values())
    for lesson in (1, 17):
        task = InferenceTask(lesson=lesson)
        for _ in range(20):
            ep = task.episode(rng)
            (start, relation, end), = ep.answer
            assert ep.relation == table[relation]
            assert ge.endpoints(ep.graph, start, table[relation]) == {end}
    ep = InferenceTask(graph="family-tree").episode(rng)
    (start, relation, end), = ep.answer
    assert len(ep.relation) == 4 and ge.endpoints(ep.graph, start, ep.relation) == {end}


def test_underground_file_is_consistent():
    data = load_json("underground")
    for line in data["lines"]:
        assert set(line["stations"]) <= set(data["stations"]), line["line"]
    g = named_graph("underground")
    ref = _nx(g.with_labels(None))
    assert nx.is_strongly_connected(ref) and len(g.names) == 64
    for s in range(len(g.names)):
        labels = [e for a, e, _ in g.edges if a == s]
        assert len(labels) == len(set(labels)), g.names[s]  # a line direction leaves a station once
    names = {e: n for e, n in enumerate(g.edge_names)}
    route = ge.traverse(g.with_labels(None), g.index("Oxford Circus"),
                        [g.edge_names.index("Central line eastbound"), g.edge_names.index("Central line eastbound")])
    assert [g.names[d] for _, _, d in route] == ["Tottenham Court Road", "Holborn"]
    assert "Victoria line northbound" in names.values() and len(names) == 26
    hops = nx.shortest_path_length(ref, g.index("Moorgate"), g.index("Piccadilly Circus"))
    assert len(ge.shortest_path(g.with_labels(None), g.index("Moorgate"), g.index("Piccadilly Circus"))) == hops


def test_family_tree_file_is_consistent_and_relations_resolve():
    data = load_json("family-tree")
    people = data["people"]
    assert len(people) == 50 and tuple(data["edge_types"]) == FAMILY_EDGE_TYPES
    for fam in data["families"]:
        assert {fam["father"], fam["mother"], *fam["children"]} <= set(people)
        assert people[fam["father"]] == "m" and people[fam["mother"]] == "f"
    g = named_graph("family-tree")
    graph = g.with_labels(None)
    assert nx.is_weakly_connected(_nx(graph))
    for name, seq in family_relations().items():
        assert any(ge.endpoints(graph, s, seq) for s in range(graph.size)), name
    uncle = ge.endpoints(graph, g.index("Freya"), family_relations()["maternal great-uncle"])
    assert {g.names[i] for i in uncle} == {"Ian"}  # Freya -> Fiona -> Helen -> her brother Ian


@pytest.mark.parametrize("task", [TraversalTask(graph="underground"), ShortestPathTask(graph="underground"),
                                  InferenceTask(graph="family-tree")])
def test_questions_on_the_real_graphs(task):
    batch = task.sample(3, np.random.default_rng(6))
    edges = len(named_graph(task.graph).edges)
    assert batch.inputs.shape[1] == edges + {"graph-traversal": 7 + 7, "graph-shortest-path": 1 + 10 + 4,
                                              "graph-inference": 1 + 10 + 1}[task.name]
    assert batch.mask.sum(1).tolist() == [{"graph-traversal": 7, "graph-shortest-path": 4,
                                           "graph-inference": 1}[task.name]] * 3


def test_digits_loss_and_modal_evaluation_on_a_hand_built_output():
    from heed.agents.trainers.sequence_utils import sequence_loss

    targets = torch.tensor([[[1, 2, 3, 4, 5, 6, 7, 8, 9], [0] * 9, [9] * 9]])  # [1, 3, 9]
    logits = torch.full((1, 3, 9, 10), -5.0)
    logits.scatter_(-1, targets.unsqueeze(-1), 5.0)  # the modal output is the target everywhere ...
    logits[0, 1, 4] = torch.tensor([0.0, 0, 0, 9, 0, 0, 0, 0, 0, 0])  # ... but digit 4 of step 1 says 3
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # step 2 is not scored
    loss, metrics = sequence_loss(logits.reshape(1, 3, 90), targets, mask, "digits")
    assert float(metrics["error_rate"]) == 0.5 and float(metrics["digit_error_rate"]) == pytest.approx(1 / 18)
    assert float(metrics["sequence_error_rate"]) == 1.0
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)[0, :2].mean()
    assert float(loss) == pytest.approx(float(expected))
    digits = ge.modal_digits(logits.reshape(1, 3, 90).numpy())
    assert ge.digits_to_triple(digits[0, 0]) == (123, 456, 789) and ge.digits_to_triple(digits[0, 1]) == (0, 30, 0)


def test_env_scores_a_triple():
    from heed.envs.registration import make_env

    env = make_env("heed/GraphTraversal-v0")
    assert env.action_space.nvec.tolist() == [10] * 9
    obs, info = env.reset(seed=0)
    total, wrong = 0.0, 0
    for _ in range(info["length"]):
        action = info["target"].copy()
        if info["scored"] and wrong == 0:
            action[0] = (action[0] + 1) % 10  # one wrong digit: the triple is wrong
            wrong = 1
        obs, reward, terminated, _, info = env.step(action)
        total += reward
    assert terminated and total == -1.0


def test_bad_options_are_one_line_errors():
    from heed.envs.errors import HeedError

    with pytest.raises(HeedError, match="lesson"):
        TraversalTask(lesson=15)
    with pytest.raises(HeedError, match="graph"):
        TraversalTask(graph="family-tree")


def test_curriculum_advances_and_resume_continues(tmp_path, monkeypatch):
    from heed.agents.common.cli import parse_config
    from heed.agents.trainers.supervised import Config, main

    monkeypatch.setattr(TraversalTask, "pass_rate", -1.0)  # every evaluation passes: the mechanism alone
    run_dir = tmp_path / "run"
    args = ["--task", "graph-traversal", "--batch-size", "4", "--eval-every", "8", "--eval-sequences", "4",
            "--log-every", "4", "--image-every", "0", "--threads", "1", "--no-progress", "--run-dir", str(run_dir)]
    first = main(parse_config(Config, args=[*args, "--total-sequences", "16", "model:lstm", "--model.hidden-size", "8"]))
    assert first["lesson"] == 3  # evaluated at 8 and 16: lesson 1 -> 2 -> 3
    second = main(parse_config(Config, args=["--resume", str(run_dir), "--total-sequences", "24", "--no-progress"]))
    assert second["lesson"] == 4 and second["sequences"] == 24
    lessons = [json.loads(line)["lesson"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lessons == [1, 2, 3]  # metrics hold the lesson each evaluation measured
    monkeypatch.setattr(TraversalTask, "pass_rate", 2.0)  # nothing passes: the lesson stays
    third = main(parse_config(Config, args=["--resume", str(run_dir), "--total-sequences", "32", "--no-progress"]))
    assert third["lesson"] == 4


@pytest.mark.parametrize("task", ["graph-traversal", "graph-shortest-path"])
def test_graph_eval_scores_and_draws(tmp_path, task):
    from heed.agents.common.cli import parse_config
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import graph_eval

    run_dir = tmp_path / "run"
    main(parse_config(Config, args=["--task", task, "--batch-size", "2", "--total-sequences", "2", "--eval-sequences",
                                    "2", "--image-every", "0", "--threads", "1", "--no-progress", "--run-dir",
                                    str(run_dir), "model:dnc", "--model.hidden-size", "8", "--model.memory-size", "8",
                                    "--model.memory-width", "4"]))
    out = graph_eval.main(graph_eval.Config(checkpoint=run_dir, questions=3, out_dir=tmp_path / "eval"))
    assert 0.0 <= out["question_accuracy"] <= out["triple_accuracy"] <= 1.0 or out["triple_accuracy"] == 0.0
    assert {p.name for p in (tmp_path / "eval").iterdir()} >= {"graph_eval.json", "memory.png", "answer_map.png"}


def test_graph_eval_scoring_by_hand():
    from heed.scripts.graph_eval import score

    graph = named_graph("underground").with_labels(None)
    g = named_graph("underground")
    ep = ShortestPathTask(graph="underground").real_episode(np.random.default_rng(0), 2)
    start, goal = ep.answer[0][0], ep.answer[-1][2]
    batch = encode_episodes([ep], 0, np.random.default_rng(0))
    right = np.zeros((1, batch.mask.shape[1], 9), np.int64)
    steps = np.flatnonzero(batch.mask[0])
    for t, triple in zip(steps, ep.answer):
        right[0, t] = ge.triple_digits(ep.graph.labelled(triple))
    assert score([ep], right, batch.mask) == ([[True, True]], [True])
    wrong = right.copy()
    wrong[0, steps[1], 0] = (wrong[0, steps[1], 0] + 1) % 10
    assert score([ep], wrong, batch.mask)[1] == [False]
    assert g.names[start] and graph.size == len(g.names) and start != goal


def _shortest_path_batch(beta: float = 0.8, count: int = 6):
    """Underground shortest-path questions of 4 answers (3 of them fed back) as tensors."""
    task = ShortestPathTask(graph="underground", beta=beta)
    batch = task.sample(count, np.random.default_rng(3))
    return torch.as_tensor(batch.inputs), torch.as_tensor(batch.mask), batch


def _small_model(name: str = "lstm"):
    from heed.agents.parts import CORES, build_model

    torch.manual_seed(0)
    fields = {"lstm": {"hidden_size": 16}, "dnc": {"hidden_size": 8, "memory_size": 8, "memory_width": 4}}[name]
    return build_model(CORES[name][0](**fields), ge.INPUT_SIZE, ge.TARGET_DIGITS * 10).eval()


def _own_answers(model, inputs: torch.Tensor) -> torch.Tensor:
    """The model's modal answers as one-hot triples ``[B, T, 90]``, by a whole-sequence forward pass."""
    with torch.no_grad():
        logits = model(inputs)[0]
    return torch.nn.functional.one_hot(logits.reshape(*logits.shape[:2], 9, 10).argmax(-1), 10).flatten(2).float()


def test_feed_back_beta_one_is_the_planners_batch():
    from heed.agents.trainers.sequence_utils import feed_back

    inputs, mask, batch = _shortest_path_batch(beta=1.0)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert feed_back(_small_model(), inputs, mask, 1.0, rng) is inputs
    assert rng.bit_generator.state == state  # nothing drawn: training at beta = 1 is today's, draw for draw
    ep = ShortestPathTask(graph="underground").episode(np.random.default_rng(3))  # the batch's first question
    steps = np.flatnonzero(batch.mask[0])
    assert [ge.decode_triple(batch.inputs[0, t]) for t in steps[1:]] == [ep.graph.labelled(a) for a in ep.answer[:-1]]


@pytest.mark.parametrize("core", ["lstm", "dnc"])
def test_feed_back_beta_zero_feeds_the_models_own_answers(core):
    from heed.agents.trainers.sequence_utils import feed_back

    model = _small_model(core)
    inputs, mask, _ = _shortest_path_batch()
    before = inputs.clone()
    out = feed_back(model, inputs, mask, 0.0, np.random.default_rng(0))
    assert torch.equal(inputs, before)  # not mutated
    own = _own_answers(model, out)  # the reference: the plain unroll over the inputs actually fed
    changed = 0
    for b in range(inputs.shape[0]):
        steps = torch.nonzero(mask[b] > 0).flatten().tolist()
        assert torch.equal(out[b, steps[0]], inputs[b, steps[0]])  # the first answer gets nothing fed back
        for p, t in zip(steps, steps[1:]):
            assert torch.equal(out[b, t, :90], own[b, p])
            assert torch.equal(out[b, t, 90:], inputs[b, t, 90:])  # phase channels kept
            changed += int(not torch.equal(out[b, t], inputs[b, t]))
        others = [t for t in range(inputs.shape[1]) if t not in steps[1:]]
        assert torch.equal(out[b, others], inputs[b, others])
    assert changed > 0  # an untrained model does not answer as the planner does


def test_feed_back_mixture_follows_the_coins():
    from heed.agents.trainers.sequence_utils import feed_back

    model = _small_model()
    inputs, mask, _ = _shortest_path_batch(count=16)
    out = feed_back(model, inputs, mask, 0.5, np.random.default_rng(7))
    coins = np.random.default_rng(7).random(tuple(mask.shape)) >= 0.5  # True: the model's own answer
    own = _own_answers(model, out)
    kinds = set()
    for b in range(inputs.shape[0]):
        steps = torch.nonzero(mask[b] > 0).flatten().tolist()
        for p, t in zip(steps, steps[1:]):
            expected = own[b, p] if coins[b, t] else inputs[b, t, :90]
            assert torch.equal(out[b, t, :90], expected)
            kinds.add(bool(coins[b, t]))
    assert kinds == {True, False}
    rows = torch.zeros(inputs.shape[0], dtype=torch.bool)
    assert torch.equal(feed_back(model, inputs, mask, 0.0, np.random.default_rng(0), rows=rows), inputs)


def test_feed_back_needs_a_core_and_a_valid_beta():
    from heed.agents.parts import MODELS, build_model
    from heed.agents.trainers.sequence_utils import feed_back
    from heed.envs.errors import HeedError

    inputs, mask, _ = _shortest_path_batch()
    transformer = build_model(MODELS["transformer"][0](), ge.INPUT_SIZE, 90)
    with pytest.raises(HeedError, match="beta=1"):
        feed_back(transformer, inputs, mask, 0.8, np.random.default_rng(0))
    for beta in (1.5, -0.1, True, "x"):
        with pytest.raises(HeedError, match="beta"):
            ShortestPathTask(beta=beta)


def test_shortest_path_training_mixes_in_its_own_answers(tmp_path, monkeypatch):
    from heed.agents.common.cli import parse_config
    from heed.agents.trainers import sequence_utils
    from heed.agents.trainers.supervised import Config, main

    calls = []
    real = sequence_utils.feed_back
    monkeypatch.setattr(sequence_utils, "feed_back", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    args = ["--batch-size", "4", "--total-sequences", "8", "--eval-sequences", "4", "--image-every", "0",
            "--threads", "1", "--no-progress"]
    model = ["model:lstm", "--model.hidden-size", "8"]
    task = ["--task", "graph-shortest-path"]
    main(parse_config(Config, args=[*task, *args, "--run-dir", str(tmp_path / "a"), "--task-options",
                                    "lesson=4,beta=0.5", *model]))
    assert calls == [0.5, 0.5]
    main(parse_config(Config, args=[*task, *args, "--run-dir", str(tmp_path / "b"), *model]))
    assert calls[2:] == [0.8, 0.8]  # the paper's beta by default
    main(parse_config(Config, args=["--task", "graph-traversal", *args, "--run-dir", str(tmp_path / "c"), *model]))
    assert len(calls) == 4  # traversal feeds nothing back


def test_curriculum_curve_command(tmp_path, monkeypatch):
    from heed.agents.common.cli import parse_config
    from heed.agents.trainers.supervised import Config, main
    from heed.analysis.graph_figures import read_curriculum
    from heed.envs.errors import HeedError
    from heed.scripts import graph_eval

    monkeypatch.setattr(TraversalTask, "pass_rate", -1.0)  # every evaluation passes: the lessons climb
    run_dir = tmp_path / "run"
    main(parse_config(Config, args=["--task", "graph-traversal", "--batch-size", "4", "--eval-every", "8",
                                    "--eval-sequences", "4", "--total-sequences", "24", "--image-every", "0",
                                    "--threads", "1", "--no-progress", "--run-dir", str(run_dir), "model:lstm",
                                    "--model.hidden-size", "8"]))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = read_curriculum(run_dir)
    assert curve["sequences"].tolist() == [8, 16, 24] and curve["lesson"].tolist() == [1, 2, 3]
    assert curve["accuracy"].tolist() == [1 - r["eval_error_rate"] for r in rows]
    assert curve["cpu_seconds"].tolist() == [r["cpu_seconds"] for r in rows]
    out = tmp_path / "figs" / "curve.png"
    last = graph_eval.main(parse_config(graph_eval.Config, args=["--curve", str(run_dir), str(run_dir),
                                                                  "--out", str(out)]))
    assert out.read_bytes()[:4] == b"\x89PNG" and len(last) == 2  # a run given twice is drawn twice
    assert last["run"]["lesson"] == 3 and last["run"]["sequences"] == 24
    for args, match in [([], "either"), (["--checkpoint", str(run_dir), "--curve", str(run_dir)], "either"),
                        (["--curve", str(run_dir), "--out", str(tmp_path / "c.txt")], "png"),
                        (["--curve", str(tmp_path)], "does not exist")]:
        with pytest.raises(HeedError, match=match):
            graph_eval.main(parse_config(graph_eval.Config, args=args))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"sequences": 1}\n')
    with pytest.raises(HeedError, match="line 1"):
        read_curriculum(tmp_path / "bad")
