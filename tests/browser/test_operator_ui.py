"""The operators' UI in a real browser: log in, watch the dashboard, change W, pause.

Headless Chromium from Debian (`apt-get install chromium`; `make browser-test` does it),
driven by Playwright's Python package with `executable_path`: Playwright never downloads
a browser here. No node runs: a thread plays the nodes, writing their rows as their
heartbeats would, and the leader's commit hash in Redis. Screenshots go to the test's
tmp folder (or BROWSER_SCREENSHOTS); their paths are printed (pytest -s, or -rA).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone

import wire
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node, NodeStatus, OperatorAction
from wire.keys import keys

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
PASSWORD = "pw-browser-123"
CLUSTER = f"browser{os.getpid()}"  # Redis is shared: a name of this run's own

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium; "
        "`make browser-test` does it) or point CHROMIUM at one",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(180)


class PretendNodes(threading.Thread):
    """Heartbeats without nodes: every 0.3 s the rows say live, the positions advance, and
    the leader's commit hash follows, so that the dashboard's table and charts move."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.redis = redis.Redis.from_url(settings.REDIS_URL)
        self.position = 1000

    def run(self) -> None:
        try:
            while not self.stop.wait(0.3):
                self.beat()
        finally:
            connection.close()

    def beat(self) -> None:
        self.position += 137
        now = timezone.now()
        for name, behind in [(f"{CLUSTER}-1", 0), (f"{CLUSTER}-2", 0), (f"{CLUSTER}-3", 150)]:
            position = self.position - behind
            Node.objects.filter(name=name).update(
                status=NodeStatus.LIVE, last_heartbeat=now, archived_position=position,
                applied_position=position, last_term=1, archive_id=f"archive-{name}",
                state_hash=f"{position:016x}", state_hash_position=position,
                status_message=f"pretend node at {position}",
            )  # fmt: skip
        self.redis.hset(
            wire.commit_key(CLUSTER),
            mapping={"term": 1, "leader": f"{CLUSTER}-1", "commit_position": self.position,
                     "leader_position": self.position, "write_quorum": 1,
                     "live_followers": f"{CLUSTER}-2,{CLUSTER}-3", "updated_ns": time.time_ns()},
        )  # fmt: skip


@pytest.fixture
def world(transactional_db):
    User.objects.create_superuser("olga", password=PASSWORD)
    cluster = Cluster.objects.create(name=CLUSTER, replica_count=2, write_quorum=1, term_write_quorum=1)
    for index in (1, 2, 3):
        services.register_node(
            name=f"{CLUSTER}-{index}", cluster=cluster,
            archive_location=f"postgresql://postgres@127.0.0.1:5432/tec_archive_{CLUSTER}_{index}",
        )  # fmt: skip
    services.assign_leader(cluster, f"{CLUSTER}-1", actor=services.Actor("test"), reason="setup")
    nodes = PretendNodes(cluster)
    nodes.beat()
    nodes.start()
    yield Cluster.objects.get(pk=cluster.pk)
    nodes.stop.set()
    nodes.join(5)
    nodes.redis.delete(wire.commit_key(CLUSTER), keys(CLUSTER).fence)


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # are plain synchronous ones all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(15_000)
        yield page
        page.goto("about:blank")  # stop the dashboard's polling before the server goes away
        browser.close()
        # The ORM calls made while Playwright ran had a connection of their own (its
        # greenlets give them another context): give it back, or the test database
        # cannot be dropped at the end of the session.
        connections.close_all()


def shoot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's tmp folder, or in BROWSER_SCREENSHOTS if set
    (`make browser-test` keeps them in run/screenshots/, which pytest does not rotate)."""
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def line_pixels(page, canvas_id: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of a series' colour on a chart: its line was drawn (grid and labels are grey)."""
    return page.evaluate(
        """([id, [r, g, b]]) => {
            const c = document.getElementById(id);
            const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30
                    && Math.abs(data[i + 2] - b) < 30 && data[i + 3] > 128) n++;
            }
            return n;
        }""",
        [canvas_id, list(rgb)],
    )


BLUE, RED = (0x41, 0x76, 0x90), (0xBA, 0x21, 0x21)  # the dashboard's first two series colours


def test_log_in_watch_the_dashboard_change_the_write_quorum_and_pause(world, browser_page, live_server, tmp_path):
    page, base = browser_page, live_server.url
    expect = sync_api.expect

    page.goto(f"{base}/admin/login/?next=/dashboard/{CLUSTER}/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**/dashboard/{CLUSTER}/")

    # Nodes and roles render from status.json, and update as the pretend nodes advance.
    rows = page.locator("#dash-nodes tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text(f"{CLUSTER}-1")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("leader")
    expect(rows.nth(1).locator("td").nth(1)).to_have_text("follower")
    expect(rows.nth(2).locator("td").nth(6)).to_have_text("150")  # lag in events
    expect(page.locator("#dash-leader")).to_have_text(f"{CLUSTER}-1")
    first = page.locator("#dash-commit").inner_text()
    expect(page.locator("#dash-commit")).not_to_have_text(first)  # it moves
    # Charts: after a few polls each has its lines (throughput; one lag line per
    # follower, the lagging one in the second colour), and a legend entry per follower.
    page.wait_for_function("document.getElementById('dash-rate').textContent.includes('/s')")
    page.wait_for_timeout(4000)
    assert line_pixels(page, "dash-rate-chart", BLUE) > 50
    assert line_pixels(page, "dash-lag-chart", RED) > 30
    expect(page.locator("#dash-lag-legend span")).to_have_count(2)
    expect(page.locator("#dash-paused")).to_be_hidden()
    shoot(page, tmp_path, "1-dashboard")

    # The write quorum, through the admin's cluster form (both followers are live).
    page.goto(f"{base}/admin/clusters/cluster/{world.pk}/change/")
    page.fill("#id_write_quorum", "2")
    shoot(page, tmp_path, "2-cluster-form")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    world.refresh_from_db()
    assert world.write_quorum == 2
    assert OperatorAction.objects.filter(cluster=world, action="write_quorum").exists()

    # Pause, through the admin action on the cluster list.
    page.goto(f"{base}/admin/clusters/cluster/")
    page.check(f"input[name=_selected_action][value='{world.pk}']")
    page.select_option("select[name=action]", "pause")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text(f"Cluster {CLUSTER} paused")
    shoot(page, tmp_path, "3-paused-in-the-admin")
    world.refresh_from_db()
    assert world.paused

    page.goto(f"{base}/dashboard/{CLUSTER}/")
    expect(page.locator("#dash-paused")).to_be_visible()
    expect(page.locator("#dash-quorum")).to_have_text("2")
    expect(page.locator("#dash-status")).to_contain_text("paused")
    expect(page.locator("#dash-actions tbody tr").first).to_contain_text("Paused")
    page.wait_for_timeout(1500)  # a few polls, so the charts have samples again
    shoot(page, tmp_path, "4-dashboard-paused")
