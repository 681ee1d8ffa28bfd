"""JMESPath filters: compiled once at load, evaluated per event with JMESPath's own truthiness."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmes_errors
from jmespath import functions as jmes_functions
from jmespath.parser import ParsedResult

from router.errors import TemplateRenderError


class _Functions(jmes_functions.Functions):  # type: ignore[misc]
    """JMESPath's built-ins; custom functions are added here."""


OPTIONS = jmespath.Options(custom_functions=_Functions())


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    parsed: ParsedResult
    location: str = ""

    def search(self, data: Mapping[str, Any]) -> Any:
        try:
            return self.parsed.search(data, options=OPTIONS)
        except jmes_errors.JMESPathError as exc:
            raise TemplateRenderError(str(exc), location=self.location) from None

    def test(self, data: Mapping[str, Any]) -> bool:
        return truthy(self.search(data))


def compile_expression(source: str, location: str = "") -> Expression:
    """Compile a JMESPath expression; raises ``jmespath.exceptions.ParseError`` on bad syntax."""
    return Expression(source, jmespath.compile(source), location)


def syntax_error_message(exc: Exception) -> str:
    """A one-line message for a JMESPath parse error."""
    if isinstance(exc, jmes_errors.ParseError):
        token = exc.token_value if exc.token_value is not None else ""
        return f"invalid JMESPath: {exc.msg} at column {exc.lex_position} (near {token!r})"
    return f"invalid JMESPath: {exc}"


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; every number (0 too) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True
