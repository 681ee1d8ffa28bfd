"""How the API declares its operations (router/api/routes.py) and the parameters and paging they share
(router/api/params.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar

from router.api.params import page_of
from router.api.routes import Routes, summary_of


async def _documented() -> dict[str, Any]:
    """Say what it does.

    More for the code's readers.
    """
    return {}


async def _question() -> dict[str, Any]:
    """Would it match?"""
    return {}


async def _undocumented() -> dict[str, Any]:
    return {}


def test_the_summary_is_the_docstring_s_first_line_without_its_period() -> None:
    assert summary_of(_documented) == "Say what it does"
    assert summary_of(_question) == "Would it match?"
    with pytest.raises(TypeError, match="docstring is its OpenAPI summary"):
        summary_of(_undocumented)


def test_routes_give_every_operation_the_module_s_tag_status_and_principal() -> None:
    routes = Routes("things", opt={"role": "admin"})
    handler = routes.delete("/api/things/{thing_id:str}", operation_id="DeleteThing")(_documented)
    assert handler.http_methods == {"DELETE"}
    assert handler.tags == ["things"]
    assert handler.status_code == 200  # not Litestar's 204: a DELETE answers with what it removed
    assert handler.summary == "Say what it does"
    assert handler.operation_id == "DeleteThing"
    assert handler.opt == {"role": "admin"}
    assert "principal" in (handler.dependencies or {})


def test_what_an_operation_gives_wins_over_what_its_module_shares() -> None:
    routes = Routes("things", opt={"role": "admin"})
    handler = routes.post("/api/things", status_code=201, opt={"role": "viewer"}, summary="Made here")(_undocumented)
    assert (handler.status_code, handler.opt, handler.summary) == (201, {"role": "viewer"}, "Made here")


def test_every_api_operation_has_a_summary(app_schema: dict[str, Any]) -> None:
    operations = [op for path in app_schema["paths"].values() for op in path.values()]
    assert operations
    assert all(op.get("summary") and not op["summary"].endswith(".") for op in operations)


@pytest.fixture
def app_schema() -> dict[str, Any]:
    from router.app import create_app
    from router.settings import Settings

    app: Litestar = create_app(
        Settings(database_url="sqlite+aiosqlite:///:memory:", redis_url="redis://127.0.0.1:1/0"),
        migrate=False,
        ui_pages=False,
    )
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


@dataclass
class _Row:
    id: str


def test_a_page_of_rows_read_one_over_the_limit() -> None:
    rows = [_Row("c"), _Row("b"), _Row("a")]
    assert page_of(rows, 2) == (rows[:2], "b")  # a third row was there: `next` is the page's last id
    assert page_of(rows, 3) == (rows, None)
    assert page_of([], 5) == ([], None)
