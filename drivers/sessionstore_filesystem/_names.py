"""Which file-name rule a store uses, and the upgrade of a store to cased names.

A store's marker records its rule: ``"plain"`` (files named after ids as they are) or
``"cased"`` (after :func:`~._layout.cased_name`, so two ids that differ only in case never
share a name on a case-insensitive volume). A new store gets ``"cased"`` when a probe file
shows its volume ignores case, ``"plain"`` otherwise (the names are then the same: an id
without capitals is its own cased name), unless the ``names`` option forces one.

The upgrade of a ``"plain"`` store (asked for with ``names="cased"``) runs at open, under
an ``flock`` of the root directory: the marker says ``"upgrading"``, every session entry
and namespace directory whose name has a capital is renamed to its cased name (each rename
atomic; one whose rename is a change of case only goes through a ``.upg.`` name), leftover
temp and renamed-aside names of plain names are removed, then the marker says ``"cased"``.
A store whose marker says ``"upgrading"`` (an upgrade was cut short) is upgraded by the
next open, whatever its options: every step can be done again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import stat
from typing import Final, Literal

from sessionstore import (
    ConfigurationError,
    IntegrityError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from sessionstore.codec import FORMAT_VERSION, decode_json, dumps_record
from sessionstore.validation import validate_session_id

from ._file_formats import _decode_sealed
from ._fs import FILE_MODE, atomic_write, open_dir, read_file, unlink_quiet
from ._layout import COMPACT_SUFFIX, DEFAULT_NAMESPACE_DIR, MARKER, cased_id, cased_name

__all__ = ["NAMES_ENV", "Names", "case_insensitive", "check_marker", "marker_cased"]

log = logging.getLogger("sessionstore.filesystem")

Names = Literal["auto", "plain", "cased"]
#: The default of the ``names`` option when the store is given none (for test runs that
#: want every store on cased names: ``SESSIONSTORE_FILE_NAMES=cased``).
NAMES_ENV: Final = "SESSIONSTORE_FILE_NAMES"
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_UPG: Final = ".upg."  # a case-only rename's intermediate name


def case_insensitive(root_fd: int) -> bool:
    """True when the directory's file system ignores case: a probe file with a
    lower-case name is found under its upper-case name (the probe is removed)."""
    probe = f".case-probe.{secrets.token_hex(6)}.x"
    fd = os.open(
        probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
        dir_fd=root_fd,
    )  # fmt: skip
    os.close(fd)
    try:
        os.stat(probe.upper(), dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    finally:
        unlink_quiet(probe, root_fd)
    return True


def _marker(names: str, layout: int) -> bytes:
    rec = {"v": FORMAT_VERSION, "format": "sessionstore-file", "layout": layout, "names": names}
    return dumps_record(rec) + b"\n"


def check_marker(
    root: str, root_fd: int, *, create: bool, durable: bool, names: Names, layout: int
) -> bool:
    """Read (or write, for a new store) the store marker; upgrade an older layout's marker
    and, when asked or cut short, the file names. True: the store uses cased names."""
    if names == "auto":
        forced = os.environ.get(NAMES_ENV, "auto")
        names = forced if forced in ("plain", "cased") else "auto"  # type: ignore[assignment]
    raw = read_file(MARKER, root_fd, MARKER)
    if raw is None and not create:
        raise StoreNotFoundError(
            f"{root!r} is not a sessionstore file store (it has no {MARKER}); "
            "nothing was written to it"
        )
    if raw is None:
        cased = names == "cased" or (names == "auto" and case_insensitive(root_fd))
        rule = "cased" if cased else "plain"
        atomic_write(root_fd, MARKER, _marker(rule, layout), durable=durable)
        return cased
    found, rule = _read_marker(root, raw, layout)
    if rule == "upgrading" or (rule == "plain" and names == "cased"):
        upgrade(root, root_fd, durable=durable, layout=layout)
        return True
    if rule == "cased" and names == "plain":
        raise ConfigurationError(
            f"file store {root!r} names its files in cased form (names=cased); it cannot "
            "be opened with names=plain"
        )
    if found < layout:  # nothing to convert: newer writers only add files
        atomic_write(root_fd, MARKER, _marker(rule, layout), durable=durable)
    if rule == "plain" and names == "auto" and _marker_found_in_upper_case(root_fd):
        log.warning(
            "file store %r is on a case-insensitive file system with plain file names: "
            "two session ids that differ only in case can collide; open it once with "
            "names=cased (no other process using it) to rename its files",
            root,
        )
    return rule == "cased"


def marker_cased(root: str) -> bool:
    """True when the store at ``root`` names its files in cased form (its marker says so)."""
    try:
        with open(os.path.join(root, MARKER), "rb") as f:
            rec = decode_json(f.read(), f"{root}/{MARKER}")
    except (OSError, IntegrityError):
        return False
    return isinstance(rec, dict) and rec.get("names") == "cased"


def _read_marker(root: str, raw: bytes, newest: int) -> tuple[int, str]:
    rec = decode_json(raw, f"{root}/{MARKER}")
    layout = rec.get("layout") if isinstance(rec, dict) else None
    if not isinstance(layout, int):
        raise IntegrityError("store marker is malformed", f"{root}/{MARKER}")
    if layout > newest:
        raise UnsupportedFormatError(
            f"file store layout {layout} is newer than this sessionstore understands "
            f"({newest}); upgrade sessionstore to open it",
            root,
        )
    rule = rec.get("names", "plain") if layout < 7 else rec.get("names")
    if rule not in ("plain", "cased", "upgrading"):
        raise IntegrityError("store marker is malformed (names)", f"{root}/{MARKER}")
    return layout, rule


def _marker_found_in_upper_case(root_fd: int) -> bool:
    try:
        os.stat(MARKER.upper(), dir_fd=root_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- the upgrade


def upgrade(root: str, root_fd: int, *, durable: bool, layout: int) -> None:
    """Rename a plain store's files to cased names (see the module's docstring)."""
    fcntl.flock(root_fd, fcntl.LOCK_EX)  # one upgrader at a time
    try:
        raw = read_file(MARKER, root_fd, MARKER)
        if raw is not None and _read_marker(root, raw, layout)[1] == "cased":
            return  # another process upgraded it while we waited
        atomic_write(root_fd, MARKER, _marker("upgrading", layout), durable=durable)
        insensitive = case_insensitive(root_fd)
        for entry in sorted(os.listdir(root_fd)):
            if entry.startswith(".") or not _is_dir(entry, root_fd):
                continue
            if entry != DEFAULT_NAMESPACE_DIR and not _ours(entry):
                continue
            if not _is_dir(f"{entry}/sessions", root_fd):
                continue  # not a namespace directory: not ours to rename
            ns_fd = open_dir(entry, root_fd, f"namespace {entry!r}")
            try:
                _upgrade_namespace(ns_fd, durable=durable, insensitive=insensitive)
            finally:
                os.close(ns_fd)
            if entry != DEFAULT_NAMESPACE_DIR and cased_id(entry) is None:
                os.rename(entry, cased_name(entry), src_dir_fd=root_fd, dst_dir_fd=root_fd)
        if durable:
            os.fsync(root_fd)
        atomic_write(root_fd, MARKER, _marker("cased", layout), durable=durable)
        log.info("file store %r: file names upgraded to cased names", root)
    finally:
        fcntl.flock(root_fd, fcntl.LOCK_UN)


def _ours(name: str) -> bool:
    """A namespace directory's name, plain or cased (a valid name, or a cased one)."""
    try:
        validate_session_id(name.partition("+")[0])  # namespaces share the id alphabet
    except ValueError:
        return False
    return "+" not in name or cased_id(name) is not None


