"""The Redis password, held apart from every attribute a dump of the store would show.

redis-py authenticates each new connection (a reconnect after a blip, a failover) with the
credentials it was given, so the password must stay in memory. Given as
``username``/``password``, it would sit in the store's options and in every connection
pool's ``connection_kwargs``, where anything that dumps object attributes (a debugger, an
error reporter capturing locals, ``vars()``) finds it. It is handed to redis-py as a
:class:`Credentials` provider instead: the secret lives in a slot (``vars()`` of the
provider is empty), ``repr``/``str`` show ``***``, and it cannot be pickled. The store's
options keep ``"***"`` in its place (``docs/redis.md``).
"""

from __future__ import annotations

from typing import Any, NoReturn

from redis.credentials import CredentialProvider

__all__ = ["HIDDEN", "Credentials"]

#: What the store's options hold instead of a password.
HIDDEN = "***"


class Credentials(CredentialProvider):
    """A username and password for redis-py's ``credential_provider``."""

    __slots__ = ("_secret",)

    def __init__(self, username: str | None, password: str) -> None:
        self._secret = (username, password)

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        """``(password,)`` or ``(username, password)``, as redis-py's AUTH wants them."""
        username, password = self._secret
        return (username, password) if username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        """The same, for redis-py versions that ask asynchronously."""
        return self.get_credentials()

    def __repr__(self) -> str:
        return f"Credentials(username={self._secret[0]!r}, password={HIDDEN!r})"

    __str__ = __repr__

    def __copy__(self) -> Credentials:
        return self  # immutable: copies (redis-py copies connection kwargs) share it

    def __deepcopy__(self, memo: dict[int, Any]) -> Credentials:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("Redis credentials cannot be pickled")
