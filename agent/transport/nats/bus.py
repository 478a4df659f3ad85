"""synchub on NATS JetStream: the pure pieces (no sockets, no asyncio): subjects, message ids, payload framing,
stream/consumer configuration, per-role permissions and the cumulative ack watermark.

**Subjects.**  Every message of an agent goes to ``PREFIX.SITE.AGENT.STREAM`` (always four tokens, so a consumer
filter, a permission or a partition mapping can address any level): ``STREAM`` is the chunk's stream name, or
``SESSION_TOKEN`` (``_s``) for the session's hello, bye, meta, gaps and clock evidence.  Names are escaped into
tokens (``token``): letters, digits, ``_`` and ``-`` stay, every other UTF-8 byte becomes ``%XX``, and a leading ``_``
is escaped too, so no stream can collide with ``_s``.  ``parse_subject`` reverses it.

**Message ids.**  ``msg_id(session, stream, seq)`` names one message for JetStream's duplicate window
(``Nats-Msg-Id``): a resend of the same chunk (same session, stream, first sample's sequence number) within
``duplicate_window_s`` is acked with ``duplicate=True`` and stored once.  Session-level messages use their message
number (``mid``) as ``seq`` on ``SESSION_TOKEN``.  Resends after the window (a long outage with a lost ack) are not
caught by the server: the consumer must drop them by (session, stream, seq), as the ZeroMQ collector does by mid.

**Payload.**  A synchub wire message is a list of frames (``agent/wire.py``); NATS carries one payload, so
``pack_frames`` lays the frames out as ``"SHF1" | u32 count | u32 length x count | frames``, each frame starting at a
multiple of 8 bytes (numpy views stay aligned), and ``unpack_frames`` returns zero-copy memoryviews for
``wire.decode``.

**Permissions.**  ``agent_permissions`` lets an agent publish only its own ``PREFIX.SITE.AGENT.*`` and read only
its own reply inbox (``inbox_prefix``) and its ``recorded_subject``, so it can neither impersonate another agent nor
read others' acks; ``collector_permissions`` allows pulling from durable consumers of the stream, acking and
announcing what is recorded, not deleting the stream.

**Partitions.**  With ``partition_mapping`` in the server's account, ``PREFIX.SITE.AGENT.STREAM`` is stored as
``PREFIX_p.N.SITE.AGENT.STREAM`` (N a hash of site and agent), so each collector takes whole agents.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PREFIX = "synchub"
SESSION_TOKEN = "_s"
PARTITION_SUFFIX = "_p"
RECORDED_SUFFIX = "_rec"
DEFAULT_STREAM = "SYNCHUB"
MSG_ID_HEADER = "Nats-Msg-Id"

_SAFE = re.compile(r"[A-Za-z0-9_-]")
_TOKEN_OK = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")
_NAME_OK = re.compile(r"[A-Za-z0-9_-]{1,64}")  # stream, consumer and account names (file names on the server)


class BusError(ValueError):
    """A name, subject or payload that does not fit the synchub NATS scheme; the text says why."""


# ---------------------------------------------------------------------------------------------------- subjects
def token(name: str) -> str:
    """Escape a site, agent or stream name into one subject token (reversible, see ``untoken``)."""
    if not isinstance(name, str) or not name:
        raise BusError(f"a subject token needs a non-empty name, got {name!r}")
    out = []
    for i, ch in enumerate(name):
        if _SAFE.fullmatch(ch) and not (i == 0 and ch == "_"):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def untoken(tok: str) -> str:
    if not _TOKEN_OK.fullmatch(tok or ""):
        raise BusError(f"{tok!r} is not an escaped synchub subject token")
    raw = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "%":
            raw.append(int(tok[i + 1:i + 3], 16))
            i += 3
        else:
            raw.extend(tok[i].encode())
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BusError(f"{tok!r} does not decode to UTF-8") from None


def _prefix(prefix: str) -> str:
    parts = prefix.split(".")
    if not prefix or not all(_NAME_OK.fullmatch(p) for p in parts):
        raise BusError(f"subject prefix {prefix!r}: dot-separated tokens of letters, digits, '_' or '-'")
    return prefix


@dataclass(frozen=True)
class Route:
    """Where one agent publishes: ``PREFIX.SITE.AGENT.*``."""

    site: str
    agent: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _prefix(self.prefix)
        token(self.site)
        token(self.agent)

    @property
    def base(self) -> str:
        return f"{self.prefix}.{token(self.site)}.{token(self.agent)}"

    def stream_subject(self, stream: str) -> str:
        """Subject of a stream's chunks."""
        if stream.startswith("_"):
            # the wire format refuses such names; token() would escape it, but say it plainly
            raise BusError(f"stream name {stream!r} may not start with '_' (reserved)")
        return f"{self.base}.{token(stream)}"

    @property
    def session_subject(self) -> str:
        """Subject of hello, bye, meta, gaps and clock evidence."""
        return f"{self.base}.{SESSION_TOKEN}"

    @property
    def wildcard(self) -> str:
        """Everything this agent may publish: exactly one token below its base (a ``>`` would let it publish
        ``PREFIX.SITE.AGENT.x.y``, which is not an address of the scheme)."""
        return f"{self.base}.*"

    @property
    def recorded_subject(self) -> str:
        """Where collectors announce what of this agent's sessions is durable in their files (``PREFIX_rec.SITE.AGENT``,
        core NATS).  A JetStream ack only means "on a quorum of nodes" (nats-server 2.9 does not fsync before
        acking), so an agent that must survive a whole-site power cut keeps its spool until this says recorded."""
        return f"{self.prefix}{RECORDED_SUFFIX}.{token(self.site)}.{token(self.agent)}"

    @property
    def inbox_prefix(self) -> str:
        """The agent's private reply inbox (``nats.connect(inbox_prefix=...)``): publish acks come back here."""
        return f"_INBOX.{token(self.site)}.{token(self.agent)}"


