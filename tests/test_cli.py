"""The kivi-otrs command line: help everywhere, one-line errors, secrets masked."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from psycopg import conninfo

from kivi_otrs.cli import cli


def all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out += all_commands(command, f"{prefix}{name} ")
    return out


@pytest.mark.parametrize("name,command", all_commands(cli), ids=[n for n, _ in all_commands(cli)])
def test_every_command_has_help_with_an_example(name: str, command: click.Command) -> None:
    """Each command documents itself and shows an example invocation."""
    assert command.help and "Example:" in command.help, name


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kivi_otrs", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_missing_dsn_is_a_one_line_error() -> None:
    """No --dsn and no $KIVI_OTRS_DSN: one line saying what to pass, exit code 2."""
    result = run("status")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: no database given")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_a_one_line_error_without_password() -> None:
    """A refused connection names host and cause, never the password, and prints no traceback."""
    result = run("doctor", "--dsn", "postgresql://kivi:TopSecret99@127.0.0.1:1/firma")
    assert result.returncode == 3
    assert "TopSecret99" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: cannot connect to the kivitendo database")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_install_status_config_and_rollback(kivi_dsn: str) -> None:
    """migrate, status, config set/show (password masked), otrs-config, rollback through the real CLI."""
    env = {"KIVI_OTRS_DSN": kivi_dsn, "OTRS_PW": "Geheim-123"}
    from kivi_otrs import migrate

    ids = migrate.available_ids()
    assert f"Applied {len(ids)} migration(s)" in run("migrate", env=env).stdout
    assert "up to date" in run("migrate", env=env).stdout
    assert run("status", env=env).stdout.splitlines() == [f"applied  {i}" for i in ids]
    assert run("config", "set", "otrs.password", "--from-env", "OTRS_PW", "--store-in-database", env=env).returncode == 0
    bad = run("config", "set", "otrs.base_url", "ftp://x", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: otrs.base_url: expected an http")
    unknown = run("config", "set", "otrs.nope", "1", env=env)
    assert "unknown setting 'otrs.nope'" in unknown.stderr
    shown = run("config", "show", env=env).stdout
    assert "Geheim-123" not in shown and "otrs.password" in shown and "********" in shown
    perl = run("otrs-config", "--db-user", "otrs_kivi", env=env).stdout
    assert "Kernel::System::CustomerUser::DB" in perl and "Kernel::System::CustomerCompany::DB" in perl
    assert str(conninfo.conninfo_to_dict(kivi_dsn)["password"]) not in perl
    result = run("rollback", "--yes", env=env)
    assert result.returncode == 0 and "Removed kivi-otrs" in result.stdout


def test_doctor_exit_code_and_json(migrated_dsn: str) -> None:
    """doctor exits 1 when errors exist (the demo data has a malformed e-mail) and --json is parseable."""
    import json

    result = run("doctor", "--json", env={"KIVI_OTRS_DSN": migrated_dsn})
    assert result.returncode == 1
    findings = json.loads(result.stdout)
    assert any(f["check"] == "email" and f["severity"] == "error" for f in findings)


def test_runner_invocation_shows_usage_on_unknown_command() -> None:
    """An unknown command is a usage error, not a traceback."""
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output
