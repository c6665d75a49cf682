"""Translation-like tasks, the encoder-decoders and their measures (issue 15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heed.agents.common.errors import HeedError
from heed.agents.parts import build_model
from heed.agents.seq2seq import (
    EncoderDecoder,
    RNNEncDecConfig,
    RNNSearchConfig,
    additive_scores,
    attend,
    beam_search,
    dot_scores,
    masked_softmax,
)
from heed.analysis.translation import alignment_share, bleu, by_length
from heed.envs.translation import MONTHS, DateTask, TranslationTask, encode_pairs

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the grammar -------------------------------------------------------------------------------------


def test_translation_alignment_is_a_permutation_consistent_with_the_words():
    task = TranslationTask()
    rng = np.random.default_rng(0)
    lengths = []
    for pair in task.sample_pairs(300, rng):
        source, target = task.words(pair)
        lengths.append(len(source))
        assert sorted(pair.alignment) == list(range(len(source)))  # a permutation
        for de, j in zip(target, pair.alignment):  # and each target word renders its source word
            en = source[j]
            if en == "the":
                assert de in ("der", "die", "das")
            elif en == "a":
                assert de in ("ein", "eine")
            elif en in ("of", "to"):
                assert de == {"of": "des", "to": "zu"}[en]
            elif en[0].isupper() or en == ".":
                assert de == en  # names and the full stop are copied
    assert min(lengths) <= 5 and max(lengths) >= 50


def test_verb_final_infinitive_and_agreement():
    """Verb-final infinitive: "to V the ADJ N of NAME" -> "die ADJ N des NAME zu V"; article and adjectives agree with N's gender."""
    from heed.envs.translation import DEFINITE, INDEFINITE, NOUNS, STRONG

    gender = {en: g for en, _, g in NOUNS}
    task = TranslationTask()
    infinitives = agreements = 0
    for pair in task.sample_pairs(300, np.random.default_rng(1)):
        source, target = task.words(pair)
        where = {j: i for i, j in enumerate(pair.alignment)}  # source index -> target index
        for j, en in enumerate(source):
            if en in ("the", "a"):
                k = next(k for k in range(j + 1, len(source)) if source[k] in gender)
                g = gender[source[k]]
                assert target[where[j]] == (DEFINITE if en == "the" else INDEFINITE)[g]
                for a in range(j + 1, k):  # adjectives: -e after der/die/das, -er/-e/-es after ein/eine
                    assert target[where[a]].endswith("e" if en == "the" else STRONG[g])
                    agreements += 1
            if en == "to" and source[j + 2 : j + 3] in (["the"], ["a"]):
                k = next(k for k in range(j + 3, len(source)) if source[k] in gender)
                k += 2 if source[k + 1 : k + 2] == ["of"] else 0
                zu = where[j]
                assert target[zu] == "zu" and where[j + 1] == zu + 1  # zu V ...
                assert max(where[o] for o in range(j + 2, k + 1)) < zu  # ... after the whole object
                infinitives += 1
    assert infinitives > 20 and agreements > 20


def test_date_alignment_points_at_the_rendered_parts():
    task = DateTask()
    for pair in task.sample_pairs(200, np.random.default_rng(2)):
        source, target = task.words(pair)
        year, month, day = (source[pair.alignment[i]] for i in (0, 2, 4))
        assert (
            target[0] == year
            and target[1] == target[3] == "-"
            and pair.alignment[1] == pair.alignment[3] == -1
        )
        assert int(target[4]) == int("".join(c for c in day if c.isdigit()))
        assert target[2] == f"{[m[:3].lower() for m in MONTHS].index(month[:3]) + 1:02d}"


def test_held_out_split_is_disjoint_and_options_are_checked():
    train = {p.source for p in DateTask().sample_pairs(600, np.random.default_rng(3))}
    test = {p.source for p in DateTask(split="test").sample_pairs(60, np.random.default_rng(3))}
    assert train and test and not train & test
    for bad in ({"split": "dev"}, {"max_clauses": 0}, {"max_words": 2}):
        with pytest.raises(HeedError):
            TranslationTask(**bad)


