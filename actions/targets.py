"""Where actions go: one config model per kind of target, discriminated on ``kind``.

Every target kind shares the retry settings (``RetrySettings``); an executor module under
``actions/executors/`` implements each kind.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl

from probes.source import Secret, Strict


class RetrySettings(Strict):
    """How hard to try. 5xx, 429, timeouts and connection errors are retried with capped,
    jittered exponential backoff; 4xx are not."""

    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per attempt")
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_max: float = Field(default=300.0, gt=0, description="cap on the wait, seconds")


class WebhookTarget(RetrySettings):
    kind: Literal["webhook"]
    url: HttpUrl
    token: Secret | None = Field(default=None, description="sent as Authorization: Bearer")
    headers: dict[str, str] = Field(default_factory=dict)


class LogTarget(RetrySettings):
    kind: Literal["log"]
    path: str | None = Field(default=None, description="also append one JSON line per action")


Target = Annotated[WebhookTarget | LogTarget, Field(discriminator="kind")]
