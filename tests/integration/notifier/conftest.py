from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.stack.procs import free_port
from scripts.stack.sinks import MailSink, Sinks, WebhookSink
from tests.conftest import Stack, unique
from tests.integration.notifier.harness import WEBHOOK_SECRET, NotifierProcess, notifier_env

CONFIG = """
timezone: UTC
quiet_hours: {{start: "{quiet_start}", end: "{quiet_end}"}}
suppress_churned_after: 180d
caps: [{{limit: 50, period: 1d}}]
unsubscribe: {{base_url: "http://127.0.0.1/v1/unsubscribe", ttl: 1d}}
topics: [onboarding, engagement, promo, surveys, support]
endpoints:
  push: {{url: "{sink}/hooks/push"}}
  support: {{url: "{sink}/hooks/support"}}
  rejecting: {{url: "{sink}/hooks/rejecting"}}
campaigns:
  - name: welcome_hook
    topic: onboarding
    trigger: {{event: {{name: Signed Up}}}}
    channel: webhook
    endpoint: push
    quiet_hours: false
    template: {{payload: {{user_id: "{{{{ user_id }}}}", hello: "welcome"}}}}
  - name: welcome_mail
    topic: onboarding
    trigger: {{event: {{name: Signed Up}}}}
    channel: email
    quiet_hours: false
    template:
      subject: "Welcome {{{{ traits.first_name | default('there') }}}}"
      text: "Hi! Unsubscribe: {{{{ unsubscribe_url }}}}"
      html: "<p>Hi!</p><a href='{{{{ unsubscribe_url }}}}'>unsubscribe</a>"
  - name: welcome_inbox
    topic: onboarding
    trigger: {{event: {{name: Signed Up}}}}
    channel: inapp
    quiet_hours: false
    template: {{title: "Welcome", body: "Your account is ready", url: "https://app.test/start"}}
  - name: nudge
    topic: onboarding
    trigger: {{event: {{name: Trial Started}}}}
    delay: 3s
    recheck: {{field: activated, op: eq, value: false}}
    channel: webhook
    endpoint: push
    quiet_hours: false
    template: {{payload: {{user_id: "{{{{ user_id }}}}", nudge: "finish your first lesson"}}}}
  - name: late
    topic: engagement
    trigger: {{event: {{name: Ping}}}}
    channel: webhook
    endpoint: push
    template: {{payload: {{user_id: "{{{{ user_id }}}}"}}}}
  - name: promo
    topic: promo
    trigger: {{event: {{name: Promo}}}}
    channel: webhook
    endpoint: push
    quiet_hours: false
    reentry: 1s
    caps: [{{limit: 3, period: 1d}}]
    template: {{payload: {{user_id: "{{{{ user_id }}}}"}}}}
  - name: winback
    topic: engagement
    trigger: {{stage_changed: {{to: [at_risk]}}}}
    channel: webhook
    endpoint: push
    quiet_hours: false
    holdout: 0.5
    variants:
      - {{name: a, weight: 0.5, template: {{payload: {{v: "a", user_id: "{{{{ user_id }}}}"}}}}}}
      - {{name: b, weight: 0.5, template: {{payload: {{v: "b", user_id: "{{{{ user_id }}}}"}}}}}}
    goal: {{stage: [active], within: 1d}}
  - name: detractor
    topic: support
    trigger: {{nps: {{category: [detractor]}}}}
    channel: webhook
    endpoint: support
    quiet_hours: false
    global_caps: false
    reentry: 30d
    template: {{payload: {{user_id: "{{{{ user_id }}}}", score: "{{{{ nps.score }}}}", comment: "{{{{ nps.comment }}}}"}}}}
  - name: fragile
    topic: engagement
    trigger: {{event: {{name: Fragile}}}}
    channel: webhook
    endpoint: rejecting
    quiet_hours: false
    template: {{payload: {{user_id: "{{{{ user_id }}}}"}}}}
"""


def write_config(
    path: Path, sink_url: str, quiet: tuple[str, str] = ("03:00", "03:01"), text: str = CONFIG
) -> Path:
    path.write_text(text.format(sink=sink_url, quiet_start=quiet[0], quiet_end=quiet[1]))
    return path


@pytest.fixture
async def sinks() -> AsyncIterator[Sinks]:
    s = Sinks(free_port(), free_port(), WebhookSink(secret=WEBHOOK_SECRET, quiet=True), MailSink(quiet=True))
    await s.start()
    yield s
    await s.stop()


NotifierFactory = Callable[..., NotifierProcess]


@pytest.fixture
async def notifier_factory(
    stack: Stack, topics: dict[str, str], database: str, tmp_path: Path, sinks: Sinks
) -> AsyncIterator[NotifierFactory]:
    """Build notifier processes sharing one test database, topics, group and sinks."""
    group = unique("notifier")
    made: list[NotifierProcess] = []

    def make(config: Path, **extra: Any) -> NotifierProcess:
        env, port = notifier_env(
            bootstrap=stack.bootstrap,
            db_url=database,
            topics=topics,
            config=config,
            group=group,
            smtp_port=sinks.smtp_port,
            extra={k: str(v) for k, v in extra.items()},
        )
        proc = NotifierProcess(env, port, tmp_path / f"notifier-{len(made)}.log")
        made.append(proc)
        return proc

    yield make
    for p in made:
        p.kill9()
