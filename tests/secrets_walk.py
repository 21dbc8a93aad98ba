"""Walk an object's attributes (``vars()``, recursively) looking for a secret string."""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Iterator
from typing import Any

_LEAVES = (int, float, bool, type(None), types.ModuleType, types.FunctionType, type)


def attribute_paths(root: Any, depth: int) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every value reachable from ``root`` through ``vars()``,
    dict items and sequence items, at most ``depth`` steps away (each object once)."""
    seen: set[int] = set()
    todo: deque[tuple[str, Any, int]] = deque([("store", root, 0)])
    while todo:
        path, obj, level = todo.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield path, obj
        if level >= depth or isinstance(obj, (str, bytes, bytearray, *_LEAVES)):
            continue
        children: list[tuple[str, Any]] = []
        if isinstance(obj, dict):
            for key, value in list(obj.items()):
                children += [(f"{path}[{key!r}]", value), (f"{path}.<key>", key)]
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            children += [(f"{path}[{i}]", value) for i, value in enumerate(list(obj))]
        else:
            try:
                attrs = vars(obj)
            except TypeError:
                continue  # no __dict__ (slots only, or a builtin)
            children += [(f"{path}.{name}", value) for name, value in list(attrs.items())]
        todo.extend((p, v, level + 1) for p, v in children)


def find_secret(root: Any, secret: str, depth: int = 6) -> list[str]:
    """Paths below ``root`` whose value is a string (or bytes) containing ``secret``."""
    raw = secret.encode()
    found = []
    for path, value in attribute_paths(root, depth):
        if (isinstance(value, str) and secret in value) or (
            isinstance(value, bytes | bytearray) and raw in value
        ):
            found.append(path)
    return found
