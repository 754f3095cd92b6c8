"""Who a Bedrock call runs as, and its SigV4 signature (botocore's signer; nothing signed by hand).

A route's credentials, in the order they are tried:

1. `aws_role_arn`: a role assumed with STS, from the route's access key if it has one, else from the
   gateway's own AWS identity (environment, shared config, ECS/EKS/EC2 role), as MLflow's `AWSRole`.
2. `aws_access_key_id` + `aws_secret_access_key` (+ `aws_session_token`): signed with them.
3. `aws_bearer_token`: a Bedrock API key, sent as `Authorization: Bearer ...` instead of a signature.
4. nothing: the gateway's own AWS identity (botocore's default credential chain), as MLflow's
   `AWSBaseConfig`.

Assumed-role and default-chain credentials are cached per process. Fetching them is blocking I/O
(an STS call; the chain may ask the instance metadata service), which the provider interface gives
no async hook for: it happens on the first call of a route only, with short timeouts, and later
refreshes run in a background thread well before the credentials expire.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from providers.base import UpstreamError, UpstreamTimeout, UpstreamUnavailable

logger = logging.getLogger(__name__)

# bedrock-runtime's signing name in botocore's service model is "bedrock".
SIGNING_NAME = "bedrock"
ROLE_SESSION_NAME = "llm-gateway-bedrock"
STS_CONFIG = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
# A cached credential is refreshed in the background once this close to expiry (at most a third of
# its lifetime), and fetched again in the foreground once MANDATORY_MARGIN close.
REFRESH_MARGIN = 300.0
MANDATORY_MARGIN = 60.0
NO_AMBIENT_RETRY_SECONDS = 60.0  # don't walk the credential chain on every call when it found nothing


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"AwsCredentials({self.access_key_id[:4]}***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str

    def __repr__(self) -> str:
        return "BearerToken(***)"

    __str__ = __repr__


Identity = AwsCredentials | BearerToken


def sign(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str = SIGNING_NAME,
) -> dict[str, str]:
    """`headers` plus SigV4's `X-Amz-Date`, `X-Amz-Security-Token` (if any) and `Authorization`.

    `url` must be exactly what goes on the wire (its path as the HTTP client sends it), and `body`
    the exact bytes sent: the signature covers the host, the path, every header given and the body.
    """
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    botocore_credentials = Credentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    SigV4Auth(botocore_credentials, service, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


def authorize(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    identity: Identity,
    region: str,
) -> dict[str, str]:
    """The request headers with the route's credentials applied: a SigV4 signature or a bearer token."""
    if isinstance(identity, BearerToken):
        return {**headers, "Authorization": f"Bearer {identity.token}"}
    return sign(method=method, url=url, headers=headers, body=body, credentials=identity, region=region)


# ---------------------------------------------------------------- resolving a route's identity


def identity_for(
    secrets: Mapping[str, str], *, region: str, role_arn: str | None, session_seconds: int
) -> Identity:
    """The identity a call runs as (see the module docstring for the order).

    Raises UpstreamError (`UPSTREAM_AUTH_FAILED`) when the credentials are incomplete or refused,
    UpstreamUnavailable / UpstreamTimeout when STS cannot be reached.
    """
    key_id = _secret(secrets, "aws_access_key_id")
    secret_key = _secret(secrets, "aws_secret_access_key")
    token = _secret(secrets, "aws_session_token")
    bearer = _secret(secrets, "aws_bearer_token")
    if bool(key_id) != bool(secret_key):
        missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
        raise UpstreamError(
            f"The route's AWS credentials are incomplete: {missing} is not set.", code="UPSTREAM_AUTH_FAILED"
        )
    keys = AwsCredentials(key_id, secret_key, token) if key_id and secret_key else None
    if role_arn:
        return _ROLES.get(role_arn=role_arn, region=region, session_seconds=session_seconds, base=keys)
    if keys is not None:
        return keys
    if bearer:
        return BearerToken(bearer)
    return _AMBIENT.get()


def _secret(secrets: Mapping[str, str], name: str) -> str | None:
    value = secrets.get(name)
    return (value.strip() or None) if isinstance(value, str) else None


def reset_credential_caches() -> None:
    """Forget every cached assumed-role and default-chain credential (for tests and key rotation)."""
    _ROLES.clear()
    _AMBIENT.clear()


@dataclass(slots=True)
class _Cached:
    credentials: AwsCredentials
    expires_at: float  # epoch seconds


class _RefreshingCredential:
    """One cached temporary credential: fetched in the foreground when missing or nearly expired,
    refreshed in a background thread when merely getting old."""

    def __init__(self, fetch: Callable[[], tuple[AwsCredentials, float]], lifetime: float) -> None:
        self._fetch = fetch
        self._refresh_margin = min(REFRESH_MARGIN, lifetime / 3)
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._refreshing = False

    def get(self) -> AwsCredentials:
        cached = self._cached
        now = time.time()
        if cached is not None and now < cached.expires_at - MANDATORY_MARGIN:
            if now >= cached.expires_at - self._refresh_margin:
                self._refresh_in_background()
            return cached.credentials
        with self._lock:  # one foreground fetch at a time; the others wait and reuse it
            cached = self._cached
            if cached is not None and time.time() < cached.expires_at - MANDATORY_MARGIN:
                return cached.credentials
            credentials, expires_at = self._fetch()
            self._cached = _Cached(credentials, expires_at)
            return credentials

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def run() -> None:
            try:
                credentials, expires_at = self._fetch()
                with self._lock:
                    self._cached = _Cached(credentials, expires_at)
            except Exception as exc:  # the foreground fetch will report it when it matters
                logger.warning("Refreshing AWS credentials failed (%s); retrying on a later call.",
                               type(exc).__name__)
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=run, name="bedrock-credentials-refresh", daemon=True).start()


