"""One way to fail: the error tree in router/errors.py is complete, and every client error carries its answer."""

from __future__ import annotations

import inspect
import re

import pytest

from router import errors
from router.errors import ClientError, RouterError

CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == errors.__name__
}


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    drawn = re.findall(r"^    [│ ]*(?:├── |└── )?([A-Z]\w+)\s", doc, re.M)
    assert set(drawn) == set(CLASSES), "the tree in router/errors.py's docstring and its classes differ"
    depth = {m.group(2): len(m.group(1)) for m in re.finditer(r"^(    [│ ]*(?:├── |└── )?)([A-Z]\w+)\s", doc, re.M)}
    for name, cls in CLASSES.items():
        if cls is RouterError:
            continue
        parent = next(base for base in cls.__mro__[1:] if base.__name__ in CLASSES)
        assert depth[name] == depth[parent.__name__] + 4, f"{name} is drawn under the wrong parent"


@pytest.mark.parametrize("name", sorted(n for n, c in CLASSES.items() if issubclass(c, ClientError)))
def test_every_client_error_has_a_status_and_a_title(name: str) -> None:
    cls = CLASSES[name]
    assert 400 <= cls.status < 500, name
    assert cls.title[:1].isupper(), name


def test_a_client_error_is_its_detail_and_a_raise_may_override_status_and_title() -> None:
    exc = ClientError("name: too long", status=409, title="Conflict")
    assert (str(exc), exc.detail, exc.status, exc.title) == ("name: too long", "name: too long", 409, "Conflict")
    assert str(errors.NotFoundError("no user 'x'")) == "no user 'x'"
    assert (errors.NotFoundError.status, errors.ConflictError.status, errors.AuthError.status) == (404, 409, 400)
    assert str(ClientError()) == "Invalid request"
    retry = errors.RetryError(409, "run r is running")
    assert isinstance(retry, errors.ReplayError)
    assert (retry.status, retry.title, str(retry)) == (409, "Cannot retry", "run r is running")


def test_a_rule_set_error_answers_422_with_each_problem() -> None:
    exc = errors.RuleSetError([errors.RuleError("bad filter", file="a.yaml", line=3, col=5, path="rules[0]")])
    assert str(exc) == "a.yaml:3:5: rules[0]: bad filter"
    assert (exc.status, exc.title) == (422, "Invalid rule")
    assert exc.detail == "1 problem: a.yaml:3:5: rules[0]: bad filter"
    assert exc.extra()["errors"][0]["message"] == "bad filter"
