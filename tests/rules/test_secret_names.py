"""Which environment variables rules can read as ``secrets.NAME``."""

from __future__ import annotations


def test_the_encryption_key_is_not_a_rule_secret() -> None:
    from router.rules.compile import secrets_from_env

    found = secrets_from_env({"ROUTER_SECRET_KEY": "fernet", "ROUTER_SECRET_SLACK": "s", "ROUTER_SECRETS": "x"})
    assert found == {"SLACK": "s"}
