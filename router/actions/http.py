"""``http``: outgoing webhooks and API calls; the response feeds later steps."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from router.actions._fields import check_url, header_map
from router.actions.base import Action, ActionConfig, ActionContext, StepResult
from router.pipeline import outbound


class HttpConfig(ActionConfig):
    url: str = Field(description="Absolute http(s) URL.", examples=["https://api.example.com/orders"])
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        "POST", description="HTTP method."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    query: dict[str, Any] = Field(default_factory=dict, description="Query-string parameters.")
    json_: Any = Field(None, alias="json", description="A JSON body; mappings and lists keep their types.")
    body: str | None = Field(None, description="A raw text body (instead of `json`).")
    timeout: float = Field(15.0, gt=0, le=300, description="Seconds to wait for the whole response.")
    success: list[int] | None = Field(
        None, description="Status codes that count as success; default any 2xx.", examples=[[200, 201, 404]]
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> dict[str, str]:
        return header_map(value)

    @model_validator(mode="after")
    def _one_body(self) -> HttpConfig:
        if self.json_ is not None and self.body is not None:
            raise ValueError("set `json` or `body`, not both")
        return self


class HttpAction(Action):
    name = "http"
    description = "Send an HTTP request (a webhook or an API call); its response feeds later steps."
    Config = HttpConfig

    async def execute(self, config: HttpConfig, ctx: ActionContext) -> StepResult:
        headers = {"idempotency-key": ctx.idempotency_key, "webhook-id": ctx.idempotency_key}
        headers |= {k.lower(): v for k, v in config.headers.items()}
        content = config.body.encode("utf-8") if config.body is not None else None
        if content is not None and "content-type" not in headers:
            headers["content-type"] = "text/plain; charset=utf-8"
        return await outbound.send(
            ctx.http,
            config.method,
            config.url,
            headers=headers,
            params=config.query or None,
            json_body=config.json_,
            content=content,
            timeout=config.timeout,
            success=config.success,
        )