def test_layout_teacher_forcing():
    task = TranslationTask(max_clauses=2)
    pairs = task.sample_pairs(3, np.random.default_rng(4))
    batch = encode_pairs(pairs, len(task.source_vocab), task.output_size)
    vs, s = len(task.source_vocab), max(len(p.source) for p in pairs)
    for b, pair in enumerate(pairs):
        n, m = len(pair.source), len(pair.target)
        assert list(batch.inputs[b, :n, :vs].argmax(-1)) == list(pair.source)
        assert batch.inputs[b, n:s].sum() == 0  # source padding is all zero
        prev = batch.inputs[b, s : s + m + 1, vs : vs + task.output_size].argmax(-1)
        assert list(prev) == [0, *pair.target]  # the previous target word, </s> first
        assert list(batch.targets[b, s : s + m + 1]) == [*pair.target, 0]
        assert batch.mask[b].sum() == m + 1 and batch.mask[b, :s].sum() == 0


# --- attention ---------------------------------------------------------------------------------------


def test_attention_weights_sum_to_one_and_a_one_hot_key_is_found():
    torch.manual_seed(0)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    for scores in (
        additive_scores(torch.randn(2, 4), torch.randn(2, 5, 4), torch.randn(4)),
        dot_scores(torch.randn(2, 4), torch.randn(2, 5, 4)),
    ):
        alpha = masked_softmax(scores, valid)
        assert torch.allclose(alpha.sum(-1), torch.ones(2)) and (alpha[1, 3:] == 0).all()
    keys = torch.eye(5)[None] * 20.0  # key j is the one-hot e_j
    query = torch.eye(5)[[3]]  # matches key 3 only
    alpha, _ = attend(dot_scores(query, keys), torch.ones(1, 5, dtype=torch.bool), torch.randn(1, 5, 2))
    assert alpha.argmax().item() == 3 and alpha[0, 3] > 0.99


def test_key_value_readout_is_the_weighted_sum_of_values():
    torch.manual_seed(1)
    scores, values = torch.randn(3, 6), torch.randn(3, 6, 4)
    valid = torch.ones(3, 6, dtype=torch.bool)
    alpha, readout = attend(scores, valid, values)
    by_hand = np.array(
        [
            [
                sum(math.exp(s) * v[d] for s, v in zip(row, vals)) / sum(math.exp(s) for s in row)
                for d in range(4)
            ]
            for row, vals in zip(scores.tolist(), values.tolist())
        ]
    )
    assert np.allclose(readout.numpy(), by_hand, atol=1e-5)
    model = EncoderDecoder(
        9, 3, RNNSearchConfig(hidden_size=4, embed_size=3, attention="key-value", attention_size=5)
    )
    h = torch.randn(2, 4, 8)
    keys, vals = model._memory(h)
    assert torch.allclose(keys, h @ model.keys.weight.T) and torch.allclose(vals, h @ model.values.weight.T)


# --- the models --------------------------------------------------------------------------------------

CONFIGS = [RNNEncDecConfig(hidden_size=8, embed_size=4)] + [
    RNNSearchConfig(hidden_size=8, embed_size=4, attention=kind, attention_size=6)
    for kind in ("additive", "dot", "key-value")
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: getattr(c, "attention", c.name))
def test_teacher_forced_forward_and_greedy_decode_agree(cfg):
    task = DateTask()
    torch.manual_seed(0)
    model = build_model(cfg, task.input_size, task.output_size).eval()
    pairs = task.sample_pairs(4, np.random.default_rng(5))
    inputs = torch.from_numpy(task.sample(4, np.random.default_rng(5)).inputs)
    logits, attention, aux = model(inputs)
    assert logits.shape == (*inputs.shape[:2], task.output_size) and aux.item() == 0.0
    classes, alignment = model.greedy(inputs, max_len=6)
    again, _ = model.greedy(inputs, max_len=6)
    assert torch.equal(classes, again) and classes.shape[0] == 4 and classes.shape[1] <= 7  # deterministic
    s = max(len(p.source) for p in pairs)
    if cfg.name == "rnnsearch":
        rows = attention["alignment"][:, s:]  # [B, M, S]
        assert torch.allclose(rows.sum(-1), torch.ones_like(rows[..., 0]), atol=1e-5)
        assert alignment.shape == (4, classes.shape[1], s)
    # feeding the greedy output back teacher-forced gives the same argmax at every step it wrote
    decoded = [type(p)(p.source, tuple(int(c) for c in row[:-1]), ()) for p, row in zip(pairs, classes)]
    forced = torch.from_numpy(encode_pairs(decoded, len(task.source_vocab), task.output_size).inputs)
    argmax = model(forced)[0][:, s:].argmax(-1)[:, : classes.shape[1]]
    written = torch.cumsum((classes == 0).long(), 1) - (classes == 0).long() == 0  # up to each row's </s>
    assert torch.equal(argmax[written], classes[written])


def test_encoder_ignores_padding():
    """A row's outputs do not change when a longer row pads its source (both directions)."""
    task = TranslationTask(max_clauses=2)
    torch.manual_seed(0)
    model = EncoderDecoder(
        task.input_size, task.output_size, RNNSearchConfig(hidden_size=8, embed_size=4)
    ).eval()
    short, long = sorted(task.sample_pairs(2, np.random.default_rng(6)), key=lambda p: len(p.source))
    alone = model(torch.from_numpy(task_batch(task, [short])))[0]
    both = model(torch.from_numpy(task_batch(task, [short, long])))[0]
    ls, s = len(short.source), len(long.source)
    m = len(short.target) + 1
    assert torch.allclose(alone[0, ls : ls + m], both[0, s : s + m], atol=1e-5)


def task_batch(task, pairs):
    return encode_pairs(pairs, len(task.source_vocab), task.output_size).inputs


def test_unknown_model_and_bad_layout_are_one_line():
    from heed.agents.parts import part_from_dict

    with pytest.raises(HeedError, match="unknown core or model 'rnnsearh'.*rnnsearch"):
        part_from_dict({"name": "rnnsearh"})
    with pytest.raises(HeedError, match="seq2seq layout"):
        build_model(RNNSearchConfig(), 5, 10)


# --- measures ----------------------------------------------------------------------------------------


def test_bleu_against_a_hand_computation():
    cand = "the cat sat on the mat".split()
    ref = "the cat sat on a mat".split()
    # 1-grams 5/6, 2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3; c = r: BP = 1
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    assert bleu([cand], [ref]) == pytest.approx(expected)
    short = "the cat sat on".split()  # c = 4 < r = 6: BP = exp(1 - 6/4); all precisions 1
    assert bleu([short], [ref]) == pytest.approx(100 * math.exp(1 - 6 / 4))
    assert bleu([ref], [ref]) == pytest.approx(100.0) and bleu([["x"]], [ref]) == 0.0
    # clipping: "the the the" against "the cat" counts "the" once
    assert bleu([["the"] * 3], [["the", "cat"]], max_n=1) == pytest.approx(100 / 3)


def test_by_length_and_alignment_share():
    rows = by_length([[1], [2], [3, 4]], [[1], [9], [3, 4]], [3, 5, 12], [0, 10, 20])
    assert [(r["count"], r["exact"]) for r in rows] == [(2, 50.0), (1, 100.0)]
    weights = np.array([[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]])
    assert alignment_share(weights, [1, 0, -1]) == pytest.approx(0.75)


# --- one command per model and per figure --------------------------------------------------------------


