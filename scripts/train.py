"""Train a heed agent: ``python scripts/train.py {dqn,supervised,ppo,glimpse} [options]``.

Each subcommand is a trainer module under ``agents/trainers/`` (the table is
:data:`heed.agents.trainers.TRAINERS`) with a frozen ``Config`` dataclass
(every field documented, so ``--help`` explains it) and ``main(cfg)``. Trainers are imported
lazily, so ``dqn --help`` does not pay for importing the memory or glimpse code.

Examples::

    python scripts/train.py dqn --env ALE/Pong-v5 --total-steps 2000000 --seed 1 --device auto --run-dir runs/pong
    python scripts/train.py dqn --resume runs/pong --total-steps 3000000
    python scripts/train.py supervised --task copy --seed 1 --run-dir runs/copy model:ntm
"""

from __future__ import annotations

import importlib
import sys

from heed.agents.trainers import TRAINERS


def usage() -> str:
    lines = ["usage: python scripts/train.py {" + ",".join(TRAINERS) + "} [options]", "", "subcommands:"]
    lines += [f"  {name:<11} {doc}" for name, (_, doc) in TRAINERS.items()]
    lines += ["", "python scripts/train.py SUBCOMMAND --help lists every option."]
    return "\n".join(lines)


def run(argv: list[str]) -> None:
    from heed.agents.common.cli import parse_config
    from heed.agents.common.errors import cli_main, suggest

    if not argv or argv[0] in {"-h", "--help"}:
        cli_main(lambda: print(usage()))
        return
    name, rest = argv[0], argv[1:]
    if name not in TRAINERS:
        print(f"error: unknown subcommand '{name}'.{suggest(name, TRAINERS)} Subcommands: {', '.join(TRAINERS)} "
              "(see train.py --help)", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(TRAINERS[name][0])
    cli_main(lambda: module.main(parse_config(module.Config, args=rest, prog=f"train.py {name}",
                                              description=module.__doc__)))


if __name__ == "__main__":
    run(sys.argv[1:])
