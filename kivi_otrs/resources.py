"""Where the shipped SQL, migrations and templates live.

In an installed wheel they sit inside the package (``kivi_otrs/migrations`` ...);
in a git checkout or editable install they are the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("migrations", "sql", "templates", "kivitendo")

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(kind: str) -> Path:
    """The folder holding one kind of shipped file."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}")
    for candidate in (_PACKAGE / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kivi-otrs is installed without its {kind}/ folder; reinstall the package")
