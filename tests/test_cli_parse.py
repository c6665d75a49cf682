"""Bad command lines give one line and exit code 2 (tyro's framed box condensed), help stays intact."""

from __future__ import annotations

import pytest

from heed.agents.common.cli import condense_tyro_error
from heed.scripts.train import run

BAD = [
    (["ppo", "core:lstm", "--core.memory-size", "16"], "core:ntm"),  # a flag the chosen core does not take
    (["ppo", "core:lstmm"], "core:lstm"),  # unknown core: the choices are listed
    (["supervised", "--learning-rate", "abc"], "--learning-rate"),
    (["glimpse", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize(("argv", "mentions"), BAD)
def test_bad_command_line_is_one_line_and_exit_2(argv, mentions, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and mentions in err


def test_help_is_printed_whole(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["ppo", "--help"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    assert "--learning-rate" in out and "core:ntm" in out


def test_condense_keeps_the_first_section_and_a_suggestion() -> None:
    text = "╭─ Unrecognized options ─╮\n│ Unrecognized options: --lr │\n│ ─────── │\n│ Perhaps you meant: │\n│   --learning-rate FLOAT │\n╰──╯"
    assert condense_tyro_error(text) == "Unrecognized options: --lr; did you mean --learning-rate?"
