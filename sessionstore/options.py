"""Typed driver options: validated from URL query strings and keyword arguments.

A driver declares its options as a frozen dataclass subclassing :class:`StoreOptions`.
``open_store("scheme://...?a=1", b=2)`` converts the query string by the fields' types
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` and ``X | None``); an unknown
option or a value of the wrong type raises :class:`ConfigurationError` naming it, and
keyword arguments override the URL.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

from .codec import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_SESSION_BYTES
from .errors import ConfigurationError

__all__ = ["StoreOptions", "build_options", "options_from_query", "redact_url", "split_url"]

_NAMESPACE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A URL's numbers: ASCII digits, an optional sign (and for a float a point, an exponent).
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE: Final = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
OptionsT = TypeVar("OptionsT", bound="StoreOptions")


@dataclass(frozen=True)
class StoreOptions:
    """Options every driver accepts.

    * ``namespace`` - isolates one set of sessions from another completely (a key prefix,
      a sub-directory, a separate in-memory space). ``""`` is the default namespace.
    * ``max_session_bytes`` / ``max_event_bytes`` - payload limits (encoded JSON bytes).
    * ``checkpoint_keep_last`` - default pruning of checkpoints per session (``None``: keep
      all).
    """

    namespace: str = ""
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    checkpoint_keep_last: int | None = None

    def __post_init__(self) -> None:
        if self.namespace and (
            _NAMESPACE_RE.fullmatch(self.namespace) is None or ".." in self.namespace
        ):
            raise ConfigurationError(
                f"invalid namespace {self.namespace!r} (allowed: [A-Za-z0-9][A-Za-z0-9._-]"
                "{0,63}, no '..')"
            )
        for name in ("max_session_bytes", "max_event_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"option {name!r} must be positive")
        if self.checkpoint_keep_last is not None and self.checkpoint_keep_last < 1:
            raise ConfigurationError("option 'checkpoint_keep_last' must be positive or None")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert_str(name: str, raw: str, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and raw.lower() in ("", "none", "null"):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert_str(name, raw, arg)
            except ConfigurationError as exc:
                errors.append(str(exc))
        raise ConfigurationError(f"option {name!r}: cannot read {raw!r} as {_type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        for value in allowed:
            if str(value) == raw:
                return value
        raise ConfigurationError(
            f"option {name!r}: {raw!r} is not one of {', '.join(map(str, allowed))}"
        )
    if tp is bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigurationError(f"option {name!r}: {raw!r} is not a boolean")
    if tp is int:
        if _INT_RE.fullmatch(raw) is None:  # int() also takes " 1", "1_000", other digits
            raise ConfigurationError(f"option {name!r}: {raw!r} is not an integer")
        return int(raw)
    if tp is float:
        if _FLOAT_RE.fullmatch(raw) is None or not math.isfinite(float(raw)):
            raise ConfigurationError(f"option {name!r}: {raw!r} is not a finite number")
        return float(raw)
    if tp is str:
        return raw
    raise ConfigurationError(f"option {name!r} cannot be given in a URL")


def _check_value(name: str, value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_check_value(name, value, arg) for arg in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _field_types(cls: type[StoreOptions]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def options_from_query(cls: type[StoreOptions], query: Mapping[str, str]) -> dict[str, Any]:
    """Convert URL query values to the typed values ``cls`` declares."""
    types_ = _field_types(cls)
    out: dict[str, Any] = {}
    for name, raw in query.items():
        if name not in types_:
            raise ConfigurationError(
                f"unknown option {name!r} (known: {', '.join(sorted(types_))})"
            )
        out[name] = _convert_str(name, raw, types_[name])
    return out


def build_options(cls: type[OptionsT], values: Mapping[str, Any]) -> OptionsT:
    """Build ``cls`` from keyword values, refusing unknown names and wrong types."""
    types_ = _field_types(cls)
    for name, value in values.items():
        if name not in types_:
            raise ConfigurationError(
                f"unknown option {name!r} (known: {', '.join(sorted(types_))})"
            )
        if not _check_value(name, value, types_[name]):
            raise ConfigurationError(
                f"option {name!r} must be {_type_name(types_[name])}, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):  # no option means "never"
            raise ConfigurationError(f"option {name!r} must be a finite number, got {value!r}")
    return cls(**values)


def split_url(url: str) -> tuple[SplitResult, dict[str, str]]:
    """Split a store URL into its parts and a single-valued query dict."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"not a store URL: {redact_url(str(url))!r} (expected scheme://...)"
        )
    parts = urlsplit(url)
    query: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True, strict_parsing=False).items():
        if len(values) > 1:
            raise ConfigurationError(f"option {name!r} is given more than once")
        query[name] = values[0]
    return parts, query


_PASSWORD_PARAMS: Final = ("password", "passwd", "pwd", "secret", "token")
# "user:password@" anywhere in a string that did not parse as a URL with an authority.
_USERINFO_RE: Final = re.compile(r"(?<=:)[^@/?#]*(?=@)")


def redact_url(url: str) -> str:
    """The URL with any password (in the authority or a query option) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    changed = False
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}" if ":" in userinfo or user else f"***@{hostinfo}"
        changed = True
    query = parts.query
    if query:
        pieces = []
        for piece in query.split("&"):
            key = piece.split("=", 1)[0]
            secret = key.lower() in _PASSWORD_PARAMS
            changed = changed or secret
            pieces.append(f"{key}=***" if secret else piece)
        query = "&".join(pieces)
    if not changed:
        # Unchanged URLs are returned as given (urlunsplit would turn "memory://" into
        # "memory:"); a malformed one may still hold "user:password@".
        return _USERINFO_RE.sub("***", url) if "@" in url else url
    if parts.scheme and url.startswith(f"{parts.scheme}://"):
        text = f"{parts.scheme}://{netloc}{parts.path}"
        if parts.query:
            text += f"?{query}"
        return text + (f"#{parts.fragment}" if parts.fragment else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
