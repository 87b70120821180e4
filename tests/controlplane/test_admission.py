"""Turns (controlplane/admission.py): at most API_CONCURRENCY requests at once, the others
wait in turn or get a 503; the nodes' heartbeats and the probes never wait for a turn.

The middleware runs here with real threads in front of a view that holds its turn until
the test lets it go; the burst against a running cluster is in tests/nodes/test_wedges.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django import db
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.test import RequestFactory

from controlplane import admission, gunicorn_conf
from controlplane.clusters import tokens

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1/clusters/alpha/"
HEARTBEAT = "/api/v1/nodes/alpha-1/heartbeat/"


class HeldView:
    """A view that holds its request (and so its turn) until released."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.entered.release()
        if request.path_info.startswith("/api/v1/clusters/"):
            if request.GET.get("give_back"):
                admission.give_back_turn(request)
            self.release.wait(10)
        with self.lock:
            self.running -= 1
        return HttpResponse("ok")


def middleware(settings, concurrency: int, waiting_max: int = 64, timeout: float = 10.0):
    settings.API_CONCURRENCY, settings.API_WAITING_MAX, settings.API_QUEUE_TIMEOUT = concurrency, waiting_max, timeout
    view = HeldView()
    return admission.TakeTurns(view), view


def call_in_thread(take_turns, path: str, answers: list) -> threading.Thread:
    request = RequestFactory().get(path)
    thread = threading.Thread(target=lambda: answers.append(take_turns(request)), daemon=True)
    thread.start()
    return thread


def entered(view: HeldView, count: int) -> None:
    for _ in range(count):
        assert view.entered.acquire(timeout=5), "a request that should have run did not"


def test_requests_past_the_turns_wait_and_run_in_turn(settings):
    take_turns, view = middleware(settings, concurrency=2)
    answers: list = []
    threads = [call_in_thread(take_turns, API, answers) for _ in range(5)]
    entered(view, 2)
    assert not view.entered.acquire(timeout=0.3), "a third request ran beside the two turns"
    view.release.set()
    for thread in threads:
        thread.join(10)
    assert [answer.status_code for answer in answers] == [200] * 5
    assert view.most_at_once == 2
    assert take_turns.turns.waiting == 0


def test_heartbeats_and_probes_take_no_turn(settings):
    take_turns, view = middleware(settings, concurrency=1, waiting_max=0)
    answers: list = []
    holder = call_in_thread(take_turns, API, answers)
    entered(view, 1)
    for path in (HEARTBEAT, "/healthz", "/readyz", "/metrics", "/static/admin/css/base.css"):
        response = take_turns(RequestFactory().get(path))  # at once, in this thread
        assert response.status_code == 200, path
    refused = take_turns(RequestFactory().get(API))
    assert refused.status_code == 503
    view.release.set()
    holder.join(10)
    assert [answer.status_code for answer in answers] == [200]


def test_past_the_waiting_limit_a_request_is_refused_at_once_with_retry_after(settings):
    take_turns, view = middleware(settings, concurrency=1, waiting_max=1)
    answers: list = []
    threads = [call_in_thread(take_turns, API, answers)]
    entered(view, 1)
    threads.append(call_in_thread(take_turns, API, answers))  # waits: the one place in line
    for _ in range(50):
        if take_turns.turns.waiting == 1:
            break
        threading.Event().wait(0.01)
    assert take_turns.turns.waiting == 1
    refused = take_turns(RequestFactory().get(API))
    assert refused.status_code == 503
    assert refused["Retry-After"] == "1"
    body = json.loads(refused.content)
    assert body["code"] == "busy"
    assert "1 requests are being served and 1 wait" in body["detail"]
    view.release.set()
    for thread in threads:
        thread.join(10)
    assert [answer.status_code for answer in answers] == [200, 200]


def test_a_request_that_waits_longer_than_the_queue_timeout_gets_503(settings, caplog):
    take_turns, view = middleware(settings, concurrency=1, timeout=0.2)
    answers: list = []
    holder = call_in_thread(take_turns, API, answers)
    entered(view, 1)
    refused = take_turns(RequestFactory().get(API))
    assert refused.status_code == 503
    assert "no turn within 0.2 s" in json.loads(refused.content)["detail"]
    assert any("busy: no turn within 0.2 s" in message and API in message for message in caplog.messages)
    assert take_turns.turns.waiting == 0
    view.release.set()
    holder.join(10)


def test_a_turn_given_back_lets_the_next_request_run_and_is_not_given_back_twice(settings):
    take_turns, view = middleware(settings, concurrency=1)
    answers: list = []
    first = call_in_thread(take_turns, API + "?give_back=1", answers)  # like a submission awaiting its commit
    entered(view, 1)
    second = call_in_thread(take_turns, API, answers)
    entered(view, 1)  # ran while the first still waits
    view.release.set()
    first.join(10)
    second.join(10)
    assert [answer.status_code for answer in answers] == [200, 200]
    # One turn in all, as configured: the first request's end gave nothing back again.
    assert take_turns.turns.slots.acquire(blocking=False)
    assert not take_turns.turns.slots.acquire(blocking=False)


