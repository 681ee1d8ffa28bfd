"""Reproducible installs: constraints.txt pins every dependency within pyproject's ranges, every install uses it,
and a fresh virtualenv installed from it passes the quick subset of the suite."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "constraints.txt"
EXTRAS = ("test", "pg", "lite")
REFRESH = "python -m pip install pip-tools && pip-compile"
QUICK = ["tests/pipeline/test_signatures.py", "tests/security/test_ingest.py"]


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            found[canonicalize_name(name.strip())] = version.strip()
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in EXTRAS:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


def readme_test_command() -> str:
    text = (REPO / "README.md").read_text()
    commands = [line for line in re.findall(r"```sh\n(.*?)\n```", text, re.S) if "python -m pytest" in line]
    assert len(commands) == 1, commands
    return str(commands[0]).strip()


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    pinned = pins()
    problems = []
    for req in requirements():
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is in pyproject.toml but not pinned in constraints.txt")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in constraints.txt is outside pyproject.toml's {req}")
    assert not problems, "\n".join(problems) + f"\nrefresh the lock: {REFRESH}"


def test_ci_the_dockerfile_and_the_readme_install_with_the_lock() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    last = [line for line in ci.splitlines() if line.strip()][-1]
    assert last == readme_test_command(), "the last line of .ci/run must be the README's test command"
    assert "-c constraints.txt" in last
    for name, text in [(".ci/run", ci), ("Dockerfile", (REPO / "Dockerfile").read_text())]:
        installs = [line for line in text.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
        assert installs, name
        assert all("-c constraints.txt" in line for line in installs), (name, installs)
    assert "COPY pyproject.toml README.md constraints.txt" in (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    assert "python -m pip install -c constraints.txt -e '.[lite]' && router dev" in readme
    assert REFRESH in readme


@pytest.mark.timeout(900)
def test_a_fresh_virtualenv_from_the_lock_passes_the_quick_subset(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = readme_test_command().split(" && ")[0]
    argv = shlex.split(install)
    assert argv[:3] == ["python", "-m", "pip"], install
    done = subprocess.run(
        [python, *argv[1:], "-q"], cwd=REPO, capture_output=True, text=True, timeout=600
    )  # the README's own install command, in the new virtualenv
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    pinned = pins()
    for line in frozen.splitlines():
        name, _, version = line.partition("==")
        if name and not line.startswith("-e"):
            assert pinned.get(canonicalize_name(name)) == version, f"{line} was installed but the lock says {pinned}"
    quick = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *QUICK],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert quick.returncode == 0, quick.stdout[-5000:] + quick.stderr[-2000:]
    assert " passed" in quick.stdout.splitlines()[-1]


def test_the_pre_commit_hooks_run_ci_s_checks_from_the_virtualenv() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert all(repo["repo"] == "local" for repo in config["repos"]), "the hooks fetch nothing"
    assert set(hooks) == {"ruff", "ruff-format", "mypy"}
    ci = (REPO / ".ci" / "run").read_text()
    for hook in hooks.values():
        assert hook["language"] == "system"
        entry = hook["entry"].split()
        assert entry[0].startswith(".venv/bin/"), hook
        command = " ".join([entry[0].removeprefix(".venv/bin/"), *entry[1:2]])
        assert f"\n{command}" in ci, f"{command!r} is not one of .ci/run's checks"
    assert hooks["mypy"]["pass_filenames"] is False, "mypy checks the packages pyproject.toml lists, as in CI"
    assert "pre-commit install" in (REPO / "README.md").read_text()
