"""Cached, isolated virtualenvs for running real client libraries against the live gateway.

Real clients (mlflow-skinny 2.22.5, mlflow-skinny 3.x, openai) cannot share one environment
with each other or with the project (they pin conflicting versions of pydantic, requests,
protobuf, ...). So each client gets its own venv under ``tests/.client-venvs/<name>/`` and the
test runs a small script inside it as a subprocess, pointed at the live server.

* Built once, then reused across pytest runs. The venv is keyed on the requirement strings
  and the interpreter's version: change a pin (``"mlflow-skinny==2.22.5"`` ->
  ``"mlflow-skinny>=3,<4"``) and the next call rebuilds it. A build that died half-way has no
  stamp file and is rebuilt too.
* Safe when two pytest processes (xdist workers, two terminals) ask for the same venv at
  once: an exclusive ``fcntl`` lock on ``tests/.client-venvs/<name>.lock`` serialises the
  build; the second process waits and then reuses what the first built.
* Needs only the python3.11 that runs the tests and PyPI. If the interpreter's ``venv`` cannot
  install pip (Debian without ``python3-venv``/ensurepip), the venv is created without pip
  and the running interpreter's own pip installs into it (``pip --python``).
* ``run_script()`` starts the script with a scrubbed environment: ``PYTHONPATH``,
  ``VIRTUAL_ENV``, ``DJANGO_SETTINGS_MODULE`` and every ``MLFLOW_*``, ``OPENAI_*``, ``GATEWAY_*``,
  ``DATABRICKS_*`` variable of the test process are dropped, so only what the test passes in
  ``env`` reaches the client.

Usage from a pytest test (the live server is started by the test's own fixture)::

    import json
    import pytest
    from tests.clients.venvs import SCRIPTS_DIR, client_venv, run_script

    MLFLOW2 = ("mlflow-skinny==2.22.5",)

    @pytest.fixture(scope="session")
    def mlflow2_venv():
        return client_venv("mlflow2", MLFLOW2)   # first run ~20-60 s (pip, PyPI); then instant

    @pytest.mark.clients
    def test_mlflow2_client(mlflow2_venv, live_server_url, consumer_key, admin_key):
        result = run_script(
            mlflow2_venv,
            SCRIPTS_DIR / "mlflow2_gateway_client.py",
            env={
                "MLFLOW_GATEWAY_URI": live_server_url,      # e.g. "http://127.0.0.1:8123"
                "MLFLOW_TRACKING_TOKEN": consumer_key,      # becomes "Authorization: Bearer ..."
                "GW_CHAT_ROUTE": "chat-route",
                "GW_COMPLETIONS_ROUTE": "completions-route",
                "GW_EMBEDDINGS_ROUTE": "embeddings-route",
                "GW_MIN_PAGES": "2",                        # the server must page (>1 page)
                "GW_ADMIN_TOKEN": admin_key,                # optional: create/delete/limits
            },
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        out = result.json()                                 # the script's JSON report
        assert out["ok"], json.dumps(out["errors"], indent=2)
        assert out["results"]["search_routes"]["pages"] >= 2

``client_venv(name, requirements)`` returns a :class:`ClientVenv` (``.python`` is the venv's
interpreter); ``run_script(venv, script, args=(), env=None, timeout=...)`` returns a
:class:`ScriptResult` with ``returncode``, ``stdout``, ``stderr`` and ``.json()`` (parses the last
stdout line that is a JSON object). ``CLIENT_VENVS_DIR`` may be overridden by the environment
variable ``GATEWAY_CLIENT_VENVS_DIR`` (e.g. to share the cache between work trees).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
CLIENT_VENVS_DIR = Path(os.environ.get("GATEWAY_CLIENT_VENVS_DIR") or TESTS_DIR / ".client-venvs")

STAMP_FILE = ".requirements.json"
# How long a second process waits for another one's build before giving up.
LOCK_TIMEOUT_S = 1800.0
PIP_TIMEOUT_S = 1500.0

# Variables of the test process that must not leak into a client's process.
_SCRUBBED_PREFIXES = ("MLFLOW_", "OPENAI_", "GATEWAY_", "DATABRICKS_", "PIP_REQUIRE_VIRTUALENV")
_SCRUBBED_NAMES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONSTARTUP")


class ClientVenvError(RuntimeError):
    """The venv could not be built (pip failed, lock timed out, ...)."""


@dataclass(frozen=True)
class ClientVenv:
    name: str
    path: Path
    requirements: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


@dataclass(frozen=True)
class ScriptResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The last line of stdout that parses as a JSON object (scripts print one report)."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise ValueError(
            f"no JSON object on stdout (rc={self.returncode})\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def _key(requirements: Sequence[str]) -> dict[str, Any]:
    return {
        "requirements": list(requirements),
        "python": ".".join(map(str, sys.version_info[:3])),
        "base_executable": str(Path(sys.base_prefix).resolve()),
    }


def _digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClientVenvError(f"timed out after {timeout:.0f}s waiting for {path}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_current(path: Path, key: Mapping[str, Any]) -> bool:
    stamp = path / STAMP_FILE
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return saved.get("digest") == _digest(key) and (path / "bin" / "python").exists()


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_NAMES}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    return env


def _run_pip(cmd: list[str]) -> None:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_pip_env(), timeout=PIP_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise ClientVenvError(
            f"{' '.join(cmd)} failed (rc={proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


def _build(path: Path, requirements: Sequence[str]) -> None:
    if path.exists():
        shutil.rmtree(path)
    python = path / "bin" / "python"
    try:
        venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(path)
        has_pip = True
    except (subprocess.CalledProcessError, OSError):
        # No ensurepip (e.g. Debian without python3-venv): make a bare venv, install with our pip.
        venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(path)
        has_pip = False
    # Without pip in the venv, the running interpreter's pip installs into it.
    pip = [str(python), "-m", "pip"] if has_pip else [sys.executable, "-m", "pip", "--python", str(python)]
    _run_pip([*pip, "install", "--quiet", *requirements])


def _ensure_gitignore() -> None:
    CLIENT_VENVS_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CLIENT_VENVS_DIR / ".gitignore"
    if not ignore.exists():  # the cache ignores itself, whatever the repo's .gitignore says
        ignore.write_text("# built by tests/clients/venvs.py; never committed\n*\n")


def client_venv(name: str, requirements: Sequence[str] | str) -> ClientVenv:
    """Return the venv ``tests/.client-venvs/<name>/`` with ``requirements`` installed.

    Builds it if it is missing, half-built, or was built for other requirements or another
    Python; otherwise reuses it. Safe across concurrent processes.
    """
    reqs = (requirements,) if isinstance(requirements, str) else tuple(requirements)
    if not reqs:
        raise ValueError("requirements must not be empty")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad venv name {name!r}")
    path = CLIENT_VENVS_DIR / name
    key = _key(reqs)
    result = ClientVenv(name=name, path=path, requirements=reqs)
    _ensure_gitignore()
    if _is_current(path, key):
        return result
    with _file_lock(CLIENT_VENVS_DIR / f"{name}.lock", LOCK_TIMEOUT_S):
        if _is_current(path, key):  # another process built it while we waited
            return result
        _build(path, reqs)
        # The stamp is written last: a build that died half-way is rebuilt next time.
        (path / STAMP_FILE).write_text(json.dumps({"digest": _digest(key), **key}, indent=2))
    return result


def client_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a client script runs with: ours, scrubbed, plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_NAMES and not k.startswith(_SCRUBBED_PREFIXES)
    }
    base["PYTHONUNBUFFERED"] = "1"
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    if env:
        base.update({k: str(v) for k, v in env.items()})
    return base


def run_script(
    client: ClientVenv,
    script: str | os.PathLike[str],
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    cwd: str | os.PathLike[str] | None = None,
) -> ScriptResult:
    """Run ``script`` with the venv's interpreter; never raises on a non-zero exit."""
    cmd = [str(client.python), str(script), *args]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=client_env(env),
        timeout=timeout,
        cwd=str(cwd) if cwd is not None else str(Path(script).resolve().parent),
        check=False,
    )
    return ScriptResult(args=cmd, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def run_python(
    client: ClientVenv, code: str, env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> ScriptResult:
    """Run a snippet (``python -c``) in the venv; handy for quick checks."""
    cmd = [str(client.python), "-c", code]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=client_env(env), timeout=timeout, check=False
    )
    return ScriptResult(args=cmd, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
