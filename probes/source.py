"""Reading people's files: YAML with line numbers, secrets, and errors that say where.

Every package reads files that people write (config, inventory, policy). They all report
problems the same way -- ``file:line: dotted.path: what is wrong (got X)`` -- so this
module lives at the bottom of the dependency chain where every package can use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
    ValidationInfo,
)

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in one file, located as precisely as we can."""

    file: str
    line: int | None
    path: str
    message: str
    got: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = f" {self.path}:" if self.path else ""
        got = f" (got {self.got})" if self.got is not None else ""
        return f"{where}:{path} {self.message}{got}"


class SourceError(Exception):
    """One or more problems in files people wrote. ``str()`` is one line per problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Located:
    """Parsed YAML data plus the line of every mapping key and sequence item in it."""

    def __init__(self, file: str, data: Any, lines: dict[Loc, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of ``loc``, or of its nearest ancestor that exists in the file."""
        parts = tuple(loc)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def problem(self, loc: Iterable[str | int], message: str, got: Any = None) -> Problem:
        parts = tuple(loc)
        return Problem(
            file=self.file,
            line=self.line_of(parts),
            path=dotted(parts),
            message=message,
            got=None if got is None else short(got),
        )


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compose(node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _compose(key_node, (*loc, "<key>"), {}, file)
            if isinstance(key, list | dict):
                raise SourceError(
                    [Problem(file, key_node.start_mark.line + 1, dotted(loc),
                             "a mapping key must be a plain value")]
                )
            if key in out:
                raise SourceError(
                    [Problem(file, key_node.start_mark.line + 1, dotted((*loc, key)),
                             "duplicate key (the first one is on line "
                             f"{lines[(*loc, key)]}); remove one of them")]
                )
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _compose(value_node, (*loc, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _compose(item, (*loc, i), lines, file) for i, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    return yaml.SafeLoader.construct_object(_SCALAR_LOADER, node)


class _ScalarLoader(yaml.SafeLoader):
    def __init__(self) -> None:
        super().__init__("")


_SCALAR_LOADER = _ScalarLoader()


def load_yaml(path: str | os.PathLike[str]) -> Located:
    """Parse one YAML file, keeping line numbers; syntax errors become a SourceError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError([Problem(file, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError([Problem(file, None, "", f"cannot read: {exc}")]) from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        raise SourceError([Problem(file, line, "", msg)]) from None
    except yaml.YAMLError as exc:
        raise SourceError([Problem(file, None, "", f"YAML error: {exc}")]) from None
    if node is None:
        return Located(file, {}, {(): 1})
    lines: dict[Loc, int] = {}
    try:
        data = _compose(node, (), lines, file)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise SourceError([Problem(file, line, "", f"YAML error: {exc.problem}")]) from None
    return Located(file, data, lines)


def validation_problems(
    src: Located, exc: ValidationError, *, prefix: Loc = ()
) -> list[Problem]:
    """Translate pydantic's errors into located problems, one per error."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = prefix + _data_loc(src.data, err["loc"])
        message = _message(err)
        got = None if err["type"] == "missing" else err.get("input")
        if err["type"] == "extra_forbidden" or isinstance(got, dict | list):
            # a whole section as "got" is noise, and may hold secrets (a model-level
            # validator's error carries its entire input): never echo it
            got = None
        problems.append(src.problem(loc, message, got))
    return problems


def _data_loc(data: Any, loc: tuple[str | int, ...]) -> Loc:
    """pydantic's loc without the parts it inserts (union tags such as ``"2c"`` or
    ``function-after[...]``): keep a part only where the data has it (or it is last)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif i == len(loc) - 1:
            pass
        else:
            continue
        out.append(part)
    return tuple(out)


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the example in etc/)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def validate(model: type[BaseModel], src: Located, *, data: Any = None) -> Any:
    """Validate ``src`` (or ``data`` from it) against ``model``; problems → SourceError.

    Relative secret file paths are resolved against the directory of ``src``.
    """
    try:
        return model.model_validate(
            src.data if data is None else data,
            context={"base_dir": str(Path(src.file).parent)},
        )
    except ValidationError as exc:
        raise SourceError(validation_problems(src, exc)) from None


# --- secrets -------------------------------------------------------------------------


def config_path(value: str, info: ValidationInfo) -> str:
    """A path written in a config file: a relative one is relative to that file's folder
    (the ``base_dir`` that ``validate`` puts in the context)."""
    if not os.path.isabs(value) and info.context and "base_dir" in info.context:
        return os.path.join(info.context["base_dir"], value)
    return value


def existing_file(value: str | None, info: ValidationInfo) -> str | None:
    """A field validator's body for an optional file that must exist (a CA, a key)."""
    if value is None:
        return None
    path = config_path(value, info)
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    return path


def _resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """A secret is a plain string, ``{env: NAME}``, ``{file: PATH}`` or ``{credential: NAME}``.

    ``credential`` reads ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``); a
    relative ``file`` is relative to the file that names it.
    A trailing newline in a file is dropped. Values are never echoed in errors.
    """
    if isinstance(value, SecretStr | str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a numeric community; never echo it back in an error
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("a secret is a string or one of {env: NAME}, {file: PATH}, "
                         "{credential: NAME}")
    (how, where), = value.items()
    if how == "env":
        if str(where) not in os.environ:
            raise ValueError(f"environment variable {where} is not set")
        return os.environ[str(where)]
    if how in ("file", "credential"):
        if how == "credential":
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise ValueError("CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)")
            where = os.path.join(base, str(where))
        else:
            where = config_path(str(where), info)
        try:
            return Path(str(where)).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {where}: {exc.strerror}") from None
    raise ValueError(f"unknown secret source {how!r}: use env, file or credential")


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
"""A secret field: never logged, never in repr, readable from env, file or credential."""


class Strict(BaseModel):
    """Base for every model people write: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
