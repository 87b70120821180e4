"""A forced (unsafe) election: refused without confirmation, refused for a node that is not
live, audited with what may be lost; the same through the API, the admin and the CLI."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from controlplane.clusters.models import RoleChange
from tests.controlplane.reports import report

URL = "/api/v1/clusters/alpha/force-leader/"


@pytest.fixture
def stuck(cluster):
    """Leader alpha-1 is silent; alpha-2 is live but behind; alpha-3 held more, then went away."""
    report("alpha-2", 50)
    report("alpha-3", 80, status="offline", ago=600)
    return cluster


def test_force_needs_confirm_and_says_what_it_does(stuck, operator_api):
    for body in ({"node": "alpha-2", "reason": "site lost"}, {"node": "alpha-2", "reason": "x", "confirm": False}):
        response = operator_api.post(URL, body, format="json")
        assert response.status_code == 400
        assert set(response.json()) == {"confirm"}
        assert "results already reported as committed may be lost" in response.json()["confirm"][0]
    missing = operator_api.post(URL, {"confirm": True}, format="json")
    assert missing.status_code == 400
    assert set(missing.json()) == {"node", "reason"}
    stuck.refresh_from_db()
    assert (stuck.term, stuck.leader.name) == (1, "alpha-1")


def test_force_needs_the_operator_permission(stuck, viewer_api):
    body = {"node": "alpha-2", "reason": "x", "confirm": True}
    assert viewer_api.post(URL, body, format="json").status_code == 403
    assert RoleChange.objects.filter(cluster=stuck).count() == 1


def test_forcing_a_node_that_is_not_live_is_a_409_with_the_reason(stuck, operator_api):
    body = {"node": "alpha-3", "reason": "x", "confirm": True}
    response = operator_api.post(URL, body, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "not_eligible"
    assert "cannot force alpha-3: it is not a live node of cluster alpha" in response.json()["detail"]
    stuck.refresh_from_db()
    assert stuck.leader.name == "alpha-1"  # refused before the term was touched
    assert not RoleChange.objects.filter(new_leader__name="alpha-3").exists()
    ghost = operator_api.post(URL, {**body, "node": "ghost"}, format="json")
    assert ghost.status_code == 409
    assert operator_api.post("/api/v1/clusters/nope/force-leader/", body, format="json").status_code == 404


def test_forcing_a_live_node_is_audited_with_what_may_be_lost(stuck, operator_api):
    body = {"node": "alpha-2", "reason": "alpha-3's site is lost", "confirm": True}
    response = operator_api.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    change = response.json()
    assert (change["new_leader"], change["old_leader"], change["actor"]) == ("alpha-2", "alpha-1", "otto-operator")
    assert change["term"] == 2
    assert change["reason"].startswith("alpha-3's site is lost: ")
    assert "FORCED election of alpha-2" in change["reason"]
    assert "may lose what it does not hold: alpha-3 holds up to position 80 (term 1)" in change["reason"]
    stuck.refresh_from_db()
    assert (stuck.term, stuck.leader.name, stuck.status) == (2, "alpha-2", "active")
    audit = RoleChange.objects.get(cluster=stuck, term=2)
    assert (audit.new_leader.name, audit.user.username) == ("alpha-2", "otto-operator")


@pytest.fixture
def admin_client(client, stuck):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    return client


def test_admin_force_shows_the_election_and_what_may_be_lost_first(admin_client, stuck):
    form = {"action": "force_leader", "_selected_action": [stuck.pk]}
    page = admin_client.post("/admin/clusters/cluster/", form)
    assert page.status_code == 200
    text = page.text
    assert "results already reported to clients as committed may be lost" in text
    assert "alpha-1 leads term 1: forcing another leader ends its term first" in text
    assert "alpha-3 holds up to position 80 (term 1)" in text
    assert "cannot force alpha-3: it is not a live node" in text
    assert [value for value, _ in page.context["form"].fields["node"].choices] == ["alpha-2"]
    stuck.refresh_from_db()
    assert stuck.term == 1


def test_admin_force_without_the_confirmation_box_does_nothing(admin_client, stuck):
    form = {"action": "force_leader", "_selected_action": [stuck.pk], "apply": "1",
            "node": "alpha-2", "reason": "site lost"}  # fmt: skip
    page = admin_client.post("/admin/clusters/cluster/", form)
    assert page.status_code == 200
    assert "confirm" in page.context["form"].errors
    stuck.refresh_from_db()
    assert (stuck.term, stuck.leader.name) == (1, "alpha-1")


def test_admin_force_with_confirmation_elects_and_reports_the_audit(admin_client, stuck):
    form = {"action": "force_leader", "_selected_action": [stuck.pk], "apply": "1",
            "node": "alpha-2", "reason": "site lost", "confirm": "on"}  # fmt: skip
    done = admin_client.post("/admin/clusters/cluster/", form, follow=True)
    assert "Forced: alpha-2 leads alpha in term 2" in done.text
    assert "alpha-3 holds up to position 80" in done.text
    stuck.refresh_from_db()
    assert stuck.leader.name == "alpha-2"
    assert RoleChange.objects.get(cluster=stuck, term=2).actor == "root"


def test_force_command_prints_what_may_be_lost_and_waits_for_yes(stuck, capsys):
    with pytest.raises(CommandError, match="Run again with --yes"):
        call_command("force_leader", "alpha", "alpha-2", "--reason", "site lost")
    out = capsys.readouterr().out
    assert "forcing alpha-2 (term 1, position 50) may lose: alpha-3 holds up to position 80 (term 1)" in out
    stuck.refresh_from_db()
    assert (stuck.term, stuck.leader.name) == (1, "alpha-1")

    call_command("force_leader", "alpha", "alpha-2", "--reason", "site lost", "--yes")
    assert "alpha-2 leads alpha in term 2 (forced)" in capsys.readouterr().out
    stuck.refresh_from_db()
    assert stuck.leader.name == "alpha-2"
    assert RoleChange.objects.get(cluster=stuck, term=2).actor == "manage.py force_leader"


def test_force_command_refusals_are_readable(stuck):
    with pytest.raises(CommandError, match="no cluster named 'nope'"):
        call_command("force_leader", "nope", "alpha-2", "--reason", "x", "--yes")
    with pytest.raises(CommandError, match="force refused: cannot force alpha-3: it is not a live node"):
        call_command("force_leader", "alpha", "alpha-3", "--reason", "x", "--yes")
