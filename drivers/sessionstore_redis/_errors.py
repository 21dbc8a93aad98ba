"""Error replies as the exceptions redis-py makes of them, on every supported server.

:func:`reply_error` is redis-py's parser's mapping (a known code is the class, left out of
the message), for the replies the driver reads itself (``_wire.py``).

:func:`script_error` undoes a difference between server versions. Redis 7 answers a script
whose ``redis.call`` failed with that command's error reply, its code kept (``-READONLY
You can't write against a read only replica. script: <sha>, on @user_script:34.``), so
redis-py makes it a ``ReadOnlyError`` and the retry policy sees a demoted master. Redis
6.2 wraps it in a generic ``ERR``: ``Error running script (call to f_<sha>):
@user_script:34: @user_script: 34: -READONLY You can't write against a read only
replica.``; redis-py makes that a plain ``ResponseError``, which the driver took for a
corrupt record (``IntegrityError``) instead of a failover to retry. The nested code is
read back out of the text, so both versions give the same exception.
"""

from __future__ import annotations

import re
from typing import Final

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ExecAbortError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

__all__ = ["reply_error", "script_error"]

#: error-reply codes and the redis-py exception each is (its ``EXCEPTION_CLASSES``, the
#: ones a single server's reads and handshake, or a script's calls, can meet)
_CODES: Final[dict[str, type[RedisError]]] = {
    "NOSCRIPT": NoScriptError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
    "NOPERM": NoPermissionError,
    "LOADING": BusyLoadingError,
    "READONLY": ReadOnlyError,
    "EXECABORT": ExecAbortError,
    "OOM": OutOfMemoryError,
    "MASTERDOWN": MasterDownError,
}
#: ``ERR`` replies that redis-py makes an ``AuthenticationError``: a bad password on
#: servers before 6, and a password sent to a server that has none
_AUTH_ERRS: Final = (
    "invalid password",
    "AUTH <password> called without any password configured",
    "Client sent AUTH, but no password is set",
)
#: Redis 6.2's text for a script whose call failed: the script's location once or twice
#: (``@user_script:34: @user_script: 34: ``), then the call's error reply, its ``-`` kept
#: when the server refused the call before running it (``READONLY``, ``OOM``)
_NESTED: Final = re.compile(
    r"(?:ERR )?(?:Error running script \(call to f_[0-9a-f]+\): )?"
    r"(?:@?user_script: ?\d+: )+-?([A-Z][A-Z_]+) (.*)",
    re.DOTALL,
)


def reply_error(text: str) -> RedisError:
    """The exception redis-py makes of the error reply ``text`` (as its parser does: a
    known code is the class, and is left out of the message)."""
    code, _, rest = text.partition(" ")
    cls = _CODES.get(code)
    if cls is not None:
        return cls(rest)
    if code == "ERR" and rest.startswith(_AUTH_ERRS):
        return AuthenticationError(rest)
    return ResponseError(text)


def script_error(exc: ResponseError) -> RedisError | None:
    """The error a script's failed call answered, when ``exc`` is Redis 6.2's generic
    wrapping of it (see the module docstring): what Redis 7 replies; None for any other
    error (Redis 7's, a Lua runtime error, a call's plain ``ERR``)."""
    found = _NESTED.fullmatch(str(exc))
    if found is None or found[1] == "ERR":
        return None
    return reply_error(f"{found[1]} {found[2]}")
