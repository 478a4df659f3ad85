"""``synchub align SESSION.mcap``, two-sided, in bounded memory: the session read twice, a chunk at a time.

Pass 1 feeds the recorded clock config's ``StreamClocks`` as the session is read (``engine.SessionFeed``: the same
calls in the same order as ``replay.feed_offline``, so the same numbers as the in-memory rerun); pass 2 corrects
each chunk message (``mcap_write.recorrect``), copying the recording to ``--out`` with the new correction layer, and
summarizes per stream how far it moved from what the agent did live.  Medians are over every sample up to
``Decimated.cap`` per stream, then over an evenly thinned share of them."""

from __future__ import annotations

import numpy as np

from synchub.agent.align.files.engine import SessionFeed
from synchub.agent.core.stream import Chunk
from synchub.agent.formats.file_output import atomic_output
from synchub.agent.formats.mcap_write import recorrect
from synchub.agent.formats.readers.mcap_parts import McapInput


class Decimated:
    """The values whose index (over all added) is a multiple of ``stride``; the stride doubles whenever more than
    ``cap`` are held: bounded, evenly spread, exact below ``cap``."""

    def __init__(self, cap: int = 1 << 18):
        self.cap = cap
        self.stride = 1
        self.seen = 0
        self.parts: list[np.ndarray] = []
        self.held = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        v = values[(-self.seen) % self.stride::self.stride]
        self.seen += len(values)
        self.parts.append(v)
        self.held += len(v)
        if self.held > self.cap:
            kept = np.concatenate(self.parts)[::2]  # index 0 is always kept: every other is a multiple of 2 x stride
            self.parts, self.held, self.stride = [kept], len(kept), self.stride * 2

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)

    def median(self) -> float | None:
        return float(np.median(self.values())) if self.held else None


class _Stats:
    def __init__(self):
        self.n = 0
        self.method = ""
        self.unc = Decimated()
        self.moved = Decimated()


def rerun_streamed(reader: McapInput, out=None, progress=None) -> dict:
    """The two-sided rerun of a synchub session (see the module docstring); with ``out`` (one part file only) the
    re-corrected copy, written whole or not at all.  Returns the per-stream summary."""
    progress = progress or (lambda *a: None)
    infos = {s.key: s.info for s in reader.streams}
    feed = SessionFeed(infos, reader.clock_config, reader.evidence_items())
    evidence = 0
    for item in reader.read(evidence=True):
        progress("evidence", reader.path, reader.fraction)
        feed.take(item)
        evidence += type(item).__name__ == "Recorded"
    feed.finish()
    stats: dict[str, _Stats] = {}

    def correct(stream: str, d: dict) -> Chunk | None:
        info = infos.get(stream)
        if info is None or info.type == "fused" or not d.get("n"):
            return None
        dev = np.frombuffer(d["device_ns"], "<i8")
        host = np.frombuffer(d["host_ns"], "<i8")
        c = feed.clocks.correct(Chunk(stream, int(d["seq"]), np.zeros((len(dev), 0)), dev, host), smooth=True)
        st = stats.setdefault(stream, _Stats())
        st.n += c.n
        st.method = c.method
        st.unc.add(c.unc_ns)
        if d.get("ref_ns") is not None:
            st.moved.add(np.abs(c.ref_ns - np.frombuffer(d["ref_ns"], "<i8")))
        progress("correct", reader.path, None)
        return c

    if out is not None:
        with atomic_output(out) as fo:
            recorrect(reader.paths[0], correct, fo)
    else:
        for p in reader.paths:
            recorrect(p, correct)
    streams = []
    for name in sorted(stats):
        st = stats[name]
        moved = st.moved.median()
        streams.append({"name": name, "method": st.method, "samples": st.n,
                        "median_unc_us": st.unc.median() / 1e3,
                        "median_change_vs_live_us": None if moved is None else moved / 1e3})
    return {"evidence": evidence, "streams": streams, "aligner_offsets_left_out": feed.offsets_left_out}
