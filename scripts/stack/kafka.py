"""A real single-node Kafka 4.1 broker (KRaft, combined broker+controller) on the local JDK.

The jars come from Maven Central through the pinned `scripts/kafka/pom.xml`, fetched once into a
shared libs folder; each node has its own data folder, ports and log, so tests can run a private
broker beside the developer's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.errors import StackError
from scripts.stack.procs import free_port, port_in_use, read_pid, stop_pid

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_LIBS = REPO_ROOT / ".local" / "kafka" / "libs"  # fetched once, used by every local broker
POM = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
READY_LINE = "Kafka Server started"

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
"""


def ensure_libs(libs: Path) -> Path:
    """Fetch the broker's jars once with Maven; a clear error names what is missing."""
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("java") is None:
        raise StackError(
            "Kafka needs a Java runtime: install a JDK 17 (e.g. `apt-get install openjdk-17-jdk-headless`)."
        )
    if shutil.which("mvn") is None:
        raise StackError("Fetching Kafka needs Maven: install it (e.g. `apt-get install maven`).")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(
            f"fetching Kafka jars with Maven failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    marker.write_text("ok\n")
    return libs


@dataclass(frozen=True)
class KafkaNode:
    """One broker: `home` holds its config, data, log and pid file."""

    home: Path
    libs: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    # Flush (fsync) the log after every appended batch, before the broker acknowledges it:
    # a single node's acknowledgement then survives a power loss, not only a broker crash.
    durable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", self.home.resolve())
        object.__setattr__(self, "libs", self.libs.resolve())

    @classmethod
    def on_free_ports(cls, home: Path, *, durable: bool = False) -> KafkaNode:
        """A broker of its own under `home` (tests, benchmarks), on free ports, with the shared jars."""
        return cls(
            home=home, libs=SHARED_LIBS, port=free_port(), controller_port=free_port(), durable=durable
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def is_running(self) -> bool:
        return self.pid() is not None

    def _write_config(self) -> Path:
        data = self.home / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
        }
        if self.durable:
            props["log.flush.interval.messages"] = "1"
        cfg = self.home / "server.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2)
        return cfg

    def _java(self, *args: str) -> list[str]:
        return ["java", "-cp", f"{self.libs}/*", *args]

    def start(self, timeout: float = 120.0) -> None:
        """Start the broker unless it already runs; return once it logged that it started."""
        if self.is_running():
            return
        for p in (self.port, self.controller_port):
            if port_in_use(p):
                raise StackError(
                    f"port {p} is taken by another process; pick other Kafka ports "
                    "(USEROPS_KAFKA_PORT / USEROPS_KAFKA_CONTROLLER_PORT)"
                )
        ensure_libs(self.libs)
        self.home.mkdir(parents=True, exist_ok=True)
        cfg = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = (
                subprocess.run(
                    self._java("kafka.tools.StorageTool", "random-uuid"),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(cfg)
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {fmt.stderr[-2000:]}")
        log = self.log_file.open("ab")
        offset = log.tell()
        proc = subprocess.Popen(
            [
                "java",
                f"-Xms{self.heap}",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp",
                f"{self.libs}/*",
                "kafka.Kafka",
                str(cfg),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"Kafka exited with {proc.returncode}; see {self.log_file}:\n{self._tail(offset)}"
                )
            if READY_LINE in self._tail(offset, limit=None):
                return
            time.sleep(0.2)
        self.stop()
        raise StackError(f"Kafka did not start within {timeout:.0f}s; see {self.log_file}")

    def _tail(self, offset: int, limit: int | None = 3000) -> str:
        with self.log_file.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return text if limit is None else text[-limit:]

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, timeout)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        self.stop(timeout=0.0)
