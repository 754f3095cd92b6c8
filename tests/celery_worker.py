"""A real Celery worker (`celery -A gatewaysite worker`, subprocess) on the test database and Redis.

Each test session gets its own usage stream and Celery queue (`usage_pipeline_env`), so sessions that
share a Redis never drain each other's events or run each other's tasks; `cleanup` deletes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.gateway_server import ROOT, test_database_url

SESSION_TAG = uuid.uuid4().hex[:10]


def usage_pipeline_env() -> dict[str, str]:
    """Environment shared by the test session's gateway server and worker (empty without Redis)."""
    if not os.environ.get("REDIS_URL"):
        return {}
    return {
        "GATEWAY_USAGE_STREAM": f"gateway:usage:test:{SESSION_TAG}",
        "CELERY_TASK_DEFAULT_QUEUE": f"usage-test-{SESSION_TAG}",
        # A killed worker's batch is claimed by the next drain after 1 s instead of 30 s.
        "GATEWAY_USAGE_CLAIM_IDLE_SECONDS": "1",
    }


@dataclass
class CeleryWorker:
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join([*self.logs, self.log_path.read_text(errors="replace") if self.log_path.exists() else ""])

    def start(self, timeout: float = 60) -> CeleryWorker:
        if self.log_path.exists():
            self.logs.append(self.log_path.read_text(errors="replace"))
        self.starts += 1
        cmd = [sys.executable, "-m", "celery", "-A", "gatewaysite", "worker", "--pool", "solo", "--loglevel", "info",
               "-Q", self.env["CELERY_TASK_DEFAULT_QUEUE"], "-n", f"usage-test-{SESSION_TAG}-{self.starts}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with self.log_path.open("wb") as log:
            # Its own process group, so kill() takes the whole worker down at once.
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log()}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"celery worker did not start:\n{self.log()}")

    def kill(self) -> None:
        """kill -9, mid-whatever: nothing is flushed, acknowledged or cleaned up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_celery_worker(extra_env: dict[str, str]) -> CeleryWorker:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "gatewaysite.settings",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"celery-test-{SESSION_TAG}.log"
    return CeleryWorker(env=env, log_path=log_path).start()


def cleanup(extra_env: dict[str, str]) -> None:
    """Delete this session's stream, its side keys and its Celery queue (nothing else)."""
    url = os.environ.get("REDIS_URL")
    if not url or not extra_env:
        return
    stream = extra_env["GATEWAY_USAGE_STREAM"]
    queue = extra_env["CELERY_TASK_DEFAULT_QUEUE"]
    client = redis.Redis.from_url(url)
    try:
        client.delete(stream, f"{stream}:dead", f"{stream}:nudge", f"{stream}:followup", queue)
        # A killed worker's delayed (countdown) tasks wait in kombu's shared "unacked" hash, to be put
        # back on our queue later: remove ours, and only ours.
        for tag, raw in client.hscan_iter("unacked"):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key == queue:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()
