"""The wheel `pip install .` builds is the whole package: installed into a fresh venv, the
CLI runs from a directory outside the repository, with no source tree on sys.path.

An editable install (`make install`) hides a missing sub-package or data file; this
builds the wheel the way deploy/Dockerfile does (`pip wheel --no-deps`), installs it
with its dependencies into a venv without system site-packages and runs the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streams", "agents", "schemas")
# Left-overs of local work that a build must not see (setuptools builds in the tree it
# is given: a stale build/lib would leak into the wheel, two builds would race).
TOP_LEVEL_JUNK = {".git", ".venv", ".kafka", "build", "dist", ".pytest_cache", ".hypothesis", ".ruff_cache"}
MUST_SHIP = {
    "streams/auth/oauth2.py",
    "streams/bodies/xml_body.py",
    "streams/filters/dates.py",
    "streams/responses/xml_format.py",
    "schemas/flow.schema.json",
    "schemas/cases.schema.json",
    "agents/web_console/static/index.html",
    "agents/web_console/static/app.js",
    "agents/web_console/static/style.css",
}


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path  # outside the repository; holds a copy of examples/flows
    env: dict[str, str]

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run([str(self.venv / "bin" / args[0]), *args[1:]], self.workdir, env or self.env, 60)


def run(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """The caller's environment without its venv, its sys.path additions or flow settings."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "INTERNAL_API_KEY", "PARTNER_URL"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def ignore_junk(directory: str, names: list[str]) -> set[str]:
    junk = {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}
    if Path(directory) == ROOT:
        junk |= TOP_LEVEL_JUNK & set(names)
    return junk


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .` on a copy of the working tree (tests/ and examples/ included,
    so that leaving them out is the package configuration's doing)."""
    source = tmp_path_factory.mktemp("source") / "leadstreams"
    shutil.copytree(ROOT, source, ignore=ignore_junk)
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), "."]
    ok(run(command, source, clean_env(), 300))
    (built,) = out.glob("leadstreams-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    venv, workdir = base / "venv", base / "work"
    env = clean_env()
    # sys.executable is the project's venv; -m venv builds on its base interpreter and,
    # without --system-site-packages, sees none of the project's venv.
    ok(run([sys.executable, "-m", "venv", str(venv)], base, env, 120))
    ok(run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], base, env, 300))
    shutil.copytree(ROOT / "examples" / "flows", workdir / "examples" / "flows")
    assert not workdir.resolve().is_relative_to(ROOT)
    return Installed(venv, workdir, env)


def dockerfile_copied() -> set[str]:
    """The sources deploy/Dockerfile's build stage copies (COPY without --from)."""
    text = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text())
    copied: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from"):
            copied |= set(words[1:-1])
    return copied


def test_the_wheel_holds_every_module_and_schema_and_no_tests_or_examples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert names >= MUST_SHIP, f"missing from the wheel: {sorted(MUST_SHIP - names)}"
    sources = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.suffix in (".py", ".json", ".html", ".js", ".css") and "__pycache__" not in path.parts
    }
    assert names >= sources, f"in the source tree, not in the wheel: {sorted(sources - names)}"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == set(PACKAGES)  # so no tests/ or examples/, nor anything else
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    # The Docker build stage copies each of them (deploy/Dockerfile builds this same wheel).
    assert top_level <= dockerfile_copied()
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "leadstreams = agents.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_packages_resolve_inside_the_venv(installed: Installed) -> None:
    probe = (
        "import json, sysconfig, agents, schemas, streams, streams.auth.oauth2;"
        "from agents.package_check import check_agents_package; check_agents_package();"
        "print(json.dumps({'purelib': sysconfig.get_paths()['purelib'],"
        " 'modules': [m.__file__ for m in (agents, schemas, streams, streams.auth.oauth2)],"
        " 'schema': schemas.load('flow')['$schema']}))"
    )
    found = json.loads(ok(installed.run("python", "-c", probe)))
    purelib = Path(found["purelib"]).resolve()
    assert purelib.is_relative_to(installed.venv.resolve())
    for module in found["modules"]:
        assert Path(module).resolve().is_relative_to(purelib), module
    assert found["schema"].startswith("https://json-schema.org/")


def test_version_and_help(installed: Installed) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ok(installed.run("leadstreams", "--version")) == f"leadstreams {version}\n"
    help_text = ok(installed.run("leadstreams", "--help"))
    for command in ("check", "test", "try", "console", "worker", "publish"):
        assert re.search(rf"^\s+{command}\s", help_text, re.MULTILINE), command


def test_check_validates_a_flow_against_the_installed_schema(installed: Installed) -> None:
    env = installed.env | {"INTERNAL_API_KEY": "wheel-test-key"}
    result = installed.run("leadstreams", "check", "examples/flows/demo.yaml", env=env)
    assert ok(result) == (
        "examples/flows/demo.yaml: ok — flow 'lead-validation', 1 step(s), input leads.incoming\n"
    )
    missing = installed.run("leadstreams", "check", "examples/flows/demo.yaml")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "INTERNAL_API_KEY is not set" in missing.stderr


@pytest.mark.parametrize("flow", ["xml-score", "hmac-signed"])
def test_saved_cases_pass_offline(installed: Installed, flow: str) -> None:
    out = ok(installed.run("leadstreams", "test", f"examples/flows/{flow}.yaml"))
    lines = out.splitlines()
    cases = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert cases and all(line.startswith("PASS ") for line in cases), out
    assert lines[-1] == f"{len(cases)} passed, 0 failed"


async def test_the_installed_console_serves_its_page_from_the_wheel(installed: Installed) -> None:
    """The page is package data: served by the installed package, outside the source tree."""
    import urllib.request

    from examples.support.process import free_port, wait_for

    port, token = free_port(), "wheel-console-token-0123"
    env = installed.env | {"INTERNAL_API_KEY": "wheel-test-key", "LEADSTREAMS_CONSOLE_TOKEN": token}
    command = [str(installed.venv / "bin" / "leadstreams"), "console", "examples/flows/demo.yaml",
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, cwd=installed.workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def get(path: str, headers: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def answers() -> bool:
        try:
            return b"<html" in get("/")
        except OSError:
            return False

    try:
        await wait_for(answers, 30, "the installed console to answer")
        assert b"fetch" in get("/console/static/app.js")
        overview = json.loads(get("/console/api/overview", {"X-Leadstreams-Token": token}))
        assert [flow["name"] for flow in overview["flows"]] == ["lead-validation"]
        assert b"wheel-test-key" not in get("/console/api/overview", {"X-Leadstreams-Token": token})
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert server.returncode == 0, output
    assert f"http://127.0.0.1:{port}/#token=(the value of LEADSTREAMS_CONSOLE_TOKEN)" in output
