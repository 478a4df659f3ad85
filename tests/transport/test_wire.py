"""Wire format: round trips for every kind and dtype, validation, and a decoder fuzz (only WireError escapes)."""

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synchub.agent.core.stream import CHANNEL_FORMATS, Chunk, Gap, StreamInfo
from synchub.agent.transport import wire


def _chunk(fmt, n=7, corrected=True, shape=(3,)):
    dt = CHANNEL_FORMATS[fmt]
    dev = np.arange(n, dtype=np.int64) * 1_000_003 - 5
    host = dev + 123_456_789_012
    if dt is None:
        data = [f"event {i} ünïcode" for i in range(n)]
    else:
        data = (np.arange(n * int(np.prod(shape))) % 100).astype(dt).reshape((n, *shape))
    c = Chunk("s", 42, data, dev, host, segment=np.arange(n, dtype=np.int32) // 3)
    if corrected:
        c = c.corrected(host - 17, np.full(n, 250), "triggers")
    return c


@pytest.mark.parametrize("fmt", list(CHANNEL_FORMATS))
@pytest.mark.parametrize("corrected", [True, False])
def test_chunk_round_trip_every_dtype(fmt, corrected):
    c = _chunk(fmt, corrected=corrected)
    frames = wire.encode_chunk("sess1", 9, c)
    frames = [bytes(memoryview(f)) for f in frames]  # as they arrive from a socket
    m = wire.decode(frames)
    assert m.kind == "chunk" and m.session == "sess1" and m.mid == 9
    d = m.chunk
    assert d.stream == "s" and d.seq == 42 and d.n == 7 and d.method == c.method
    for name in ("device_ns", "host_ns", "ref_ns", "unc_ns", "segment"):
        a, b = getattr(c, name), getattr(d, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a, b) and b.dtype.kind == a.dtype.kind
    if isinstance(c.data, list):
        assert d.data == c.data
    else:
        assert d.data.dtype == c.data.dtype and d.data.shape == c.data.shape
        assert np.array_equal(d.data, c.data)


def test_video_frames_round_trip_zero_copy():
    frames_in = np.random.default_rng(0).integers(0, 255, (5, 48, 64), dtype=np.uint8)
    c = Chunk("cam", 0, frames_in, np.arange(5), np.arange(5) + 10)
    frames = wire.encode_chunk("s", 1, c)
    assert frames[-1] is not None and isinstance(frames[-1], np.ndarray)  # sent as its own buffer, no copy
    m = wire.decode(frames)
    assert m.chunk.data.shape == (5, 48, 64) and np.array_equal(m.chunk.data, frames_in)


def test_other_kinds_round_trip():
    info = StreamInfo("imu", "imu", 200.0, 6, channel_labels=tuple("abcdef"), quality=(("ts", "kernel"),))
    m = wire.decode(wire.encode_hello("agent1", "sess", [info], "0.1.0", 10, 20))
    assert m.kind == "hello" and m.streams == [info] and m.env["agent"] == "agent1"
    g = Gap("imu", 100, 3, "device_drop", 5, 9, "lost")
    m = wire.decode(wire.encode_gap("sess", 2, g))
    assert m.gap == g
    m = wire.decode(wire.encode_meta("sess", 3, "imu", {"ntp": {"offset_ns": -5}}))
    assert m.env["meta"] == {"ntp": {"offset_ns": -5}} and m.env["stream"] == "imu"
    assert wire.decode(wire.encode_bye("sess", 4)).kind == "bye"
    assert wire.decode(wire.encode_ping("sess")).kind == "ping"
    m = wire.decode(wire.encode_welcome("sess", 5, 100, 1 << 20, "col", 6))
    assert (m.env["acked"], m.env["next"], m.env["credit"]) == (5, 6, 100)
    m = wire.decode(wire.encode_ack("sess", 7, 10, 1000, 9, rewind=True))
    assert m.env["rewind"] is True and m.env["next"] == 9
    assert wire.decode(wire.encode_refuse("sess", "no")).env["reason"] == "no"


def _env(frames):
    return msgpack.unpackb(frames[0])


def _re(env, *rest):
    return [msgpack.packb(env), *rest]


@pytest.mark.parametrize("mutate,reason", [
    (lambda e, r: (dict(e, v=2), r), "version"),
    (lambda e, r: (dict(e, k="nope"), r), "kind"),
    (lambda e, r: (dict(e, n=8), r), "bytes"),
    (lambda e, r: (dict(e, dtype="<c16"), r), "not allowed"),
    (lambda e, r: (dict(e, dtype="|O"), r), "not allowed"),
    (lambda e, r: ({k: v for k, v in e.items() if k != "seq"}, r), "seq"),
    (lambda e, r: (dict(e, seq="1"), r), "seq"),
    (lambda e, r: (dict(e, method="magic"), r), "method"),
    (lambda e, r: (e, r[:-1]), "fields"),
    (lambda e, r: (dict(e, shape=[-1]), r), "shape"),
    (lambda e, r: (dict(e, mid=0), r), "mid"),
    (lambda e, r: (dict(e, n=wire.MAX_SAMPLES + 1), r), "range"),
])
def test_bad_chunks_raise_wire_error(mutate, reason):
    frames = wire.encode_chunk("s", 1, _chunk("float32"))
    env, rest = mutate(_env(frames), [bytes(memoryview(f)) for f in frames[1:]])
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(_re(env, *rest))


def test_bad_envelopes():
    for frames in ([], [b""], [b"\xc1"], [msgpack.packb([1, 2])], [msgpack.packb({"v": 1})],
                   [b"x" * (wire.MAX_ENVELOPE + 1)], "notalist", [msgpack.packb({"v": 1, "k": "bye"})],
                   [msgpack.packb({"v": 1, "k": "gap", "session": "s", "mid": 1, "gap": {"stream": "a"}})],
                   [msgpack.packb({"v": 1, "k": "hello", "session": "s", "agent": "a", "version": "1",
                                   "utc_ns": 0, "mono_ns": 0, "streams": [{"name": "x", "type": "weird"}]}),
                    ], [msgpack.packb({1: 2})], wire.encode_bye("s", 1) + [b"extra"]):
        with pytest.raises(wire.WireError):
            wire.decode(frames)


def test_session_ids_cannot_name_paths():
    for bad in ("../../etc/x", "a/b", "*", "", "x" * 65, "a b"):
        with pytest.raises(wire.WireError, match="session"):
            wire.decode(wire.encode_bye(bad, 1))
    assert wire.decode(wire.encode_bye("Ab-9_z", 1)).session == "Ab-9_z"


def test_string_chunk_must_match_n():
    frames = wire.encode_chunk("s", 1, _chunk("string"))
    env = _env(frames)
    env["strings"] = env["strings"][:-1]
    with pytest.raises(wire.WireError, match="strings"):
        wire.decode(_re(env, *frames[1:]))


_values = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats() | st.text(max_size=8)
                       | st.binary(max_size=16), lambda c: st.lists(c, max_size=4)
                       | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_fuzz_random_frames(frames):
    try:
        wire.decode(frames)
    except wire.WireError:
        pass


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(["v", "k", "session", "mid", "stream", "seq", "n", "dtype", "shape", "method", "fields",
                            "strings", "gap", "meta", "streams", "acked", "credit", "next"]),
       value=_values, kind=st.sampled_from(["chunk", "string", "gap", "hello", "meta", "ack"]),
       drop_frame=st.booleans())
def test_fuzz_mutated_valid_messages(key, value, kind, drop_frame):
    if kind == "chunk":
        frames = wire.encode_chunk("s", 1, _chunk("int16"))
    elif kind == "string":
        frames = wire.encode_chunk("s", 1, _chunk("string"))
    elif kind == "gap":
        frames = wire.encode_gap("s", 1, Gap("a", 1, 1, "malformed"))
    elif kind == "hello":
        frames = wire.encode_hello("a", "s", [StreamInfo("x", "imu", 1.0, 1)], "1", 0, 0)
    elif kind == "meta":
        frames = wire.encode_meta("s", 1, "x", {"a": 1})
    else:
        frames = wire.encode_ack("s", 1, 1, 1)
    env = _env(frames)
    env[key] = value
    rest = [bytes(memoryview(f)) for f in frames[1:]]
    if drop_frame and rest:
        rest = rest[1:]
    try:
        m = wire.decode(_re(env, *rest))
    except wire.WireError:
        return
    if m.kind == "chunk":  # whatever passed validation is a consistent chunk
        assert len(m.chunk.data) == m.chunk.n == len(m.chunk.host_ns)