def test_train_each_model_then_draw_the_figures(tmp_path, capsys):
    """``heed train supervised --task translation model:NAME`` and ``heed translation-figures`` in-process."""
    import json

    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import translation_figures as tf

    for name, cfg in (("plain", CONFIGS[0]), ("search", CONFIGS[1]), ("search-dot", CONFIGS[2])):
        out = main(
            Config(
                task="translation",
                model=cfg,
                total_sequences=8,
                batch_size=4,
                eval_sequences=4,
                eval_every=8,
                log_every=4,
                image_every=4,
                task_options="max_clauses=1",
                run=RunConfig(run_dir=tmp_path / "runs" / name, progress=False),
            )
        )
        assert out["updates"] == 2 and 0 <= out["error_rate"] <= 1
    summary = tf.main(
        tf.Config(runs=(tmp_path / "runs",), out_dir=tmp_path / "figs", sentences=6, gradient_sentences=2)
    )
    assert {r["model"] for r in summary["runs"]} == {"rnnencdec", "rnnsearch", "rnnsearch-dot"}
    for r in summary["runs"]:
        assert 0 <= r["exact"] <= 100 and 0 <= r["bleu"] <= 100 and 0 <= r["gradient_share"] <= 1
        assert (r["attention_share"] is None) == (r["model"] == "rnnencdec")
    for name in ("alignment.png", "alignment_rnnsearch-dot.png", "implicit.png", "length_bleu.png", "length_exact.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000
    assert 0 <= summary["alignment_rnnsearch-dot_share"] <= 1
    assert json.loads((tmp_path / "figs" / "summary.json").read_text())["runs"]
    table = capsys.readouterr().out
    assert "| rnnsearch | 1 |" in table and "| rnnsearch-dot | 1 |" in table
    with pytest.raises(HeedError, match="no run folders"):
        tf.run(tf.Config(runs=(tmp_path / "figs",), out_dir=tmp_path / "figs2"))
    beam = tf.run(
        tf.Config(
            runs=(tmp_path / "runs",), out_dir=tmp_path / "beam", sentences=4, gradient_sentences=0, beam=2, video=True
        )
    )
    assert {r["decoding"] for r in beam["runs"]} == {"beam 2"} and 0 <= beam["video_share"] <= 1
    import imageio.v2 as imageio

    frames = imageio.mimread(tmp_path / "beam" / "alignment.gif")
    assert len(frames) >= 4 and len({f.shape for f in frames}) == 1  # one per word + the held end
    with pytest.raises(HeedError, match="--video needs a run with attention"):
        tf.run(tf.Config(runs=(tmp_path / "runs" / "plain",), out_dir=tmp_path / "none", video=True))


def test_gradient_map_of_a_copying_model_is_the_identity():
    """A model whose output at decoder step i is the source word i: its gradient map is diagonal."""
    from heed.scripts.translation_figures import gradient_maps

    class Copier(torch.nn.Module):
        def forward(self, x):  # [B, T, D] -> logits [B, T, 4]: step t reads source step t - 3
            shifted = torch.cat([x.new_zeros(x.shape[0], 3, x.shape[2]), x[:, :-3]], 1)
            return 5.0 * shifted[..., :4], {}, x.new_zeros(())

    x = torch.zeros(1, 6, 5)
    x[0, [0, 1, 2], [1, 3, 2]] = 1.0
    g = gradient_maps(Copier(), x, torch.tensor([[0, 0, 0, 1, 3, 2]]))[0, 3:, :3]
    assert torch.equal(g > 1e-6, torch.eye(3, dtype=torch.bool))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: getattr(c, "attention", c.name))
def test_beam_of_width_one_is_greedy(cfg):
    task = DateTask()
    torch.manual_seed(1)
    model = build_model(cfg, task.input_size, task.output_size).eval()
    inputs = torch.from_numpy(task.sample(5, np.random.default_rng(2)).inputs)
    greedy, greedy_alignment = model.greedy(inputs, max_len=8)
    beam, beam_alignment = model.beam(inputs, width=1, max_len=8)
    assert torch.equal(beam, greedy)
    assert (beam_alignment is None) == (greedy_alignment is None)
    if greedy_alignment is not None:
        assert torch.equal(beam_alignment, greedy_alignment)
    wide, _ = model.beam(inputs, width=3, max_len=8)
    assert wide.shape[0] == 5 and wide.shape[1] <= 9


