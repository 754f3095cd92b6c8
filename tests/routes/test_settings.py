"""Settings fail loudly on missing production secrets: a real process, `django.setup()`, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parents[2]
SETUP = "import django; django.setup(); print('started')"


def start(**env: str) -> subprocess.CompletedProcess[str]:
    """Run `django.setup()` in a fresh interpreter with DEBUG off and only `env`'s secrets set."""
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DEBUG")}
    base.update({"DJANGO_SETTINGS_MODULE": "gatewaysite.settings", "DEBUG": "false"})
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", SETUP], cwd=PROJECT_DIR, env=base, capture_output=True, text=True, timeout=60
    )


SECRET_KEY = "a-real-secret-key-for-the-settings-test-0123456789"
FIELD_KEY = Fernet.generate_key().decode()


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "SECRET_KEY"),
        ({"FIELD_ENCRYPTION_KEYS": FIELD_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": SECRET_KEY}, "FIELD_ENCRYPTION_KEYS"),
        ({"SECRET_KEY": "", "FIELD_ENCRYPTION_KEYS": FIELD_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": SECRET_KEY, "FIELD_ENCRYPTION_KEYS": ""}, "FIELD_ENCRYPTION_KEYS"),
    ],
    ids=["neither", "no-secret-key", "no-field-keys", "empty-secret-key", "empty-field-keys"],
)
def test_production_refuses_to_start_without_its_secrets(env: dict[str, str], missing: str) -> None:
    result = start(**env)
    assert result.returncode != 0
    assert "started" not in result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert f"{missing} is not set" in last_line


def test_production_starts_with_both_secrets() -> None:
    result = start(SECRET_KEY=SECRET_KEY, FIELD_ENCRYPTION_KEYS=FIELD_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_demo_mode_starts_with_no_secrets_at_all() -> None:
    result = start(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_production_refuses_to_start_with_a_malformed_field_key() -> None:
    result = start(SECRET_KEY=SECRET_KEY, FIELD_ENCRYPTION_KEYS="not-a-fernet-key")
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS" in result.stderr