@dataclass(frozen=True)
class Address:
    """A parsed subject."""

    prefix: str
    site: str
    agent: str
    stream: str  # "" for the session subject
    partition: int = -1  # partitioned form only

    @property
    def is_session(self) -> bool:
        return not self.stream


def parse_subject(subject: str, prefix: str = DEFAULT_PREFIX) -> Address:
    """Parse ``PREFIX.SITE.AGENT.STREAM``, or its partitioned form ``PREFIX_p.N.SITE.AGENT.STREAM``."""
    parts = subject.split(".")
    head = _prefix(prefix).split(".")
    partition = -1
    if parts[:len(head)] == head and len(parts) == len(head) + 3:
        rest = parts[len(head):]
    elif parts[:len(head)] == [*head[:-1], head[-1] + PARTITION_SUFFIX] and len(parts) == len(head) + 4 \
            and parts[len(head)].isdigit():
        partition = int(parts[len(head)])
        rest = parts[len(head) + 1:]
    else:
        raise BusError(f"subject {subject!r}: expected {prefix}.SITE.AGENT.STREAM")
    site, agent, last = rest
    stream = "" if last == SESSION_TOKEN else untoken(last)
    return Address(prefix, untoken(site), untoken(agent), stream, partition)


def partition_mapping(partitions: int, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """(source, destination) of the server's subject mapping that spreads agents over ``partitions`` collectors:
    ``PREFIX.SITE.AGENT.STREAM`` is stored as ``PREFIX_p.N.SITE.AGENT.STREAM``, N a hash of site and agent, so all of
    one agent's messages (one session, one recording) go to one partition.  The stream then holds
    ``PREFIX_p.>``, and collector k consumes ``partition_filter(k)``."""
    if not 1 <= partitions <= 1024:
        raise BusError("partitions must be 1..1024")
    p = _prefix(prefix)
    return (f"{p}.*.*.*",
            f"{p}{PARTITION_SUFFIX}.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
            f".{{{{wildcard(3)}}}}")


def unpartitioned(subject: str) -> str:
    """``PREFIX_p.N.SITE.AGENT.STREAM`` -> ``PREFIX.SITE.AGENT.STREAM``; any other subject unchanged (matches a
    server's error about a mapped subject to what was published)."""
    parts = subject.split(".")
    for i, part in enumerate(parts[:-4]):
        if part.endswith(PARTITION_SUFFIX) and parts[i + 1].isdigit():
            return ".".join([*parts[:i], part[:-len(PARTITION_SUFFIX)], *parts[i + 2:]])
    return subject


def partition_filter(k: int, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{_prefix(prefix)}{PARTITION_SUFFIX}.{int(k)}.>"


def site_filter(site: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Consumer filter for one site's agents."""
    return f"{_prefix(prefix)}.{token(site)}.>"


def msg_id(session: str, stream: str, seq: int) -> str:
    """JetStream ``Nats-Msg-Id`` of one message: session, stream token (``SESSION_TOKEN`` for session messages, whose
    ``seq`` is their mid) and sequence number."""
    if not session or not _NAME_OK.fullmatch(session):
        raise BusError(f"session id {session!r}: 1-64 letters, digits, '_' or '-'")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise BusError(f"sequence number must be a non-negative int, got {seq!r}")
    tok = SESSION_TOKEN if stream in ("", SESSION_TOKEN) else token(stream)
    return f"{session}.{tok}.{seq}"


# ---------------------------------------------------------------------------------------------------- payload
_MAGIC = b"SHF1"
_U32 = struct.Struct("<I")
_ALIGN = 8


def _pad(n: int) -> int:
    return -n % _ALIGN


def pack_frames(frames: Iterable[Any]) -> bytes:
    """One NATS payload from a synchub wire message's frames (bytes, memoryviews or contiguous numpy arrays)."""
    views = [memoryview(f).cast("B") for f in frames]
    head = _MAGIC + _U32.pack(len(views)) + b"".join(_U32.pack(len(v)) for v in views)
    parts = [head, bytes(_pad(len(head)))]
    for v in views:
        parts.append(v)
        parts.append(bytes(_pad(len(v))))
    return b"".join(parts)


def unpack_frames(payload: bytes | bytearray | memoryview, max_frames: int = 64) -> list[memoryview]:
    """The frames of a ``pack_frames`` payload as zero-copy views; raises ``BusError`` on anything malformed."""
    mv = memoryview(payload).cast("B")
    if len(mv) < 8 or bytes(mv[:4]) != _MAGIC:
        raise BusError("payload is not a synchub frame set (bad magic)")
    count = _U32.unpack_from(mv, 4)[0]
    if not 1 <= count <= max_frames:
        raise BusError(f"payload has {count} frames (allowed 1..{max_frames})")
    head = 8 + 4 * count
    if len(mv) < head:
        raise BusError("payload truncated in its frame table")
    pos = head + _pad(head)
    out = []
    for i in range(count):
        n = _U32.unpack_from(mv, 8 + 4 * i)[0]
        if pos + n > len(mv):
            raise BusError(f"frame {i} of {n} bytes runs past the payload's end")
        out.append(mv[pos:pos + n])
        pos += n + _pad(n)
    if pos != len(mv):
        raise BusError(f"payload has {len(mv) - pos} bytes after its last frame")
    return out


# ---------------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StreamPlan:
    """The JetStream stream that holds a site's (or a fleet's) synchub messages.

    ``retention="workqueue"`` deletes a message once a collector acked it (after its fsync), so the cluster only
    holds what is not yet recorded; ``"limits"`` keeps everything for ``max_age_s`` (replay, several readers).
    ``discard="new"`` refuses publishes when full (agents keep spooling: nothing is silently dropped), never
    ``"old"``.  ``duplicate_window_s`` bounds the server's dedupe (memory grows with messages/s x window)."""

    name: str = DEFAULT_STREAM
    subjects: tuple[str, ...] = (f"{DEFAULT_PREFIX}.>",)
    replicas: int = 3
    storage: str = "file"
    retention: str = "workqueue"
    discard: str = "new"
    duplicate_window_s: float = 120.0
    max_bytes: int = 8 << 30
    max_age_s: float = 0.0  # 0: no age limit
    max_msg_size: int = 1 << 20

    def __post_init__(self) -> None:
        if not _NAME_OK.fullmatch(self.name):
            raise BusError(f"stream name {self.name!r}: 1-64 letters, digits, '_' or '-'")
        if not self.subjects:
            raise BusError("a stream needs at least one subject")
        checks = [(self.replicas in (1, 3, 5), "replicas must be 1, 3 or 5"),
                  (self.storage in ("file", "memory"), "storage must be file or memory"),
                  (self.retention in ("limits", "workqueue", "interest"), "retention: limits, workqueue or interest"),
                  (self.discard == "new", "discard must be 'new' (discarding old messages loses data silently)"),
                  (self.duplicate_window_s > 0, "duplicate window must be > 0"),
                  (self.max_bytes > 0 and self.max_msg_size > 0, "max_bytes and max_msg_size must be > 0"),
                  (not self.max_age_s or self.max_age_s >= self.duplicate_window_s,
                   "max_age must be 0 or at least the duplicate window")]
        for ok, why in checks:
            if not ok:
                raise BusError(f"stream {self.name}: {why}")

    def api_config(self) -> dict[str, Any]:
        """The ``$JS.API.STREAM.CREATE`` request (durations in ns), also usable as
        ``nats.js.api.StreamConfig.from_response(...)``."""
        return {"name": self.name, "subjects": list(self.subjects), "num_replicas": self.replicas,
                "storage": self.storage, "retention": self.retention, "discard": self.discard,
                "duplicate_window": int(self.duplicate_window_s * 1e9), "max_bytes": int(self.max_bytes),
                "max_age": int(self.max_age_s * 1e9), "max_msg_size": int(self.max_msg_size),
                "max_msgs": -1, "max_consumers": -1, "allow_rollup_hdrs": False, "deny_delete": True,
                "deny_purge": False}


@dataclass(frozen=True)
class ConsumerPlan:
    """A collector's durable pull consumer.  Explicit acks, sent only after the message is durable in the file;
    ``ack_wait_s`` must exceed the collector's fsync interval; ``max_ack_pending`` bounds what one collector holds
    unacked (JetStream's credit window towards collectors)."""

    durable: str = "collector"
    filter_subject: str = f"{DEFAULT_PREFIX}.>"
    ack_wait_s: float = 30.0
    max_ack_pending: int = 4096
    max_deliver: int = -1  # never give up on a message
    deliver_policy: str = "all"

    def __post_init__(self) -> None:
        if not _NAME_OK.fullmatch(self.durable):
            raise BusError(f"consumer name {self.durable!r}: 1-64 letters, digits, '_' or '-'")
        if self.ack_wait_s <= 0 or self.max_ack_pending < 1:
            raise BusError("ack_wait_s must be > 0 and max_ack_pending >= 1")

    def api_config(self) -> dict[str, Any]:
        return {"durable_name": self.durable, "name": self.durable, "filter_subject": self.filter_subject,
                "ack_policy": "explicit", "ack_wait": int(self.ack_wait_s * 1e9),
                "max_ack_pending": int(self.max_ack_pending), "max_deliver": int(self.max_deliver),
                "deliver_policy": self.deliver_policy, "replay_policy": "instant"}


# ---------------------------------------------------------------------------------------------------- permissions
def agent_permissions(route: Route) -> dict[str, Any]:
    """An agent publishes only its own subjects and reads only its own reply inbox.  The partitioned form of its
    subjects is allowed too: nats-server 2.9 checks permissions after the account's subject mapping."""
    partitioned = f"{route.prefix}{PARTITION_SUFFIX}.*.{token(route.site)}.{token(route.agent)}.*"
    return {"publish": {"allow": [route.wildcard, partitioned]},
            "subscribe": {"allow": [f"{route.inbox_prefix}.>", route.recorded_subject]}}


def collector_permissions(stream: str = DEFAULT_STREAM, inbox_prefix: str = "_INBOX",
                          prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """A collector finds the stream, makes/reads its durable consumers, pulls and acks, and announces what is
    recorded (``Route.recorded_subject``); it cannot delete or purge the stream or publish data."""
    api = "$JS.API"
    return {"publish": {"allow": [f"{_prefix(prefix)}{RECORDED_SUFFIX}.>", f"{api}.INFO", f"{api}.STREAM.NAMES", f"{api}.STREAM.INFO.{stream}",
                                  f"{api}.CONSUMER.CREATE.{stream}.>", f"{api}.CONSUMER.DURABLE.CREATE.{stream}.*",
                                  f"{api}.CONSUMER.INFO.{stream}.*", f"{api}.CONSUMER.MSG.NEXT.{stream}.*",
                                  f"$JS.ACK.{stream}.>"]},
            "subscribe": {"allow": [f"{inbox_prefix}.>"]}}


# ---------------------------------------------------------------------------------------------------- acks
@dataclass
class AckWatermark:
    """Turns per-message publish acks (which may arrive out of order with several in flight) into the cumulative
    "acked through mid N" that the spool takes (``Spool.ack``).  Pure; one per session."""

    acked: int = 0  # every mid <= acked is acked
    _ahead: set[int] = field(default_factory=set)

    def ack(self, mid: int, last: int | None = None) -> int:
        """Record ``mid`` (or a span ``mid..last``) as acked; returns the new cumulative watermark."""
        for m in range(mid, (last if last is not None else mid) + 1):
            if m > self.acked:
                self._ahead.add(m)
        while self.acked + 1 in self._ahead:
            self.acked += 1
            self._ahead.discard(self.acked)
        return self.acked

    @property
    def holes(self) -> int:
        """Mids acked beyond the watermark (waiting for an earlier one)."""
        return len(self._ahead)
