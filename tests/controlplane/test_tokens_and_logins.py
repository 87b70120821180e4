"""API tokens are hashed, expire and can be revoked; tokens and changes are throttled;
repeated failed logins lock the username out (django-axes)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from controlplane.clusters import tokens


def api_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_only_a_digest_of_the_token_is_stored(operator):
    issued = tokens.issue(operator.username)
    row = AuthToken.objects.get(user=operator)
    assert issued.token not in (row.digest, row.token_key)
    assert len(row.digest) == 128  # SHA-512
    assert row.expiry is not None
    assert row.expiry > timezone.now() + timedelta(days=29)
    assert api_with(issued.token).get("/api/v1/clusters/").status_code == 200


def test_an_expired_token_is_refused(operator):
    issued = tokens.issue(operator.username, ttl=timedelta(hours=1))
    AuthToken.objects.filter(user=operator).update(expiry=timezone.now() - timedelta(seconds=1))
    response = api_with(issued.token).get("/api/v1/clusters/")
    assert response.status_code == 401
    assert not AuthToken.objects.filter(user=operator).exists()  # knox removes it


def test_a_revoked_token_is_refused_and_others_still_work(operator):
    first = tokens.issue(operator.username)
    second = tokens.issue(operator.username)
    assert tokens.revoke(key=first.key) == 1
    assert api_with(first.token).get("/api/v1/clusters/").status_code == 401
    assert api_with(second.token).get("/api/v1/clusters/").status_code == 200
    assert tokens.revoke(username=operator.username) == 1
    assert api_with(second.token).get("/api/v1/clusters/").status_code == 401


def test_a_wrong_token_is_refused(operator):
    tokens.issue(operator.username)
    assert api_with("f" * 64).get("/api/v1/clusters/").status_code == 401


def test_the_command_line_issues_lists_and_revokes(operator):
    out = io.StringIO()
    call_command("token", "issue", operator.username, "--hours", "2", stdout=out)
    token = out.getvalue().split()[0]
    assert api_with(token).get("/api/v1/clusters/").status_code == 200
    listing = io.StringIO()
    call_command("token", "list", "--user", operator.username, stdout=listing)
    assert token[:15] in listing.getvalue()
    assert token not in listing.getvalue()
    call_command("token", "revoke", "--key", token[:15], stdout=io.StringIO())
    assert api_with(token).get("/api/v1/clusters/").status_code == 401


def test_the_command_has_help():
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("token", "--help", stdout=out)


def test_the_admin_lists_and_revokes_tokens(operator, admin_client):
    issued = tokens.issue(operator.username)
    page = admin_client.get("/admin/knox/authtoken/")
    assert page.status_code == 200
    assert operator.username in page.content.decode()
    row = AuthToken.objects.get(user=operator)
    admin_client.post(
        "/admin/knox/authtoken/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert api_with(issued.token).get("/api/v1/clusters/").status_code == 401


@pytest.fixture
def rates(monkeypatch):
    def set_rate(scope: str, rate: str) -> None:
        monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, rate)

    return set_rate


def test_state_changing_requests_are_throttled_per_user(cluster, operator_api, viewer_api, rates):
    rates("write", "3/min")
    codes = [
        operator_api.post("/api/v1/clusters/alpha/pause/", {"reason": "x"}, format="json").status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert operator_api.get("/api/v1/clusters/alpha/").status_code == 200  # reads are not "write"
    assert viewer_api.post("/api/v1/clusters/alpha/pause/", {}, format="json").status_code == 403


def test_token_use_is_throttled(cluster, operator_api, rates):
    rates("user", "2/min")
    codes = [operator_api.get("/api/v1/clusters/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_repeated_failed_logins_lock_the_username_out(operator, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": operator.username, "password": "wrong"})
    operator.is_staff = True
    operator.save()
    locked = client.post("/admin/login/", {"username": operator.username, "password": "pw-operator-123"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_login_below_the_limit_still_works(operator):
    operator.is_staff = True
    operator.save()
    client = Client()
    client.post("/admin/login/", {"username": operator.username, "password": "wrong"})
    done = client.post("/admin/login/", {"username": operator.username, "password": "pw-operator-123"})
    assert done.status_code == 302
    assert "_auth_user_id" in client.session
