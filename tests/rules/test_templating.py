"""Templates: leaf-by-leaf rendering, typed single expressions, the sandbox and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from router.errors import TemplateRenderError
from router.rules.templating import compile_tree, render_tree


def render(tree: Any, ctx: dict[str, Any]) -> Any:
    return render_tree(compile_tree(tree, lambda path: "t.yaml:1:1"), ctx, "with")


CTX: dict[str, Any] = {"body": {"n": 3, "items": [1, 2], "name": "Ada", "nested": {"a": [1, {"b": None}]}}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ body.n }}", 3),
        ("{{ body.n * 2.5 }}", 7.5),
        ("{{ body.nested }}", {"a": [1, {"b": None}]}),
        ("{{ body.name }}", "Ada"),
        ("n={{ body.n }}", "n=3"),
        ("{{ body.n }}{{ body.n }}", "33"),
        ("{{ body.items }}", [1, 2]),  # a payload field wins over the dict method of that name
        ("{{ body['items'] | length }}", 2),
        ("{% for k, v in body.nested.items() %}{{ k }}{% endfor %}", "a"),
        ("{{ body.missing | default('none') }}", "none"),
        ("{{ body.nested | tojson }}", '{"a": [1, {"b": null}]}'),
        ("plain text", "plain text"),
    ],
)
def test_leaf_values_keep_their_type(template: str, expected: Any) -> None:
    assert render({"v": template}, CTX) == {"v": expected}


def test_structure_is_kept_leaf_by_leaf() -> None:
    tree = {"json": {"amount": "{{ body.n }}", "tags": ["x", "{{ body.name }}"], "flag": True, "none": None}}
    assert render(tree, CTX) == {"json": {"amount": 3, "tags": ["x", "Ada"], "flag": True, "none": None}}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ body.nope }}", "the event has no field `body.nope`"),
        ("{{ body.keys }}", "gives a method, not a value"),
        ("{{ body.__class__ }}", "access to attribute '__class__' of 'dict' object is unsafe"),
        ("{{ body.items.append(3) }}", "access to attribute 'append' of 'list' object is unsafe"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_render_errors_name_the_leaf(template: str, message: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render({"deep": [{"v": template}]}, CTX)
    assert message in str(info.value)
    assert info.value.path == "with.deep[0].v"
    assert str(info.value).startswith("t.yaml:1:1: with.deep[0].v: ")


PATHS = [
    "body.n",
    "body.name",
    "body.items",
    "body.items[1]",
    "body.items[5]",
    "body.nested.a[1].b",
    "body['name']",
    'body["items"][0]',
    "body.keys",
    "body.missing",
    "body.name.upper",
    "body.n.real",
    "nothing",
    "range",
    "steps.first.body.id",
]


@pytest.mark.parametrize("path", PATHS)
def test_plain_paths_read_directly_give_what_jinja_gives(path: str) -> None:
    """``{{ a.b[0] }}`` is read straight from the data when every step is a key or an index that exists;
    whatever else (attributes, missing keys, names Jinja resolves) gives Jinja's own value or error."""
    from router.rules.templating import ENV, _plain, _plain_path

    ctx = CTX | {"steps": {"first": {"body": {"id": "o-1"}}}}
    assert _plain_path(path) is not None
    try:
        expected: Any = ("ok", _plain(ENV.compile_expression(path, undefined_to_none=False)(**ctx), [0]))
    except Exception as exc:
        expected = ("error", str(exc))
    try:
        got: Any = ("ok", render({"v": "{{ " + path + " }}"}, ctx)["v"])
    except TemplateRenderError as exc:
        got = ("error", exc.message)
    assert got[0] == expected[0], (path, got, expected)
    if got[0] == "ok":
        assert got[1] == expected[1]
    else:  # Jinja's own error, or the plain-words one it is turned into (router.rules.missing)
        assert expected[1] in got[1] or f"has no field `{path}`" in got[1], (path, got, expected)