def _is_dir(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _upgrade_namespace(ns_fd: int, *, durable: bool, insensitive: bool) -> None:
    try:
        sessions = open_dir("sessions", ns_fd, "sessions")
    except FileNotFoundError:
        return
    try:
        for shard in sorted(os.listdir(sessions)):
            if len(shard) != 2 or shard[0] == ".":
                continue
            sfd = open_dir(shard, sessions, f"sessions/{shard}")
            try:
                if _upgrade_shard(sfd, insensitive=insensitive) and durable:
                    os.fsync(sfd)
            finally:
                os.close(sfd)
    finally:
        os.close(sessions)


def _upgrade_shard(sfd: int, *, insensitive: bool) -> bool:
    """Rename one shard's plain names with capitals; True if anything changed."""
    changed = False
    for name in sorted(os.listdir(sfd)):
        if name.startswith(_UPG):  # a case-only rename cut short: its second half
            os.rename(name, name[len(_UPG) :], src_dir_fd=sfd, dst_dir_fd=sfd)
            changed = True
            continue
        if name.startswith((".tmp.", ".trash.")):
            stem = name.partition(".")[2].partition(".")[2].rpartition(".")[0]
            stem = stem.removesuffix(COMPACT_SUFFIX)
            if stem and cased_id(stem) is None:  # a dead writer's leftover, a plain name
                if not unlink_quiet(name, sfd):
                    with contextlib.suppress(OSError):
                        _rmtree(name, sfd)
                changed = True
            continue
        if name.startswith("."):
            continue
        stem = name.removesuffix(COMPACT_SUFFIX)
        suffix = name[len(stem) :]
        if cased_id(stem) is not None:
            continue  # no capitals, or cased already
        try:
            validate_session_id(stem)
        except ValueError:
            continue  # not ours: left for doctor to report
        sid = stem
        if insensitive:  # the document written last under this name may be another id's
            named = _doc_id(sfd, name, compact=bool(suffix))
            if named is not None and named != stem and named.lower() == stem.lower():
                sid = named
        target = cased_name(sid) + suffix
        if target.lower() == name.lower():  # a change of case only: rename() may ignore it
            os.rename(name, _UPG + target, src_dir_fd=sfd, dst_dir_fd=sfd)
            os.rename(_UPG + target, target, src_dir_fd=sfd, dst_dir_fd=sfd)
        else:
            os.rename(name, target, src_dir_fd=sfd, dst_dir_fd=sfd)
        changed = True
    return changed


def _doc_id(sfd: int, name: str, *, compact: bool) -> str | None:
    """The id the session document under ``name`` names (``None``: none readable)."""
    try:
        if compact:
            raw = read_file(name, sfd, name)
        else:
            dfd = open_dir(name, sfd, name)
            try:
                raw = read_file("session.json", dfd, name)
            finally:
                os.close(dfd)
        if raw is None:
            return None
        found = _decode_sealed(raw, name).get("id")
    except (OSError, IntegrityError, ValueError):
        return None
    return found if isinstance(found, str) else None


def _rmtree(name: str, dir_fd: int) -> None:
    shutil.rmtree(name, dir_fd=dir_fd)
