"""One exception hierarchy for kivi-otrs.

Every message says what went wrong and what to do next, in one line. The CLI
prints ``Error: <message>`` and exits non-zero; no traceback reaches the user.
Messages never contain secrets (passwords, session ids, DSN passwords).
"""

from __future__ import annotations


class KiviOtrsError(Exception):
    """Root of all errors kivi-otrs raises on purpose."""

    exit_code = 1


class ConfigError(KiviOtrsError):
    """A setting is missing, malformed or contradicts another one."""

    exit_code = 2


class DatabaseError(KiviOtrsError):
    """The kivitendo database cannot be reached or refused an operation."""

    exit_code = 3


class MigrationError(DatabaseError):
    """Installing or removing kivi-otrs objects failed (nothing was half-applied)."""


class LockedError(MigrationError):
    """Another kivi-otrs process holds the installation lock."""


class SchemaDriftError(DatabaseError):
    """kivitendo's schema no longer matches what kivi-otrs reads."""


class HelpdeskError(KiviOtrsError):
    """The OTRS/Znuny/OTOBO web service failed or answered something unusable.

    ``error_code`` keeps the OTRS ErrorCode (e.g. ``TicketGet.AccessDenied``)
    when the helpdesk sent one.
    """

    exit_code = 4

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class HelpdeskUnavailable(HelpdeskError):
    """OTRS did not answer (down, timed out, connection closed)."""


class HelpdeskAuthError(HelpdeskError):
    """OTRS rejected the agent login or the session."""


class TemplateError(KiviOtrsError):
    """A position template is broken or uses an unknown variable."""

    exit_code = 5


class BillingError(KiviOtrsError):
    """Positions could not be built or claimed (order, article, ledger)."""

    exit_code = 6


class PortalError(KiviOtrsError):
    """A customer portal password was refused (unknown login, flag not set, weak password, no rights)."""

    exit_code = 8


class RequestError(KiviOtrsError):
    """A request to the local endpoint (``kivi-otrs serve``) is malformed or not allowed.

    ``status`` is the HTTP status the endpoint answers with (4xx).
    """

    exit_code = 7

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
