"""Registering many applications at once: names as arguments and from a file, all checked
before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Cli, assert_refused, dump_tables


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "keystore", cwd=tmp_path)


def _apps(cli: Cli) -> dict[str, dict[str, str]]:
    return {a["app"]: a["labels"] for a in cli("app", "list", "--json").json()}


def test_names_and_a_file_register_in_one_command_with_their_labels(
        cli: Cli, tmp_path: Path) -> None:
    listing = tmp_path / "apps.txt"
    listing.write_text("# the payments fleet\npay-1 team=payments\n\npay-2 team=payments tier=1\n")
    out = cli("app", "register", "web-1", "web-2", "--from-file", listing, "--label", "env=prod")
    assert out.stdout.splitlines() == [
        "registered web-1", "registered web-2", "registered pay-1", "registered pay-2"]
    assert _apps(cli) == {
        "web-1": {"env": "prod"}, "web-2": {"env": "prod"},
        "pay-1": {"env": "prod", "team": "payments"},
        "pay-2": {"env": "prod", "team": "payments", "tier": "1"},
    }


def test_exist_ok_registers_the_new_ones_and_names_the_others(cli: Cli) -> None:
    cli("app", "register", "a-1")
    out = cli("app", "register", "a-1", "a-2", "--exist-ok")
    assert out.stdout.splitlines() == ["a-1 is already registered", "registered a-2"]
    assert sorted(_apps(cli)) == ["a-1", "a-2"]


def _refused_and_nothing_written(cli: Cli, db_url: str, tmp_path: Path, args: list[str],
                                 lines: str | None, fragments: list[str]) -> None:
    listing = tmp_path / "apps.txt"
    if lines is not None:
        listing.write_text(lines)
    before = dump_tables(db_url)
    result = cli.run("app", "register", *[a.replace("{file}", str(listing)) for a in args])
    assert_refused(result, *fragments)
    assert dump_tables(db_url) == before


@pytest.mark.parametrize(("args", "lines", "fragments"), [
    pytest.param(["ok-1", "bad name!", "ok-2"], None, ["bad name!"],
                 id="one invalid name among valid ones writes nothing"),
    pytest.param(["ok-1", "ok-1"], None, ["'ok-1' is given twice"],
                 id="a name given twice is refused"),
])
def test_a_refusal_is_one_line_and_writes_nothing(
        cli: Cli, db_url: str, tmp_path: Path, args: list[str], lines: str | None,
        fragments: list[str]) -> None:
    _refused_and_nothing_written(cli, db_url, tmp_path, args, lines, fragments)


# Refused while the command line is read (labels, the file, no name at all), before the command
# opens the database (orchestrator/entrypoints/cli/apps.py): the same code on either database,
# so these run on SQLite only.
@pytest.mark.parametrize(("args", "lines", "fragments"), [
    pytest.param(["ok-1", "--label", "env=prod", "--label", "env=dev"], None,
                 ["label 'env' is given twice"], id="a label key given twice is refused"),
    pytest.param(["--from-file", "{file}"], "ok-1 team=a\nok-2 team\n", ["apps.txt:2", "team"],
                 id="a malformed label in the file names the file and line"),
    pytest.param(["--from-file", "{file}"], "ok-1 team=a team=b\n", ["apps.txt:1", "twice"],
                 id="a label key twice on one line of the file is refused"),
    pytest.param([], None, ["give at least one NAME"], id="nothing to register is refused"),
])
def test_a_refusal_of_the_command_line_is_one_line_and_writes_nothing(
        sqlite_url: str, tmp_path: Path, args: list[str], lines: str | None,
        fragments: list[str]) -> None:
    cli = Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)
    _refused_and_nothing_written(cli, sqlite_url, tmp_path, args, lines, fragments)
