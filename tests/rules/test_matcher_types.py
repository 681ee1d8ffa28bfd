"""A filter comparing values of different types is a typed error for that rule, never a crash."""

from __future__ import annotations

import pytest

from router.errors import TemplateRenderError
from router.rules.filters import compile_expression


@pytest.mark.parametrize(
    "expression",
    ['headers."content-length" > `100`', "contains(body.n, `5`)", "body.s < `1`"],
)
def test_type_mismatch_is_a_render_error(expression: str) -> None:
    data = {"headers": {"content-length": "250"}, "body": {"n": "abc", "s": "x"}}
    with pytest.raises(TemplateRenderError, match=r"type mismatch|invalid type"):
        compile_expression(expression, "r.yaml:1:1").search(data)
