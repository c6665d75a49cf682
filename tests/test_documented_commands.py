"""Every command the docs show still parses: each ``python scripts/X.py ...`` or ``heed X ...`` line of
README.md, RESULTS.md, BENCHMARKS.md and docs/*.md is parsed by that entry point's own parser (nothing
is run), so a renamed or removed flag cannot leave a stale command behind.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from heed.agents.common.cli import parse_config
from heed.scripts.cli import COMMANDS
from heed.scripts.train import TRAINERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "RESULTS.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:python3? scripts/(\w+)\.py|heed ([a-z][\w-]*))(.*)$")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|^\[|\]$")  # S, TASK, BUDGET, [--optional ...]: a template


def _code(doc: Path) -> list[tuple[int, str, bool]]:
    """``(line number, text, inline)`` of every fenced code line and inline code span, continuations joined."""
    out: list[tuple[int, str, bool]] = []
    fenced, pending, start = False, "", 0
    for lineno, line in enumerate(doc.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if not pending:
                start = lineno
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            out.append((start, pending, False))
            pending = ""
        else:
            out += [(lineno, span, True) for span in re.findall(r"`([^`]+)`", line)]
    return out


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, command name, argv)`` for every command line in the docs' code."""
    found = []
    for doc in DOCS:
        for lineno, code, inline in _code(doc):
            code = re.sub(r"<[^>]*>", "X", code.split(" #")[0]).split(" && ")[0].split(";")[0].strip()
            match = COMMAND.match(code)
            if not match:
                continue
            name = (match.group(1) or match.group(2)).replace("_", "-")
            if name not in COMMANDS:
                continue
            try:
                argv = shlex.split(match.group(3))
            except ValueError:
                continue
            if inline and not argv:  # `heed aggregate` in prose names the command, it is not one
                continue
            if "..." in argv or "--help" in argv or any(PLACEHOLDER.search(a) for a in argv):
                continue  # elided examples, help, and templates with placeholders
            found.append((f"{doc.name}:{lineno}", name, argv))
    return found


COMMAND_LINES = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMAND_LINES) > 40  # the extraction itself works


@pytest.mark.parametrize(("where", "name", "argv"), COMMAND_LINES, ids=[w for w, _, _ in COMMAND_LINES])
def test_documented_command_parses(where: str, name: str, argv: list[str]) -> None:
    if name == "train":
        assert argv and argv[0] in TRAINERS, f"{where}: unknown trainer in {argv[:1]}"
        config = importlib.import_module(TRAINERS[argv[0]][0]).Config
        argv = argv[1:]
    elif name in ("sweep",):
        pytest.skip("sweep arguments after -- are checked by the sweep itself (tests/test_sweep.py)")
    else:
        config = importlib.import_module(COMMANDS[name][0]).Config
    try:
        parse_config(config, args=argv, prog=name)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{name} {' '.join(argv)}` no longer parses (exit {exc.code})")
