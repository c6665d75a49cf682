"""Command-line parsing for every entry point: tyro, with its errors turned into one line.

tyro explains a bad command line in a framed box of many lines; heed's rule is one line and exit code
2 for every refused input. :func:`parse_config` runs tyro with its output captured: ``--help`` is
printed unchanged, and an error is condensed to ``error: PROG: <what tyro said first>`` plus the
first "did you mean" suggestion, if tyro made one.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Sequence
from typing import TypeVar

from heed.agents.common.errors import exit_on_broken_pipe

T = TypeVar("T")

_RULE = re.compile(r"^[\s\-─━═╌]+$")
_FRAME = str.maketrans({c: " " for c in "│╭╮╰╯┃┏┓┗┛"})


def condense_tyro_error(text: str) -> str:
    """One line from tyro's framed error text: its first section, then its first suggestion, if any."""
    lines = [ln.translate(_FRAME).strip() for ln in text.splitlines()]
    sections: list[list[str]] = [[]]
    for ln in lines:
        if not ln:
            continue
        if _RULE.match(ln):
            sections.append([])
        elif ln[0] in "─━" and ln[-1] in "─━":  # the frame's top edge with the title inside it
            sections[-1].append(ln.strip("─━ "))
        else:
            sections[-1].append(ln)
    sections = [s for s in sections if s]
    if not sections:
        return "invalid command line"
    title, *body = sections[0]
    body = [ln for ln in body if not ln.startswith(("Arguments are applied", "matter."))]
    if len(sections) > 1 and not body:  # the title stood alone above a rule: the message is the next section
        body = [ln for ln in sections[1] if not ln.startswith(("Arguments are applied", "matter."))]
        sections = sections[1:]
    head = " ".join(body) if body else title
    if body and not body[0].lower().startswith(title.lower().split()[0]):
        head = f"{title.rstrip(':')}: {head}"
    message = re.sub(r"\(applied to [^)]*\)", "", head)
    for section in sections[1:]:
        text = " ".join(section)
        if section[0].startswith("Perhaps you meant") and len(section) > 1:
            flag = section[1].split()[0]
            owners = re.findall(r"in \S+(?: \S+)? (\S+:\S+) --help", text)
            where = f" (it is an option of {', '.join(dict.fromkeys(owners))})" if owners else ""
            message += f"; did you mean {flag}?{where}"
            break
        if section[0].startswith("Available subcommands"):
            message += "; " + text
            break
    return re.sub(r"\s+", " ", message)


def parse_config(cls: type[T], args: Sequence[str] | None = None, prog: str | None = None,
                 description: str | None = None, default: T | None = None) -> T:
    """``tyro.cli(cls, args=..., default=...)``; a refused command line prints one line on stderr and exits 2."""
    import tyro

    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            return tyro.cli(cls, args=args, prog=prog, description=description, default=default)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            try:
                sys.stdout.write(buffer.getvalue())
                sys.stdout.flush()
            except BrokenPipeError:
                exit_on_broken_pipe()
            raise
        name = prog or (sys.argv[0] if sys.argv else "heed")
        print(f"error: {name}: {condense_tyro_error(buffer.getvalue())} (see {name} --help)", file=sys.stderr)
        raise SystemExit(2) from None
