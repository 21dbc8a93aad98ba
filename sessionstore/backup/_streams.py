"""Byte streams of backup files: compression (none, gzip, zstd), atomic creation, lines.

Everything here is synchronous and blocking; the async callers run it in a worker thread.

* Writing goes to a temporary file in the destination's directory that is fsynced and
  renamed into place only when complete, so a failed backup never leaves a file under the
  final name. The trailer is compressed as its own gzip member / zstd frame, so it can be
  read from the end of the file without decompressing the rest (``read_tail``).
* Reading detects the compression from the file's first bytes (not its name) and yields
  complete lines in blocks.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final, Literal, TypeAlias

from ..errors import ConfigurationError, IntegrityError, InvalidArgumentError

__all__ = [
    "Compression",
    "LineReader",
    "Sink",
    "compression_for",
    "detect_compression",
    "read_head_line",
    "read_tail_line",
]

Compression: TypeAlias = Literal["none", "gzip", "zstd"]
COMPRESSIONS: Final = ("none", "gzip", "zstd")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_BLOCK: Final = 256 * 1024
_TAIL: Final = 64 * 1024
#: No line of a backup is longer (a session is at most 16 MiB by default; event lines are
#: cut at about 1 MiB): a longer one means the file is not a backup or is corrupt.
MAX_LINE: Final = 256 * 1024 * 1024
_GZIP_LEVEL: Final = 6
_ZSTD_LEVEL: Final = 3
_TEMP_PREFIX: Final = ".sessionstore-backup-tmp-"


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise ConfigurationError(
            "zstd backups need the 'zstandard' package: pip install 'sessionstore[backup]' "
            "(or use a .gz file name for gzip)"
        ) from None
    return zstandard


def compression_for(path: Path, compression: str | None) -> Compression:
    """The compression asked for, or the one the file name implies (``.gz``, ``.zst``)."""
    if compression is None:
        name = path.name.lower()
        if name.endswith((".gz", ".gzip")):
            return "gzip"
        if name.endswith((".zst", ".zstd")):
            _zstd()
            return "zstd"
        return "none"
    if compression not in COMPRESSIONS:
        raise InvalidArgumentError(
            f"unknown compression {compression!r} (allowed: {', '.join(COMPRESSIONS)})"
        )
    if compression == "zstd":
        _zstd()
    return compression  # type: ignore[return-value]


def is_temp_name(name: str) -> bool:
    """True for the temporary files of backups being written."""
    return name.startswith(_TEMP_PREFIX)


class Sink:
    """A backup being written: compress, count, fsync, rename into place on ``commit``."""

    def __init__(self, path: Path, compression: Compression) -> None:
        self.path = path
        self.compression = compression
        self._tmp = path.parent / f"{_TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._raw: IO[bytes] = os.fdopen(fd, "wb", buffering=_BLOCK)
        self._body: Any = self._open_member()

    def _open_member(self) -> Any:
        if self.compression == "gzip":
            return gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, compresslevel=_GZIP_LEVEL, mtime=0
            )
        if self.compression == "zstd":
            compressor = _zstd().ZstdCompressor(level=_ZSTD_LEVEL)
            return compressor.stream_writer(self._raw, closefd=False)
        return self._raw

    def write(self, data: bytes) -> None:
        """Append content bytes (already encoded lines)."""
        self._body.write(data)

    def commit(self, trailer: bytes, *, overwrite: bool = True) -> int:
        """End the body, append the trailer (its own member/frame), fsync, rename.

        Returns the size of the finished file in bytes. With ``overwrite=False`` the file
        is linked into place, never replacing one that appeared meanwhile
        (:class:`FileExistsError`; the temporary file stays for :meth:`abort`).
        """
        if self.compression == "gzip":
            self._body.close()
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, compresslevel=_GZIP_LEVEL, mtime=0
            ) as tail:
                tail.write(trailer)
        elif self.compression == "zstd":
            zstandard = _zstd()
            self._body.flush(zstandard.FLUSH_FRAME)
            self._body.close()
            self._raw.write(zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(trailer))
        else:
            self._raw.write(trailer)
        self._raw.flush()
        os.fsync(self._raw.fileno())
        size = os.fstat(self._raw.fileno()).st_size
        self._raw.close()
        if overwrite:
            os.replace(self._tmp, self.path)
        else:
            os.link(self._tmp, self.path)  # atomic, and fails if the name is taken
            self._tmp.unlink()
        _fsync_dir(self.path.parent)
        return size

    def abort(self) -> None:
        """Drop the temporary file (the destination is left as it was)."""
        try:
            if self._body is not self._raw:
                with contextlib.suppress(Exception):  # best effort: the file goes anyway
                    self._body.close()
            self._raw.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def detect_compression(head: bytes) -> Compression:
    """The compression of a file from its first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


