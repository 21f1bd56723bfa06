"""The generated Kernel/Config/Files/ZZZKiviOtrs.pm: Perl that compiles, and a Load that defines the right keys."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from psycopg import conninfo

from kivi_otrs import otrs_config
from kivi_otrs.errors import ConfigError

PERL = shutil.which("perl")
pytestmark = pytest.mark.skipif(PERL is None, reason="perl is not installed (Debian: perl-base)")

# Requires the module the way Znuny's Kernel/Config/Defaults.pm does, calls Load on a plain hash
# and prints what an OTRS backend reads from it as JSON.
LOAD_SCRIPT = r"""
use strict; use warnings;
use JSON::PP;
my ($File, $Package) = @ARGV;
require $File;
my $Self = {};
my $Ok = eval { $Package->Load($Self); 1 };
print JSON::PP->new->canonical->encode({ ok => $Ok ? 1 : 0, error => ($Ok ? '' : "$@"), config => $Self });
"""


def write(tmp_path: Path, text: str, name: str = "ZZZKiviOtrs.pm") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, module: str = "ZZZKiviOtrs") -> dict[str, Any]:
    assert PERL is not None
    result = subprocess.run([PERL, "-e", LOAD_SCRIPT, str(path), f"Kernel::Config::Files::{module}"],
                            capture_output=True, text=True, timeout=60, check=True)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def password_file(tmp_path: Path, content: str) -> str:
    path = tmp_path / "otrs-db-password"
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_generated_module_passes_perl_c(tmp_path: Path) -> None:
    """perl -c accepts the module for every backend slot, default and numbered."""
    assert PERL is not None
    for slot in (0, 1, 9):
        text = otrs_config.render("postgresql://u@db.example/firma", "otrs_kivi", "kivi_otrs_reader", slot=slot)
        path = write(tmp_path, text, f"ZZZKiviOtrs{slot}.pm")
        result = subprocess.run([PERL, "-c", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "syntax OK" in result.stderr, result.stderr


def test_load_defines_both_backends_with_the_password_from_the_file(tmp_path: Path) -> None:
    """Load sets CustomerUser1/CustomerCompany1 with our views, the file's first line as Password, no CaseSensitive."""
    secret = password_file(tmp_path, "S3cret-'\"$x\n")
    text = otrs_config.render("postgresql://owner:ownerpw@db.example:5433/firma", "otrs_kivi", "kivi_otrs_reader",
                              password_file=secret)
    assert "S3cret" not in text and "ownerpw" not in text
    data = load(write(tmp_path, text))
    assert data["ok"] == 1, data["error"]
    user, company = data["config"]["CustomerUser1"], data["config"]["CustomerCompany1"]
    assert set(data["config"]) == {"CustomerUser1", "CustomerCompany1"}
    for backend, table in ((user, otrs_config.USER_VIEW), (company, otrs_config.COMPANY_VIEW)):
        assert backend["Params"] == {"DSN": "DBI:Pg:dbname=firma;host=db.example;port=5433", "User": "otrs_kivi",
                                     "Password": "S3cret-'\"$x", "Table": table, "ForeignDB": 1,
                                     "SearchCaseSensitive": 0}
        assert backend["ReadOnly"] == 1
    assert user["Module"] == "Kernel::System::CustomerUser::DB"
    assert (user["CustomerKey"], user["CustomerID"], user["CustomerValid"]) == ("login", "customernumber", "cp_valid_id")
    assert user["CustomerUserSearchFields"] == ["search_text"]
    assert [row[:3] for row in user["Map"]] == [[r.var, r.label, r.column] for r in otrs_config.CUSTOMER_USER_MAP]
    assert all(len(row) == 10 for row in user["Map"])
    assert company["Module"] == "Kernel::System::CustomerCompany::DB"
    assert company["CustomerCompanyKey"] == "customer_id"
    assert [row[2] for row in company["Map"]] == [r.column for r in otrs_config.COMPANY_MAP]


def test_slot_zero_replaces_the_default_backend(tmp_path: Path) -> None:
    """--slot 0 defines CustomerUser/CustomerCompany without a number."""
    text = otrs_config.render("postgresql://u@h/firma", "otrs_kivi", "r", slot=0,
                              password_file=password_file(tmp_path, "pw\n"))
    assert set(load(write(tmp_path, text))["config"]) == {"CustomerUser", "CustomerCompany"}


def test_load_refuses_a_missing_or_empty_password_file_and_defines_nothing(tmp_path: Path) -> None:
    """Without a password Load dies before defining a backend (Znuny would fall back to its own DB password)."""
    missing = otrs_config.render("postgresql://u@h/firma", "otrs_kivi", "r", password_file=str(tmp_path / "nope"))
    data = load(write(tmp_path, missing, "A.pm"))
    assert data["ok"] == 0 and data["config"] == {}
    assert data["error"].startswith(f"kivi-otrs: cannot read {tmp_path / 'nope'} (No such file or directory); "
                                    "customer backends CustomerUser1/CustomerCompany1 not defined")
    empty = otrs_config.render("postgresql://u@h/firma", "otrs_kivi", "r", password_file=password_file(tmp_path, "\n"))
    data = load(write(tmp_path, empty, "B.pm"))
    assert data["ok"] == 0 and data["config"] == {} and "is empty" in data["error"]


def test_relative_password_file_and_bad_module_names_are_refused() -> None:
    """Znuny's working directory differs per process: only absolute password files; module names are Perl names."""
    with pytest.raises(ConfigError, match="must be an absolute path"):
        otrs_config.render("postgresql://u@h/firma", "otrs_kivi", "r", password_file="otrs-db-password")
    with pytest.raises(ConfigError, match="not a Perl package name"):
        otrs_config.render("postgresql://u@h/firma", "otrs_kivi", "r", module="ZZZ;system")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kivi_otrs", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})


def test_otrs_config_writes_the_module_with_mode_0640_and_no_password(migrated_dsn: str, tmp_path: Path) -> None:
    """otrs-config -o writes a 0640 module that compiles; stdout gives the same text; no DSN password anywhere."""
    assert PERL is not None
    env = {"KIVI_OTRS_DSN": migrated_dsn}
    target = tmp_path / "Kernel" / "Config" / "Files"
    target.mkdir(parents=True)
    out = target / "ZZZKiviOtrs.pm"
    result = run_cli("otrs-config", "--db-user", "otrs_kivi", "--password-file", "/etc/kivi-otrs/pw", "-o", str(out),
                     env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (mode 0640")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    printed = run_cli("otrs-config", "--db-user", "otrs_kivi", "--password-file", "/etc/kivi-otrs/pw", env=env).stdout
    assert printed == out.read_text(encoding="utf-8")
    assert "package Kernel::Config::Files::ZZZKiviOtrs;" in printed and "CaseSensitive       =>" not in printed
    dsn_password = conninfo.conninfo_to_dict(migrated_dsn).get("password")
    if dsn_password:
        assert str(dsn_password) not in printed + result.stdout + result.stderr
    assert subprocess.run([PERL, "-c", str(out)], capture_output=True, timeout=60).returncode == 0
    nowhere = run_cli("otrs-config", "-o", str(tmp_path / "no" / "dir" / "ZZZKiviOtrs.pm"), env=env)
    assert nowhere.returncode == 2 and nowhere.stderr.startswith("Error: directory ")
    assert len(nowhere.stderr.strip().splitlines()) == 1
