"""The client-venv helper: caching, rebuild on a changed pin, locking; and the real MLflow 2.x venv."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.clients import venvs


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Point the cache at tmp_path and replace pip with a stub that makes bin/python."""
    monkeypatch.setattr(venvs, "CLIENT_VENVS_DIR", tmp_path)
    builds: list[tuple[str, ...]] = []

    def build(path: Path, requirements: tuple[str, ...]) -> None:
        builds.append(tuple(requirements))
        time.sleep(0.2)  # long enough for a concurrent caller to hit the lock
        (path / "bin").mkdir(parents=True, exist_ok=True)
        (path / "bin" / "python").write_text("")

    monkeypatch.setattr(venvs, "_build", build)
    return builds


def test_reused_until_the_pin_changes(fake_build: list[tuple[str, ...]], tmp_path: Path) -> None:
    v1 = venvs.client_venv("lib", "pkg==1.0")
    assert v1.path == tmp_path / "lib"
    assert v1.python == tmp_path / "lib" / "bin" / "python"
    venvs.client_venv("lib", ["pkg==1.0"])
    assert fake_build == [("pkg==1.0",)]
    venvs.client_venv("lib", "pkg>=2,<3")
    assert fake_build == [("pkg==1.0",), ("pkg>=2,<3",)]
    stamp = json.loads((tmp_path / "lib" / venvs.STAMP_FILE).read_text())
    assert stamp["requirements"] == ["pkg>=2,<3"]


def test_half_built_venv_is_rebuilt(fake_build: list[tuple[str, ...]], tmp_path: Path) -> None:
    venvs.client_venv("lib", "pkg==1.0")
    (tmp_path / "lib" / venvs.STAMP_FILE).unlink()  # as if the build died before the stamp
    venvs.client_venv("lib", "pkg==1.0")
    assert len(fake_build) == 2


def test_concurrent_callers_build_once(fake_build: list[tuple[str, ...]]) -> None:
    results: list[venvs.ClientVenv] = []
    threads = [
        threading.Thread(target=lambda: results.append(venvs.client_venv("lib", "pkg==1.0")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert fake_build == [("pkg==1.0",)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        venvs.client_venv("x", [])
    with pytest.raises(ValueError):
        venvs.client_venv("../x", "pkg")


def test_client_env_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "leak")
    monkeypatch.setenv("PYTHONPATH", "/leak")
    monkeypatch.setenv("OPENAI_API_KEY", "leak")
    env = venvs.client_env({"MLFLOW_GATEWAY_URI": "http://x"})
    assert "MLFLOW_TRACKING_TOKEN" not in env
    assert "PYTHONPATH" not in env
    assert "OPENAI_API_KEY" not in env
    assert env["MLFLOW_GATEWAY_URI"] == "http://x"


def test_script_result_json() -> None:
    r = venvs.ScriptResult(args=[], returncode=0, stdout='noise\n{"ok": true}\n', stderr="")
    assert r.json() == {"ok": True}
    with pytest.raises(ValueError):
        venvs.ScriptResult(args=[], returncode=1, stdout="nothing", stderr="").json()


@pytest.mark.clients
def test_real_mlflow2_venv_imports_the_gateway_client() -> None:
    v = venvs.client_venv("mlflow2", "mlflow-skinny==2.22.5")
    r = venvs.run_python(
        v,
        "import json, mlflow, mlflow.gateway as g; "
        "print(json.dumps({'v': mlflow.__version__, 'c': hasattr(g, 'MlflowGatewayClient')}))",
    )
    assert r.returncode == 0, r.stderr
    assert r.json() == {"v": "2.22.5", "c": True}
    script = venvs.SCRIPTS_DIR / "mlflow2_gateway_client.py"
    help_ = venvs.run_script(v, script, ["--help"])
    assert help_.returncode == 0, help_.stderr
    assert "MLFLOW_GATEWAY_URI" in help_.stdout
