"""`userops dev run`'s supervisor over real processes (stand-ins where the service is not the point).

A service killed with SIGKILL is restarted with growing delays while the others keep answering;
a service that exits before it is ready is reported with its exit code and last lines.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.commands.dev import serve
from scripts.stack.procs import free_port
from scripts.stack.restart import RestartPolicy
from scripts.stack.supervisor import ServiceSpec, Supervisor, http_ready
from tests.conftest import eventually

STANDIN = str(Path(__file__).with_name("standin.py"))
FAST = RestartPolicy(initial=0.2, maximum=1.0, multiplier=2.0, jitter=0.2, healthy_after=60.0)


def standin(name: str, *extra: str) -> ServiceSpec:
    port = free_port()
    return ServiceSpec(
        name=name,
        command=(sys.executable, STANDIN, str(port), *extra),
        env=dict(os.environ),
        ready_url=f"http://127.0.0.1:{port}/ready",
    )


class Running:
    def __init__(self, supervisor: Supervisor, said: list[str]) -> None:
        self.supervisor, self.said = supervisor, said
        self.stop = threading.Event()
        self.thread = threading.Thread(target=supervisor.run, args=(self.stop, 0.05), daemon=True)


@pytest.fixture
def running() -> Iterator[Running]:
    said: list[str] = []
    sup = Supervisor(
        [standin("ingest"), standin("segmenter")],
        policy=FAST,
        say=said.append,
        sink=io.BytesIO(),
        rand=lambda: 0.5,  # no jitter: the delays are exact
    )
    run = Running(sup, said)
    sup.start()
    try:
        assert sup.wait_ready(timeout=20) is None
        run.thread.start()
        yield run
    finally:
        run.stop.set()
        if run.thread.is_alive():
            run.thread.join(timeout=5)
        sup.stop(timeout=5)


async def test_a_killed_service_is_restarted_with_backoff_while_the_other_keeps_answering(
    running: Running,
) -> None:
    sup = running.supervisor
    ingest_url = sup.specs["ingest"].ready_url
    segmenter_url = sup.specs["segmenter"].ready_url
    assert ingest_url and segmenter_url
    ingest_pid = sup.procs["ingest"].pid
    for restart, delay in ((1, "0.2"), (2, "0.4"), (3, "0.8")):
        old = sup.procs["segmenter"].pid
        os.kill(old, signal.SIGKILL)
        answers: list[bool] = []

        def back(old: int = old, answers: list[bool] = answers) -> bool:
            answers.append(http_ready(ingest_url))  # the other service, all along
            return sup.procs["segmenter"].pid != old and http_ready(segmenter_url)

        await eventually(back, timeout=20, interval=0.05)
        assert answers and all(answers), "ingest stopped answering while the segmenter was down"
        assert f"segmenter exited with -9; restarting in {delay} s (restart {restart})" in running.said
    assert sup.procs["ingest"].pid == ingest_pid
    assert sup.state["ingest"].restarts == 0
    assert sup.state["segmenter"].restarts == 3


def test_a_service_that_exits_before_it_is_ready_is_reported_with_its_last_lines() -> None:
    good, bad = standin("ingest"), standin("segmenter", "exit", "3")
    sup = Supervisor([good, bad], policy=FAST, say=lambda _: None, sink=io.BytesIO())
    sup.start()
    try:
        failure = sup.wait_ready(timeout=20)
    finally:
        sup.stop(timeout=5)
    assert failure is not None
    assert (failure.service, failure.returncode) == ("segmenter", 3)
    assert "fatal: cannot open config/standin.yaml" in failure.last_lines
    text = failure.describe()
    assert text.startswith("segmenter exited with 3 before it was ready")
    assert "fatal: cannot open config/standin.yaml" in text


def test_stop_ends_every_service_and_its_process_group() -> None:
    sup = Supervisor([standin("ingest")], say=lambda _: None, sink=io.BytesIO())
    sup.start()
    assert sup.wait_ready(timeout=20) is None
    pid = sup.procs["ingest"].pid
    assert os.getpgid(pid) == pid  # its own group: Ctrl-C reaches the supervisor only
    sup.stop(timeout=5)
    assert sup.procs["ingest"].poll() is not None


def test_dev_run_reports_a_service_that_dies_while_starting_instead_of_the_banner(
    capsys: pytest.CaptureFixture[str],
) -> None:
    banners: list[bool] = []
    sup = Supervisor(
        [standin("ingest"), standin("segmenter", "exit", "3")], say=lambda _: None, sink=io.BytesIO()
    )
    code = serve(sup, ready_timeout=20, on_ready=lambda _: None, banner=lambda: banners.append(True))
    assert code == 1
    assert banners == []
    err = capsys.readouterr().err
    assert "error: segmenter exited with 3 before it was ready; its last log lines:" in err
    assert "fatal: cannot open config/standin.yaml" in err
    assert all(p.poll() is not None for p in sup.procs.values()), "the other services were stopped"


def test_dev_run_prints_the_banner_once_ready_and_stops_everything_on_ctrl_c() -> None:
    ready: list[str] = []
    sup = Supervisor([standin("ingest"), standin("segmenter")], say=lambda _: None, sink=io.BytesIO())

    def banner() -> None:
        ready.append("banner")
        # Ctrl-C a moment later; serve's handler is installed until it returns.
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    code = serve(sup, ready_timeout=20, on_ready=ready.append, banner=banner)
    assert code == 0
    assert sorted(ready[:2]) == ["ingest", "segmenter"]
    assert ready[2:] == ["banner"]
    assert all(p.poll() is not None for p in sup.procs.values())
