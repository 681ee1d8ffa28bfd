"""A change a service refuses (a ClientError) answers with the page's own form error, its status kept.

Each form's refusal is pinned here: where the message shows (beside the form that was sent, or on top),
the status, and what the form keeps (the name typed, the YAML pasted); a replay or retry that cannot be
done is the notice beside the event's runs, and a run with no event a 404.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

import pytest
from cryptography.fernet import Fernet
from litestar import Litestar, Response, post
from litestar.params import PathParameter
from litestar.testing import AsyncTestClient

from router.errors import ClientError, ConflictError
from router.records.models import UiRule
from router.ui.forms import refusals
from tests.conftest import Router, RouterFactory, sign_in

pytestmark = pytest.mark.ui

RULES = {
    "r.yaml": """
        sources:
          - {id: shop, verify: {scheme: none}}
          - {id: sink}
        rules:
          - id: r
            source: shop
            steps:
              - id: e
                action: emit
                with: {source: sink}
    """
}
UI_RULE = "id: drafted\nsource: shop\nenabled: false\nsteps:\n  - id: e\n    action: emit\n    with: {source: sink}\n"


async def post_form(r: Router, path: str, csrf: str, **fields: str) -> tuple[int, str]:
    response = await r.client.post(path, data={"_csrf": csrf, **fields})
    return response.status_code, html.unescape(response.text)


def htmx(csrf: str) -> dict[str, str]:
    return {"hx-request": "true", "x-csrf-token": csrf}


def field_error(page: str) -> str:
    found = re.search(r'<p class="field-error" role="alert" data-testid="error">([^<]*)</p>', page)
    return found.group(1) if found else ""


def between(page: str, start: str, end: str) -> str:
    at = page.index(start)
    return page[at : page.index(end, at)]


async def test_refused_secrets_show_beside_their_form(router_factory: RouterFactory) -> None:
    key = Fernet.generate_key().decode()
    async with router_factory(RULES, worker=False, env={"ROUTER_SECRET_KEY": key}, secret_key=key) as r:
        csrf = await sign_in(r)
        status, page = await post_form(r, "/settings/secrets", csrf, name="EMPTY_ONE", value="")
        assert status == 400
        assert field_error(page) == "EMPTY_ONE: the value is empty"
        assert 'value="EMPTY_ONE" autocomplete="off" data-testid="secret-name"' in page  # the name typed is kept

        await post_form(r, "/settings/secrets", csrf, name="A_TOKEN", value="a-value-1")
        status, page = await post_form(r, "/settings/secrets", csrf, name="A_TOKEN", value="", replace="1")
        assert status == 400
        assert field_error(between(page, 'data-name="A_TOKEN"', "</tr>")) == "A_TOKEN: the value is empty"
        assert 'value="" autocomplete="off" data-testid="secret-name"' in page

        status, page = await post_form(r, "/settings/secrets/GHOST/delete", csrf)
        assert status == 404
        assert '<p class="error" role="alert" data-testid="error">name: no stored secret \'GHOST\'</p>' in page


async def test_refused_user_and_token_changes_keep_their_status(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        await post_form(r, "/settings/users", csrf, username="newbie", role="viewer", password="p" * 12)
        status, page = await post_form(r, "/settings/users/newbie", csrf, action="fly")
        assert status == 400
        row = between(page, 'data-username="newbie"', "</tr>")
        assert field_error(row) == "action: 'fly' is not one of role, disable, enable, password"
        status, page = await post_form(r, "/settings/users", csrf, username="newbie", role="viewer", password="")
        assert status == 409
        assert field_error(between(page, 'data-testid="user-create-form"', "</section>")).startswith("username:")
        status, page = await post_form(r, "/settings/tokens/nope/revoke", csrf)
        assert status == 404
        top = re.search(r'<p class="error" role="alert" data-testid="error">([^<]*)</p>', page)
        assert top is not None, "the token's row is gone, so its error must show at the top of the page"
        assert html.unescape(top.group(1)).startswith("token: no token with id 'nope'")


async def test_refused_rule_changes_list_each_problem(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        saved = await r.client.put("/api/ui-rules/drafted", json={"yaml": UI_RULE})
        assert saved.status_code == 201, saved.text
        async with r.session() as session:
            row = await session.get(UiRule, "drafted")
            row.yaml = UI_RULE.replace("source: shop", "source: gone")  # its source left the rule files
            await session.commit()
        csrf = await sign_in(r)

        status, page = await post_form(r, "/rules/drafted/enable", csrf)
        assert status == 422
        error = between(page, 'data-testid="error"', "</div>")
        assert "<p>Rule drafted cannot be enabled:</p>" in error
        assert "gone" in error
        assert '<ul class="rule-errors">' in error
        status, page = await post_form(r, "/rules/drafted/duplicate", csrf)
        assert status == 422
        assert "<p>Rule drafted cannot be copied:</p>" in page
        status, page = await post_form(r, "/rules/ghost/disable", csrf)
        assert status == 404
        assert "<p>There is no UI rule 'ghost'.</p>" in page
        status, page = await post_form(r, "/rules/ghost/duplicate", csrf)
        assert status == 404
        assert "<p>There is no rule 'ghost'.</p>" in page

        status, page = await post_form(r, "/rules/import", csrf, yaml="rules: []\n")
        assert status == 422
        assert "<p>The YAML does not parse:</p>" in page
        assert "the file's `rules:` list is empty" in page
        assert ">rules: []\n</textarea>" in page  # the pasted YAML is kept


async def test_refused_replays_and_retries_are_the_notice_beside_the_runs(router_factory: RouterFactory) -> None:
    async with router_factory(RULES) as r:
        event = await r.wait_event((await r.hook("shop", {"n": 1})).json()["event_id"])
        run_id = event["runs"][0]["id"]
        csrf = await sign_in(r, "operator", "editor")

        now = await r.client.post(f"/runs/{run_id}/retry-now", headers=htmx(csrf))
        assert now.status_code == 200
        assert f"Cannot retry now: run {run_id} is succeeded; Retry now is for a run waiting" in now.text
        assert '<section id="runs"' in now.text
        plain = await r.client.post(f"/runs/{run_id}/retry", data={"_csrf": csrf}, follow_redirects=False)
        assert plain.status_code == 303
        assert plain.headers["location"].startswith(f"/events/{event['id']}?flash=")
        shown = await r.client.get(plain.headers["location"])
        assert f"Cannot retry: run {run_id} is succeeded; only failed or dead runs are retried" in shown.text

        for path in ("/runs/NO-SUCH-RUN/retry-now", "/runs/NO-SUCH-RUN/retry"):
            missing = await r.client.post(path, headers=htmx(csrf) | {"accept": "text/html"})
            assert missing.status_code == 404
            assert "no run &#39;NO-SUCH-RUN&#39;" in missing.text
        gone = await r.client.post("/events/NO-SUCH-EVENT/replay", headers=htmx(csrf) | {"accept": "text/html"})
        assert gone.status_code == 404
        assert "no event &#39;NO-SUCH-EVENT&#39;" in gone.text


async def _change(name: Annotated[str, PathParameter()]) -> str:
    raise ConflictError(f"{name} is taken")


async def _answer(exc: ClientError, *, name: str, form: str) -> Response[str]:
    return Response(f"{form} {name}: {exc.status} {exc.title}: {exc}", status_code=exc.status)


async def test_refusals_hand_the_error_and_the_handlers_arguments_to_the_answer() -> None:
    marked = post("/marked/{name:str}", status_code=200)(refusals(_answer, form="f")(_change))
    plain = post("/plain/{name:str}", status_code=200)(_change)
    async with AsyncTestClient(Litestar([marked, plain])) as client:
        answered = await client.post("/marked/bob")
        assert (answered.status_code, answered.text) == (409, "f bob: 409 Conflict: bob is taken")
        unmarked = await client.post("/plain/bob")
        assert unmarked.status_code == 500  # not marked: the app's exception handlers answer (none here)
