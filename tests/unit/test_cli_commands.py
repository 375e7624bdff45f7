"""The top-level command list: ``--help`` reads each command's summary from ``COMMANDS``
without importing it, and that table says what the commands themselves say."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from orchestrator.entrypoints.cli import _PKG, COMMANDS, cli


def _real(name: str) -> click.Command:
    module, _, attr = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(f"{_PKG}.{module}"), attr)
    assert isinstance(command, click.Command)
    return command


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("limit", [20, 45, 80, 10_000])
def test_each_summary_is_the_commands_own_short_help(name: str, limit: int) -> None:
    """The table's summary, shortened as click shortens a command's help, is the command's
    own short help at every width (edit a command's help and this names the stale entry)."""
    stand_in = click.Command(name, help=COMMANDS[name][1])
    assert stand_in.get_short_help_str(limit) == _real(name).get_short_help_str(limit)


def test_the_table_names_every_command_under_its_own_name() -> None:
    """Each entry resolves to a command of that name (no entry points at another command)."""
    assert {name: _real(name).name for name in COMMANDS} == {name: name for name in COMMANDS}


@pytest.mark.parametrize("columns", ["50", "200"])
def test_help_lists_what_an_eager_group_of_the_real_commands_would(columns: str) -> None:
    """``orchestrator --help`` is, to the character, the help of the same group with every
    command imported and added the ordinary way."""
    eager = click.Group(cli.name, params=cli.params, help=cli.help,
                        context_settings=cli.context_settings,
                        commands=[_real(name) for name in COMMANDS])
    env = {"COLUMNS": columns}
    lazy_out = CliRunner(env=env).invoke(cli, ["--help"], prog_name="orchestrator")
    eager_out = CliRunner(env=env).invoke(eager, ["--help"], prog_name="orchestrator")
    assert lazy_out.exit_code == 0 and eager_out.exit_code == 0
    assert "Commands:" in lazy_out.output
    assert lazy_out.output == eager_out.output


def test_help_imports_no_command_module() -> None:
    """``orchestrator --help`` in a fresh interpreter loads none of the command modules."""
    probe = ("import sys\nfrom orchestrator.entrypoints.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in sys.modules if m.startswith('{_PKG}.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
