"""CLI probe settings: how to log in to one device over SSH and what to read."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from probes.cli.commands import CommandSet, Platform, commands_for
from probes.source import Secret, Strict, existing_file


class CliProbeConfig(Strict):
    """How to scrape one device over SSH (netmiko). Commands come from a fixed allowlist.

    ``timeout`` bounds one whole session: connecting (when needed) plus every command of
    the poll. Give ``password`` or ``key_file`` (or both). ``known_hosts`` turns on strict
    host key checking against that file; without it any host key is accepted.
    """

    kind: Literal["cli"] = "cli"
    platform: Platform
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1)
    password: Secret | None = None
    key_file: str | None = Field(default=None, description="private key (relative: to this file)")
    key_passphrase: Secret | None = None
    known_hosts: str | None = Field(default=None, description="OpenSSH known_hosts file")
    commands: tuple[CommandSet, ...] | None = Field(
        default=None, description="command sets to run; default: all the platform has"
    )
    timeout: float = Field(default=30.0, gt=0, le=300, description="seconds per session")
    interval: float | None = Field(default=None, gt=0)

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return existing_file(None if value is None else os.path.expanduser(value), info)

    @field_validator("commands")
    @classmethod
    def _allowed(
        cls, value: tuple[CommandSet, ...] | None, info: ValidationInfo
    ) -> tuple[CommandSet, ...] | None:
        if value is not None and not value:
            raise ValueError("list at least one command set, or leave commands out for all")
        platform = info.data.get("platform")
        if platform is not None:
            commands_for(platform, value)  # ValueError names what the platform lacks
        return value

    @model_validator(mode="after")
    def _credentials(self) -> CliProbeConfig:
        # Model-level on purpose: a field error would echo the secret's value.
        if self.password is None and self.key_file is None:
            raise ValueError("give password or key_file (or both)")
        if self.key_passphrase is not None and self.key_file is None:
            raise ValueError("key_passphrase is set but key_file is not")
        return self
