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


def test_secrets_come_from_files_and_the_deploy_checks_stay_clean(tmp_path):
    """Production secrets from *_FILE variables (container secrets), never the environment."""
    files = {
        "SECRET_KEY": "f" * 20 + "secret-key-from-a-file-0123456789-abcdefghij",
        "DATABASE_URL": "postgresql://tec:pw-from-file@db.example.com:5432/tec_controlplane",
        "REDIS_URL": "rediss://tec-controlplane:redis-pw-from-file@cache.example.com:6380/0",
        "METRICS_TOKEN": "metrics-token-from-a-file",
    }
    env = {"DEBUG": "false", "ALLOWED_HOSTS": "cp.example.com", "HTTPS": "true"}
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    clean = {k: v for k, v in os.environ.items() if k not in (*files, "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.SECRET_KEY, s.DATABASES['default']['PASSWORD'], s.REDIS_URL, s.METRICS_TOKEN,"
        " bool(s.CELERY_BROKER_USE_SSL))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "controlplane.settings"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [files["SECRET_KEY"], "pw-from-file", files["REDIS_URL"],
                                    files["METRICS_TOKEN"], "True"]  # fmt: skip
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**clean, **env},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout
