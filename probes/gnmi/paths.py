"""gNMI path strings: ``[origin:]/a/b[key=value]/c``, as people write them in config and as
pygnmi renders paths in its dicts. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

Keys = tuple[Mapping[str, str] | None, ...]
"""The keys of each element of a path, ``None`` where the element has none."""


def strip_module(name: str) -> str:
    """``openconfig-interfaces:interfaces`` -> ``interfaces`` (also for identityrefs)."""
    return name.rpartition(":")[2] if ":" in name else name


@lru_cache(maxsize=4096)
def split_path(text: str) -> tuple[str, tuple[str, ...], Keys]:
    """``[origin:]/a/b[k=v]/c`` -> (origin, names, keys); names lose module prefixes.

    Key values may contain ``/``; ``]`` and ``\\`` in them are escaped with ``\\``.
    Raises ValueError (saying where) for unbalanced brackets or a key without ``=``.
    """
    origin, names, keys = parse_elems(text)
    return origin, tuple(strip_module(n) for n in names), tuple(
        MappingProxyType(k) if k else None for k in keys
    )


def parse_elems(text: str) -> tuple[str, list[str], list[dict[str, str]]]:
    """``[origin:]/a/b[k=v]/c`` -> (origin, names as written, keys); see :func:`split_path`."""
    origin = ""
    head, sep, rest = text.partition(":/")
    if sep and head and "/" not in head and "[" not in head:
        origin, text = head, "/" + rest
    names: list[str] = []
    keys: list[dict[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "/":
            i += 1
            continue
        j = i
        while j < n and text[j] not in "/[]":
            j += 1
        if j < n and text[j] == "]":
            raise ValueError(f"unexpected ']' at character {j + 1} of {text!r}")
        name = text[i:j]
        key: dict[str, str] = {}
        while j < n and text[j] == "[":
            eq = text.find("=", j)
            close = text.find("]", j)
            if eq < 0 or (0 <= close < eq):
                raise ValueError(f"key without '=' at character {j + 1} of {text!r}")
            k = text[j + 1 : eq]
            j = eq + 1
            value: list[str] = []
            while j < n and text[j] != "]":
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                value.append(text[j])
                j += 1
            if j >= n:
                raise ValueError(f"unclosed '[' in {text!r}")
            if not k:
                raise ValueError(f"empty key name in {text!r}")
            key[k] = "".join(value)
            j += 1
        if j < n and text[j] != "/":
            raise ValueError(f"unexpected {text[j]!r} at character {j + 1} of {text!r}")
        if not name:
            raise ValueError(f"empty element name in {text!r}")
        names.append(name)
        keys.append(key)
        i = j
    return origin, names, keys
