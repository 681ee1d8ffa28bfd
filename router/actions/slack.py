"""``slack``: a message to an incoming-webhook URL, or ``chat.postMessage`` with a bot token."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from router.actions._fields import check_header_text, check_url
from router.actions.base import Action, ActionConfig, ActionContext, StepResult
from router.errors import PermanentError, TransientError
from router.pipeline import outbound


class SlackConfig(ActionConfig):
    url: str | None = Field(None, description="Incoming-webhook URL (https://hooks.slack.com/services/…).")
    token: str | None = Field(None, description="Bot token for chat.postMessage (use `{{ secrets.NAME }}`).")
    channel: str | None = Field(None, description="Channel id or name, with `token`.")
    text: str | None = Field(None, description="Message text (mrkdwn); the fallback when `blocks` are set.")
    blocks: list[dict[str, Any]] | None = Field(None, description="Block Kit blocks.")
    username: str | None = Field(None, description="Override the poster's name.")
    icon_emoji: str | None = Field(None, description="Override the poster's icon, e.g. `:rocket:`.")
    thread_ts: str | None = Field(None, description="Reply in this thread.")
    timeout: float = Field(15.0, gt=0, le=300, description="Seconds to wait for Slack.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value) if value is not None else None

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        # Refused here, the message cannot carry the token (the HTTP layer's error would quote it).
        return check_header_text(value, "token") if value is not None else None

    @model_validator(mode="after")
    def _mode(self) -> SlackConfig:
        if (self.url is None) == (self.token is None):
            raise ValueError("set either `url` (incoming webhook) or `token` + `channel` (chat.postMessage)")
        if self.token is not None and not self.channel:
            raise ValueError("`token` needs a `channel`")
        if not self.text and not self.blocks:
            raise ValueError("set `text`, `blocks` or both")
        return self


class SlackAction(Action):
    name = "slack"
    description = "Post a Slack message through an incoming webhook or chat.postMessage."
    Config = SlackConfig

    async def execute(self, config: SlackConfig, ctx: ActionContext) -> StepResult:
        payload: dict[str, Any] = {
            k: v
            for k, v in {
                "text": config.text,
                "blocks": config.blocks,
                "username": config.username,
                "icon_emoji": config.icon_emoji,
                "thread_ts": config.thread_ts,
            }.items()
            if v is not None
        }
        headers = {"idempotency-key": ctx.idempotency_key}
        if config.url is not None:
            return await outbound.send(
                ctx.http, "POST", config.url, headers=headers, json_body=payload, timeout=config.timeout
            )
        payload["channel"] = config.channel
        headers["authorization"] = f"Bearer {config.token}"
        headers["content-type"] = "application/json; charset=utf-8"
        url = ctx.settings.slack_api_url.rstrip("/") + "/chat.postMessage"
        result = await outbound.send(ctx.http, "POST", url, headers=headers, json_body=payload, timeout=config.timeout)
        body = result.body if isinstance(result.body, dict) else {}
        if body.get("ok") is not True:
            error = str(body.get("error") or "no ok:true in the response")
            cls = TransientError if error in ("ratelimited", "internal_error", "fatal_error") else PermanentError
            raise cls(f"Slack chat.postMessage failed: {error}", request=result.request, response=result.output())
        return result
