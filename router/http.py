"""The one outgoing HTTP client, and how a response becomes a step result or error.

Every outgoing call (http, slack) goes through ``create_client`` and ``send``: redirects are not
followed (a 3xx is a failure), and failures are classed as transient (connection errors,
timeouts, 408, 429, 5xx) or permanent (any other status outside the success set). The client's
transport is the egress guard (router/egress.py): each connection is checked on the address it
dials, and a refused one is a permanent failure naming the address and how to allow it.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from router import __version__
from router.egress import EgressBlocked, EgressPolicy, GuardedTransport, Resolver
from router.errors import PermanentError, TransientError
from router.results import StepResult
from router.settings import Settings

USER_AGENT = f"event-router/{__version__}"
SNIPPET_BYTES = 4096
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
REDACT_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"})


def create_client(settings: Settings | None = None, *, resolver: Resolver | None = None) -> httpx.AsyncClient:
    """The one outgoing client: no redirects, no proxies from the environment, every connection guarded.

    Without settings, only public addresses are reachable (an empty ``ROUTER_EGRESS_ALLOW``).
    ``resolver`` replaces the system resolver (tests use it to play DNS rebinding).
    """
    policy = EgressPolicy.parse(settings.egress_allow if settings is not None else "")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(15.0),
        limits=limits,
        headers={"user-agent": USER_AGENT},
        transport=GuardedTransport(policy, resolver=resolver, limits=limits),
        trust_env=False,
    )


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("[redacted]" if k.lower() in REDACT_HEADERS else v) for k, v in headers.items()}


def parse_body(content: bytes, content_type: str) -> Any:
    """JSON bodies become data; anything else stays text."""
    text = content.decode("utf-8", errors="replace")
    if "json" in content_type.lower() or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to keep as data
            return text
    return text


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def is_success(status: int, success: list[int] | None = None) -> bool:
    return status in success if success else 200 <= status < 300


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    params: dict[str, Any] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    timeout: float = 15.0,
    success: list[int] | None = None,
) -> StepResult:
    """Send one request; return its result on success, raise TransientError/PermanentError otherwise."""
    summary: dict[str, Any] = {"method": method, "url": url, "headers": redact_headers(headers)}
    if params:
        summary["query"] = params
    try:
        # httpx's ``params=`` replaces a query already in the URL; merge instead, so
        # ``url: https://api/x?api-version=2`` keeps its parameters (a same-named ``query`` key wins).
        target = httpx.URL(url).copy_merge_params(params) if params else url
        request = client.build_request(
            method, target, headers=headers, json=json_body, content=content, timeout=timeout
        )
        summary["url"] = str(request.url)
        body_bytes = request.content
        summary["body"] = body_bytes[:SNIPPET_BYTES].decode("utf-8", errors="replace")
        # httpx's timeout bounds each connect/read/write; this bounds the whole exchange, so a
        # server trickling its answer byte by byte cannot hold a worker slot past ``timeout``.
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise PermanentError(f"response body over {MAX_RESPONSE_BYTES} bytes", request=summary)
                    chunks.append(chunk)
            finally:
                await response.aclose()
    except EgressBlocked as exc:
        raise PermanentError(str(exc), request=summary) from None
    except (httpx.TimeoutException, TimeoutError):
        raise TransientError(f"timed out after {timeout:g} s", request=summary) from None
    except httpx.UnsupportedProtocol:
        raise PermanentError(f"unsupported URL scheme in {url!r}; use http or https", request=summary) from None
    except httpx.InvalidURL as exc:
        raise PermanentError(f"invalid URL {url!r}: {exc}", request=summary) from None
    except httpx.HTTPError as exc:
        raise TransientError(f"connection failed: {type(exc).__name__}: {exc}", request=summary) from None
    raw = b"".join(chunks)
    result = StepResult(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        body=parse_body(raw, response.headers.get("content-type", "")),
        request=summary,
    )
    if is_success(response.status_code, success):
        return result
    snippet = raw[:SNIPPET_BYTES].decode("utf-8", errors="replace")
    message = f"{method} {summary['url']} answered {response.status_code}"
    if 300 <= response.status_code < 400:
        message += f" (redirect to {response.headers.get('location', '?')!r} not followed)"
    output = result.output() | {"snippet": snippet}
    status = response.status_code
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        raise TransientError(message, request=summary, response=output, retry_after=retry_after)
    raise PermanentError(message, request=summary, response=output)
