"""The deployment files keep their production shape: docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed (compose with ruamel.yaml, which resolves the ``<<``
merge keys and anchors as compose does), and every command the containers run is parsed by the real
``router`` CLI, so a renamed command or option fails here rather than in a deployment.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
from ruamel.yaml import YAML

from router.cli import commands as cli
from router.settings import Settings, load_settings
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ROUTER_SERVICES = ("migrate", "web", "worker")


# -- compose helpers ---------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment in either compose form: a mapping, or a list of KEY=VALUE / KEY."""
    raw = service.get("environment") or {}
    if isinstance(raw, dict):
        return {str(k): None if v is None else str(v) for k, v in raw.items()}
    out: dict[str, str | None] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool


def mounts(service: dict[str, Any]) -> list[Mount]:
    """A service's volumes in either compose syntax: "src:dst[:opts]" or {source, target, read_only}."""
    out = []
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            out.append(Mount(str(item.get("source", "")), str(item["target"]), bool(item.get("read_only", False))))
            continue
        parts = str(item).split(":")
        if len(parts) == 1:
            out.append(Mount("", parts[0], False))
        else:
            options = parts[2].split(",") if len(parts) > 2 else []
            out.append(Mount(parts[0], parts[1], "ro" in options))
    return out


def argv(value: Any) -> list[str]:
    """A command or entrypoint as a list of arguments (compose accepts a string or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck is disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


# -- Dockerfile helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments; shell form is refused so signals reach the process."""
        try:
            value = json.loads(self.args)
        except ValueError:
            raise AssertionError(f'{self.keyword} {self.args} should use the exec form: ["..."]') from None
        assert isinstance(value, list), self.args
        assert all(isinstance(v, str) for v in value), self.args
        return value


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (each starting with its FROM)."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    stages: list[list[Instruction]] = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{text!r} comes before the first FROM"
        stages[-1].append(instruction)
    return stages


def last(stage: list[Instruction], keyword: str) -> Instruction | None:
    found = [i for i in stage if i.keyword == keyword]
    return found[-1] if found else None


