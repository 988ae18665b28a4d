"""Shared fixtures. A skipped test fails the run: `make test` must not hide a
missing broker (or anything else) behind a skip."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI machines are small and shared: judge properties, not per-example speed.
# Asserts inside the shared helper modules explain their failures as the tests' own do.
pytest.register_assert_rewrite(
    "helpers", "resilience_helpers", "constructs_helpers", "deploy_helpers", "k8s_helpers",
    "mistakes_helpers", "oauth2_helpers", "ratelimit_helpers", "try_cli_helpers",
)  # fmt: skip
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "demo"))
sys.path.insert(0, str(ROOT / "examples" / "partners"))

_skipped: list[str] = []


@pytest.fixture(autouse=True)
def no_learned_secrets() -> None:
    """Secrets learned at runtime are process-wide (streams.masking): one test's tokens
    must not mask another test's output."""
    from streams.masking import forget_learned

    forget_learned()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real local broker started by `make test` (deploy/kafka/with-kafka.sh)."""
    bootstrap = os.environ.get("LEADSTREAMS_BOOTSTRAP")
    if not bootstrap:
        pytest.fail("LEADSTREAMS_BOOTSTRAP is not set: run the Kafka tests through `make test`")
    return bootstrap


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a throwaway self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a throwaway certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    san = ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [openssl, *request, *san, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and not os.environ.get("LEADSTREAMS_ALLOW_SKIPS"):
        print(f"\nERROR: {len(_skipped)} test(s) skipped; skips count as failures: {_skipped}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
