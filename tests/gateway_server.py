"""Start the real gateway (uvicorn running gatewaysite.asgi:application) on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Servers started by one test run keep their limit counters under this Redis key prefix, and
# `flush_limit_counters` removes exactly those keys.
LIMITS_KEY_PREFIX = f"test{os.getpid()}:lim:"


def flush_limit_counters(redis_url: str | None = None) -> None:
    """Delete the limit counters this test run's servers made (only keys under LIMITS_KEY_PREFIX)."""
    url = redis_url or os.environ.get("REDIS_URL")
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{LIMITS_KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_url() -> str:
    """DATABASE_URL of the test database pytest-django created (it swaps NAME in place)."""
    cfg = connection.settings_dict
    if cfg["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{cfg['NAME']}"
    user = cfg.get("USER") or ""
    password = f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{cfg.get('HOST') or '127.0.0.1'}:{cfg.get('PORT') or 5432}/{cfg['NAME']}"


@dataclass
class GatewayServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway_server(extra_env: dict[str, str] | None = None, *, workers: int = 1) -> GatewayServer:
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-test-{port}.log"
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "gatewaysite.settings",
        "GATEWAY_SNAPSHOT_POLL_SECONDS": "0.2",
        "GATEWAY_USAGE_FLUSH_SECONDS": "0.1",
        "GATEWAY_PRICE_REFRESH_SECONDS": "0.2",
        "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "2",
        "GATEWAY_LIMITS_KEY_PREFIX": LIMITS_KEY_PREFIX,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "uvicorn", "gatewaysite.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "info"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = GatewayServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway server exited:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gateway server did not start:\n{server.log()}")
