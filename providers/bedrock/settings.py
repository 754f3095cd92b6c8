"""A Bedrock route's configuration: MLflow's `aws_config` keys, flattened, plus the base-URL override.

MLflow (`mlflow/gateway/config.py`) nests them: `AmazonBedrockConfig.aws_config` is one of
`AWSBearerToken` (`aws_bearer_token`), `AWSRole` (`aws_role_arn`, `session_length_seconds`),
`AWSIdAndKey` (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`) or `AWSBaseConfig`,
all with an optional `aws_region`. Routes here hold them flat, so the secret ones can be stored
encrypted like any other provider's key; `flatten_mlflow_config` turns MLflow's nested shape into it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from providers.base import ProviderConfigError

# STS accepts 900 s to 12 h (the role's own maximum may be lower); MLflow's default is 15 minutes.
DEFAULT_SESSION_SECONDS = 15 * 60
MIN_SESSION_SECONDS = 900
MAX_SESSION_SECONDS = 12 * 3600
REGION_ENV_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")  # what boto3 falls back to, as MLflow does
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")

SECRET_KEYS = ("aws_secret_access_key", "aws_access_key_id", "aws_session_token", "aws_bearer_token")
PLAIN_KEYS = ("aws_region", "aws_role_arn", "session_length_seconds", "bedrock_api_base")


def default_api_base(region: str) -> str:
    """Bedrock Runtime's regional endpoint (China's regions live under amazonaws.com.cn)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{suffix}"


@dataclass(frozen=True, slots=True)
class BedrockSettings:
    """The non-secret part of a route's config, resolved with its defaults."""

    region: str
    api_base: str
    role_arn: str | None = None
    session_seconds: int = DEFAULT_SESSION_SECONDS

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> BedrockSettings:
        """Settings from a route's config; raises ProviderConfigError on a missing or malformed value.

        Without `aws_region` the region comes from `AWS_REGION` / `AWS_DEFAULT_REGION`, as boto3 (and
        so MLflow) resolves it.
        """
        env = os.environ if environ is None else environ
        region = _text(config.get("aws_region")) or next((env[n].strip() for n in REGION_ENV_VARS if env.get(n)), "")
        if not region:
            raise ProviderConfigError(
                "Provider 'amazon-bedrock' needs config field aws_region (e.g. us-east-1), "
                "or AWS_REGION set in the gateway's environment."
            )
        if not _REGION.match(region):
            raise ProviderConfigError(f"aws_region {region!r} is not an AWS region name (e.g. us-east-1).")
        base = _text(config.get("bedrock_api_base")).rstrip("/") or default_api_base(region)
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("bedrock_api_base must be an http:// or https:// URL.")
        if parts.query or parts.fragment:
            raise ProviderConfigError("bedrock_api_base must not carry a query or fragment.")
        role = _text(config.get("aws_role_arn")) or None
        if role is not None and not _ROLE_ARN.match(role):
            raise ProviderConfigError(
                "aws_role_arn must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)."
            )
        raw = config.get("session_length_seconds")
        if raw is None or raw == "":
            seconds = DEFAULT_SESSION_SECONDS
        else:
            if role is None:
                raise ProviderConfigError("session_length_seconds only applies with aws_role_arn.")
            parsed = _int(raw)
            if parsed is None or not MIN_SESSION_SECONDS <= parsed <= MAX_SESSION_SECONDS:
                raise ProviderConfigError(
                    f"session_length_seconds must be an integer from {MIN_SESSION_SECONDS} to "
                    f"{MAX_SESSION_SECONDS} (got {raw!r})."
                )
            seconds = parsed
        return cls(region=region, api_base=base, role_arn=role, session_seconds=seconds)


def check_secret_combination(secrets: Mapping[str, Any]) -> None:
    """Raise ProviderConfigError for an access key pair with a half missing, or a token without a pair."""
    has = {name: bool(_text(secrets.get(name))) for name in SECRET_KEYS}
    if has["aws_access_key_id"] != has["aws_secret_access_key"]:
        missing = "aws_secret_access_key" if has["aws_access_key_id"] else "aws_access_key_id"
        raise ProviderConfigError(
            f"Provider 'amazon-bedrock' needs {missing} too: an access key is a key id and a secret."
        )
    if has["aws_session_token"] and not has["aws_access_key_id"]:
        raise ProviderConfigError(
            "aws_session_token only goes with aws_access_key_id and aws_secret_access_key."
        )


def flatten_mlflow_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow's `{"aws_config": {...}, ...}` → the flat keys this gateway stores; other keys kept.

    A config that is already flat comes back unchanged. Raises ProviderConfigError if `aws_config`
    is not an object or repeats a key given at the top level.
    """
    if "aws_config" not in config:
        return dict(config)
    nested = config["aws_config"]
    if nested is None:
        nested = {}
    if not isinstance(nested, Mapping):
        raise ProviderConfigError("aws_config must be an object of aws_* fields.")
    flat = {key: value for key, value in config.items() if key != "aws_config"}
    clash = sorted(set(flat) & set(nested))
    if clash:
        raise ProviderConfigError(f"Field(s) given both inside and outside aws_config: {', '.join(clash)}.")
    flat.update(nested)
    return flat


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
