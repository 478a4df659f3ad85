"""``Hub``: the sink every driver reports to (``synchub.drivers.base.DriverSink``).  It assigns per-stream sequence
numbers (contiguous, never reused) and puts samples, gaps, clock resets and evidence on the queue, in order per
stream; problems are counted and logged, never silent.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import numpy as np

from synchub.agent.core.evidence import ClockReset, Evidence
from synchub.agent.core.stream import Chunk, Gap, StreamInfo, StreamStats

from .chunkqueue import BoundedQueue, MetaRecord

log = logging.getLogger("synchub.pipeline")


class Hub:
    """The sink every driver reports to: assigns sequence numbers and queues samples, gaps and evidence."""

    def __init__(self, infos: dict[str, StreamInfo], queue: BoundedQueue):
        self.infos = dict(infos)
        self.queue = queue
        self.stats: dict[str, StreamStats] = {name: StreamStats() for name in infos}
        self._next_seq = dict.fromkeys(infos, 0)
        self.last_host_ns = dict.fromkeys(infos, 0)  # host receive time of each stream's latest sample (0: none yet)
        # one lock per stream: sequence numbers and queue order stay consistent without serializing drivers
        self._locks = {name: threading.Lock() for name in infos}
        self.problems: collections.Counter = collections.Counter()
        self.marks = None  # the sender's ``Marks``: what was read, kept through a kill -9

    def _known(self, stream: str) -> bool:
        if stream in self.infos:
            return True
        self.problems[("unknown_stream", stream)] += 1
        if self.problems[("unknown_stream", stream)] == 1:
            log.error("driver reported samples for unknown stream %r; dropped (counted)", stream)
        return False

    def samples(self, stream: str, data: Any, device_ns: np.ndarray, host_ns: np.ndarray) -> None:
        if not self._known(stream) or len(device_ns) == 0:
            return
        with self._locks[stream]:
            seq = self._next_seq[stream]
            self._next_seq[stream] = seq + len(device_ns)
            if self.marks is not None:
                self.marks.read(stream, seq + len(device_ns))
            st = self.stats[stream]
            st.samples += len(device_ns)
            st.chunks += 1
            self.last_host_ns[stream] = int(host_ns[-1])
            chunk = Chunk(stream=stream, seq=seq, data=data, device_ns=device_ns, host_ns=host_ns)
            # put under the lock so chunks of one stream enter the queue in sequence order
            self.queue.put(chunk)

    def gap(self, stream: str, count: int, cause: str, device_ns_from: int = 0, device_ns_to: int = 0,
            detail: str = "") -> None:
        if not self._known(stream):
            return
        with self._locks[stream]:
            g = Gap(stream=stream, seq=self._next_seq[stream], count=int(count), cause=cause,
                    device_ns_from=int(device_ns_from), device_ns_to=int(device_ns_to), detail=detail)
            st = self.stats[stream]
            st.gaps += 1
            st.dropped += int(count)
            st.count(cause, int(count))
            self.queue.put(g)

    def reset(self, stream: str, device_ns: int, previous_ns: int = 0, detail: str = "") -> None:
        if not self._known(stream):
            return
        with self._locks[stream]:
            self.stats[stream].resets += 1
            self.queue.put(ClockReset(stream, self._next_seq[stream], int(device_ns), int(previous_ns), detail))

    def evidence(self, item: Evidence) -> None:
        self.queue.put(item)

    def problem(self, stream: str, reason: str, detail: str = "") -> None:
        key = (reason, stream)
        self.problems[key] += 1
        if stream in self.stats:
            self.stats[stream].count(reason)
            if reason == "malformed":
                self.stats[stream].malformed += 1
        n = self.problems[key]
        if n <= 3 or n % 1000 == 0:
            log.warning("%s: %s (%d so far)%s", stream, reason, n, f": {detail}" if detail else "")

    def meta(self, stream: str, meta: dict) -> None:
        self.queue.put(MetaRecord(stream, meta))