def test_turns_must_leave_a_database_connection_to_the_heartbeats():
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DB_POOL_MAX": "4", "API_CONCURRENCY": "4"},
    )  # fmt: skip
    assert refused.returncode != 0
    assert "API_CONCURRENCY=4 leaves none of DB_POOL_MAX=4" in refused.stderr


def test_gunicorn_keeps_a_thread_of_each_worker_for_the_heartbeats():
    """A worker's settings, with the environment gunicorn gives its workers."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("API_", "WEB_"))}
    env.update(entry.split("=", 1) for entry in gunicorn_conf.raw_env)
    script = "import django; django.setup(); from django.conf import settings as s; print(s.API_WAITING_MAX, s.API_CONCURRENCY)"
    worker = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "controlplane.settings"},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-500:]
    waiting_max, concurrency = map(int, worker.stdout.split()[-2:])
    assert waiting_max + concurrency < gunicorn_conf.threads


@pytest.mark.django_db
def test_through_the_whole_stack_a_busy_answer_is_json_and_heartbeats_pass(settings, monkeypatch):
    """Django's real middleware chain, as settings.MIDDLEWARE builds it."""
    made: list[admission.TakeTurns] = []
    build = admission.TakeTurns.__init__

    def recorded(self, get_response):
        build(self, get_response)
        made.append(self)

    monkeypatch.setattr(admission.TakeTurns, "__init__", recorded)
    settings.API_CONCURRENCY, settings.API_WAITING_MAX = 1, 0
    handler = WSGIHandler()
    (take_turns,) = made
    assert take_turns.turns.slots.acquire(blocking=False)  # the one turn, held by another request
    try:
        refused = handler.get_response(RequestFactory().get("/api/v1/clusters/"))
        assert refused.status_code == 503
        assert json.loads(refused.content)["code"] == "busy"
        assert handler.get_response(RequestFactory().get("/healthz")).status_code == 200
        # A heartbeat reaches its view (which refuses a missing secret) without a turn.
        assert handler.get_response(RequestFactory().post(HEARTBEAT)).status_code == 401
    finally:
        take_turns.turns.slots.release()
    assert handler.get_response(RequestFactory().get("/api/v1/clusters/")).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_read_waiting_for_the_leader_gives_its_turn_back(settings, cluster, viewer):
    """No node runs: a read of the book waits its whole LEADER_READ_TIMEOUT on Redis. With
    one turn and no waiting allowed, a second request meanwhile is served, not refused."""
    settings.API_CONCURRENCY, settings.API_WAITING_MAX, settings.LEADER_READ_TIMEOUT = 1, 0, 1.0
    handler = WSGIHandler()
    auth = {"HTTP_AUTHORIZATION": f"Token {tokens.issue(viewer.username).token}"}
    answers: list = []

    def read() -> None:
        try:
            answers.append(handler.get_response(RequestFactory().get(f"/api/v1/clusters/{cluster.name}/book/?symbol=ACME", **auth)))
        finally:
            db.connection.close()  # this thread's own

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    threading.Event().wait(0.4)  # the reader is waiting on Redis by now (it waits 1 s)
    assert reader.is_alive()
    listed = handler.get_response(RequestFactory().get("/api/v1/clusters/", **auth))
    assert listed.status_code == 200, listed.content
    reader.join(10)
    assert [answer.status_code for answer in answers] == [503]
    assert b"the leader did not answer" in answers[0].content


@pytest.mark.django_db(transaction=True)
def test_a_role_change_waiting_for_its_target_gives_its_turn_back(settings, cluster, operator):
    """No node runs: a leader change waits its whole timeout for the nodes' reports. With
    one turn and no waiting allowed, a second request meanwhile is served, not refused."""
    settings.API_CONCURRENCY, settings.API_WAITING_MAX = 1, 0
    handler = WSGIHandler()
    auth = {"HTTP_AUTHORIZATION": f"Token {tokens.issue(operator.username).token}"}
    body = json.dumps({"node": "alpha-2", "reason": "test", "timeout": 1.5})
    answers: list = []

    def change() -> None:
        request = RequestFactory().post(f"/api/v1/clusters/{cluster.name}/leader/", body,
                                        content_type="application/json", **auth)  # fmt: skip
        try:
            answers.append(handler.get_response(request))
        finally:
            db.connection.close()  # this thread's own

    changer = threading.Thread(target=change, daemon=True)
    changer.start()
    threading.Event().wait(0.5)
    assert changer.is_alive(), answers[0].content if answers else "no answer"
    listed = handler.get_response(RequestFactory().get("/api/v1/clusters/", **auth))
    assert listed.status_code == 200, listed.content
    changer.join(10)
    assert len(answers) == 1
    assert answers[0].status_code == 409, answers[0].content  # no report came: refused, with why
