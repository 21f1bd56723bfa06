"""Position texts from Jinja templates (house style 10).

Shipped templates live in ``templates/positions/<language>/<name>.j2``; admins may
override them per installation in ``kivi_otrs.template``. Templates run in Jinja's
sandbox with ``StrictUndefined``; the longdescription (HTML in kivitendo) is
autoescaped, so ticket titles from OTRS (untrusted) cannot inject markup.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import jinja2
import psycopg
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .resources import resource_dir

NAMES = ("description", "longdescription")
NUMBER_FORMATS = {
    "1.000,00": (".", ","),
    "1000,00": ("", ","),
    "1,000.00": (",", "."),
    "1000.00": ("", "."),
    "1'000.00": ("'", "."),
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")

OVERRIDES_SQL = "SELECT name, language, body FROM kivi_otrs.template"


def format_number(value: Decimal | int | float, number_format: str = "1.000,00", min_places: int = 0,
                  max_places: int = 5) -> str:
    """kivitendo's number formats: at least ``min_places`` decimals, trailing zeros cut after that."""
    try:
        thousands, decimal_sep = NUMBER_FORMATS[number_format]
    except KeyError:
        raise TemplateError(
            f"unknown number format {number_format!r}; use one of {', '.join(NUMBER_FORMATS)}") from None
    quantized = Decimal(value).quantize(Decimal(1).scaleb(-max_places))
    sign = "-" if quantized < 0 else ""
    integer, _, fraction = f"{abs(quantized):f}".partition(".")
    fraction = fraction.rstrip("0").ljust(min_places, "0")
    groups: list[str] = []
    while len(integer) > 3:
        groups.insert(0, integer[-3:])
        integer = integer[:-3]
    groups.insert(0, integer)
    text = thousands.join(groups)
    return f"{sign}{text}{decimal_sep}{fraction}" if fraction else f"{sign}{text}"


def plain_text(text: str) -> str:
    """One clean line for kivitendo's plain-text description."""
    return _SPACES.sub(" ", _CONTROL.sub("", text)).strip()


class Renderer:
    """Compiled position templates for one language and number format."""

    def __init__(self, language: str = "de", number_format: str = "1.000,00",
                 overrides: dict[tuple[str, str], str] | None = None) -> None:
        format_number(0, number_format)  # validates
        self.language = language
        self.number_format = number_format
        self._templates: dict[str, jinja2.Template] = {}
        for name in NAMES:
            source = (overrides or {}).get((name, language))
            origin = f"kivi_otrs.template {name}/{language}"
            if source is None:
                path = resource_dir("templates") / "positions" / language / f"{name}.j2"
                if not path.exists():
                    raise TemplateError(f"no {name} template for language {language!r}; use de or en, "
                                        "or add one with kivi-otrs template set")
                source, origin = path.read_text(encoding="utf-8"), str(path)
            env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=(name == "longdescription"),
                                       keep_trailing_newline=False)
            env.filters["num"] = lambda v, places=0: format_number(v, self.number_format, places)
            try:
                self._templates[name] = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"template {origin} line {exc.lineno}: {exc.message}; fix it and retry") from None

    @classmethod
    def from_database(cls, conn: psycopg.Connection[Any], language: str, number_format: str) -> Renderer:
        overrides = {(n, lang): body for n, lang, body in conn.execute(OVERRIDES_SQL).fetchall()}
        return cls(language, number_format, overrides)

    def render(self, name: str, context: dict[str, Any]) -> str:
        try:
            text = self._templates[name].render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name} template uses an unknown variable ({exc.message}); "
                                "see docs for the variables available") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{name} template tried something the sandbox forbids ({exc})") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{name} template failed: {exc}") from None
        return plain_text(text) if name == "description" else text.strip()


def validate_template(name: str, language: str, body: str) -> None:
    """Compile and trial-render an admin's template against sample data before it is stored."""
    if name not in NAMES:
        raise TemplateError(f"unknown template {name!r}; use description or longdescription")
    renderer = Renderer(language if language in ("de", "en") else "de", overrides={(name, language): body})
    renderer.language = language
    renderer.render(name, sample_context())


def sample_context() -> dict[str, Any]:
    """The variables a position template sees, with sample values."""
    return {
        "ticket": {"id": 281653, "number": "2026110410000012", "title": "Beamer <defekt> & Co", "state": "closed successful",
                   "queue": "Raw", "service": "", "type": "Unclassified", "customer_id": "KIVI-1001",
                   "customer_user": "anna.meyer@example.org", "closed": "2026-11-04 16:20"},
        "minutes": Decimal(20), "billed_minutes": Decimal(30), "qty": Decimal("0.5"), "unit": "Std",
        "part": {"partnumber": "SYS-STD", "description": "Systemtechnik Stundensatz"},
        "period": {"start": "2026-10-01", "end": "2026-10-31"},
        "customer": {"number": "KIVI-1001", "name": "Müller & Söhne GmbH"},
        "order": {"ordnumber": "A-2026-001"},
    }
