"""Every ``python`` code block of the README runs as written (in a temporary folder), so the
tour cannot rot; ``bash`` blocks are the install commands (what CI itself runs) and the
command synopsis, checked against the parser: every ``bornml`` subcommand and ``--flag`` they
mention exists."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_blocks():
    assert _blocks("python")


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_command_lines_use_existing_commands_and_flags():
    from bornml.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for block in _blocks("bash"):
        for line in re.split(r"(?<!\\)\n", block):
            words = line.replace("\\\n", " ").split("#")[0].split()
            if not words or words[0] != "bornml":
                continue
            command = words[1]
            assert command in sub.choices, line
            known = {s for a in sub.choices[command]._actions for s in a.option_strings}
            for flag in (w.strip("[]|()").split("=")[0] for w in words[2:]):
                if flag.startswith("--"):
                    assert flag in known, f"{flag} in README line {line!r}"
