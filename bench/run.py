#!/usr/bin/env python3
"""Load benchmark: our gateway beside MLflow's gateway, both in front of the same fake upstream.

Run from the repository root:  .venv/bin/python bench/run.py   (or `make bench`)

What it does, bounded in time and on loopback only (see bench/README.md for how to read the result):
 1. installs what is missing: Debian's nginx and wrk (apt-get), MLflow's gateway in its own venv
    (bench/.venvs/mlflow, `mlflow[gateway]==2.22.5`), py-spy (bench/.venvs/tools) with --profile;
 2. starts nginx as a fake OpenAI upstream (generated config in a temp dir, fixed chat completion, and
    a fixed SSE chat stream at its own location for the streaming route);
 3. prepares our gateway on a fresh SQLite database (the chat route, the streaming route and a consumer
    key granted both) and serves it with one uvicorn worker pinned to one core;
 4. serves MLflow's gateway (`mlflow gateway start --workers 1`) on the same upstream, same core;
 5. for direct nginx, a raw ASGI + aiohttp proxy (the floor, bench/baseline_app.py), our gateway and
    MLflow's: checks one request answers 200 with the expected text, warms up, measures latency at 1
    connection and throughput at 32 (wrk, pinned to the other core), counts non-2xx answers and socket
    errors, reads the server's RSS and CPU use, other processes' CPU on its core (a disturbed run is
    repeated) and the upstream connections it opened;
 6. with --stream (default on) for direct nginx and both gateways: checks a `stream: true` call answers a
    real SSE stream, then times the first `data:` line (TTFB) and the end of 300 streamed calls, one at
    a time, from a small asyncio client pinned to the client core (`run.py --stream-client`);
 7. prints markdown tables, the two target ratios and the added TTFB, and writes them with the raw wrk
    output to bench/results/<timestamp>.md;
 8. stops every process it started, whatever happens.
Only the Python standard library is used here, so it runs under any interpreter of the project.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import fcntl
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
VENVS_DIR = BENCH_DIR / ".venvs"
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
PROJECT_UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
# The gateway source that is served (--project): this work tree unless told otherwise, e.g. a clean
# `git archive` export of a commit, run with this work tree's venv.
PROJECT_DIR = ROOT

# The newest MLflow 2.x: it still ships `mlflow gateway start` (FastAPI + aiohttp under gunicorn's
# UvicornWorker) and serves the 2.5 route API beside the deployments and /v1 APIs.
MLFLOW_REQUIREMENT = "mlflow[gateway]==2.22.5"
PY_SPY_REQUIREMENT = "py-spy"
PROFILE_RATE = 200  # py-spy samples per second

ROUTE = "bench-chat"
MODEL = "gpt-4o-mini"
UPSTREAM_KEY = "sk-bench"
EXPECTED_TEXT = "bench-ok from the fake upstream"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]

# The fixed answer of the fake upstream: an OpenAI chat completion with usage.
UPSTREAM_ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": EXPECTED_TEXT}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}

# Streaming (--stream, on by default): a second route/endpoint whose upstream base URL points at the fake
# upstream's fixed SSE stream (nginx cannot branch on the request body, so the stream has its own location).
STREAM_ROUTE = "bench-stream"
STREAM_UPSTREAM_PATH = "/stream/v1/chat/completions"
STREAM_PIECES = ["bench-ok", " from", " the", " fake", " upstream"]  # the content deltas, in order
assert "".join(STREAM_PIECES) == EXPECTED_TEXT
# Ours and the fake upstream end a stream with `data: [DONE]`; MLflow 2.22.5's gateway just ends the body.
STREAM_DONE_REQUIRED = ("direct", "ours")


def upstream_stream() -> str:
    """The fake upstream's fixed OpenAI chat stream: the role, the text in pieces, the finish reason, the usage
    chunk (as asked by `stream_options.include_usage`) and `data: [DONE]`."""
    base = {"id": "chatcmpl-bench-stream", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL}
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
               for piece in STREAM_PIECES]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": UPSTREAM_ANSWER["usage"]})
    return "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"


# The streamed call on each gateway (--stream-api); `{route}` is replaced by the streaming route's name.
STREAM_API_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "deployments": ("/endpoints/{route}/invocations", {"messages": MESSAGES, "stream": True}),
    "openai": ("/v1/chat/completions", {"model": "{route}", "messages": MESSAGES, "stream": True}),
}

# Which API both gateways are driven through; --path/--body (and the per-gateway forms) override it.
# `{route}` in a path or body is replaced by the route/endpoint name.
API_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # MLflow 2.5 route API: POST /gateway/{route}/invocations, body {messages}.
    "mlflow-routes": ("/gateway/{route}/invocations", {"messages": MESSAGES}),
    # MLflow deployments API (2.9+): POST /endpoints/{name}/invocations, OpenAI-shaped body.
    "deployments": ("/endpoints/{route}/invocations", {"messages": MESSAGES}),
    # OpenAI-compatible: POST /v1/chat/completions, the route is the model.
    "openai": ("/v1/chat/completions", {"model": "{route}", "messages": MESSAGES}),
}

TARGET_NAMES = ("direct", "baseline", "ours", "mlflow")
# Other work on the machine above this share of a core during a measured run makes the numbers suspect.
OTHER_LOAD_WARNING_PERCENT = 15.0
TARGET_LABELS = {
    "direct": "direct nginx (fake upstream)",
    "baseline": "floor: raw ASGI + aiohttp proxy",
    "ours": "our gateway",
    "mlflow": "MLflow gateway 2.22.5",
}

WRK_LUA = r"""
-- Generated by bench/run.py: POST with a fixed body and headers; counts non-2xx answers and prints
-- machine-readable summary lines (prefixed BENCH) after wrk's own report.
wrk.method = "POST"
wrk.body = [==[__BODY__]==]
__HEADERS__
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, n, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format(
    "BENCH p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


class BenchError(RuntimeError):
    """The benchmark cannot go on (an install failed, a server did not start or answered wrongly)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Installing what is missing


def _run(cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None,
         what: str = "") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BenchError(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def ensure_debian_packages(no_install: bool) -> None:
    missing = [pkg for pkg, found in (("nginx", find_nginx()), ("wrk", shutil.which("wrk"))) if not found]
    if not shutil.which("taskset"):
        missing.append("util-linux")
    if not missing:
        return
    if no_install:
        raise BenchError(f"missing {', '.join(missing)} and --no-install was given")
    if os.geteuid() != 0:
        raise BenchError(f"missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing Debian packages: {' '.join(missing)} (apt-get update first)")
    _run(["apt-get", "update", "-qq"], timeout=300, env=env, what="apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], timeout=400, env=env,
         what=f"apt-get install {' '.join(missing)}")
    if not (find_nginx() and shutil.which("wrk")):
        raise BenchError("nginx or wrk still missing after apt-get install")


def ensure_venv(name: str, requirements: Sequence[str], no_install: bool) -> Path:
    """A cached venv under bench/.venvs/<name>, rebuilt when its requirement list changes."""
    path = VENVS_DIR / name
    stamp = path / ".bench-requirements.json"
    wanted = {"requirements": list(requirements), "python": platform.python_version()}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(stamp.read_text()) == wanted and (path / "bin" / "python").exists():
            return path
    if no_install:
        raise BenchError(f"{path} is missing or stale and --no-install was given")
    log(f"building {path.relative_to(ROOT)}: pip install {' '.join(requirements)} (a minute or two, once)")
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(path)], timeout=120, what="python -m venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements], timeout=900, env=env,
         what=f"pip install {' '.join(requirements)}")
    stamp.write_text(json.dumps(wanted))
    return path


# ---------------------------------------------------------------------------------------------
# Processes: each in its own process group, all stopped on every exit path


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_problems(self) -> list[str]:
        """Lines of the server's log that report an error (a traceback counts once, by its last line)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)]

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this script dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class ProcessGroup:
    def __init__(self) -> None:
        self.servers: list[Server] = []

    def start(self, name: str, cmd: Sequence[str | Path], *, env: dict[str, str], log_path: Path, port: int,
              cwd: Path | None = None) -> Server:
        log(f"starting {name}: {' '.join(map(str, cmd))}")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(list(map(str, cmd)), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        set_autogroup_nice(proc.pid)
        server = Server(name, proc, log_path, port)
        self.servers.append(server)
        return server

    def stop(self, server: Server, timeout: float = 15.0) -> None:
        """SIGTERM to the server's whole process group, SIGKILL whatever is left after `timeout`."""
        if server in self.servers:
            self.servers.remove(server)
        pgid = server.proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server.proc.poll()
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            log(f"{server.name} did not stop in {timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=5)

    def stop_all(self) -> None:
        for server in reversed(list(self.servers)):
            with contextlib.suppress(Exception):
                self.stop(server)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children still count as members until reaped; treat a reaped leader whose
    # group has only zombies left as gone.
    for pid in _pids():
        stat = _stat(pid)
        if stat and int(stat[4]) == pgid and stat[2] != "Z":
            return True
    return False


# Niceness of every benchmark process (servers, upstream, wrk); set from --nice in main().
NICE = 0


def pinned(cpu: str) -> list[str]:
    """Command prefix: pin to `cpu` and, on a machine shared with other work, raise the priority."""
    return [*(["nice", "-n", str(NICE)] if NICE else []), "taskset", "-c", cpu]


def set_autogroup_nice(pid: int) -> None:
    """With the kernel's autogroup scheduling on (the default: kernel.sched_autogroup_enabled=1), niceness
    only orders the processes of one session; between sessions (another terminal's test suite) the CPU is
    shared by the sessions' autogroups. Every process the benchmark starts leads its own session, so its
    autogroup gets the same niceness."""
    if NICE:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(f"{NICE}\n")


def nice_works(value: int) -> bool:
    """`nice` runs its command even when it may not change the priority; it then says so on stderr."""
    try:
        proc = subprocess.run(["nice", "-n", str(value), "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and not proc.stderr.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# /proc: resident memory and CPU time of a process tree


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat with the command name removed: [pid, state?...] re-indexed so that
    index 2 is the state, 3 ppid, 4 pgrp, 13 utime, 14 stime (as in proc(5), 0-based after pid/comm)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return [str(pid), "comm", *rest]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat:
            children.setdefault(int(stat[3]), []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Memory:
    total_kb: int
    largest_kb: int
    processes: int

    def render(self) -> str:
        if self.processes <= 1:
            return f"{self.total_kb / 1024:.0f} MB"
        return f"{self.total_kb / 1024:.0f} MB ({self.processes} procs; largest {self.largest_kb / 1024:.0f})"


def tree_memory(root: int) -> Memory:
    sizes = [rss_kb(pid) for pid in process_tree(root)]
    sizes = [s for s in sizes if s > 0]
    return Memory(sum(sizes), max(sizes, default=0), len(sizes))


def tree_cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        stat = _stat(pid)
        if stat:
            ticks += int(stat[13]) + int(stat[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def parse_cpus(spec: str) -> set[int]:
    """taskset's list form: "1", "0,2", "0-3"."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def _busy_seconds() -> dict[int | None, float]:
    """CPU time spent running processes since boot, per CPU and in all (key None): user + nice + system
    from /proc/stat (irq/softirq time is left out: much of it is our own loopback traffic, charged to no
    process)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy: dict[int | None, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        key = None if name == "cpu" else int(name[3:])
        busy[key] = sum(int(x) for x in fields[:3]) / tick
    return busy


def _children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime


class CpuWatch:
    """CPU used during one load run by the server's process tree, and by processes that are not the
    benchmark's (server, fake upstream, wrk, this script): other work competing with the measurement,
    on the server's own core and on the whole machine."""

    def __init__(self, server_pid: int, upstream_pid: int | None, server_cpus: set[int],
                 client_cpus: set[int]) -> None:
        self.server_pid, self.upstream_pid = server_pid, upstream_pid
        self.server_cpus, self.shared = server_cpus, bool(server_cpus & client_cpus)
        self.wall = time.monotonic()
        self.busy = _busy_seconds()
        self.server = tree_cpu_seconds(server_pid)
        self.upstream = tree_cpu_seconds(upstream_pid) if upstream_pid else 0.0
        self.children = _children_seconds()

    def stop(self) -> tuple[float, float, float]:
        """(server CPU, others on the server's core(s), others on the machine), in % of one core."""
        wall = max(time.monotonic() - self.wall, 1e-6)
        busy = _busy_seconds()
        server = tree_cpu_seconds(self.server_pid) - self.server
        client = (tree_cpu_seconds(self.upstream_pid) - self.upstream if self.upstream_pid else 0.0) \
            + (_children_seconds() - self.children)  # the fake upstream, wrk and this script
        others_all = max(0.0, busy[None] - self.busy[None] - server - client)
        on_server_cpus = sum(busy.get(c, 0.0) - self.busy.get(c, 0.0) for c in self.server_cpus)
        others_here = max(0.0, on_server_cpus - server - (client if self.shared else 0.0))
        return 100.0 * server / wall, 100.0 * others_here / wall, 100.0 * others_all / wall


# ---------------------------------------------------------------------------------------------
# HTTP checks (stdlib only)


@dataclass
class Target:
    key: str  # one of TARGET_NAMES
    label: str
    server: Server
    path: str
    body: bytes
    headers: dict[str, str]
    upstream: Server | None = None  # the fake upstream behind a gateway (None when measuring it directly)
    cpus: str = "1"  # where the server is pinned

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{self.path}"


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(server: Server, probe: str, timeout: float) -> None:
    """Until GET `probe` answers (any HTTP status) or the process dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.proc.returncode} while starting:\n{server.log_tail()}")
        try:
            status, _ = http("GET", f"http://127.0.0.1:{server.port}{probe}", timeout=2)
            if status < 500:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {timeout:.0f}s ({last}):\n{server.log_tail()}")


def verify(target: Target) -> str:
    """One request must answer 200 with the fake upstream's text; returns the body for the report."""
    try:
        status, body = http("POST", target.url, target.body, {**target.headers, "Content-Type": "application/json"})
    except (OSError, urllib.error.URLError) as exc:
        raise BenchError(f"{target.label}: POST {target.url} failed: {exc}\n{target.server.log_tail()}") from None
    text = body.decode(errors="replace")
    if status != 200 or EXPECTED_TEXT not in text:
        raise BenchError(f"{target.label}: POST {target.url} answered {status}, not 200 with {EXPECTED_TEXT!r}:\n"
                         f"{text[:2000]}\n--- server log ---\n{target.server.log_tail()}")
    try:
        json.loads(text)
    except ValueError:
        raise BenchError(f"{target.label}: the answer is not JSON: {text[:500]}") from None
    return text


# ---------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    label: str
    connections: int
    raw: str
    values: dict[str, float] = field(default_factory=dict)
    cpu_percent: float | None = None
    others_percent: float | None = None  # other processes on the server's core(s)
    others_machine_percent: float | None = None  # other processes anywhere

    def ms(self, key: str) -> float:
        return self.values[key] / 1000.0

    @property
    def rps(self) -> float:
        return self.values["requests"] / (self.values["duration_us"] / 1e6)

    @property
    def socket_errors(self) -> int:
        return int(sum(self.values[k] for k in ("connect", "read", "write", "timeout")))

    @property
    def non2xx(self) -> int:
        return int(self.values["non2xx"])


def upstream_counters(upstream: Server) -> tuple[int, int]:
    """(connections accepted, requests served) so far by the fake upstream (nginx stub_status)."""
    status, body = http("GET", f"http://127.0.0.1:{upstream.port}/nginx_status", timeout=5)
    numbers = body.decode().splitlines()[2].split() if status == 200 else []
    if len(numbers) != 3:
        raise BenchError(f"unexpected nginx stub_status answer ({status}): {body[:300]!r}")
    return int(numbers[0]), int(numbers[2])


def write_lua(target: Target, directory: Path) -> Path:
    headers = {**target.headers, "Content-Type": "application/json"}
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    body = target.body.decode()
    if "]==]" in body:
        raise BenchError("the request body may not contain ']==]'")
    path = directory / f"{target.key}.lua"
    path.write_text(WRK_LUA.replace("__BODY__", body).replace("__HEADERS__", lines))
    return path


def run_wrk(target: Target, lua: Path, *, connections: int, seconds: int, cpu: str, label: str,
            latency: bool = True) -> WrkResult:
    cmd = [*pinned(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
           "-s", str(lua)]
    if latency:
        cmd.append("--latency")
    cmd.append(target.url)
    before = upstream_counters(target.upstream) if target.upstream else None
    watch = CpuWatch(target.server.pid, target.upstream.pid if target.upstream else None, parse_cpus(target.cpus),
                     parse_cpus(cpu))
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                           start_new_session=True, preexec_fn=_die_with_parent)
    set_autogroup_nice(wrk.pid)
    try:
        stdout, stderr = wrk.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk against {target.label} did not finish in {seconds + 30}s") from None
    finally:
        if wrk.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait(timeout=5)
    proc = subprocess.CompletedProcess(cmd, wrk.returncode, stdout, stderr)
    server_percent, others_percent, others_machine = watch.stop()
    upstream_note = ""
    if target.upstream and before:
        after = upstream_counters(target.upstream)
        # Each counter read is one connection and one request of its own: take it out.
        conns, reqs = after[0] - before[0] - 1, after[1] - before[1] - 1
        upstream_note = f", upstream: {conns} new connections for {reqs} requests"
    raw = f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    if proc.returncode != 0:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{raw}")
    values: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            for item in line.split()[1:]:
                k, _, v = item.partition("=")
                values[k] = float(v)
    if "requests" not in values or "p50_us" not in values:
        raise BenchError(f"no summary from wrk's Lua script:\n{raw}")
    if upstream_note:
        values["upstream_conns"], values["upstream_requests"] = conns, reqs
    raw += (f"server CPU {server_percent:.0f}% of a core; other processes: {others_percent:.0f}% of a core "
            f"on the server's CPU {target.cpus}, {others_machine:.0f}% on the whole machine{upstream_note}\n")
    result = WrkResult(label, connections, raw, values, cpu_percent=server_percent, others_percent=others_percent,
                       others_machine_percent=others_machine)
    log(f"  {target.key} {label}: {result.rps:,.0f} req/s, p50 {result.ms('p50_us'):.3f} ms, "
        f"p99 {result.ms('p99_us'):.3f} ms, non-2xx {result.non2xx}, socket errors {result.socket_errors}, "
        f"server CPU {server_percent:.0f}%, others {others_percent:.0f}% on its CPU, {others_machine:.0f}% in all"
        f"{upstream_note}")
    return result


@dataclass
class Measured:
    target: Target
    sample: str
    c1: WrkResult
    c32: WrkResult
    warmup: WrkResult
    memory_idle: Memory
    memory_after: Memory
    discarded: list[WrkResult] = field(default_factory=list)

    @property
    def runs(self) -> list[WrkResult]:
        return [self.warmup, self.c1, self.c32, *self.discarded]

    def errors(self) -> tuple[int, int]:
        return sum(r.non2xx for r in self.runs), sum(r.socket_errors for r in self.runs)


def measure(target: Target, args: argparse.Namespace, workdir: Path) -> Measured:
    log(f"measuring {target.label} at {target.url}")
    sample = verify(target)
    memory_idle = tree_memory(target.server.pid)
    lua = write_lua(target, workdir)
    warmup = run_wrk(target, lua, connections=args.connections, seconds=args.warmup, cpu=args.client_cpu,
                     label="warm-up", latency=False)
    discarded: list[WrkResult] = []

    def least_disturbed(connections: int, label: str) -> WrkResult:
        """A run during which other processes took a share of the machine is repeated (--retries)."""
        runs = [run_wrk(target, lua, connections=connections, seconds=args.duration, cpu=args.client_cpu,
                        label=label)]
        while (runs[-1].others_percent or 0.0) > OTHER_LOAD_WARNING_PERCENT and len(runs) <= args.retries:
            log(f"  other processes took {runs[-1].others_percent:.0f}% of the server's core during that run: "
                "repeating it")
            runs.append(run_wrk(target, lua, connections=connections, seconds=args.duration, cpu=args.client_cpu,
                                label=f"{label}, repeated"))
        best = min(runs, key=lambda r: r.others_percent or 0.0)
        for r in runs:
            if r is not best:
                r.label += " (discarded: disturbed)"
                discarded.append(r)
        return best

    c1 = least_disturbed(1, "1 conn")
    c32 = least_disturbed(args.connections, f"{args.connections} conns")
    memory_after = tree_memory(target.server.pid)
    verify(target)  # still answering correctly after the load
    return Measured(target, sample, c1, c32, warmup, memory_idle, memory_after, discarded)


# ---------------------------------------------------------------------------------------------
# Streaming (--stream): time to the first `data:` line and to the end of the stream, one call at a time
#
# The client is a small asyncio HTTP/1.1 client on a raw connection (kept alive, as wrk's), run as a
# child of this script (`run.py --stream-client SPEC`) pinned to the client core like wrk. It stamps the
# time each request is written, the time the first `data:` of the body arrives (response headers alone
# do not count: MLflow's gateway sends them before it has called the upstream) and the end of the body.

STREAM_CLIENT_FLAG = "--stream-client"
STREAM_CALL_TIMEOUT = 10.0  # seconds per streamed call


@dataclass
class StreamAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    ttfb_us: float | None  # first `data:` of the body
    total_us: float
    keep_alive: bool


async def _read_answer(reader: asyncio.StreamReader, t0: float) -> StreamAnswer:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the status line")
    version, status_text, *_ = status_line.split(None, 2)
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytearray()
    first: float | None = None

    def got(piece: bytes) -> None:
        nonlocal first
        body.extend(piece)
        if first is None and b"data:" in body:
            first = time.perf_counter()

    async def read_exactly(n: int) -> None:
        while n:
            piece = await reader.read(min(n, 65536))
            if not piece:
                raise ConnectionError("connection closed in the middle of the body")
            n -= len(piece)
            got(piece)

    eof = False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            await read_exactly(size)
            await reader.readexactly(2)  # CRLF after the chunk
    elif "content-length" in headers:
        await read_exactly(int(headers["content-length"]))
    else:
        while piece := await reader.read(65536):
            got(piece)
        eof = True
    end = time.perf_counter()
    keep_alive = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close" and not eof
    return StreamAnswer(int(status_text), headers, bytes(body), None if first is None else (first - t0) * 1e6,
                        (end - t0) * 1e6, keep_alive)


async def stream_calls(port: int, path: str, body: bytes, headers: dict[str, str], count: int) -> list[StreamAnswer]:
    """`count` POSTs one after the other over one kept-alive connection (reopened only if the server closes
    it); a call that fails on the socket or times out is an answer with status 0 and the error as its body."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "Host": f"127.0.0.1:{port}", "Content-Type": "application/json", "Accept": "text/event-stream",
        **headers, "Content-Length": str(len(body))}.items())
    request = f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body
    answers: list[StreamAnswer] = []
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STREAM_CALL_TIMEOUT)
                sock = conn[1].get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                t0 = time.perf_counter()
            reader, writer = conn
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(_read_answer(reader, t0), STREAM_CALL_TIMEOUT)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            answer = StreamAnswer(0, {}, f"{type(exc).__name__}: {exc}".encode(), None,
                                  (time.perf_counter() - t0) * 1e6, False)
        answers.append(answer)
        if not answer.keep_alive and conn is not None:
            conn[1].close()
            with contextlib.suppress(Exception):
                await conn[1].wait_closed()
            conn = None
    if conn is not None:
        conn[1].close()
        with contextlib.suppress(Exception):
            await conn[1].wait_closed()
    return answers


def answer_problem(answer: StreamAnswer, done_required: bool) -> str:
    """Why a streamed answer is not a plain success (empty when it is one)."""
    if answer.status != 200:
        return f"status {answer.status}: {answer.body[:300].decode(errors='replace')}"
    if answer.ttfb_us is None:
        return f"no `data:` line in the body: {answer.body[:300].decode(errors='replace')}"
    if done_required and not answer.body.rstrip().endswith(b"data: [DONE]"):
        return f"the stream does not end with `data: [DONE]`: ...{answer.body[-200:].decode(errors='replace')}"
    return ""


def stream_client_main(spec_text: str) -> int:
    """Child process: warm-up calls, then measured calls; prints one JSON summary line on stdout."""
    spec = json.loads(spec_text)
    answers = asyncio.run(stream_calls(spec["port"], spec["path"], spec["body"].encode(), spec["headers"],
                                       spec["warmup"] + spec["count"]))
    measured = answers[spec["warmup"]:]
    problems = [p for a in measured if (p := answer_problem(a, spec["done_required"]))]
    ok = [a for a in measured if not answer_problem(a, spec["done_required"])]
    print(json.dumps({
        "ttfb_us": [a.ttfb_us for a in ok], "total_us": [a.total_us for a in ok],
        "failures": len(problems), "first_failure": problems[0] if problems else "",
        "warmup_failures": sum(1 for a in answers[:spec["warmup"]] if answer_problem(a, spec["done_required"])),
    }))
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (as wrk's): the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)] if ordered else float("nan")


@dataclass
class SseCheck:
    events: int  # `data:` events before [DONE]
    content_events: int  # of them, with a non-empty content delta
    done: bool  # ends with `data: [DONE]`
    content_type: str


def check_sse(answer: StreamAnswer, label: str, done_required: bool) -> SseCheck:
    """The answer must be a real SSE stream of OpenAI chat chunks whose content deltas add up to the fake
    upstream's text, sent as several events; raises BenchError otherwise."""
    text = answer.body.decode(errors="replace")
    content_type = answer.headers.get("content-type", "")
    problem = answer_problem(answer, done_required)
    if not problem and not content_type.startswith("text/event-stream"):
        problem = f"content-type {content_type!r}, not text/event-stream"
    events = content_events = 0
    done = False
    pieces: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n\n") if not problem else []:
        data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
        if not block.strip() or not data:
            continue
        if done:
            problem = "events after `data: [DONE]`"
            break
        if data == "[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            problem = f"an event is not JSON: {data[:200]!r}"
            break
        if chunk.get("object") != "chat.completion.chunk" or not isinstance(chunk.get("choices"), list):
            problem = f"an event is not an OpenAI chat chunk: {data[:200]!r}"
            break
        events += 1
        contents = [c.get("delta", {}).get("content") or "" for c in chunk["choices"]]
        if any(contents):
            content_events += 1
            pieces.extend(contents)
    if not problem and "".join(pieces) != EXPECTED_TEXT:
        problem = f"the content deltas add up to {''.join(pieces)!r}, not {EXPECTED_TEXT!r}"
    if not problem and content_events < 2:
        problem = f"the text came in {content_events} event(s): not a stream"
    if problem:
        raise BenchError(f"{label}: the stream check failed: {problem}\n{text[:2000]}")
    return SseCheck(events, content_events, done, content_type)


@dataclass
class StreamRun:
    label: str
    ttfb_us: list[float]
    total_us: list[float]
    failures: int
    first_failure: str
    cpu_percent: float
    others_percent: float
    others_machine_percent: float
    seconds: float
    upstream: tuple[int, int] | None = None  # new connections the gateway opened upstream, requests it sent

    def p(self, which: str, q: float) -> float:
        return percentile(self.ttfb_us if which == "ttfb" else self.total_us, q)

    def render(self) -> str:
        return (f"{self.label}: {len(self.ttfb_us)} streams ok, {self.failures} failed"
                f"{' (first: ' + self.first_failure[:300] + ')' if self.failures else ''}; "
                f"TTFB p50 {self.p('ttfb', 50) / 1000:.3f} ms, p90 {self.p('ttfb', 90) / 1000:.3f}, "
                f"p99 {self.p('ttfb', 99) / 1000:.3f}, max {max(self.ttfb_us, default=0) / 1000:.3f}; "
                f"total p50 {self.p('total', 50) / 1000:.3f} ms, p99 {self.p('total', 99) / 1000:.3f}; "
                f"{self.seconds:.1f} s; server CPU {self.cpu_percent:.0f}%, others {self.others_percent:.0f}% on its "
                f"CPU, {self.others_machine_percent:.0f}% in all"
                + (f"; upstream: {self.upstream[0]} new connections for {self.upstream[1]} requests"
                   if self.upstream else ""))


@dataclass
class StreamMeasured:
    target: Target
    sample: str = ""
    check: SseCheck | None = None
    run: StreamRun | None = None
    discarded: list[StreamRun] = field(default_factory=list)
    requests_sent: int = 0
    unavailable: str = ""  # why this server was not measured (it does not stream)

    @property
    def runs(self) -> list[StreamRun]:
        return [r for r in (self.run, *self.discarded) if r is not None]


def run_stream_client(target: Target, args: argparse.Namespace, label: str) -> StreamRun:
    spec = {"port": target.server.port, "path": target.path, "body": target.body.decode(), "headers": target.headers,
            "count": args.stream_requests, "warmup": args.stream_warmup,
            "done_required": target.key in STREAM_DONE_REQUIRED}
    cmd = [*pinned(args.client_cpu), sys.executable, str(Path(__file__).resolve()), STREAM_CLIENT_FLAG,
           json.dumps(spec)]
    timeout = 30 + (args.stream_requests + args.stream_warmup) * 0.5
    before = upstream_counters(target.upstream) if target.upstream else None
    watch = CpuWatch(target.server.pid, target.upstream.pid if target.upstream else None, parse_cpus(target.cpus),
                     parse_cpus(args.client_cpu))
    started = time.monotonic()
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
    set_autogroup_nice(client.pid)
    try:
        stdout, stderr = client.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the streaming client against {target.label} did not finish in {timeout:.0f}s") from None
    finally:
        if client.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.pid, signal.SIGKILL)
            client.wait(timeout=5)
    seconds = time.monotonic() - started
    server_percent, others_percent, others_machine = watch.stop()
    upstream = None
    if target.upstream and before:
        after = upstream_counters(target.upstream)  # each read is one connection and one request of its own
        upstream = (after[0] - before[0] - 1, after[1] - before[1] - 1)
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"the streaming client failed (exit {client.returncode}):\n{stdout[-2000:]}\n"
                         f"{stderr[-3000:]}") from None
    run = StreamRun(label, out["ttfb_us"], out["total_us"], out["failures"] + out["warmup_failures"],
                    out["first_failure"], server_percent, others_percent, others_machine, seconds, upstream)
    log(f"  {target.key} {run.render()}")
    return run


def measure_stream(target: Target, args: argparse.Namespace) -> StreamMeasured:
    """Check that the path answers a real SSE stream, then time `--stream-requests` streamed calls at one
    connection (a run disturbed by other processes is repeated, as wrk's are), and check again."""
    log(f"streaming: {target.label} at {target.url}")
    done_required = target.key in STREAM_DONE_REQUIRED
    result = StreamMeasured(target)

    def check() -> None:
        answer = asyncio.run(stream_calls(target.server.port, target.path, target.body, target.headers, 1))[0]
        result.requests_sent += 1
        result.check = check_sse(answer, target.label, done_required)
        result.sample = answer.body.decode(errors="replace")

    check()
    runs: list[StreamRun] = []
    while not runs or (runs[-1].others_percent > OTHER_LOAD_WARNING_PERCENT and len(runs) <= args.retries):
        if runs:
            log(f"  other processes took {runs[-1].others_percent:.0f}% of the server's core during that run: "
                "repeating it")
        runs.append(run_stream_client(target, args, "streamed, 1 conn" + (", repeated" if runs else "")))
        result.requests_sent += args.stream_warmup + args.stream_requests
    result.run = min(runs, key=lambda r: r.others_percent)
    for r in runs:
        if r is not result.run:
            r.label += " (discarded: disturbed)"
            result.discarded.append(r)
    check()  # still a correct stream after the load
    return result


# ---------------------------------------------------------------------------------------------
# The three servers


def start_nginx(group: ProcessGroup, workdir: Path, cpu: str) -> Server:
    port = free_port()
    ndir = workdir / "nginx"
    for sub in ("", "tmp"):
        (ndir / sub).mkdir(parents=True, exist_ok=True)
    answer = json.dumps(UPSTREAM_ANSWER, separators=(",", ":"))
    assert "'" not in answer and "$" not in answer and "\\" not in answer
    stream = upstream_stream()
    assert "'" not in stream and "$" not in stream and "\\" not in stream
    stream = stream.replace("\n", "\\n")  # nginx turns \n in a quoted string into a newline
    conf = ndir / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        # Generated by bench/run.py: a fake OpenAI upstream answering one fixed chat completion, and one
        # fixed chat stream (Server-Sent Events, sent in one piece) at {STREAM_UPSTREAM_PATH}.
        daemon off;
        master_process on;
        worker_processes 1;
        pid {ndir}/nginx.pid;
        error_log {ndir}/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {ndir}/tmp/body;
            proxy_temp_path {ndir}/tmp/proxy;
            fastcgi_temp_path {ndir}/tmp/fastcgi;
            uwsgi_temp_path {ndir}/tmp/uwsgi;
            scgi_temp_path {ndir}/tmp/scgi;
            keepalive_requests 100000000;
            keepalive_timeout 300s;
            server {{
                listen 127.0.0.1:{port} backlog=4096;
                location = /v1/chat/completions {{
                    if ($request_method != POST) {{ return 405; }}
                    default_type application/json;
                    return 200 '{answer}';
                }}
                location = {STREAM_UPSTREAM_PATH} {{
                    if ($request_method != POST) {{ return 405; }}
                    default_type text/event-stream;
                    add_header Cache-Control no-cache;
                    return 200 '{stream}';
                }}
                location = /nginx_status {{ stub_status; }}
                location / {{ return 404; }}
            }}
        }}
        """))
    nginx = find_nginx()
    assert nginx
    _run([nginx, "-t", "-p", str(ndir), "-c", str(conf), "-e", str(ndir / "error.log")], timeout=30,
         what="nginx -t")
    server = group.start("nginx", [*pinned(cpu), nginx, "-p", ndir, "-c", conf, "-e", ndir / "error.log"],
                         env=dict(os.environ), log_path=ndir / "stdout.log", port=port)
    wait_ready(server, "/", timeout=15)
    return server


def gateway_env(workdir: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "DJANGO_", "MLFLOW_", "OPENAI_"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "gatewaysite.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "REDIS_URL": redis_url,
        "STATIC_ROOT": str(workdir / "static"),
    })
    return env


def prepare_gateway(env: dict[str, str], upstream_port: int) -> str:
    """Migrate a fresh database, create the routes (the chat route and the streaming one, whose upstream is the
    fake upstream's SSE stream), issue a consumer key granted to both; returns the key."""
    manage = [str(PROJECT_PYTHON), str(PROJECT_DIR / "manage.py")]
    log("our gateway: migrate a fresh SQLite database")
    _run([*manage, "migrate", "--noinput", "-v", "0"], timeout=240, env=env, cwd=PROJECT_DIR, what="manage.py migrate")
    code = "from routes import services"
    for name, base in ((ROUTE, "/v1"), (STREAM_ROUTE, STREAM_UPSTREAM_PATH.removesuffix("/chat/completions"))):
        config = {"openai_api_key": UPSTREAM_KEY, "openai_api_base": f"http://127.0.0.1:{upstream_port}{base}"}
        code += (f"; services.route_create(name={name!r}, route_type='llm/v1/chat', provider='openai', "
                 f"model_name={MODEL!r}, config={config!r})")
    # Full governance: limits on every scope the limiter checks per call (per consumer per minute with
    # calls and tokens, the route per day, the team's money per month), caps high enough never to refuse.
    limits = [
        {"key": "user", "renewal_period": "minute", "calls": 10**9, "tokens": 10**12},
        {"key": "route", "renewal_period": "day", "calls": 10**9},
        {"key": "team", "renewal_period": "month", "usd": "1000000"},
    ]
    code += ("; from routes.models import Route; from usage.limits.services import parse_route_limits, "
             f"route_limits_set; route_limits_set(route=Route.objects.get(name={ROUTE!r}), "
             f"entries=parse_route_limits({limits!r}))")
    _run([*manage, "shell", "-c", code], timeout=120, env=env, cwd=PROJECT_DIR, what="manage.py shell (route_create)")
    out = _run([*manage, "issue_key", "--team", "bench", "--consumer", "load", "--route", ROUTE,
                "--route", STREAM_ROUTE], timeout=120, env=env, cwd=PROJECT_DIR, what="manage.py issue_key").stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise BenchError("manage.py issue_key printed no key")
    return lines[-1]


def usage_event_count(env: dict[str, str]) -> int | None:
    code = "from usage.models import UsageEvent; print(UsageEvent.objects.count())"
    try:
        out = _run([str(PROJECT_PYTHON), str(PROJECT_DIR / "manage.py"), "shell", "-c", code], timeout=120, env=env,
                   cwd=PROJECT_DIR, what="count usage events").stdout
        return int(out.strip().splitlines()[-1])
    except (BenchError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        log(f"could not count usage events: {exc}")
        return None


def start_ours(group: ProcessGroup, workdir: Path, env: dict[str, str], cpu: str) -> Server:
    port = free_port()
    cmd: list[str | Path] = [*pinned(cpu), PROJECT_UVICORN, "gatewaysite.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning",
           "--app-dir", PROJECT_DIR]
    server = group.start("our gateway", cmd, env=env, log_path=workdir / "ours.log", port=port, cwd=PROJECT_DIR)
    wait_ready(server, "/health", timeout=60)
    return server


def start_baseline(group: ProcessGroup, workdir: Path, upstream_port: int, cpu: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["BENCH_UPSTREAM_URL"] = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    cmd: list[str | Path] = [*pinned(cpu), PROJECT_UVICORN, "baseline_app:app", "--app-dir", BENCH_DIR,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
                             "--log-level", "warning"]
    server = group.start("floor proxy", cmd, env=env, log_path=workdir / "baseline.log", port=port, cwd=workdir)
    wait_ready(server, "/health", timeout=30)
    return server


def start_mlflow(group: ProcessGroup, workdir: Path, venv: Path, upstream_port: int, cpu: str) -> Server:
    port = free_port()
    config = {
        "endpoints": [{
            "name": name,
            "endpoint_type": "llm/v1/chat",
            "model": {
                "provider": "openai",
                "name": MODEL,
                "config": {"openai_api_key": UPSTREAM_KEY,
                           "openai_api_base": f"http://127.0.0.1:{upstream_port}{base}"},
            },
        } for name, base in ((ROUTE, "/v1"), (STREAM_ROUTE, STREAM_UPSTREAM_PATH.removesuffix("/chat/completions")))]
    }
    config_path = workdir / "mlflow-gateway.yaml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "OPENAI_", "DJANGO_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    cmd: list[str | Path] = [*pinned(cpu), venv / "bin" / "mlflow", "gateway", "start", "--config-path", config_path,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = group.start("MLflow gateway", cmd, env=env, log_path=workdir / "mlflow.log", port=port, cwd=workdir)
    wait_ready(server, "/health", timeout=120)
    return server


def target_request(path: str, body: dict[str, Any] | str, route: str = ROUTE) -> tuple[str, bytes]:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return path.replace("{route}", route), text.replace("{route}", route).encode()


# ---------------------------------------------------------------------------------------------
# Profiling our gateway with py-spy (--profile)


def profile_ours(target: Target, lua: Path, args: argparse.Namespace, workdir: Path) -> str:
    venv = ensure_venv("tools", [PY_SPY_REQUIREMENT], args.no_install)
    out = workdir / "py-spy.txt"
    seconds = args.duration
    # --gil: sample the thread holding the GIL (the Python work on the server's core); without it py-spy
    # counts the ORM thread blocked in its queue as busy. --nonblocking: read the stacks without pausing
    # the server (pausing it 200 times a second cut its throughput by two thirds).
    cmd = [str(venv / "bin" / "py-spy"), "record", "--pid", str(target.server.pid), "--duration", str(seconds),
           "--rate", str(PROFILE_RATE), "--gil", "--nonblocking", "--full-filenames", "--format", "raw",
           "--output", str(out)]
    log(f"profiling our gateway with py-spy for {seconds}s under {args.connections} connections")
    spy = subprocess.Popen(["taskset", "-c", args.client_cpu, *cmd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                           preexec_fn=_die_with_parent)
    try:
        time.sleep(0.5)
        load = run_wrk(target, lua, connections=args.connections, seconds=seconds, cpu=args.client_cpu,
                       label=f"{args.connections} conns under py-spy")
        spy_out, _ = spy.communicate(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spy.pid, signal.SIGKILL)
            spy.wait(timeout=5)
    if spy.returncode != 0 or not out.exists():
        return f"py-spy failed (exit {spy.returncode}):\n{spy_out.decode(errors='replace')[-2000:]}"
    args.profile_requests = int(load.values["requests"])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, args.profile_copy)  # collapsed stacks: e.g. flamegraph.pl or speedscope read them
    return summarize_profile(out.read_text(), load, seconds) + (
        f"\nRaw samples (collapsed stacks): `{args.profile_copy.relative_to(ROOT)}`.\n")


def _frame_name(frame: str) -> tuple[str, str]:
    """'func (path/to/file.py:123)' -> ('func (short/file.py)', package)."""
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    func, path = (m.group(1), m.group(2)) if m else (frame.strip(), "")
    if "site-packages/" in path:
        rel = path.split("site-packages/", 1)[1]
        package = rel.split("/", 1)[0].removesuffix(".py")
    elif path.startswith(str(PROJECT_DIR) + "/") and not path.startswith((f"{ROOT / '.venv'}/", f"{VENVS_DIR}/")):
        rel = path[len(str(PROJECT_DIR)) + 1:]
        package = "ours: " + rel.split("/", 1)[0]
    elif "/lib/python3" in path:
        rel = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
        package = "stdlib: " + rel.split("/", 1)[0].removesuffix(".py")
    else:
        rel, package = path, path or "?"
    short = "/".join(rel.split("/")[-2:])
    return f"{func} ({short})", package


def summarize_profile(raw: str, load: WrkResult, seconds: float, top: int = 20) -> str:
    self_counts: Counter[str] = Counter()
    pkg_counts: Counter[str] = Counter()
    ours_incl: Counter[str] = Counter()  # our functions, time on the stack
    calls_out: Counter[str] = Counter()  # other code called directly from ours, time on the stack
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        names = [_frame_name(f) for f in frames]
        leaf, pkg = names[-1]
        self_counts[leaf] += count
        pkg_counts[pkg] += count
        seen_ours, seen_out = set(), set()
        for (name, package), (_, parent_pkg) in zip(names, [("", ""), *names[:-1]], strict=True):
            if package.startswith("ours: "):
                seen_ours.add(name)
            elif parent_pkg.startswith("ours: "):
                seen_out.add(f"{name} [{package}]")
        for name in seen_ours:
            ours_incl[name] += count
        for name in seen_out:
            calls_out[name] += count
    if not total:
        return "py-spy recorded no samples."

    def table(counter: Counter[str], title: str) -> str:
        rows = [f"| {title} | samples | share |", "|---|---:|---:|"]
        rows += [f"| `{name}` | {n} | {100.0 * n / total:.1f}% |" for name, n in counter.most_common(top)]
        return "\n".join(rows)

    held = 100.0 * total / (seconds * PROFILE_RATE)
    return "\n\n".join([
        f"py-spy `record --gil` at {PROFILE_RATE} Hz for {seconds:.0f} s: {total} samples, i.e. a thread of the "
        f"server held the GIL in about {held:.0f}% of them, while wrk drove {load.rps:,.0f} req/s "
        f"(under sampling). Shares are of the samples taken. Time in C code is charged to the Python "
        f"frame that called it; time with the GIL released (e.g. inside SQLite) is not seen.",
        "Self time by package (where the innermost Python frame is):\n\n" + table(pkg_counts, "package"),
        "Self time by function:\n\n" + table(self_counts, "function"),
        "Our functions, time on the stack (inclusive):\n\n" + table(ours_incl, "function"),
        "Calls from our code into libraries and the standard library, inclusive:\n\n"
        + table(calls_out, "function [package]"),
    ]) + "\n"


# ---------------------------------------------------------------------------------------------
# Report


def fmt_ms(us: float) -> str:
    return f"{us / 1000.0:.3f}"


def render_table(results: dict[str, Measured], connections: int) -> str:
    head = (f"| server | p50 ms (1 conn) | p99 ms (1 conn) | req/s ({connections} conns) | "
            f"p50 ms ({connections} conns) | p99 ms ({connections} conns) | non-2xx / socket errors | "
            f"server CPU ({connections} conns) | others on its CPU ({connections} conns) | RSS after run |")
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key in TARGET_NAMES:
        if key not in results:
            continue
        m = results[key]
        non2xx, sock = m.errors()
        cpu = f"{m.c32.cpu_percent:.0f}%" if m.c32.cpu_percent is not None else "?"
        others = f"{m.c32.others_percent:.0f}%" if m.c32.others_percent is not None else "?"
        rows.append(
            f"| {m.target.label} | {fmt_ms(m.c1.values['p50_us'])} | {fmt_ms(m.c1.values['p99_us'])} | "
            f"{m.c32.rps:,.0f} | {fmt_ms(m.c32.values['p50_us'])} | {fmt_ms(m.c32.values['p99_us'])} | "
            f"{non2xx} / {sock} | {cpu} | {others} | {m.memory_after.render()} |"
        )
    return "\n".join(rows)


def render_ratios(results: dict[str, Measured]) -> tuple[str, bool]:
    if not all(k in results for k in ("direct", "ours", "mlflow")):
        return "The target ratios need direct, ours and mlflow measured.", True
    ours, mlflow, direct = results["ours"], results["mlflow"], results["direct"]
    rps_ratio = ours.c32.rps / mlflow.c32.rps
    d50 = direct.c1.values["p50_us"]
    our_over = ours.c1.values["p50_us"] - d50
    mlflow_over = mlflow.c1.values["p50_us"] - d50
    over_ratio = our_over / mlflow_over if mlflow_over > 0 else float("inf")
    ok_rps, ok_over = rps_ratio >= 3.0, over_ratio <= 0.5
    lines = [
        f"- throughput: our req/s ÷ MLflow req/s = {ours.c32.rps:,.0f} ÷ {mlflow.c32.rps:,.0f} = "
        f"**{rps_ratio:.2f}×** (target ≥ 3×: {'met' if ok_rps else 'MISSED'})",
        f"- p50 overhead at 1 connection: (our p50 − direct p50) ÷ (MLflow p50 − direct p50) = "
        f"{our_over / 1000:.3f} ms ÷ {mlflow_over / 1000:.3f} ms = **{over_ratio:.2f}** "
        f"(target ≤ 0.5: {'met' if ok_over else 'MISSED'})",
    ]
    if "baseline" in results:
        floor = results["baseline"]
        floor_over = floor.c1.values["p50_us"] - d50
        lines.append(
            f"- against the floor (raw ASGI + aiohttp on this machine): our req/s is "
            f"{100.0 * ours.c32.rps / floor.c32.rps:.0f}% of its {floor.c32.rps:,.0f}, MLflow's "
            f"{100.0 * mlflow.c32.rps / floor.c32.rps:.0f}%; p50 overhead ours {our_over / 1000:.3f} ms, "
            f"floor {floor_over / 1000:.3f} ms")
    return "\n".join(lines), ok_rps and ok_over


def render_stream_table(streams: dict[str, StreamMeasured]) -> str:
    direct = streams.get("direct")
    base = direct.run if direct and direct.run and direct.run.ttfb_us else None
    rows = ["| server | streamed call | TTFB p50 ms | TTFB p99 ms | added TTFB p50 / p99 ms (− direct) | "
            "total p50 ms | total p99 ms | stream | ok / failed | server CPU | others on its CPU |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for key in TARGET_NAMES:
        if key not in streams:
            continue
        m = streams[key]
        call = f"`POST {m.target.path}`"
        if m.unavailable or m.run is None or m.check is None or not m.run.ttfb_us:
            why = m.unavailable or (m.run.first_failure if m.run else "not measured")
            why = why[:200].replace("|", "\\|")
            rows.append(f"| {m.target.label} | {call} | – | – | – | – | – | does not stream: {why} | – | – | – |")
            continue
        r = m.run
        added = "–" if key == "direct" or base is None else \
            f"**{fmt_ms(r.p('ttfb', 50) - base.p('ttfb', 50))}** / {fmt_ms(r.p('ttfb', 99) - base.p('ttfb', 99))}"
        ending = "`data: [DONE]`" if m.check.done else "no `[DONE]`"
        rows.append(
            f"| {m.target.label} | {call} | {fmt_ms(r.p('ttfb', 50))} | {fmt_ms(r.p('ttfb', 99))} | {added} | "
            f"{fmt_ms(r.p('total', 50))} | {fmt_ms(r.p('total', 99))} | {m.check.events} events "
            f"({m.check.content_events} with text), {ending} | {len(r.ttfb_us)} / {r.failures} | "
            f"{r.cpu_percent:.0f}% | {r.others_percent:.0f}% |")
    return "\n".join(rows)


def render_stream_notes(streams: dict[str, StreamMeasured]) -> list[str]:
    def ok(key: str) -> StreamRun | None:
        m = streams.get(key)
        return m.run if m and m.run and m.run.ttfb_us and not m.unavailable else None

    direct, ours, mlflow = ok("direct"), ok("ours"), ok("mlflow")
    if direct is None or (ours is None and mlflow is None):
        return ["streaming: the added time to first byte needs direct and a gateway measured"]
    parts = []
    for label, run in (("ours", ours), ("MLflow's", mlflow)):
        if run is not None:
            parts.append(f"{label} {(run.p('ttfb', 50) - direct.p('ttfb', 50)) / 1000:.3f} ms at p50, "
                         f"{(run.p('ttfb', 99) - direct.p('ttfb', 99)) / 1000:.3f} ms at p99")
    notes = [f"streaming, added time to first byte (first `data:` line; gateway − direct nginx, one call at a "
             f"time): {'; '.join(parts)}"]
    if ours is not None and mlflow is not None:
        over_ours = ours.p("ttfb", 50) - direct.p("ttfb", 50)
        over_mlflow = mlflow.p("ttfb", 50) - direct.p("ttfb", 50)
        if over_mlflow > 0:
            notes.append(f"streaming, added TTFB at p50, ours ÷ MLflow's = {over_ours / 1000:.3f} ÷ "
                         f"{over_mlflow / 1000:.3f} ms = **{over_ours / over_mlflow:.2f}**")
    for label, run in (("ours", ours), ("MLflow's", mlflow)):
        if run is not None:
            notes.append(f"streaming, {label}: from the first `data:` line to the end of the stream "
                         f"{(run.p('total', 50) - run.p('ttfb', 50)) / 1000:.3f} ms at p50 (the fake upstream sends "
                         f"its whole stream at once: this is the gateway's work on the other chunks)")
    return notes


def machine_info() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_DIR), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        commit = (commit + (" (with uncommitted changes)" if dirty else "")) if commit else "? (not a git work tree)"
    if PROJECT_DIR != ROOT:
        commit += f", gateway source {PROJECT_DIR}"
    load = "?"
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[0]
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"commit {commit}, 1-min load average at start {load}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", choices=sorted(API_PRESETS), default="mlflow-routes",
                   help="API both gateways are driven through "
                        "(default: mlflow-routes, POST /gateway/{route}/invocations)")
    p.add_argument("--path", help="request path for both gateways ({route} is replaced by the route name)")
    p.add_argument("--body", help="JSON request body for both gateways ({route} is replaced)")
    p.add_argument("--gateway-path", help="request path for our gateway only")
    p.add_argument("--gateway-body", help="JSON request body for our gateway only")
    p.add_argument("--mlflow-path", help="request path for MLflow's gateway only")
    p.add_argument("--mlflow-body", help="JSON request body for MLflow's gateway only")
    p.add_argument("--only", action="append", choices=TARGET_NAMES,
                   help="measure only these servers (repeatable; default: all three)")
    p.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of the warm-up run (default 3)")
    p.add_argument("--connections", type=int, default=32, help="connections of the throughput run (default 32)")
    p.add_argument("--server-cpu", default="1", help="core the gateway under test is pinned to (default 1)")
    p.add_argument("--client-cpu", default="0", help="core wrk and the fake upstream are pinned to (default 0)")
    p.add_argument("--retries", type=int, default=2,
                   help=f"repeat a measured run up to this many times while other processes use more than "
                        f"{OTHER_LOAD_WARNING_PERCENT:.0f}%% of the server's core during it, keep the least "
                        f"disturbed (default 2)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for our gateway (repeatable), e.g. --env LOG_LEVEL=WARNING")
    p.add_argument("--nice", type=int, default=-10,
                   help="niceness of the servers, the upstream and wrk (default -10: ahead of other work on a "
                        "shared machine; 0 leaves priorities alone)")
    p.add_argument("--redis", nargs="?", const="redis://127.0.0.1:6379/14", default="",
                   help="run our gateway with REDIS_URL (default URL redis://127.0.0.1:6379/14); the benchmark "
                        "owns that database: it is emptied before and after the run (kept with --keep)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure streamed calls (stream: true): time to the first `data:` line and to the end "
                        "of the stream at 1 connection, direct and through each gateway (default on; about 15 s)")
    p.add_argument("--stream-only", action="store_true",
                   help="measure only the streamed calls (no wrk load, no floor proxy)")
    p.add_argument("--stream-api", choices=sorted(STREAM_API_PRESETS),
                   help="API the streamed calls use on both gateways (default: openai with --api openai, "
                        "else deployments, POST /endpoints/{route}/invocations)")
    p.add_argument("--stream-requests", type=int, default=300,
                   help="measured streamed calls per server, one after the other (default 300)")
    p.add_argument("--stream-warmup", type=int, default=30,
                   help="streamed calls before those, not counted (default 30)")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, record our gateway with py-spy under load and summarize the top functions")
    p.add_argument("--project", type=Path, default=ROOT,
                   help="serve our gateway from this source tree (default: this repository), with this "
                        "repository's venv; e.g. a `git archive HEAD` export to measure a commit")
    p.add_argument("--no-install", action="store_true", help="fail instead of installing what is missing")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (databases, configs, server logs)")
    p.add_argument("--strict", action="store_true",
                   help="exit 2 when a target ratio is missed, any request failed under load or a streamed "
                        "call failed")
    args = p.parse_args(argv)
    if min(args.duration, args.warmup) < 1 or args.duration > 60 or args.warmup > 30:
        p.error("--duration must be 1..60 and --warmup 1..30 (the whole run stays bounded)")
    if not 0 <= args.retries <= 5:
        p.error("--retries must be 0..5")
    if not 1 <= args.connections <= 1024:
        p.error("--connections must be 1..1024")
    if not 10 <= args.stream_requests <= 5000 or not 0 <= args.stream_warmup <= 1000:
        p.error("--stream-requests must be 10..5000 and --stream-warmup 0..1000")
    if args.stream_only:
        args.stream = True
        if args.profile:
            p.error("--profile profiles the wrk load: not with --stream-only")
    args.stream_api = args.stream_api or ("openai" if args.api == "openai" else "deployments")
    env: dict[str, str] = {}
    for item in args.env:
        k, sep, v = item.partition("=")
        if not sep or not k:
            p.error(f"--env wants KEY=VALUE, got {item!r}")
        env[k] = v
    args.env = env
    return args


def resolve_requests(args: argparse.Namespace) -> dict[str, tuple[str, bytes]]:
    path, body = API_PRESETS[args.api]
    path = args.path or path
    body_any: dict[str, Any] | str = args.body or body
    reqs = {
        "direct": target_request("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}),
        "baseline": target_request("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}),
        "ours": target_request(args.gateway_path or path, args.gateway_body or body_any),
        "mlflow": target_request(args.mlflow_path or path, args.mlflow_body or body_any),
    }
    for key, (_, raw) in reqs.items():
        try:
            json.loads(raw)
        except ValueError:
            raise SystemExit(f"the {key} request body is not JSON: {raw[:200]!r}") from None
    return reqs


def resolve_stream_requests(args: argparse.Namespace) -> dict[str, tuple[str, bytes]]:
    """The streamed call on each server: the fake upstream's stream location directly, the streaming route on
    both gateways through --stream-api."""
    path, body = STREAM_API_PRESETS[args.stream_api]
    direct = {"model": MODEL, "messages": MESSAGES, "stream": True}
    return {
        "direct": target_request(STREAM_UPSTREAM_PATH, direct),
        "ours": target_request(path, body, STREAM_ROUTE),
        "mlflow": target_request(path, body, STREAM_ROUTE),
    }


class MiniRedis:
    """Just enough of the Redis protocol to prepare and inspect the benchmark's own database."""

    def __init__(self, url: str) -> None:
        m = re.match(r"redis://([^:/]+):(\d+)(?:/(\d+))?$", url)
        if not m or m.group(1) not in ("127.0.0.1", "localhost", "::1"):
            raise BenchError(f"--redis must point at a loopback Redis (redis://127.0.0.1:PORT/DB), got {url!r}")
        self.url, self.host, self.port, self.db = url, m.group(1), int(m.group(2)), int(m.group(3) or 0)

    def run(self, *commands: Sequence[str]) -> list[Any]:
        try:
            with socket.create_connection((self.host, self.port), timeout=5) as sock:
                reader = sock.makefile("rb")
                replies = []
                for cmd in (("SELECT", str(self.db)), *commands):
                    parts = [c.encode() for c in cmd]
                    sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
                    replies.append(self._reply(reader))
                return replies[1:]
        except OSError as exc:
            raise BenchError(f"Redis at {self.url} is not answering ({exc}): start it, or run without --redis") \
                from None

    def _reply(self, reader: Any) -> Any:
        line = reader.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"Redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else reader.read(n + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply(reader) for _ in range(n)]
        raise BenchError(f"unexpected Redis reply {line[:80]!r}")

    def stream_entries(self) -> int:
        """Usage events in all the streams of the database (the usage stream, whatever its name).

        An entry holds one event (field `e`) or a JSON array of a batch of them (field `b`).
        """
        keys = self.run(("KEYS", "*"))[0] or []
        types = self.run(*[("TYPE", k) for k in keys]) if keys else []
        streams = [k for k, t in zip(keys, types, strict=True) if t == "stream" and not k.endswith(":dead")]
        events = 0
        for entries in self.run(*[("XRANGE", k, "-", "+") for k in streams]) if streams else []:
            for _entry_id, fields in entries or []:
                values = dict(zip(fields[::2], fields[1::2], strict=True))
                events += len(json.loads(values["b"])) if "b" in values else 1
        return events


LOCK_PATH = Path(tempfile.gettempdir()) / "gateway-bench.lock"
LOCK_WAIT_SECONDS = 300.0


def machine_lock() -> Any:
    """One benchmark at a time on this machine: two would share the pinned cores at equal priority and
    halve each other's numbers. Waits (bounded) for another run to finish; the lock goes with the process."""
    fh = open(LOCK_PATH, "a+")  # noqa: SIM115 - held until the process exits
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    said = False
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BenchError(f"another benchmark run held {LOCK_PATH} for {LOCK_WAIT_SECONDS:.0f} s") from None
            if not said:
                fh.seek(0)
                log(f"waiting for another benchmark run to finish ({fh.read().strip() or 'unknown pid'})")
                said = True
            time.sleep(1)
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


def _on_signal(signum: int, _frame: Any) -> None:
    log(f"{signal.Signals(signum).name}: stopping every process the benchmark started")
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    when = dt.datetime.now(dt.UTC)
    args.profile_copy = RESULTS_DIR / f"{when:%Y%m%d-%H%M%S}-py-spy.txt"
    args.profile_requests = 0
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    wanted = args.only or list(TARGET_NAMES)
    redis: MiniRedis | None = None
    global NICE, PROJECT_DIR
    PROJECT_DIR = args.project.resolve()
    if not (PROJECT_DIR / "manage.py").exists():
        raise BenchError(f"--project {PROJECT_DIR} has no manage.py")
    if args.nice and not nice_works(args.nice):
        log(f"cannot run at niceness {args.nice} here: priorities left alone")
        args.nice = 0
    NICE = args.nice
    requests = resolve_requests(args)
    stream_requests = resolve_stream_requests(args)

    ensure_debian_packages(args.no_install)
    mlflow_venv = ensure_venv("mlflow", [MLFLOW_REQUIREMENT], args.no_install) if "mlflow" in wanted else None
    if "ours" in wanted:
        if not PROJECT_UVICORN.exists():
            raise BenchError(f"{PROJECT_UVICORN} missing: run `make install` first")
        if args.redis:
            redis = MiniRedis(args.redis)
            redis.run(("FLUSHDB",))  # the benchmark's own database: fresh, like its SQLite file
    install_seconds = time.monotonic() - started
    lock = machine_lock()  # noqa: F841 - held for the rest of the run

    group = ProcessGroup()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    results: dict[str, Measured] = {}
    streams: dict[str, StreamMeasured] = {}
    notes: list[str] = []
    log_problems: dict[str, list[str]] = {}
    profile_text = ""
    try:
        upstream = start_nginx(group, workdir, args.client_cpu)
        upstream_headers = {"Authorization": f"Bearer {UPSTREAM_KEY}"}

        def stream_target(key: str, server: Server, headers: dict[str, str], behind: Server | None,
                          cpus: str, label: str = "") -> Target:
            path, body = stream_requests[key]
            return Target(key, label or TARGET_LABELS[key], server, path, body, headers, behind, cpus)

        if "direct" in wanted:
            if not args.stream_only:
                path, body = requests["direct"]
                results["direct"] = measure(Target("direct", TARGET_LABELS["direct"], upstream, path, body,
                                                   upstream_headers, None, args.client_cpu), args, workdir)
            if args.stream:
                streams["direct"] = measure_stream(
                    stream_target("direct", upstream, upstream_headers, None, args.client_cpu), args)

        if "baseline" in wanted and args.stream_only:
            log("the floor proxy reads whole answers (no streaming): not measured with --stream-only")
        elif "baseline" in wanted:
            server = start_baseline(group, workdir, upstream.port, args.server_cpu)
            path, body = requests["baseline"]
            results["baseline"] = measure(Target("baseline", TARGET_LABELS["baseline"], server, path, body, {},
                                                 upstream, args.server_cpu), args, workdir)
            log_problems["baseline"] = server.log_problems()  # before the stop, which logs its own lines
            group.stop(server)

        if "ours" in wanted:
            env = gateway_env(workdir, args.redis)
            env.update(args.env)
            key = prepare_gateway(env, upstream.port)
            server = start_ours(group, workdir, env, args.server_cpu)
            path, body = requests["ours"]
            label = TARGET_LABELS["ours"] + (" (Redis)" if args.redis else "")
            target = Target("ours", label, server, path, body, {"Authorization": f"Bearer {key}"}, upstream,
                            args.server_cpu)
            sent = 0
            if not args.stream_only:
                results["ours"] = measured = measure(target, args, workdir)
                if args.profile:
                    profile_text = profile_ours(target, workdir / "ours.lua", args, workdir)
                # wrk counts the answers it got before its time was up; a few more requests were in flight.
                sent += sum(int(r.values["requests"]) for r in measured.runs) + 2 + args.profile_requests
            if args.stream:
                streams["ours"] = streamed = measure_stream(
                    stream_target("ours", server, target.headers, upstream, args.server_cpu, label), args)
                sent += streamed.requests_sent
            group.stop(server)  # graceful: the usage recorder flushes on shutdown
            log_problems["ours"] = server.log_problems()
            recorded = usage_event_count(env)
            if redis is not None:
                queued = redis.stream_entries()
                notes.append(f"usage events in Redis streams (not drained: the benchmark runs no Celery worker): "
                             f"{queued:,}")
                recorded = (recorded or 0) + queued
            if recorded is not None:
                where = "database and Redis streams" if redis is not None else "database"
                counted_by = "the streaming client" if args.stream_only else \
                    "wrk and the streaming client" if args.stream else "wrk"
                in_flight = "" if args.stream_only else " (and the requests still in flight when each wrk run ended)"
                notes.append(f"usage events recorded by our gateway ({where}): {recorded:,} for the "
                             f"{sent:,} answers {counted_by} counted{in_flight}")
                if recorded < sent:
                    notes.append(f"WARNING: {sent - recorded:,} requests have no usage event")

        if "mlflow" in wanted:
            assert mlflow_venv is not None
            server = start_mlflow(group, workdir, mlflow_venv, upstream.port, args.server_cpu)
            path, body = requests["mlflow"]
            if not args.stream_only:
                results["mlflow"] = measure(Target("mlflow", TARGET_LABELS["mlflow"], server, path, body, {},
                                                   upstream, args.server_cpu), args, workdir)
            if args.stream:
                target = stream_target("mlflow", server, {}, upstream, args.server_cpu)
                try:
                    streams["mlflow"] = measure_stream(target, args)
                except BenchError as exc:  # reported in the table: MLflow's gateway is the comparison, not the subject
                    log(f"MLflow's gateway did not stream: {exc}")
                    streams["mlflow"] = StreamMeasured(target, unavailable=str(exc).split("\n", 1)[0])
            log_problems["mlflow"] = server.log_problems()  # gunicorn logs the stop's SIGTERM as an ERROR
            group.stop(server)
    finally:
        group.stop_all()
        if redis is not None and not args.keep:
            with contextlib.suppress(BenchError):
                redis.run(("FLUSHDB",))
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    ratios, ratios_ok = render_ratios(results)
    failures = [f"{m.target.label}: {n} non-2xx, {s} socket errors"
                for m in results.values() for n, s in [m.errors()] if n or s]
    failures += [f"{sm.target.label}, {sr.label}: {sr.failures} streamed calls failed, e.g. {sr.first_failure[:300]}"
                 for sm in streams.values() for sr in sm.runs if sr.failures]
    warnings: list[str] = []
    for sm in streams.values():
        if sm.unavailable:
            warnings.append(f"{sm.target.label}: no streaming numbers ({sm.unavailable[:300]})")
    for m in results.values():
        for r in (m.c1, m.c32):
            conns = int(r.values.get("upstream_conns", 0))
            if conns > 2 * r.connections + 10:
                warnings.append(f"{m.target.label}, {r.label}: {conns:,} new upstream connections for "
                                f"{int(r.values.get('upstream_requests', 0)):,} requests: the upstream pool is not "
                                f"keeping connections alive")
    for key, problems in log_problems.items():
        if problems:
            warnings.append(f"{TARGET_LABELS[key]} logged {len(problems)} error lines, e.g. {problems[0][:300]!r}: "
                            f"its numbers include that error handling")
    busiest = max([*((r.others_percent or 0.0, f"{m.target.label}, {r.label}")
                     for m in results.values() for r in (m.c1, m.c32)),
                   *((sr.others_percent, f"{sm.target.label}, {sr.label}") for sm in streams.values()
                     if (sr := sm.run) is not None)], default=(0.0, ""))
    if busiest[0] > OTHER_LOAD_WARNING_PERCENT:
        warnings.append(f"other processes took up to {busiest[0]:.0f}% of the server's core during a measured run "
                        f"({busiest[1]}): this machine was busy, the numbers are disturbed; run again when it is idle")
    extra_env = " ".join(f"{k}={v}" for k, v in args.env.items())
    elapsed = time.monotonic() - started
    load_part = [] if args.stream_only else [
        f"API: our gateway `POST {requests['ours'][0]}`, MLflow's `POST {requests['mlflow'][0]}`; "
        f"fake upstream nginx `POST /v1/chat/completions`. Servers pinned to CPU {args.server_cpu}, "
        f"wrk and nginx to CPU {args.client_cpu}; {args.warmup} s warm-up, {args.duration} s per run"
        f"{'; our gateway with REDIS_URL=' + args.redis if args.redis else ''}"
        f"{'; our gateway with ' + extra_env if extra_env else ''}; niceness {args.nice}.",
        "",
        render_table(results, args.connections),
        "",
        ratios,
        "",
    ]
    stream_part = [] if not streams else [
        f"### Streaming (`stream: true`, {args.stream_api} API)",
        "",
        f"{args.stream_requests} streamed chat calls per server, one after the other on one kept-alive connection "
        f"(after {args.stream_warmup} not counted), from an asyncio client pinned to CPU {args.client_cpu}; "
        f"the fake upstream answers `POST {STREAM_UPSTREAM_PATH}` with a fixed OpenAI SSE stream "
        f"({len(STREAM_PIECES) + 3} events and `data: [DONE]`, sent at once), the gateways' `{STREAM_ROUTE}` route "
        f"points there. TTFB: from writing the request to the first `data:` line of the body; total: to the end "
        f"of the body.",
        "",
        render_stream_table(streams),
        "",
        *(f"- {n}" for n in render_stream_notes(streams)),
        "",
    ]
    summary = "\n".join([
        f"## Gateway load benchmark, {when:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Machine: {machine_info()}.",
        *load_part,
        *stream_part,
        *(f"- {n}" for n in notes),
        *(f"- WARNING: {f}" for f in failures),
        *(f"- WARNING: {w}" for w in warnings),
        f"- whole run {elapsed:.0f} s (installs {install_seconds:.0f} s)",
    ])
    print(summary)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{when:%Y%m%d-%H%M%S}.md"
    parts = [summary, "", "## Sample answers (verified before measuring)", ""]
    for m in results.values():
        parts += [f"{m.target.label}, `POST {m.target.url}`:", "", "```json", m.sample.strip()[:1500], "```", ""]
    if streams:
        parts += ["## Sample streams (verified before and after measuring)", ""]
        for sm in streams.values():
            if sm.sample:
                parts += [f"{sm.target.label}, `POST {sm.target.url}`:", "", "```", sm.sample.strip()[:3000], "```", ""]
    parts += ["## Memory", ""]
    parts += [f"- {m.target.label}: {m.memory_idle.render()} before load, {m.memory_after.render()} after"
              for m in results.values()]
    if profile_text:
        parts += ["", "## Where our gateway spends its time (py-spy)", "", profile_text]
    parts += ["", "## Raw wrk output", ""]
    for m in results.values():
        for r in m.runs:
            parts += [f"### {m.target.label}, {r.label}", "", "```", r.raw.strip(), "```", ""]
    if streams:
        parts += ["## Streaming runs", ""]
        parts += [f"- {sm.target.label}, {sr.render()}" for sm in streams.values() for sr in sm.runs]
    out.write_text("\n".join(parts) + "\n")
    log(f"wrote {out.relative_to(ROOT)}")
    if args.strict and (failures or not ratios_ok):
        return 2
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [STREAM_CLIENT_FLAG]:  # the streaming client, run pinned by the benchmark itself
        sys.exit(stream_client_main(sys.argv[2]))
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
