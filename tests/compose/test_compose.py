"""docker compose, really started: the project image built from the Dockerfile, the real
docker-compose.yml (plus deploy/test/compose.test.yml: a webhook receiver, Grafana left out), and
what an operator relies on checked from the outside.

The tests run in file order on one stack: healthy, events flow end to end, Prometheus scrapes and
alerts, segmenter replicas split partitions, a restarted consumer loses nothing, and `down` keeps
the data for the next `up`.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Final

import httpx
import pytest
import yaml

from tests.compose.conftest import ADMIN_TOKEN, PROJECT, REPO, WRITE_KEY, Compose, wait_for

pytestmark = pytest.mark.timeout(900)

RUN: Final = uuid.uuid4().hex[:8]
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
APPS: Final = ("ingest", "segmenter", "rewards", "notifier")
CONSUMERS: Final = ("segmenter", "rewards", "notifier")
EVENTS_TOPIC: Final = "userops.events.v1"
PARTITIONS: Final = 12
# The named volumes whose data must outlive `docker compose down` (Grafana's is not started here).
DATA_VOLUMES: Final = {"kafka-data", "segmenter-pg", "rewards-pg", "notifier-pg", "prometheus-data"}

URLS: dict[str, str] = {}  # service -> its published address in this run


@pytest.fixture(autouse=True)
def _published(compose: Compose) -> None:
    URLS.update({name: compose.url(name) for name in compose.ports})


def post(path: str, body: dict[str, Any]) -> None:
    r = httpx.post(f"{URLS['ingest']}{path}", json=body, auth=(WRITE_KEY, ""), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json() == {"success": True}


def lessons(users: list[str]) -> None:
    """One `Lesson Completed` (10 points) for each user, in one batch."""
    post("/v1/batch", {"batch": [{"type": "track", "userId": u, "event": "Lesson Completed"} for u in users]})


def points(user: str) -> int | None:
    """The user's points (available + pending); None while rewards has not seen them."""
    r = httpx.get(f"{URLS['rewards']}/v1/users/{user}", headers=ADMIN, timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    balance = r.json()["balance"]
    return int(balance["available"]) + int(balance["pending"])


def segmenter_url(compose: Compose) -> str:
    return f"http://{compose.port('segmenter', 8001)}"


def segmenter_stage(compose: Compose, user: str) -> str | None:
    r = httpx.get(f"{segmenter_url(compose)}/v1/users/{user}", headers=ADMIN, timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return str(r.json()["stage"])


def prometheus(query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{URLS['prometheus']}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    return list(r.json()["data"]["result"])


def group_members(compose: Compose, group: str) -> dict[int, str]:
    """partition of the events topic -> the consumer id that owns it, as Kafka reports the group."""
    out = compose.run(
        "exec", "-T", "kafka", "/opt/kafka/bin/kafka-consumer-groups.sh",
        "--bootstrap-server", "kafka:19092", "--describe", "--group", group,
    )  # fmt: skip
    owners = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 7 and cols[1] == EVENTS_TOPIC and cols[6] != "-":
            owners[int(cols[2])] = cols[6]
    return owners


def test_every_service_is_healthy(compose: Compose) -> None:
    states = {c["Service"]: c for c in compose.containers()}
    for name in (*APPS, "kafka", "segmenter-db", "rewards-db", "notifier-db", "prometheus", "webhook-sink"):
        assert states[name]["State"] == "running", (name, states[name]["Status"])
        assert states[name]["Health"] == "healthy", (name, states[name]["Status"])
    topics = states["kafka-topics"]
    assert (topics["State"], topics["ExitCode"]) == ("exited", 0)
    assert "grafana" not in states  # no stand-in: its provisioning is checked by tests/unit
    for name in ("ingest", "rewards", "notifier"):
        assert httpx.get(f"{compose.url(name)}/ready", timeout=5).status_code == 200
    assert httpx.get(f"{segmenter_url(compose)}/ready", timeout=5).status_code == 200


def test_events_posted_to_ingest_reach_every_consumer_and_the_webhook_receiver(compose: Compose) -> None:
    user = f"ct-{RUN}-flow"
    comment = f"too slow {RUN}"
    post("/v1/track", {"userId": user, "event": "Order Completed", "properties": {"revenue": 42}})
    lessons([user])
    post(
        "/v1/track",
        {"userId": user, "event": "NPS Submitted", "properties": {"score": 3, "comment": comment}},
    )

    assert (
        wait_for("the segmenter to activate the user", lambda: segmenter_stage(compose, user)) == "activated"
    )
    assert wait_for("rewards to award the lesson and the order", lambda: points(user)) >= 10

    def arrived() -> dict[str, Any] | None:
        received = httpx.get(f"{URLS['sink']}/received", timeout=5).json()
        return next((r for r in received if comment in str(r.get("body"))), None)

    hook = wait_for("the notifier's webhook at the receiver", arrived)
    assert hook["path"] == "/hooks/support_desk"
    assert hook["verified"] is True  # signed with the secret compose gave the notifier
    assert hook["body"]["campaign"] == "detractor_followup"


def test_prometheus_scrapes_every_service_and_loads_the_alert_rules() -> None:
    def all_up() -> dict[str, float] | None:
        up = {s["metric"]["job"]: float(s["value"][1]) for s in prometheus("up")}
        return up if all(up.get(job) == 1.0 for job in (*APPS, "prometheus")) else None

    wait_for("every service's target up in Prometheus", all_up, timeout=90, every=2)
    assert wait_for("ingest's metrics", lambda: prometheus("userops_ingest_events_accepted_total"))

    expected = {
        r["alert"]
        for g in yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }

    def rules_evaluated() -> list[dict[str, Any]] | None:
        groups = httpx.get(f"{URLS['prometheus']}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        never = "0001-01-01"  # Prometheus' zero time: not evaluated yet
        return (
            rules
            if rules and all(not r.get("lastEvaluation", never).startswith(never) for r in rules)
            else None
        )

    rules = wait_for("the alert rules evaluated", rules_evaluated, timeout=60, every=2)
    assert {r["name"] for r in rules} == expected
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert broken == []


def test_segmenter_replicas_split_the_partitions_and_are_each_scraped(compose: Compose) -> None:
    compose.up("--scale", "segmenter=2")
    replicas = [c for c in compose.containers() if c["Service"] == "segmenter"]
    assert [c["Health"] for c in replicas] == ["healthy", "healthy"]

    def split() -> dict[int, str] | None:
        owners = group_members(compose, "segmenter")
        return owners if len(owners) == PARTITIONS and len(set(owners.values())) == 2 else None

    owners = wait_for("both replicas owning partitions of the events topic", split, timeout=120, every=3)
    counts = sorted(list(owners.values()).count(m) for m in set(owners.values()))
    assert counts == [PARTITIONS // 2, PARTITIONS // 2]

    def both_scraped() -> list[dict[str, Any]] | None:
        up = prometheus('up{job="segmenter"} == 1')
        return up if len(up) == 2 else None

    wait_for("Prometheus scraping both segmenter replicas", both_scraped, timeout=90, every=3)
    # Events still flow with two replicas; then back to one for the rest of the run.
    user = f"ct-{RUN}-scaled"
    post("/v1/track", {"userId": user, "event": "Order Completed", "properties": {"revenue": 5}})
    assert wait_for("the scaled segmenter", lambda: segmenter_stage(compose, user)) == "activated"
    compose.up("--scale", "segmenter=1")
    assert len([c for c in compose.containers() if c["Service"] == "segmenter"]) == 1


def test_restarting_a_consumer_loses_nothing(compose: Compose) -> None:
    users = [f"ct-{RUN}-restart-{i}" for i in range(200)]
    first, second = users[:100], users[100:]
    lessons(first)

    failures: list[BaseException] = []

    def keep_posting() -> None:
        try:
            for i in range(0, len(second), 10):
                lessons(second[i : i + 10])
        except BaseException as exc:
            failures.append(exc)

    posting = threading.Thread(target=keep_posting)
    posting.start()
    compose.run("restart", "rewards")
    posting.join()
    assert failures == []  # ingest took every event while rewards restarted

    def all_awarded() -> dict[str, int | None] | None:
        got = {u: points(u) for u in users}
        return got if all(v is not None for v in got.values()) else None

    got = wait_for("rewards to catch up after its restart", all_awarded, timeout=180, every=3)
    assert {u: v for u, v in got.items() if v != 10} == {}  # none lost, none applied twice


def test_down_keeps_the_volumes_and_the_next_up_finds_the_data(compose: Compose) -> None:
    user = f"ct-{RUN}-persist"
    lessons([user])
    assert wait_for("rewards to award the lesson", lambda: points(user)) == 10
    scraped_at = wait_for("a scrape of ingest", lambda: prometheus('up{job="ingest"}'))[0]["value"][0]

    compose.run("down")
    assert compose.containers() == []
    assert {f"{PROJECT}_{v}" for v in DATA_VOLUMES} <= compose.volumes()

    compose.up()
    assert points(user) == 10  # rewards' PostgreSQL kept its data
    assert segmenter_stage(compose, f"ct-{RUN}-flow") == "activated"  # and the segmenter's
    # Kafka kept its log and the committed offsets: a new event is processed once and the old
    # ones are not processed again.
    lessons([user])
    assert wait_for("rewards after the second up", lambda: points(user) == 20 or None)
    assert points(user) == 20
    # Prometheus kept the samples scraped before `down`.
    r = httpx.get(
        f"{URLS['prometheus']}/api/v1/query",
        params={"query": 'up{job="ingest"}', "time": scraped_at},
        timeout=10,
    )
    assert r.json()["data"]["result"], "the samples from before `down` are gone"
