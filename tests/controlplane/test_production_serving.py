"""Production serving: the web server refuses the development key, gunicorn outlasts the
longest blocking request, the deploy checks are clean with production variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from controlplane import gunicorn_conf
from controlplane.clusters.api.serializers import SwitchoverSerializer

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "production-like-secret-key-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "cp.example.com",
    "HTTPS": "true",
}


def run(code: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "SECRET_KEY", "HTTPS")}
    return subprocess.run(
        [sys.executable, *code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_the_web_server_refuses_the_development_key_without_debug():
    refused = run(["-c", "import controlplane.wsgi"], DEBUG="false")
    assert refused.returncode != 0
    assert "SECRET_KEY is not set" in refused.stderr
    assert run(["-c", "import controlplane.wsgi"], DEBUG="true").returncode == 0
    assert run(["-c", "import controlplane.wsgi"], **PRODUCTION).returncode == 0


def test_deploy_checks_are_clean_with_production_variables():
    checked = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_gunicorn_outlasts_the_longest_blocking_request():
    longest = SwitchoverSerializer().fields["timeout"].max_value
    assert gunicorn_conf.timeout > longest
    assert gunicorn_conf.worker_class == "gthread"
    assert gunicorn_conf.threads > 1


def test_the_access_log_leaves_out_successful_heartbeats_and_probes(monkeypatch):
    logged = []
    monkeypatch.setattr(gunicorn_conf.glogging.Logger, "access", lambda self, resp, *rest: logged.append(resp.status_code))
    logger = gunicorn_conf.Logger.__new__(gunicorn_conf.Logger)
    for path, status in [("/api/v1/nodes/a/heartbeat/", 200), ("/healthz", 200), ("/api/v1/nodes/a/heartbeat/", 403),
                         ("/readyz", 503), ("/admin/", 200)]:  # fmt: skip
        logger.access(SimpleNamespace(status_code=status), None, {"PATH_INFO": path}, 0.01)
    assert logged == [403, 503, 200]
