"""The Bedrock fake itself: its SigV4 check really verifies (body, path, date, scope), its errors
have Bedrock's shape, and its event stream frames are what botocore's decoder reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.bedrock import chunk_frame, exception_frame

MODEL = "meta.llama3-8b-instruct-v1:0"
BODY = json.dumps({"prompt": "Hello", "max_gen_len": 5}).encode()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def signed(fake: FakeUpstream, body: bytes = BODY, *, region: str = FakeUpstream.AWS_REGION,
           service: str = "bedrock", secret: str = FakeUpstream.AWS_SECRET_ACCESS_KEY) -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"{fake.bedrock_base}/model/{MODEL}/invoke", data=body,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(FakeUpstream.AWS_ACCESS_KEY_ID, secret), service, region).add_auth(request)
    return dict(request.headers.items())


def post(fake: FakeUpstream, headers: dict[str, str], body: bytes = BODY, model: str = MODEL) -> httpx.Response:
    return httpx.post(f"{fake.bedrock_base}/model/{model}/invoke", content=body, headers=headers, timeout=5)


def test_a_correctly_signed_call_is_answered_with_bedrocks_count_headers(fake: FakeUpstream) -> None:
    answer = post(fake, signed(fake))
    assert answer.status_code == 200, answer.text
    assert answer.json()["generation"] == "Fake completion of: Hello"
    assert answer.headers["x-amzn-bedrock-input-token-count"] == "1"
    assert answer.headers["x-amzn-bedrock-output-token-count"] == str(answer.json()["generation_token_count"])


@pytest.mark.parametrize(
    ("tamper", "error_type"),
    [
        ("body", "InvalidSignatureException"),
        ("path", "InvalidSignatureException"),
        ("secret", "InvalidSignatureException"),
        ("region", "InvalidSignatureException"),
        ("service", "InvalidSignatureException"),
        ("date", "InvalidSignatureException"),
        ("missing", "MissingAuthenticationTokenException"),
    ],
)
def test_anything_the_signature_does_not_cover_exactly_is_refused(fake: FakeUpstream, tamper: str,
                                                                  error_type: str) -> None:
    headers, body, model = signed(fake), BODY, MODEL
    if tamper == "body":
        body = BODY.replace(b"Hello", b"Hellp")
    elif tamper == "path":
        model = "meta.llama3-70b-instruct-v1:0"
    elif tamper == "secret":
        headers = signed(fake, secret="x" * 40)
    elif tamper == "region":
        headers = signed(fake, region="eu-west-1")
    elif tamper == "service":
        headers = signed(fake, service="bedrock-runtime")
    elif tamper == "date":
        headers["X-Amz-Date"] = "20200101T000000Z"
    elif tamper == "missing":
        del headers["Authorization"]
    answer = post(fake, headers, body, model)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-errortype"].split(":")[0] == error_type
    assert set(answer.json()) == {"message"}


def test_family_bodies_are_checked_as_bedrock_does(fake: FakeUpstream) -> None:
    body = json.dumps({"prompt": "Hello", "stop": ["."]}).encode()
    answer = post(fake, signed(fake, body), body)
    assert answer.status_code == 400
    assert answer.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert answer.json()["message"] == (
        "Malformed input request: #: extraneous key [stop] is not permitted, please reformat your input and try again.")


def test_event_stream_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(chunk_frame({"generation": "Hi"}) + exception_frame("throttlingException", "slow down"))
    chunk, exception = list(buffer)
    assert chunk.headers[":event-type"] == "chunk"
    assert json.loads(base64.b64decode(json.loads(chunk.payload)["bytes"])) == {"generation": "Hi"}
    assert exception.headers[":message-type"] == "exception"
    assert exception.headers[":exception-type"] == "throttlingException"
    assert json.loads(exception.payload)["message"] == "slow down"
