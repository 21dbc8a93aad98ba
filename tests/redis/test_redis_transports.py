"""The other transports of a single server: ``unix://`` (a Unix socket) and ``rediss://``
(TLS: verified server certificate, a client certificate, a password). Each runs the whole
conformance suite through ``open_store(url)``, as a user would; then the TLS settings that
cannot work fail at once with a typed error that never shows the password."""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from sessionstore_redis import RedisOptions, RedisStore

from sessionstore import Clock, ConfigurationError, SessionStore, StoreUnavailableError, open_store
from sessionstore.testing import StoreConformance
from tests.redis.servers import TLS_PASSWORD, TLSServer


class TestRedisUnixSocket(StoreConformance):
    """A private redis-server listening on a Unix socket only (``--port 0``)."""

    cleanup_namespaces = False
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_unix_url: str) -> None:
        self.url = redis_unix_url

    def make_store(self, *, namespace: str, clock: Clock) -> SessionStore:
        # the oversized-payload tests send values of several MB; on a loaded 2-core machine
        # the default 5 s reply timeout was reached twice (Unix socket, TLS)
        return open_store(self.url, namespace=namespace, clock=clock, socket_timeout=30.0)


class TestRedisTLS(StoreConformance):
    """A private redis-server on a TLS port only: the server's certificate verified against
    the test CA (host name included), a client certificate, a password."""

    cleanup_namespaces = False
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, redis_tls: TLSServer) -> None:
        self.url = redis_tls.url()

    def make_store(self, *, namespace: str, clock: Clock) -> SessionStore:
        # the oversized-payload tests send values of several MB; on a loaded 2-core machine
        # the default 5 s reply timeout was reached twice (Unix socket, TLS)
        return open_store(self.url, namespace=namespace, clock=clock, socket_timeout=30.0)


# --------------------------------------------------------------------------- TLS settings


def _no_password(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert TLS_PASSWORD not in text, "the password leaked into an error"
    assert TLS_PASSWORD not in repr(exc)


async def _refused(url: str, **options: Any) -> ConfigurationError:
    store = open_store(url, retry_deadline=30.0, connect_timeout=2.0, **options)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await store.initialize()
    # not retried until the 30 s deadline: retrying cannot fix the settings
    assert time.monotonic() - started < 10
    _no_password(info.value)
    return info.value


@pytest.mark.asyncio
async def test_tls_url_carries_the_typed_options(redis_tls: TLSServer) -> None:
    store = open_store(redis_tls.url(ssl_check_hostname="true"))
    assert isinstance(store, RedisStore) and isinstance(store.options, RedisOptions)
    o = store.options
    assert o.tls and o.ssl_ca_certs == str(redis_tls.files.ca)
    assert o.ssl_certfile == str(redis_tls.files.client_cert)
    assert o.ssl_keyfile == str(redis_tls.files.client_key)
    assert o.ssl_cert_reqs == "required" and o.ssl_check_hostname is True
    assert TLS_PASSWORD not in repr(store) and TLS_PASSWORD not in repr(o)
    async with store:
        s = await store.create_session(data={"over": "tls"})
        assert await store.get_session(s.id) == s
        # the server has no plain port: the data really went over TLS (its own, or that of
        # the proxy in front of a server on a Unix socket: a binary built without TLS)
        config = await store.client.config_get("*port")
        assert config.get("port") == "0"
        tls_port = "0" if redis_tls.backend is not None else str(redis_tls.port)
        assert config.get("tls-port", "0") == tls_port


@pytest.mark.asyncio
async def test_wrong_ca_is_a_configuration_error(redis_tls: TLSServer) -> None:
    exc = await _refused(redis_tls.url(ca=redis_tls.files.other_ca))
    assert "TLS" in str(exc) and "certificate" in str(exc)
    assert f"rediss://127.0.0.1:{redis_tls.port}/0" in str(exc)  # where, without the secret


@pytest.mark.asyncio
async def test_host_name_is_checked(redis_tls: TLSServer) -> None:
    """The certificate names 127.0.0.1: "localhost" does not match unless the check is off."""
    url = redis_tls.url().replace("@127.0.0.1:", "@localhost:")
    exc = await _refused(url)
    assert "certificate" in str(exc)
    async with open_store(url.replace("?", "?ssl_check_hostname=false&")) as store:
        assert await store.count_sessions() >= 0


@pytest.mark.asyncio
async def test_missing_client_certificate_is_refused(redis_tls: TLSServer) -> None:
    """The server requires a client certificate (tls-auth-clients yes)."""
    exc = await _refused(redis_tls.url(client_cert=False))
    assert "TLS" in str(exc)


@pytest.mark.asyncio
async def test_unverified_tls_still_encrypts(redis_tls: TLSServer) -> None:
    """ssl_cert_reqs=none: no CA needed (the connection is encrypted, its peer unchecked)."""
    url = redis_tls.url(ssl_cert_reqs="none").replace(f"ssl_ca_certs={redis_tls.files.ca}&", "")
    assert "ssl_ca_certs" not in url
    async with open_store(url) as store:
        s = await store.create_session()
        assert await store.get_session(s.id) == s


@pytest.mark.asyncio
async def test_unreadable_tls_files_are_configuration_errors(
    redis_tls: TLSServer, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.pem"
    exc = await _refused(redis_tls.url(ca=missing))
    assert str(missing) in str(exc)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    await _refused(redis_tls.url(ca=garbage))
    # a key that belongs to another certificate
    exc = await _refused(redis_tls.url(ssl_keyfile=str(redis_tls.files.server_key)))
    assert "ssl_keyfile" in str(exc)


@pytest.mark.asyncio
async def test_plain_client_on_the_tls_port_is_unavailable(redis_tls: TLSServer) -> None:
    """redis:// to a TLS port: the server drops the connection; after the deadline the
    error says where it tried, without the password."""
    store = open_store(
        f"redis://:{TLS_PASSWORD}@127.0.0.1:{redis_tls.port}/0",
        retry_deadline=0.5,
        connect_timeout=0.5,
        socket_timeout=0.5,
    )
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    _no_password(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0?ssl_ca_certs=/ca.pem",  # TLS options without TLS
        "redis://h:6379/0?ssl_cert_reqs=none",
        "unix:///run/redis.sock?tls=true",  # no TLS over a Unix socket
        "rediss://h:6379/0?ssl_keyfile=/k.pem",  # a key without its certificate
        "rediss://h:6379/0?ssl_cert_reqs=sometimes",
        "rediss://h:6379/0?ssl_check_hostname=maybe",
    ],
)
def test_inconsistent_tls_options_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_tls_for_sentinel_and_cluster_urls() -> None:
    store = open_store("redis+cluster://h1:7000?tls=true&ssl_ca_certs=/ca.pem")
    assert isinstance(store.options, RedisOptions)
    assert store.options.tls and store.options.ssl_ca_certs == "/ca.pem"
    store = open_store("redis+sentinel://h1:26379/mymaster?tls=true&ssl_cert_reqs=optional")
    assert isinstance(store.options, RedisOptions) and store.options.ssl_cert_reqs == "optional"
