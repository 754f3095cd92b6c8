"""What an API family (MLflow 2.5 routes, MLflow deployments, OpenAI) plugs into the shared pipeline."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from providers.base import GatewayError, InvalidRequest, StdRequest, StdResponse

from .snapshot import RouteEntry

if TYPE_CHECKING:
    from .streaming import OpenAIStreamRenderer

# Fields through which a caller could try to redirect a call or supply credentials. The upstream URL
# and credentials come only from the route.
_REDIRECT_FIELD = re.compile(
    r"(api_base|base_url|api_key|_config$|credential|secret|api_type|api_version|deployment|organization|"
    r"url|header|provider|endpoint|password|auth)",
    re.IGNORECASE,
)


class RedirectAttempt(InvalidRequest):
    code = "FORBIDDEN_PARAMETER"


# The fields every family accepts: no need to run the pattern over them on each call.
_KNOWN_SAFE = frozenset({
    "messages", "prompt", "text", "input", "model", "temperature", "max_tokens", "candidate_count", "n", "stop",
    "top_p", "presence_penalty", "frequency_penalty", "stream", "stream_options", "user", "encoding_format",
})


def reject_redirect_fields(body: dict[str, Any]) -> None:
    bad = sorted(k for k in body if k not in _KNOWN_SAFE and _REDIRECT_FIELD.search(k))
    if bad:
        raise RedirectAttempt(
            f"Field(s) {', '.join(repr(b) for b in bad)} are not accepted: the provider, its URL and its "
            "credentials come only from the route."
        )


class Family(Protocol):
    name: str  # recorded as api_family on usage events

    def error_body(self, error: GatewayError) -> dict[str, Any]: ...

    def parse(self, route: RouteEntry, body: dict[str, Any]) -> StdRequest: ...

    def render(self, route: RouteEntry, body: dict[str, Any], response: StdResponse) -> dict[str, Any]: ...

    def stream_renderer(self, route: RouteEntry, body: dict[str, Any]) -> OpenAIStreamRenderer | None:
        """The renderer for a streamed answer, or None when `body` (already parsed) asks for none."""
        ...
