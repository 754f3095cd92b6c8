"""Response and error bodies of the serving endpoints as pydantic models.

They document the serving half in the OpenAPI schema (`routes.api.openapi`) and the end-to-end tests
validate real answers against them, so the documentation cannot drift from what is served.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


# ---- MLflow 2.5 route API
class Mlflow25Metadata(BaseModel):
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    model: str
    route_type: str


class Mlflow25CandidateMetadata(BaseModel):
    finish_reason: str | None


class Mlflow25Message(BaseModel):
    role: str
    content: str


class Mlflow25ChatCandidate(BaseModel):
    message: Mlflow25Message
    metadata: Mlflow25CandidateMetadata


class Mlflow25CompletionCandidate(BaseModel):
    text: str
    metadata: Mlflow25CandidateMetadata


class Mlflow25ChatResponse(BaseModel):
    candidates: list[Mlflow25ChatCandidate]
    metadata: Mlflow25Metadata


class Mlflow25CompletionsResponse(BaseModel):
    candidates: list[Mlflow25CompletionCandidate]
    metadata: Mlflow25Metadata


class Mlflow25EmbeddingsResponse(BaseModel):
    embeddings: list[list[float]]
    metadata: Mlflow25Metadata


class MlflowError(BaseModel):
    error_code: str
    message: str


# ---- OpenAI shape (MLflow deployments and /v1)
class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class OpenAIMessage(BaseModel):
    role: str
    content: str


class ChatChoice(BaseModel):
    index: int
    message: OpenAIMessage
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: OpenAIUsage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: OpenAIUsage


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # a string when encoding_format is base64


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: OpenAIUsage


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class Health(BaseModel):
    status: Literal["OK"]