def _open_body(raw: IO[bytes], compression: Compression) -> IO[bytes] | Any:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        return _zstd().ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


def _stream_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, zlib.error, gzip.BadGzipFile]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


class LineReader:
    """Complete lines of a (possibly compressed) backup file, in blocks.

    ``name`` is used in error messages. A broken compressed stream raises
    :class:`IntegrityError` naming the last complete line read.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.lines_read = 0
        self._raw: IO[bytes] = open(path, "rb", buffering=_BLOCK)  # noqa: SIM115 - closed in close()
        try:
            self.compression = detect_compression(self._raw.peek(4)[:4])  # type: ignore[attr-defined]
            self._body = _open_body(self._raw, self.compression)
        except BaseException:
            self._raw.close()
            raise
        self._eof = False
        self._errors = _stream_errors()

    def blocks(self) -> Iterator[list[bytes]]:
        """Yield lists of complete lines (without their newlines); the last may be short.

        A line longer than a block is kept in pieces until it ends (joined once), and no
        block is copied but by the split into lines.
        """
        pending: list[bytes] = []  # the pieces of a line that has not ended yet
        pending_size = 0
        while not self._eof:
            try:
                block = self._body.read(_BLOCK)
            except self._errors as exc:
                raise IntegrityError(
                    f"compressed stream is corrupt or truncated after line {self.lines_read} "
                    f"({type(exc).__name__}: {exc})",
                    self.name,
                ) from None
            if not block:
                self._eof = True
                if pending:
                    raise IntegrityError(
                        f"truncated: line {self.lines_read + 1} has no end", self.name
                    )
                return
            if block.find(b"\n") < 0:
                pending.append(block)
                pending_size += len(block)
                if pending_size > MAX_LINE:
                    raise IntegrityError(
                        f"line {self.lines_read + 1} is longer than {MAX_LINE} bytes: "
                        "not a sessionstore backup, or corrupt",
                        self.name,
                    )
                continue
            lines = block.split(b"\n")
            block = b""
            rest = lines.pop()  # the start of the next line (or b"")
            if pending:
                pending.append(lines[0])
                lines[0] = b"".join(pending)
            pending, pending_size = ([rest], len(rest)) if rest else ([], 0)
            self.lines_read += len(lines)
            yield lines

    def close(self) -> None:
        """Release the file."""
        try:
            if self._body is not self._raw:
                self._body.close()
        finally:
            self._raw.close()


def read_head_line(path: Path, limit: int = _BLOCK) -> tuple[bytes, Compression]:
    """The first line of the file (decompressed) and the file's compression."""
    with open(path, "rb") as raw:
        compression = detect_compression(raw.read(4))
        raw.seek(0)
        body = _open_body(raw, compression)
        try:
            buf = b""
            while b"\n" not in buf and len(buf) < limit:
                chunk = body.read(4096)
                if not chunk:
                    break
                buf += chunk
        except _stream_errors():
            return b"", compression
        finally:
            if body is not raw:
                body.close()
    return buf.split(b"\n", 1)[0], compression


def read_tail_line(path: Path, compression: Compression) -> bytes | None:
    """The last line of the file, read from its end (``None`` when it cannot be found).

    A compressed backup ends with the trailer in its own gzip member / zstd frame; the
    frame is found by its magic number in the last bytes of the file.
    """
    with open(path, "rb") as raw:
        size = raw.seek(0, io.SEEK_END)
        start = max(0, size - _TAIL)
        raw.seek(start)
        tail = raw.read()
    if compression == "none":
        if not tail.endswith(b"\n"):
            return None
        return tail[:-1].rsplit(b"\n", 1)[-1]
    magic = _GZIP_MAGIC if compression == "gzip" else _ZSTD_MAGIC
    pos = len(tail)
    while (pos := tail.rfind(magic, 0, pos)) >= 0:
        try:
            if compression == "gzip":
                text = gzip.decompress(tail[pos:])
            else:
                text = _zstd().ZstdDecompressor().decompress(tail[pos:])
        except Exception:  # noqa: S112 - not a member boundary: try an earlier one
            continue
        if text.endswith(b"\n") and text.count(b"\n") == 1:
            return text[:-1]
    return None