def dockerignored(name: str) -> bool:
    """Whether a top-level path is left out of the build context (last matching pattern wins)."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if fnmatch.fnmatchcase(name, pattern):
            excluded = not negate
    return excluded


def image_entrypoint() -> list[str]:
    entry = last(dockerfile_stages()[-1], "ENTRYPOINT")
    assert entry is not None, "the final stage has no ENTRYPOINT"
    return entry.exec_form()


def parse_router_command(args: list[str]) -> click.Context:
    """Parse ``router ARGS`` with the real CLI, without running it; a bad command or option raises."""
    command: click.Command = cli.main
    ctx = click.Context(command, info_name="router")
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"`router {' '.join(args)}` names no subcommand"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`router {' '.join(args)}`: router has no command {name!r}"
        command = sub
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
        else:
            return command.make_context(name, rest, parent=ctx)
    raise AssertionError("unreachable")


# -- compose: services and images --------------------------------------------------------------


def test_production_services_are_defined(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", "migrate", "web", "worker"} <= set(services)


def test_backing_services_use_pinned_major_images(services: dict[str, dict[str, Any]]) -> None:
    assert str(services["postgres"]["image"]).split("@")[0] == "postgres:16"
    assert str(services["redis"]["image"]).split("@")[0] == "redis:7"


def test_router_services_build_the_repository_image(services: dict[str, dict[str, Any]]) -> None:
    images = set()
    for name in ROUTER_SERVICES:
        build = services[name].get("build")
        context = build.get("context", ".") if isinstance(build, dict) else build
        assert context in (".", "./"), f"{name} does not build this repository"
        if isinstance(build, dict):
            assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        images.add(services[name].get("image"))
    assert len(images) == 1, f"migrate, web and worker should run one image, not {images}"


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = argv(redis.get("command"))
    assert command[:1] == ["redis-server"]
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs.get("--appendonly") == "yes"
    assert pairs.get("--appendfsync") == "everysec"
    assert any(m.target == "/data" and m.source for m in mounts(redis)), "Redis data is not on a volume"


def test_postgres_data_is_on_a_volume(services: dict[str, dict[str, Any]]) -> None:
    assert any(m.target == "/var/lib/postgresql/data" and m.source for m in mounts(services["postgres"]))


# -- compose: configuration --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "worker"])
def test_rules_are_mounted_read_only(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    rules_dir = environment(service).get("ROUTER_RULES_DIR")
    assert rules_dir == "/rules"
    (mount,) = [m for m in mounts(service) if m.target == rules_dir]
    assert mount.source in ("./rules", "rules"), mount
    assert mount.read_only, f"{name} mounts the rules writable"
    assert (REPO / "rules").is_dir()


def test_web_and_worker_share_database_and_redis(services: dict[str, dict[str, Any]]) -> None:
    web, worker, migrate = (environment(services[n]) for n in ("web", "worker", "migrate"))
    for key in ("ROUTER_DATABASE_URL", "ROUTER_REDIS_URL"):
        assert web.get(key), f"web has no {key}"
        assert web[key] == worker.get(key), f"web and worker disagree on {key}"
    assert migrate.get("ROUTER_DATABASE_URL") == web["ROUTER_DATABASE_URL"], "migrate upgrades another database"


def test_web_and_worker_read_the_same_secrets_file(services: dict[str, dict[str, Any]]) -> None:
    """Rule secrets come from one env file for every router container, never from the image."""

    def env_files(name: str) -> list[str]:
        raw = services[name].get("env_file") or []
        items = [raw] if isinstance(raw, str | dict) else raw
        return [str(i["path"]) if isinstance(i, dict) else str(i) for i in items]

    assert env_files("web"), "web reads no env_file for the rules' secrets"
    assert env_files("web") == env_files("worker") == env_files("migrate")
    for path in env_files("web"):
        assert dockerignored(Path(path).name), f"{path} would be sent to the image build"


def test_database_is_the_postgres_service_over_asyncpg(services: dict[str, dict[str, Any]]) -> None:
    url = environment(services["web"])["ROUTER_DATABASE_URL"]
    assert url is not None
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+asyncpg"
    assert parts.hostname == "postgres"
    assert parts.hostname in services
    assert (parts.port or 5432) == 5432
    pg = environment(services["postgres"])
    assert parts.username == pg.get("POSTGRES_USER")
    assert parts.password == pg.get("POSTGRES_PASSWORD")
    assert parts.path.lstrip("/") == pg.get("POSTGRES_DB")


def test_redis_url_is_the_redis_service(services: dict[str, dict[str, Any]]) -> None:
    url = environment(services["worker"])["ROUTER_REDIS_URL"]
    assert url is not None
    parts = urlsplit(url)
    assert parts.scheme == "redis"
    assert parts.hostname == "redis"
    assert parts.hostname in services
    assert (parts.port or 6379) == 6379


@pytest.mark.parametrize("name", ROUTER_SERVICES)
def test_router_settings_in_compose_are_real_and_valid(services: dict[str, dict[str, Any]], name: str) -> None:
    env = environment(services[name])
    given = {
        key.removeprefix("ROUTER_").lower(): value
        for key, value in env.items()
        if key.startswith("ROUTER_") and not key.startswith("ROUTER_SECRET_") and value is not None
    }
    unknown = set(given) - set(Settings.model_fields)
    assert not unknown, f"{name} sets ROUTER_* variables no setting reads: {sorted(unknown)}"
    settings = load_settings(**given)
    assert settings.database_url.startswith("postgresql+asyncpg://")


# -- compose: commands, health, start order ----------------------------------------------------


def test_migrate_runs_db_upgrade_once(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert argv(migrate.get("entrypoint")) in ([], ["router"])
    assert argv(migrate["command"]) == ["db", "upgrade"]
    assert str(migrate.get("restart", "no")) in ("no", "False", "false"), "a one-shot service must not restart"
    parse_router_command(argv(migrate["command"]))


def test_web_serves_on_all_interfaces_with_two_processes(services: dict[str, dict[str, Any]]) -> None:
    web = services["web"]
    ctx = parse_router_command(argv(web["command"]))
    assert ctx.info_name == "serve"
    assert ctx.params["host"] == "0.0.0.0"
    assert ctx.params["workers"] == 2
    port = ctx.params["port"]
    published = [str(p) for p in web.get("ports", [])]
    assert any(p.rsplit(":", 1)[-1].split("/")[0] == str(port) for p in published), (port, published)
    assert f"127.0.0.1:{port}/health/ready" in healthcheck_text(web)  # ready: database, Redis, rules, a worker


def test_worker_runs_the_worker_with_replicas(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    ctx = parse_router_command(argv(worker["command"]))
    assert ctx.info_name == "worker"
    assert ctx.params["burst"] is False
    assert int(worker.get("deploy", {}).get("replicas", 1)) >= 2
    assert "container_name" not in worker, "a fixed container name prevents scaling"
    assert "ports" not in worker


def test_worker_checks_its_own_heartbeat_and_serves_metrics(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    check = worker.get("healthcheck") or {}
    test = argv(check.get("test"))
    assert test[:1] == ["CMD"], test
    assert test[1] == image_entrypoint()[0], "the check runs the image's router"
    ctx = parse_router_command(test[2:])
    assert ctx.info_name == "worker"
    assert ctx.params["check"] is True
    run = parse_router_command(argv(worker["command"]))
    port = run.params["metrics_port"]
    assert port, "the worker serves no metrics"
    assert run.params["metrics_host"] == "0.0.0.0", "metrics on loopback cannot be scraped from another container"
    assert str(port) in [str(p) for p in worker.get("expose", [])]


def test_backing_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli" in healthcheck_text(services["redis"])
    assert "ping" in healthcheck_text(services["redis"])


@pytest.mark.parametrize("name", ["web", "worker"])
def test_router_waits_for_its_dependencies(services: dict[str, dict[str, Any]], name: str) -> None:
    depends = services[name].get("depends_on")
    assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a plain list"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_waits_for_postgres(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_awaited_health_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, spec in depends.items() if isinstance(depends, dict) else []:
            assert target in services, f"{name} depends on unknown service {target!r}"
            if spec.get("condition") == "service_healthy":
                healthcheck_text(services[target])


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for mount in mounts(service):
            if mount.source and not mount.source.startswith((".", "/", "~")):
                assert mount.source in declared, f"{name} uses undeclared volume {mount.source!r}"


# -- Dockerfile and .dockerignore --------------------------------------------------------------


def test_image_is_python_311_slim() -> None:
    aliases: set[str] = set()
    for stage in dockerfile_stages():
        words = [w for w in stage[0].args.split() if not w.startswith("--")]
        base = words[0]
        assert base.split("@")[0] == "python:3.11-slim" or base in aliases, f"FROM {stage[0].args}"
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
    final_base = next(w for w in dockerfile_stages()[-1][0].args.split() if not w.startswith("--"))
    assert final_base.split("@")[0] == "python:3.11-slim"


def test_image_runs_router_as_its_entrypoint(services: dict[str, dict[str, Any]]) -> None:
    final = dockerfile_stages()[-1]
    entry = image_entrypoint()
    assert entry == ["router"]
    cmd = last(final, "CMD")
    if cmd is not None:
        parse_router_command(cmd.exec_form())
    for name in ROUTER_SERVICES:  # compose's commands are arguments to that entrypoint
        assert argv(services[name].get("entrypoint")) in ([], entry)


def test_image_runs_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    user = last(final, "USER")
    assert user is not None, "the final stage runs as root"
    name = user.args.split(":")[0]
    assert name not in ("root", "0", "")
    keywords = [i.keyword for i in final]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_image_installs_the_package_with_the_pg_extra() -> None:
    runs = [i.args for stage in dockerfile_stages() for i in stage if i.keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert any(".[pg]" in r for r in installs), installs
    assert not any(" -e " in f" {r} " for r in installs), "an editable install needs the source tree at run time"


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.keyword not in ("COPY", "ADD") or "--from=" in instruction.args:
                continue
            *sources, _dest = [a for a in instruction.args.split() if not a.startswith("--")]
            for source in sources:
                top = Path(source).parts[0]
                assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
                assert not dockerignored(top), f"COPY {source}: .dockerignore leaves it out of the context"


@pytest.mark.parametrize("name", [".git", ".venv", "data", "tests", "rules", "bench", ".ci"])
def test_dockerignore_keeps_local_state_out(name: str) -> None:
    assert dockerignored(name)


def test_database_pool_size_sets_each_process_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/deploy.md sizes PostgreSQL's connections from ROUTER_DATABASE_POOL_SIZE: the engine must use it."""
    from router.records import db
    from router.settings import get_settings

    monkeypatch.setenv("ROUTER_DATABASE_POOL_SIZE", "3")
    get_settings.cache_clear()
    try:
        engine = db.create_engine("postgresql+asyncpg://router@127.0.0.1:1/router")  # connects lazily: none made
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 3  # type: ignore[attr-defined]
    finally:
        get_settings.cache_clear()