def _markov_step(tables: torch.Tensor):
    """A hand-made decoder: ``log p(y_i | y_{i-1})`` from ``tables [R, K + 1, K]`` (row K: the start),
    one table per batch row; the state is ``(table index [N], started [N] bool)``."""

    def step(previous, state):
        table, started = state
        row = torch.where(started, previous, torch.full_like(previous, tables.shape[1] - 1))
        return tables[table, row], (table, torch.ones_like(started)), None

    return step


def _markov_state(batch: int, width: int):
    return torch.arange(batch).repeat_interleave(width), torch.zeros(batch * width, dtype=torch.bool)


def test_beam_finds_the_sentence_greedy_misses():
    # classes: 0 = </s>, 1 = A, 2 = B. Greedy takes A (0.6) and then keeps writing A (0.4 each time);
    # "B </s>" has 0.4 * 1.0, length-normalised log 0.4 / 2 = -0.46, better than any sentence through A.
    # rows: after </s> (unused), after A, after B, at the start
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.4, 0.3], [1.0, 0.0, 0.0], [0.0, 0.6, 0.4]])
    step = _markov_step(probs.log()[None])
    greedy = beam_search(step, _markov_state(1, 1), 1, 1, max_len=5)
    assert greedy.classes.tolist() == [[1, 1, 1, 1, 1, 1]]  # never ends
    found = beam_search(step, _markov_state(1, 2), 1, 2, max_len=5)
    assert found.classes.tolist() == [[2, 0]]
    assert found.score.item() == pytest.approx(math.log(0.4) / 2)


def test_wide_beam_is_the_exhaustive_optimum():
    """With width >= every prefix, beam search is exact: compare with enumerating all sentences."""
    import itertools

    k, max_len = 3, 3
    gen = torch.Generator().manual_seed(0)
    tables = torch.log_softmax(3 * torch.randn(2, k + 1, k, generator=gen), -1)  # [R, K + 1, K]
    found = beam_search(_markov_step(tables), _markov_state(2, k**4), 2, k**4, max_len)
    for r in range(2):
        best, best_seq = -math.inf, None
        for n in range(1, max_len + 2):
            for seq in itertools.product(range(k), repeat=n):
                if 0 in seq[:-1] or (n <= max_len and seq[-1] != 0):
                    continue  # </s> only at the end; only the longest may stop without it
                prev, total = k, 0.0
                for c in seq:
                    total, prev = total + tables[r, prev, c].item(), c
                if total / n > best:
                    best, best_seq = total / n, list(seq)
        got = found.classes[r].tolist()
        got = got[: got.index(0) + 1] if 0 in got else got
        assert got == best_seq and found.score[r].item() == pytest.approx(best, abs=1e-5)


# --- character level ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task_class", [TranslationTask, DateTask])
def test_character_level_is_the_same_sentences_spelled_out(task_class):
    """level=char: the characters joined are the word sentence, same stream and split; words map back."""
    from heed.envs.translation import token_words

    words, chars = task_class(), task_class(level="char")
    assert chars.target_vocab[0] == "</s>" and all(len(c) == 1 for c in chars.source_vocab)
    for split in ("train", "test"):
        by_word = task_class(split=split).sample_pairs(40, np.random.default_rng(7))
        by_char = task_class(split=split, level="char").sample_pairs(40, np.random.default_rng(7))
        for w, c in zip(by_word, by_char):
            source, target = words.words(w)
            assert "".join(chars.source_vocab[i] for i in c.source) == " ".join(source)
            assert "".join(chars.target_vocab[i] for i in c.target) == " ".join(target)
            assert chars.words(c) == (source, target) and c.alignment == w.alignment
            src_owner, tgt_owner = token_words(c)
            for owner, spelled, vocab, ids in ((src_owner, source, chars.source_vocab, c.source),
                                               (tgt_owner, target, chars.target_vocab, c.target)):
                for k, word in enumerate(spelled):  # the characters of word k are exactly that word
                    assert "".join(vocab[i] for i, o in zip(ids, owner) if o == k) == word
                assert all(vocab[i] == " " for i, o in zip(ids, owner) if o < 0)
    assert token_words(by_word[0]) == (list(range(len(by_word[0].source))), list(range(len(by_word[0].target))))
    with pytest.raises(HeedError, match="level must be word or char"):
        task_class(level="bytes")


