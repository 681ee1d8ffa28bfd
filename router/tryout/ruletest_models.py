"""Rule tests: the format of ``*.test.yaml`` files (cases, recorded responses, expectations)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Path_ = tuple[str | int, ...]
RECEIVED_AT = "2026-01-01T00:00:00+00:00"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Response(_Model):
    """A recorded response: what the far side answered; later steps read it as ``steps.<id>``."""

    status: int = Field(200, description="HTTP status.")
    headers: dict[str, str] = Field(default_factory=dict, description="Response headers.")
    body: Any = Field(None, description="Response body (JSON, or text).")


class StepCase(_Model):
    """The recorded response of one step, and what it must render."""

    response: Response | None = Field(None, description="The step's recorded response (default: 200, no body).")
    skipped: bool | None = Field(None, description="true: the step's `when` must be false; false: it must run.")
    error: str | None = Field(None, description="The step must fail to render with a message containing this.")
    method: str | None = Field(None, description="The request's method (http, slack).")
    url: str | None = Field(None, description="The request's full URL, query included (http, slack).")
    query: dict[str, Any] | None = Field(None, description="Subset of the query parameters (http).")
    headers: dict[str, str] | None = Field(None, description="Subset of the request headers, any case (http, slack).")
    json_: Any = Field(None, alias="json", description="Subset of the JSON body (http, slack).")
    body: str | None = Field(None, description="The text body (http).")
    with_: dict[str, Any] | None = Field(None, alias="with", description="Subset of the rendered `with` (any action).")


class RecordedPage(_Model):
    """One recorded response of the polled API (a page), in the order the poll asks for them."""

    status: int = Field(200, description="HTTP status.")
    headers: dict[str, str] = Field(default_factory=dict, description="Response headers (Link, ETag…).")
    body: Any = Field(None, description="Response body, inline.")
    body_file: str | None = Field(None, description="Response body from a file, relative to the test file.")


class PollCase(_Model):
    """A poll of the case's source run on recorded pages instead of the network."""

    cursor: Any = Field(None, description="The cursor kept from the last poll (default: none yet).")
    stored: list[str] = Field(
        default_factory=list, description="Ids already stored (by an earlier poll, or a webhook for reconcile)."
    )
    pages: list[RecordedPage] = Field(min_length=1, description="The responses, page by page.")


class RequestCase(_Model):
    """What the poll sent for one page (subsets)."""

    method: str | None = Field(None, description="HTTP method.")
    url: str | None = Field(None, description="The URL without the query (a next page's URL: as given).")
    query: dict[str, Any] | None = Field(None, description="Subset of the query parameters.")
    headers: dict[str, str] | None = Field(None, description="Subset of the request headers, any case.")


class Case(_Model):
    """One incoming request (or a poll on recorded pages) and what the rules must do with it."""

    name: str = Field(description="What the case shows.")
    source: str = Field(description="The source the request comes in on.")
    rule: str | None = Field(None, description="Rule whose steps `steps` checks; default: the one in `matches`.")
    method: str = Field("POST", description="HTTP method of the incoming request.")
    headers: dict[str, str] = Field(default_factory=dict, description="Incoming headers.")
    query: dict[str, Any] = Field(default_factory=dict, description="Incoming query parameters.")
    body: Any = Field(None, description="Incoming body, inline.")
    body_file: str | None = Field(None, description="Incoming body from a file, relative to the test file.")
    verify: bool = Field(False, description="Check the source's signature against `headers`.")
    secrets: dict[str, str] = Field(default_factory=dict, description="`secrets.NAME` for this case.")
    received_at: str = Field(RECEIVED_AT, description="The event's time (also `now`, and the signature clock).")
    matches: list[str] | None = Field(None, description="Rules that must match; [] means none may.")
    not_matches: list[str] = Field(default_factory=list, description="Rules that must not match.")
    steps: dict[str, StepCase] = Field(default_factory=dict, description="Per step id: response and expectations.")
    poll: PollCase | None = Field(
        None, description="Poll the source on recorded pages; the emitted item `item` is the event checked."
    )
    emits: list[str] | None = Field(None, description="With `poll`: the ids that become events, in order.")
    next_cursor: Any = Field(None, description="With `poll`: the cursor kept after it (null: none).")
    requests: list[RequestCase] | None = Field(None, description="With `poll`: what it sent, page by page.")
    item: int = Field(0, ge=0, description="With `poll`: which emitted event `matches` and `steps` check.")


class TestFile(_Model):
    """A rule-test file: ``secrets`` shared by its cases, and the cases."""

    secrets: dict[str, str] = Field(default_factory=dict, description="`secrets.NAME` for every case.")
    cases: list[Case] = Field(min_length=1, description="The cases.")


def model_at(loc: Path_) -> type[BaseModel]:
    kinds: dict[str, type[BaseModel]] = {"cases": Case, "steps": StepCase, "response": Response}
    kinds |= {"poll": PollCase, "pages": RecordedPage, "requests": RequestCase}
    model: type[BaseModel] = TestFile
    parent: Any = None
    for part in loc[:-1]:
        if parent == "steps" and isinstance(part, str):
            model = StepCase
        elif isinstance(part, str) and part in kinds:
            model = kinds[part] if part != "steps" else model
        parent = part
    return model


def json_schema_text() -> str:
    """The JSON Schema of rule-test files (``*.test.yaml``), for editors."""
    import json

    schema = TestFile.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Event Router rule test",
        "description": "Cases for `router test`: incoming requests, recorded responses and expectations.",
    } | {k: v for k, v in schema.items() if k != "title"}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
