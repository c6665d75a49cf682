"""The ``heed`` console script: ``heed COMMAND [options]`` runs ``scripts/COMMAND.py`` (``-`` for ``_``).

Installed from a wheel, ``heed train supervised --task copy model:lstm`` trains without a checkout;
in a checkout, ``python scripts/train.py ...`` is the same command. ``heed`` alone lists the commands.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

from heed.agents.common.errors import suggest

#: command -> (module, one line of help); every entry point in scripts/ that a user runs
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("heed.scripts.train", "train an agent or model (heed train --help lists the trainers)"),
    "demo": ("heed.scripts.demo", "the bundled Pong agent's saliency video and a sequential Jacobian"),
    "evaluate": ("heed.scripts.evaluate", "play a DQN agent for N episodes (score, video)"),
    "evaluate-memory": ("heed.scripts.evaluate_memory", "evaluate a supervised sequence model"),
    "render-saliency": ("heed.scripts.render_saliency", "value/advantage saliency video of a DQN agent"),
    "sequential-jacobian": ("heed.scripts.sequential_jacobian", "the sequential Jacobian figure"),
    "record-memory": ("heed.scripts.record_memory", "memory read/write figures of a sequence model"),
    "graph-eval": ("heed.scripts.graph_eval", "DNC graph tasks: accuracy on the Underground / family tree, memory figures"),
    "copy-generalisation": ("heed.scripts.copy_generalisation", "copy length generalisation, NTM against LSTM: figure and table"),
    "record-ponder": ("heed.scripts.record_ponder", "ACT ponder-time figures"),
    "reader-attention": ("heed.scripts.reader_attention", "an attentive reader's attention over a bAbI story, and its share on the supporting fact"),
    "translation-figures": ("heed.scripts.translation_figures", "alignment, implicit-attention and length figures of encoder-decoders"),
    "pen-samples": ("heed.scripts.pen_samples", "a figure of synthetic online handwriting by several writers"),
    "pen-jacobian": ("heed.scripts.pen_jacobian", "sequential Jacobian of a pen recogniser's letter output, with the delayed dot"),
    "generate": ("heed.scripts.generate", "write text from a prompt with a character language model"),
    "bpc-curves": ("heed.scripts.bpc_curves", "held-out bits per character of text sweeps against CPU seconds, one figure"),
    "text-attention": ("heed.scripts.text_attention", "attention of the SHA-RNN and Transformer heads over a held-out passage"),
    "synthesize": ("heed.scripts.synthesize", "handwriting synthesis: the window alignment figure, styles, the pen GIF"),
    "record-glimpses": ("heed.scripts.record_glimpses", "glimpse paths of a glimpse model"),
    "record-tiles": ("heed.scripts.record_tiles", "tile-choice heat map per digit class of a 3x3 tile policy"),
    "record-draw": ("heed.scripts.record_draw", "video of a DRAW canvas being drawn, with the write and read windows"),
    "policy-memory": ("heed.scripts.policy_memory", "what a recurrent PPO policy remembers"),
    "package-agent": ("heed.scripts.package_agent", "ship a trained DQN as fp16 safetensors"),
    "summarize-runs": ("heed.scripts.summarize_runs", "one table over many run folders"),
    "sweep": ("heed.scripts.sweep", "run a trainer over seeds x options (local process pool or Ray)"),
    "aggregate": ("heed.scripts.aggregate", "IQM and mean with 95 % CIs over a sweep's seeds: table, curves"),
    "bench-dqn": ("heed.scripts.bench_dqn", "DQN steps/s against Stable-Baselines3"),
    "bench-ntm": ("heed.scripts.bench_ntm", "NTM speed"),
    "bench-text": ("heed.scripts.bench_text", "character-LM training and generation speed, with a nanoGPT-style reference"),
    "bench-dnc": ("heed.scripts.bench_dnc", "DNC speed against the `dnc` package"),
    "bench-sweep": ("heed.scripts.bench_sweep", "a 2-job sweep's time against the same trials started by hand"),
    "ngram-figure": ("heed.scripts.ngram_figure", "dynamic n-gram models against the Bayes-optimal predictor, step by step"),
    "bench-ppo-memory": ("heed.scripts.bench_ppo_memory", "recurrent PPO speed"),
    "bench-saliency": ("heed.scripts.bench_saliency", "saliency speed against Captum"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: heed COMMAND [options]   (heed COMMAND --help lists the options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the command's module, run as ``__main__``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"error: unknown command '{argv[0]}'.{suggest(name, COMMANDS)} (heed --help lists the commands)",
              file=sys.stderr)
        raise SystemExit(2)
    module = COMMANDS[name][0]
    if importlib.util.find_spec(module) is None:  # pragma: no cover - a broken install
        print(f"error: heed is installed without {module}; reinstall heed", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"heed {name}", *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
