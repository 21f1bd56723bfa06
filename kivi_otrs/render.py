"""Position texts from Jinja templates (house style 10).

Shipped templates live in ``templates/positions/<language>/<name>.j2``; admins may
override them per installation in ``kivi_otrs.template``. Templates run in Jinja's
sandbox with ``StrictUndefined``; the longdescription (HTML in kivitendo) is
autoescaped, so ticket titles from OTRS (untrusted) cannot inject markup.

Admin templates are also kept within limits (:class:`GuardedEnvironment`): a template
body of at most 16 KiB, a position text of at most 64 KiB, at most 10000 loop items
and 2 seconds per render; operators, method calls, filters and ``~`` that would build
a longer text are refused before they allocate it. A template over a limit is refused
by ``template set`` and, should one get into the table anyway, at render time, each
time with a one-line :class:`TemplateError`.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
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

MAX_SOURCE = 16 * 1024  # characters of one template body
MAX_TEXT = 64 * 1024  # characters of one rendered position text (and of any text built on the way)
MAX_OUTPUT_TOTAL = 1024 * 1024  # characters all {{ ... }} of one render may produce (captured blocks included)
MAX_ITEMS = 10_000  # loop items per render; also the largest range()
MAX_SECONDS = 2.0  # wall time per render
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_WIDE_FORMAT = re.compile(r"[0-9]{6,}")


class LimitExceeded(Exception):
    """A template went over one of the limits above (internal; becomes a TemplateError)."""


class _Budget(threading.local):
    deadline: float | None = None
    items: int = 0
    output: int = 0


_budget = _Budget()


def _tick() -> None:
    if _budget.deadline is not None and time.monotonic() > _budget.deadline:
        raise LimitExceeded(f"took longer than {MAX_SECONDS:g} seconds to render")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_TEXT:
        raise LimitExceeded(f"builds a text or list longer than {MAX_TEXT} characters (64 KiB)")
    return value


def _counted(items: Iterable[Any], separator: str = "") -> Iterator[Any]:
    """Pass items through, refusing once their text would exceed the size limit."""
    total = 0
    for item in items:
        _tick()
        total += len(str(item)) + len(separator)
        if total > MAX_TEXT:
            raise LimitExceeded(f"joins a text longer than {MAX_TEXT} characters (64 KiB)")
        yield item


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A builtin filter with the size and time limits applied (keeps Jinja's pass_* marker)."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        plain = [a for a in args if not isinstance(a, (Context, jinja2.nodes.EvalContext, jinja2.Environment))]
        numbers = [a for a in [*plain[1:], *kwargs.values()] if isinstance(a, int) and not isinstance(a, bool)]
        if name in ("center", "indent", "format", "truncate", "wordwrap") and any(n > MAX_TEXT for n in numbers):
            raise LimitExceeded(f"asks the {name} filter for more than {MAX_TEXT} characters")
        if name == "format" and plain and _WIDE_FORMAT.search(str(plain[0])):
            raise LimitExceeded(f"asks the format filter for more than {MAX_TEXT} characters")
        if name == "replace" and len(plain) >= 3:
            text, old, new = (str(x) for x in plain[:3])
            hits = text.count(old) if old else len(text) + 1
            if len(text) + hits * len(new) > MAX_TEXT:
                raise LimitExceeded(f"replaces into a text longer than {MAX_TEXT} characters (64 KiB)")
        if name == "join" and len(plain) >= 1:
            separator = str(plain[1] if len(plain) > 1 else kwargs.get("d", ""))
            args = tuple(_counted(a, separator) if a is plain[0] else a for a in args)
        return _check_size(func(*args, **kwargs))

    return guarded


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_ITEMS:
        raise LimitExceeded(f"asks for a range of {len(numbers)} items (at most {MAX_ITEMS})")
    return numbers


class _GuardedCodeGenerator(CodeGenerator):
    """Routes ``a ~ b`` through the environment's size check."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guarded_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class GuardedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox plus limits on text size, loop items and render time (house style 10)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize_output, **options)
        self.globals["range"] = _limited_range
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}

    @staticmethod
    def _finalize_output(value: Any) -> Any:
        text_len = len(value) if isinstance(value, str) else 0
        if text_len > MAX_TEXT:
            raise LimitExceeded(f"outputs a value longer than {MAX_TEXT} characters (64 KiB)")
        if _budget.deadline is not None:
            _tick()
            _budget.output += text_len
            if _budget.output > MAX_OUTPUT_TOTAL:
                raise LimitExceeded(f"produces more than {MAX_OUTPUT_TOTAL} characters of output")
        return value

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("guarded_items"), [loop.iter], [], None, None,
                                   lineno=loop.iter.lineno)
        return tree

    def guarded_items(self, items: Iterable[Any]) -> Iterator[Any]:
        """Every for loop iterates through this: counts items against the per-render limit."""
        for item in items:
            _tick()
            _budget.items += 1
            if _budget.items > MAX_ITEMS:
                raise LimitExceeded(f"loops over more than {MAX_ITEMS} items")
            yield item

    def guarded_text(self, value: Any) -> Any:
        _tick()
        return _check_size(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        sized = (str, bytes, list, tuple)
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, sized) and isinstance(count, int) and len(seq) * count > MAX_TEXT:
                    raise LimitExceeded(f"builds a text or list longer than {MAX_TEXT} characters (64 KiB)")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > 4096:
                raise LimitExceeded("multiplies numbers larger than 4096 bits")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                    and right * max(left.bit_length(), 1) > 4096:
                raise LimitExceeded("computes a power larger than 4096 bits")
        elif operator == "+":
            if isinstance(left, sized) and isinstance(right, sized) and len(left) + len(right) > MAX_TEXT:
                raise LimitExceeded(f"builds a text or list longer than {MAX_TEXT} characters (64 KiB)")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise LimitExceeded(f"formats a text wider than {MAX_TEXT} characters")
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            numbers = [a for a in [*args, *kwargs.values()] if isinstance(a, int)]
            if method in _WIDTH_METHODS and any(n > MAX_TEXT for n in numbers):
                raise LimitExceeded(f"asks str.{method} for more than {MAX_TEXT} characters")
            if method in ("format", "format_map") and _WIDE_FORMAT.search(owner):
                raise LimitExceeded(f"formats a text wider than {MAX_TEXT} characters")
            if method == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                hits = owner.count(old) if old else len(owner) + 1
                if len(owner) + hits * len(new) > MAX_TEXT:
                    raise LimitExceeded(f"replaces into a text longer than {MAX_TEXT} characters (64 KiB)")
            if method == "join" and args:
                args = (list(_counted(args[0], owner)), *args[1:])
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def decode_template(data: bytes, origin: str) -> str:
    """A template file's bytes as text; not UTF-8 or too big is a one-line error naming the file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template file {origin} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start}); save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _check_source(origin: str, source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise TemplateError(f"template {origin} has {len(source)} characters; at most {MAX_SOURCE} (16 KiB) are allowed")
    if "\x00" in source:
        raise TemplateError(f"template {origin} contains a NUL character; remove it")


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
        self._origins: dict[str, str] = {}
        for name in NAMES:
            source = (overrides or {}).get((name, language))
            origin = f"kivi_otrs.template {name}/{language}"
            if source is None:
                path = resource_dir("templates") / "positions" / language / f"{name}.j2"
                if not path.exists():
                    raise TemplateError(f"no {name} template for language {language!r}; use de or en, "
                                        "or add one with kivi-otrs template set")
                source, origin = _read_shipped(path), str(path)
            _check_source(origin, source)
            env = GuardedEnvironment(undefined=jinja2.StrictUndefined, autoescape=(name == "longdescription"),
                                     keep_trailing_newline=False)
            env.filters["num"] = _guard_filter("num", lambda v, places=0: format_number(v, self.number_format, places))
            self._origins[name] = origin
            try:
                self._templates[name] = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"template {origin} line {exc.lineno}: {exc.message}; fix it and retry") from None
            except (LimitExceeded, RecursionError, MemoryError) as exc:
                raise TemplateError(f"template {origin} is too large or deeply nested to compile ({exc}); "
                                    "simplify it") from None

    @classmethod
    def from_database(cls, conn: psycopg.Connection[Any], language: str, number_format: str) -> Renderer:
        overrides = {(n, lang): body for n, lang, body in conn.execute(OVERRIDES_SQL).fetchall()}
        return cls(language, number_format, overrides)

    def render(self, name: str, context: dict[str, Any]) -> str:
        origin = self._origins.get(name, name)
        _budget.deadline, _budget.items, _budget.output = time.monotonic() + MAX_SECONDS, 0, 0
        try:
            parts: list[str] = []
            size = 0
            for chunk in self._templates[name].generate(context):
                size += len(chunk)
                if size > MAX_TEXT:
                    raise LimitExceeded(f"renders more than {MAX_TEXT} characters (64 KiB)")
                parts.append(chunk)
            text = "".join(parts)
        except LimitExceeded as exc:
            raise TemplateError(f"{name} template ({origin}) {exc}; make it simpler and save it again with "
                                "kivi-otrs template set") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{name} template uses an unknown variable ({exc.message}); "
                                "see docs for the variables available") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"{name} template tried something the sandbox forbids ({exc})") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{name} template failed: {exc}") from None
        except RecursionError:
            raise TemplateError(f"{name} template ({origin}) recurses too deeply; make it simpler") from None
        except MemoryError:
            raise TemplateError(f"{name} template ({origin}) ran out of memory; make it simpler") from None
        except ZeroDivisionError:
            raise TemplateError(f"{name} template ({origin}) failed: division by zero; "
                                "fix it with kivi-otrs template set") from None
        except Exception as exc:  # an admin's template may raise anything
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise TemplateError(f"{name} template ({origin}) failed: {type(exc).__name__}"
                                f"{': ' + first if first else ''}; fix it with kivi-otrs template set") from None
        finally:
            _budget.deadline = None
        return plain_text(text) if name == "description" else text.strip()


def validate_template(name: str, language: str, body: str) -> None:
    """Compile and trial-render an admin's template against sample data before it is stored."""
    if name not in NAMES:
        raise TemplateError(f"unknown template {name!r}; use description or longdescription")
    _check_source(f"{name}/{language}", body)
    renderer = Renderer(language if language in ("de", "en") else "de", overrides={(name, language): body})
    renderer.language = language
    renderer.render(name, sample_context())


def _read_shipped(path: Path) -> str:
    try:
        return decode_template(path.read_bytes(), str(path))
    except OSError as exc:
        raise TemplateError(f"template file {path} cannot be read ({exc.strerror}); reinstall kivi-otrs") from None


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
