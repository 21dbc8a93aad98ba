"""The codec: strict JSON-native encoding, limits, record formats and their round trips."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from sessionstore import (
    Checkpoint,
    Event,
    IntegrityError,
    QuotaExceededError,
    SerializationError,
    Session,
    Status,
    UnsupportedFormatError,
    codec,
)
from sessionstore.codec import (
    FORMAT_VERSION,
    canonical_json,
    checkpoint_digest,
    checkpoint_from_record,
    checkpoint_to_record,
    decode_json,
    dumps_record,
    encode_json,
    encode_user_dict,
    event_from_record,
    event_to_record,
    new_id,
    session_from_record,
    session_to_record,
    sha256_hex,
)

LIMIT = 1024 * 1024


@dataclasses.dataclass
class _Point:
    x: int
    y: int


class _Thing:
    pass


def _nested_lists(depth: int) -> list[Any]:
    """``depth`` lists nested inside each other: ``[[[...]]]``."""
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        child: list[Any] = []
        inner.append(child)
        inner = child
    return outer


# --------------------------------------------------------------------------- strictness

BAD_VALUES: list[tuple[str, Any, str]] = [
    ("set", {1, 2}, "set"),
    ("frozenset", frozenset({"a"}), "frozenset"),
    ("tuple", (1, 2), "tuple"),
    ("bytes", b"raw", "bytes"),
    ("bytearray", bytearray(b"raw"), "bytearray"),
    ("datetime", datetime(2030, 1, 1, tzinfo=UTC), "datetime"),
    ("naive-datetime", datetime(2030, 1, 1), "datetime"),
    ("date", date(2030, 1, 1), "date"),
    ("uuid", uuid.UUID(int=7), "UUID"),
    ("decimal", decimal.Decimal("1.5"), "Decimal"),
    ("nan", float("nan"), "non-finite"),
    ("inf", float("inf"), "non-finite"),
    ("-inf", float("-inf"), "non-finite"),
    ("object", _Thing(), "_Thing"),
    ("dataclass", _Point(1, 2), "_Point"),
    ("timedelta", timedelta(seconds=1), "timedelta"),
    ("too-big-int", 2**64, "64-bit"),
    ("int64-max-plus-one", 2**63, "signed 64-bit"),
    ("uint64-max", 2**64 - 1, "signed 64-bit"),
    ("too-small-int", -(2**63) - 1, "64-bit"),
    ("huge-int", 10**40, "64-bit"),
]


@pytest.mark.parametrize(("name", "bad", "word"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_non_json_native_value_names_its_path(name: str, bad: Any, word: str) -> None:
    value = {"a": [0, {"b": bad}], "ok": "fine"}
    with pytest.raises(SerializationError) as info:
        encode_user_dict(value, "data", LIMIT)
    assert info.value.path == "data.a[1].b"
    assert str(info.value).startswith("data.a[1].b:")
    assert word in str(info.value)


@pytest.mark.parametrize(("name", "bad", "word"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_non_json_native_value_at_top_level_key(name: str, bad: Any, word: str) -> None:
    with pytest.raises(SerializationError) as info:
        encode_user_dict({"k": bad}, "metadata", LIMIT)
    assert info.value.path == "metadata.k"


@pytest.mark.parametrize(("name", "bad", "word"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_encode_json_is_as_strict(name: str, bad: Any, word: str) -> None:
    with pytest.raises(SerializationError) as info:
        encode_json([{"x": bad}], "value")
    assert info.value.path == "value[0].x"


@pytest.mark.parametrize("key", [1, 1.5, True, None, (1, 2)])
def test_non_str_dict_keys_are_refused(key: Any) -> None:
    with pytest.raises(SerializationError) as info:
        encode_user_dict({"a": {key: "v"}}, "data", LIMIT)
    assert info.value.path == f"data.a[{key!r}]"
    assert "keys must be str" in str(info.value)


def test_serialization_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_user_dict({"a": {1}}, "data", LIMIT)


def test_top_level_must_be_a_dict() -> None:
    for bad in ([1, 2], "text", 3, None):
        with pytest.raises(SerializationError) as info:
            encode_user_dict(bad, "data", LIMIT)
        assert info.value.path == "data"


def test_mapping_is_accepted_as_dict() -> None:
    from types import MappingProxyType

    raw, copy = encode_user_dict(MappingProxyType({"a": 1}), "data", LIMIT)
    assert copy == {"a": 1}
    assert type(copy) is dict
    assert orjson.loads(raw) == {"a": 1}


def test_json_native_values_round_trip_exactly() -> None:
    value: dict[str, Any] = {
        "str": "héllo \u2603 \x00 nul",
        "int": 42,
        "neg": -7,
        "int64_max": 2**63 - 1,
        "int64_min": -(2**63),
        "strict_int_limit": 2**53,  # orjson's strict-integer limit: the fast path
        "over_strict_int_limit": 2**53 + 1,  # the walk (and a second encoding)
        "under_strict_int_limit": -(2**53) - 1,
        "float": 1.5,
        "float_int": 1.0,
        "neg_zero": -0.0,
        "tiny": 5e-324,
        "big": 1.7976931348623157e308,
        "bool": True,
        "false": False,
        "none": None,
        "list": [1, "two", [3.0], {"four": None}],
        "empty_list": [],
        "empty_dict": {},
        "nested": {"a": {"b": {"c": [True, False]}}},
        "": "empty key",
    }
    raw, copy = encode_user_dict(value, "data", LIMIT)
    assert copy == value
    assert orjson.loads(raw) == value
    # types survive: 1.0 stays a float, ints stay ints, bools stay bools
    assert type(copy["float_int"]) is float
    assert type(copy["int"]) is int
    assert type(copy["bool"]) is bool
    assert copy is not value
    assert copy["list"] is not value["list"]


def test_copy_is_private() -> None:
    value: dict[str, Any] = {"a": [1, 2], "b": {"c": 1}}
    _, copy = encode_user_dict(value, "data", LIMIT)
    value["a"].append(3)
    value["b"]["c"] = 99
    assert copy == {"a": [1, 2], "b": {"c": 1}}


def test_str_enum_is_stored_as_its_base_type() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    _, copy = encode_user_dict({"c": Color.RED}, "data", LIMIT)
    assert copy == {"c": "red"}
    assert type(copy["c"]) is str


def test_nesting_within_the_limit_is_fine() -> None:
    value = {"a": _nested_lists(200)}
    _, copy = encode_user_dict(value, "data", LIMIT)
    assert copy == value


def test_the_deepest_allowed_nesting_round_trips() -> None:
    """MAX_DEPTH containers (the dict and 253 lists) is the limit, on every orjson."""
    value = {"a": _nested_lists(codec.MAX_DEPTH - 1)}
    raw, copy = encode_user_dict(value, "data", 10_000)
    assert copy == value
    assert encode_json(value) == raw


@pytest.mark.parametrize("depth", [254, 255, 300, 5000])
def test_nesting_deeper_than_orjson_allows_raises_serialization_error(depth: int) -> None:
    with pytest.raises(SerializationError) as info:
        encode_user_dict({"a": _nested_lists(depth)}, "data", LIMIT)
    assert "nested deeper" in str(info.value)
    assert info.value.path.startswith("data.a[0]")


def test_deep_dicts_also_refused() -> None:
    value: dict[str, Any] = {}
    node = value
    for _ in range(400):
        child: dict[str, Any] = {}
        node["n"] = child
        node = child
    with pytest.raises(SerializationError) as info:
        encode_user_dict(value, "data", LIMIT)
    assert info.value.path.startswith("data.n.n.n")


def test_over_size_payload_raises_quota_exceeded() -> None:
    value = {"blob": "x" * 2000}
    raw, _ = encode_user_dict(value, "data", 2000 + 20)
    assert len(raw) == len(b'{"blob":""}') + 2000
    with pytest.raises(QuotaExceededError) as info:
        encode_user_dict(value, "data", 2000)
    assert "data" in str(info.value)
    assert "2000" in str(info.value)


def test_size_limit_is_inclusive() -> None:
    value = {"a": "b"}
    size = len(orjson.dumps(value))
    encode_user_dict(value, "data", size)
    with pytest.raises(QuotaExceededError):
        encode_user_dict(value, "data", size - 1)


def test_strictness_is_checked_before_size() -> None:
    # A non-native value is reported as such even when the payload is also too large.
    with pytest.raises(SerializationError):
        encode_user_dict({"a": "x" * 100, "b": {1, 2}}, "data", 10)


# --------------------------------------------------------------------------- helpers


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [2, {"d": 1, "c": 2}]}) == canonical_json(
        {"a": [2, {"c": 2, "d": 1}], "b": 1}
    )
    assert canonical_json(1) != canonical_json(1.0)
    assert canonical_json(1) != canonical_json(True)


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_new_id_is_a_ulid() -> None:
    ids = [new_id() for _ in range(50)]
    assert len(set(ids)) == 50
    for sid in ids:
        assert len(sid) == 26
        assert sid.isalnum()
        assert sid.upper() == sid


def test_decode_json_garbage_raises_integrity_error_naming_the_record() -> None:
    for garbage in (b"{not json", b"", b"\xff\xfe", "[1,", b'{"a":1}trailing'):
        with pytest.raises(IntegrityError) as info:
            decode_json(garbage, "sess-1")
        assert info.value.record == "sess-1"
    assert decode_json(b'{"a": [1]}') == {"a": [1]}


# --------------------------------------------------------------------------- records


def _session(**changes: Any) -> Session:
    base = Session(
        id="01HZX3ABCDEFGHJKMNPQRSTVWX",
        processor_id="agent-7",
        status=Status.PAUSED,
        data={"goal": "triage", "n": [1, 2.5, None, True], "nested": {"a": {"b": "c"}}},
        metadata={"user": "u1", "score": 1.0},
        tags=frozenset({"prod", "eu"}),
        created_at=datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        updated_at=datetime(2030, 1, 2, 3, 4, 6, 999000, tzinfo=UTC),
        expires_at=datetime(2030, 1, 3, 0, 0, 0, 1000, tzinfo=UTC),
        version=17,
        event_count=3,
        last_seq=9,
        group="grp-1",
    )
    return dataclasses.replace(base, **changes)


def _through_bytes(rec: dict[str, Any]) -> Any:
    return orjson.loads(dumps_record(rec))


def _assert_utc_ms(value: datetime | None) -> None:
    assert value is not None
    assert value.utcoffset() == timedelta(0)
    assert value.microsecond % 1000 == 0


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"expires_at": None},
        {"processor_id": None, "group": None, "tags": frozenset(), "data": {}, "metadata": {}},
        {"status": Status.EXPIRED, "version": 1, "event_count": 0, "last_seq": 0},
        {"created_at": datetime(1999, 12, 31, 23, 59, 59, 0, tzinfo=UTC)},
    ],
)
def test_session_record_round_trip_keeps_every_field(changes: dict[str, Any]) -> None:
    session = _session(**changes)
    back = session_from_record(_through_bytes(session_to_record(session)))
    assert back == session
    for f in dataclasses.fields(Session):
        assert getattr(back, f.name) == getattr(session, f.name), f.name
    assert type(back.status) is Status
    assert type(back.tags) is frozenset
    _assert_utc_ms(back.created_at)
    _assert_utc_ms(back.updated_at)
    if session.expires_at is not None:
        _assert_utc_ms(back.expires_at)
    assert type(back.metadata["score"]) is float if "score" in back.metadata else True
    # built without the frozen __init__ (fast_session): still a frozen Session
    assert type(back) is Session
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.version = 99  # type: ignore[misc]


def test_session_record_reuses_pre_encoded_payloads() -> None:
    session = _session()
    data_json = orjson.dumps(session.data)
    meta_json = orjson.dumps(session.metadata)
    rec = session_to_record(session, data_json, meta_json)
    assert session_from_record(_through_bytes(rec)) == session


def test_session_record_timestamps_are_utc_z_strings() -> None:
    rec = _through_bytes(session_to_record(_session()))
    assert rec["v"] == FORMAT_VERSION
    assert rec["created_at"] == "2030-01-02T03:04:05.123000Z"
    assert rec["expires_at"] == "2030-01-03T00:00:00.001000Z"
    assert rec["tags"] == ["eu", "prod"]


def test_session_record_with_non_utc_offset_is_read_as_the_same_instant() -> None:
    rec = _through_bytes(session_to_record(_session()))
    rec["created_at"] = "2030-01-02T05:04:05.123+02:00"
    back = session_from_record(rec)
    assert back.created_at == datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert back.created_at.tzinfo == timezone(timedelta(hours=2))


def test_event_record_round_trip() -> None:
    event = Event(
        seq=12,
        type="tool_call",
        at=datetime(2030, 5, 6, 7, 8, 9, 456000, tzinfo=UTC),
        data={"name": "search", "args": {"q": "x", "k": [1, 2]}, "f": 0.5},
    )
    back = event_from_record(_through_bytes(event_to_record(event)))
    assert back == event
    _assert_utc_ms(back.at)


def _checkpoint(**changes: Any) -> Checkpoint:
    cp = Checkpoint(
        id=new_id(),
        session_id="sess-1",
        label="before-tool",
        created_at=datetime(2030, 1, 1, 0, 0, 1, 5000, tzinfo=UTC),
        version=4,
        status=Status.ACTIVE,
        data={"a": [1, {"b": 2.0}]},
        metadata={"m": True},
        tags=frozenset({"x", "y"}),
        event_count=2,
        last_seq=5,
        digest="",
    )
    cp = dataclasses.replace(cp, **changes)
    return dataclasses.replace(cp, digest=checkpoint_digest(cp))


@pytest.mark.parametrize("changes", [{}, {"label": None, "tags": frozenset(), "data": {}}])
def test_checkpoint_record_round_trip(changes: dict[str, Any]) -> None:
    cp = _checkpoint(**changes)
    back = checkpoint_from_record(_through_bytes(checkpoint_to_record(cp)))
    assert back == cp
    assert checkpoint_digest(back) == back.digest
    _assert_utc_ms(back.created_at)


def test_checkpoint_digest_covers_the_content() -> None:
    cp = _checkpoint()
    assert len(cp.digest) == 64
    for changes in (
        {"data": {"a": [1, {"b": 2}]}},  # 2.0 -> 2 changes the canonical encoding
        {"metadata": {"m": 1}},
        {"label": "other"},
        {"version": 5},
        {"status": Status.FAILED},
        {"tags": frozenset({"x"})},
        {"event_count": 3},
        {"last_seq": 6},
        {"created_at": cp.created_at + timedelta(milliseconds=1)},
    ):
        assert checkpoint_digest(dataclasses.replace(cp, **changes)) != cp.digest, changes
    # the digest does not depend on dict key order
    reordered = dataclasses.replace(cp, data={"a": [1, {"b": 2.0}]}, metadata={"m": True})
    assert checkpoint_digest(reordered) == cp.digest


def _record_and_reader(kind: str) -> tuple[dict[str, Any], Callable[[Any, str], object]]:
    if kind == "session":
        return _through_bytes(session_to_record(_session())), session_from_record
    return _through_bytes(checkpoint_to_record(_checkpoint())), checkpoint_from_record


@pytest.mark.parametrize("kind", ["session", "checkpoint"])
def test_newer_format_version_is_refused(kind: str) -> None:
    rec, read = _record_and_reader(kind)
    rec["v"] = FORMAT_VERSION + 1
    with pytest.raises(UnsupportedFormatError) as info:
        read(rec, "rec-1")
    assert info.value.record == "rec-1"
    assert "upgrade" in str(info.value)
    assert isinstance(info.value, IntegrityError)


@pytest.mark.parametrize("version", [None, 0, -1, "1", 1.0, [1]])
@pytest.mark.parametrize("kind", ["session", "checkpoint"])
def test_missing_or_bad_format_version_is_an_integrity_error(kind: str, version: Any) -> None:
    rec, read = _record_and_reader(kind)
    if version is None:
        del rec["v"]
    else:
        rec["v"] = version
    with pytest.raises(IntegrityError) as info:
        read(rec, "r")
    assert not isinstance(info.value, UnsupportedFormatError)


def _session_garbage() -> list[tuple[str, Any]]:
    good = _through_bytes(session_to_record(_session()))
    cases: list[tuple[str, Any]] = [
        ("not-a-dict", "text"),
        ("list", [good]),
        ("none", None),
    ]
    for field in (
        "id",
        "processor_id",
        "status",
        "tags",
        "created_at",
        "updated_at",
        "expires_at",
        "version",
        "event_count",
        "last_seq",
        "data",
        "metadata",
    ):
        missing = dict(good)
        del missing[field]
        cases.append((f"missing-{field}", missing))
    for field, value in (
        ("status", "bogus"),
        ("status", 3),
        ("tags", "prod"),
        ("tags", [1, 2]),
        ("created_at", "yesterday"),
        ("created_at", 12345),
        ("updated_at", "2030-01-01T00:00:00"),  # naive
        ("expires_at", "not a time"),
        ("version", -1),
        ("version", "3"),
        ("event_count", 1.5),
        ("last_seq", None),
        ("data", [1]),
        ("metadata", "m"),
    ):
        bad = dict(good)
        bad[field] = value
        cases.append((f"{field}={value!r}", bad))
    return cases


@pytest.mark.parametrize(
    ("name", "rec"), _session_garbage(), ids=[c[0] for c in _session_garbage()]
)
def test_garbage_session_record_raises_integrity_error(name: str, rec: Any) -> None:
    with pytest.raises(IntegrityError) as info:
        session_from_record(rec, "sess-x")
    assert info.value.record == "sess-x"


def _checkpoint_garbage() -> list[tuple[str, Any]]:
    good = _through_bytes(checkpoint_to_record(_checkpoint()))
    cases: list[tuple[str, Any]] = [("not-a-dict", 7)]
    for field in ("id", "session_id", "label", "created_at", "version", "status", "digest"):
        missing = dict(good)
        del missing[field]
        cases.append((f"missing-{field}", missing))
    for field, value in (
        ("version", [1]),
        ("version", "x"),
        ("event_count", {"a": 1}),
        ("last_seq", None),
        ("status", "nope"),
        ("created_at", "never"),
        ("tags", [[1]]),
        ("tags", "x"),
        ("data", "d"),
        ("metadata", [1]),
    ):
        bad = dict(good)
        bad[field] = value
        cases.append((f"{field}={value!r}", bad))
    return cases


@pytest.mark.parametrize(
    ("name", "rec"), _checkpoint_garbage(), ids=[c[0] for c in _checkpoint_garbage()]
)
def test_garbage_checkpoint_record_raises_integrity_error(name: str, rec: Any) -> None:
    with pytest.raises(IntegrityError) as info:
        checkpoint_from_record(rec, "cp-x")
    assert info.value.record == "cp-x"


@pytest.mark.parametrize(
    "rec",
    [
        "x",
        {},
        {"seq": 1, "type": "t", "at": "2030-01-01T00:00:00Z"},
        {"seq": "1", "type": "t", "at": "2030-01-01T00:00:00Z", "data": {}},
        {"seq": 1, "type": 5, "at": "2030-01-01T00:00:00Z", "data": {}},
        {"seq": 1, "type": "t", "at": "2030-01-01T00:00:00Z", "data": []},
        {"seq": 1, "type": "t", "at": "later", "data": {}},
        {"seq": 1, "type": "t", "at": "2030-01-01T00:00:00", "data": {}},
    ],
)
def test_garbage_event_record_raises_integrity_error(rec: Any) -> None:
    with pytest.raises(IntegrityError) as info:
        event_from_record(rec, "ev-x")
    assert info.value.record == "ev-x"


def test_integers_are_signed_64_bit_in_every_encoder() -> None:
    """Signed 64-bit: the bounds pass, one past either bound is refused naming its path,
    by ``encode_user_dict`` (data, metadata, events) and ``encode_json`` (filters)."""
    for ok in (2**63 - 1, -(2**63), 2**53 + 1):
        assert orjson.loads(encode_user_dict({"n": [ok]}, "data", LIMIT)[0]) == {"n": [ok]}
        assert orjson.loads(encode_json({"n": ok})) == {"n": ok}
    for bad in (2**63, 2**64 - 1, -(2**63) - 1):
        with pytest.raises(SerializationError, match="signed 64-bit") as info:
            encode_user_dict({"n": [1, bad]}, "data", LIMIT)
        assert info.value.path == "data.n[1]"
        with pytest.raises(SerializationError, match="signed 64-bit"):
            encode_json({"n": bad}, "filter")
    # a big but valid integer next to something else that is bad: the other one is named
    with pytest.raises(SerializationError, match="datetime") as info:
        encode_user_dict({"n": 2**60, "when": datetime.now()}, "data", LIMIT)
    assert info.value.path == "data.when"