class _RoleCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], _RefreshingCredential] = {}

    def get(self, *, role_arn: str, region: str, session_seconds: int, base: AwsCredentials | None) -> AwsCredentials:
        # The base credential's fingerprint is in the key, so rotating the route's key assumes anew.
        fingerprint = (
            hashlib.sha256(f"{base.access_key_id}\0{base.secret_access_key}\0{base.session_token}".encode()).hexdigest()
            if base is not None
            else "default-chain"
        )
        key = (role_arn, region, str(session_seconds), fingerprint)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _RefreshingCredential(
                    lambda: assume_role(role_arn=role_arn, region=region, session_seconds=session_seconds, base=base),
                    lifetime=float(session_seconds),
                )
                self._entries[key] = entry
        return entry.get()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _AmbientCredentials:
    """The gateway process's own AWS identity, through botocore's default credential chain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: botocore.session.Session | None = None
        self._missing_until = 0.0

    def get(self) -> AwsCredentials:
        with self._lock:
            if time.monotonic() < self._missing_until:
                raise _no_ambient_credentials()
            if self._session is None:
                self._session = botocore.session.Session()
            session = self._session
        try:
            # botocore caches what it finds and refreshes expiring (role, container) credentials itself.
            found = session.get_credentials()
            frozen = found.get_frozen_credentials() if found is not None else None
        except (BotoCoreError, ClientError) as exc:
            error: UpstreamError = _credential_fetch_error(exc)
        else:
            if frozen is not None and frozen.access_key and frozen.secret_key:
                return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)
            with self._lock:
                self._missing_until = time.monotonic() + NO_AMBIENT_RETRY_SECONDS
                self._session = None
            error = _no_ambient_credentials()
        raise error

    def clear(self) -> None:
        with self._lock:
            self._session = None
            self._missing_until = 0.0


def _no_ambient_credentials() -> UpstreamError:
    return UpstreamError(
        "The route has no AWS credentials and the gateway's environment provides none "
        "(set aws_access_key_id and aws_secret_access_key, aws_bearer_token, or give the gateway an AWS role).",
        code="UPSTREAM_AUTH_FAILED",
    )


_ROLES = _RoleCache()
_AMBIENT = _AmbientCredentials()


def assume_role(
    *, role_arn: str, region: str, session_seconds: int, base: AwsCredentials | None
) -> tuple[AwsCredentials, float]:
    """Temporary credentials for `role_arn` from STS (regional endpoint; `AWS_ENDPOINT_URL_STS` and
    AWS config files are honoured), and when they expire (epoch seconds).

    Raises a GatewayError with a fixed message: botocore's texts name accounts, users and roles.
    """
    session = botocore.session.Session()
    if base is not None:
        session.set_credentials(base.access_key_id, base.secret_access_key, base.session_token)
    try:
        client: Any = session.create_client("sts", region_name=region, config=STS_CONFIG)
        answer = client.assume_role(
            RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME, DurationSeconds=session_seconds
        )
        issued = answer["Credentials"]
        credentials = AwsCredentials(
            str(issued["AccessKeyId"]), str(issued["SecretAccessKey"]), str(issued["SessionToken"])
        )
        expires_at = issued["Expiration"].timestamp()
    except (BotoCoreError, ClientError, KeyError, TypeError, AttributeError) as exc:
        error = _credential_fetch_error(exc)
    else:
        return credentials, expires_at
    raise error  # outside the handler: the botocore exception must not ride along as __context__


def _credential_fetch_error(exc: BaseException) -> UpstreamError:
    error: UpstreamError
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        error = UpstreamTimeout("AWS STS did not answer in time while fetching the route's AWS credentials.")
    elif isinstance(exc, EndpointConnectionError):
        error = UpstreamUnavailable("AWS STS could not be reached to fetch the route's AWS credentials.")
    elif isinstance(exc, NoCredentialsError):
        error = _no_ambient_credentials()
    elif isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded"):
            error = UpstreamError("AWS STS throttled the gateway while fetching the route's AWS credentials.",
                                  code="UPSTREAM_RATE_LIMITED")
        else:
            error = UpstreamError(
                "AWS STS refused to issue credentials for the route's aws_role_arn"
                + (f" ({code})." if code.isalnum() else "."),
                code="UPSTREAM_AUTH_FAILED",
            )
    else:
        error = UpstreamError("Fetching the route's AWS credentials failed.", code="UPSTREAM_AUTH_FAILED")
    error.add_note(f"credential fetch failure: {type(exc).__name__}")
    return error
