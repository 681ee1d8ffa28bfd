"""``/api/secrets``: secrets for rules, saved encrypted (admin). Values go in and never come out."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response
from litestar.params import JSONBody, PathParameter
from pydantic import BaseModel, ConfigDict, Field

from router.access import secretstore
from router.api.routes import Routes, SignedIn
from router.records.db import unit_of_work
from router.runtime import Runtime

admin = Routes("access", opt={"role": "admin"})


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(description="The secret; it is encrypted and can never be read back.", min_length=1)


@admin.get("/api/secrets", operation_id="ListSecrets")
async def list_secrets(runtime: Runtime) -> dict[str, Any]:
    """Stored secrets: names, dates, who."""
    async with runtime.sessions() as session:
        rows = await secretstore.list_secrets(session)
    return {
        "secrets": [secretstore.secret_dict(row) for row in rows],
        "environment": secretstore.env_names(),
        "key_configured": bool(runtime.settings.secret_key),
    }


@admin.put("/api/secrets/{name:str}", operation_id="SetSecret")
async def set_secret(
    principal: SignedIn,
    runtime: Runtime,
    name: Annotated[str, PathParameter(description="Secret name: letters, digits and _; rules use secrets.NAME.")],
    data: JSONBody[SecretValue],
) -> Response[Any]:
    """Create or replace a stored secret."""
    async with unit_of_work(runtime.sessions) as session:
        created = await secretstore.save(session, runtime.settings.secret_key, name, data.value, principal.actor)
        row = next(r for r in await secretstore.list_secrets(session) if r.name == name)
    return Response({"secret": secretstore.secret_dict(row), "created": created}, status_code=201 if created else 200)


@admin.delete("/api/secrets/{name:str}", operation_id="DeleteSecret")
async def delete_secret(
    principal: SignedIn, runtime: Runtime, name: Annotated[str, PathParameter(description="Secret name.")]
) -> Response[Any]:
    """Delete a stored secret."""
    async with unit_of_work(runtime.sessions) as session:
        await secretstore.remove(session, name, principal.actor)
    return Response({"deleted": name})