def test_character_maps_sum_to_word_maps():
    from heed.analysis.translation import to_words

    weights = np.arange(12.0).reshape(3, 4)  # 3 target characters (words 0, 0, 1) x 4 source characters
    summed = to_words(weights, [0, 0, 1], [0, -1, 1, 1])  # source: word 0 = col 0, a space, word 1 = cols 2-3
    by_hand = np.array([[(0 + 4) / 2, (2 + 3 + 6 + 7) / 2], [8, 10 + 11]])
    assert np.allclose(summed, by_hand)
    eye = np.eye(3)
    assert np.allclose(to_words(eye, [0, 1, 2], [0, 1, 2]), eye)  # word level: unchanged


@pytest.mark.parametrize("kind", ["additive", "dot", "key-value"])
@pytest.mark.parametrize("level", ["word", "char"])
def test_one_decoder_step_of_each_trained_variant(kind, level):
    """The shapes of one decoder step (and of the whole forward) of each variant trained in RESULTS."""
    task = TranslationTask(max_clauses=1, level=level)
    torch.manual_seed(0)
    model = build_model(
        RNNSearchConfig(hidden_size=8, embed_size=4, attention=kind, attention_size=6), task.input_size, task.output_size
    )
    pairs = task.sample_pairs(3, np.random.default_rng(8))
    inputs = torch.from_numpy(task_batch(task, pairs))
    from heed.agents.seq2seq import split_layout

    source, valid, previous = split_layout(inputs, task.output_size)
    s = max(len(p.source) for p in pairs)
    assert source.shape == (3, s, len(task.source_vocab)) and previous.shape[-1] == task.output_size
    encoded = model.encode(source, valid)
    assert [tuple(x.shape) for x in encoded] == [(3, s, 16), (3, 16), (3, 8)]
    logits, alpha, state = model.decode(previous[:, :1], encoded, valid)
    assert logits.shape == (3, 1, task.output_size) and alpha.shape == (3, 1, s) and state.shape == (3, 8)
    assert torch.allclose(alpha.sum(-1), torch.ones(3, 1), atol=1e-5) and (alpha[~valid[:, None]] == 0).all()
    out, attention, _ = model(inputs)
    assert out.shape == (3, inputs.shape[1], task.output_size)
    assert attention["alignment"].shape == (3, inputs.shape[1], s)


def test_character_level_run_draws_its_maps(tmp_path):
    """A character-level RNNsearch run: scored on words, attention over characters and summed to words."""
    import json

    from heed.agents.common.session import RunConfig
    from heed.agents.trainers.supervised import Config, main
    from heed.scripts import translation_figures as tf

    main(
        Config(
            task="translation", model=CONFIGS[1], total_sequences=4, batch_size=2, eval_sequences=2,
            eval_every=4, log_every=2, image_every=0, task_options="max_clauses=1,level=char",
            run=RunConfig(run_dir=tmp_path / "char", progress=False),
        )
    )
    summary = tf.run(tf.Config(runs=(tmp_path / "char",), out_dir=tmp_path / "figs", sentences=3, gradient_sentences=2))
    (run,) = summary["runs"]
    assert run["model"] == "rnnsearch-char" and 0 <= run["attention_share"] <= 1 and 0 <= run["gradient_share"] <= 1
    assert all(b["hi"] <= 61 for b in run["by_length"])  # bins of source *words*
    for name in ("alignment.png", "alignment_chars.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000
    assert json.loads((tmp_path / "figs" / "summary.json").read_text())["alignment_share"] <= 1
    with pytest.raises(HeedError, match="at word level"):
        tf.run(tf.Config(runs=(tmp_path / "char",), out_dir=tmp_path / "v", video=True))
