"""What ``synchub bench fleet`` counts from the recordings: per agent session and stream, the samples recorded once,
twice (duplicated) or never (lost, against what the agent says it sent), and each sample's latency from its time
on the agent to the collector writing it (``recv_ns - host_ns``, one machine's ``CLOCK_MONOTONIC``), outside given
windows (the fault windows).  Pure functions over the files ``read_session`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synchub.agent.formats.mcap_read import read_session


def session_files(out_dirs: list[Path]) -> dict[str, list[Path]]:
    """``{session id: its part files}`` in the collectors' output folders (``AGENT-STAMP-SESSION-pN.mcap``)."""
    by: dict[str, list[Path]] = {}
    for out in out_dirs:
        for p in sorted(Path(out).glob("*.mcap")):
            sid = p.stem.rsplit("-p", 1)[0].rsplit("-", 1)[1]
            by.setdefault(sid, []).append(p)
    return by


def _pct(a: np.ndarray, p: float) -> float | None:
    return round(float(np.percentile(a, p)) / 1e6, 2) if a.size else None


def count(agents: dict[str, dict], out_dirs: list[Path], windows: list[tuple[int, int]] = ()) -> dict[str, Any]:
    """``agents``: the workers' per-agent results (``session``, ``sent`` per stream).  Returns totals, per-agent
    problems, and latency percentiles (ms) overall and outside ``windows`` (monotonic ns spans)."""
    files = session_files(out_dirs)
    lost = dup = recorded = sent_total = 0
    problems: dict[str, dict] = {}
    lat_all, lat_out, lat_last = [], [], []
    parts = []
    for name, a in agents.items():
        paths = files.get(a["session"], [])
        parts.append(len(paths))
        data = read_session(paths) if paths else {"streams": {}}
        for stream, sent in a["sent"].items():
            st = data["streams"].get(stream)
            seq = st["seq"] if st is not None else np.zeros(0, np.int64)
            uniq = np.unique(seq)
            d = int(seq.size - uniq.size)
            n_lost = int(sent - np.count_nonzero(uniq < sent))
            extra = int(np.count_nonzero(uniq >= sent))
            lost, dup, recorded, sent_total = lost + n_lost, dup + d, recorded + uniq.size, sent_total + sent
            if n_lost or d or extra:
                problems.setdefault(name, {})[stream] = {"sent": sent, "lost": n_lost, "duplicated": d,
                                                         "unexpected": extra}
            if st is None or not seq.size:
                continue
            lat = st["recv_ns"] - st["host_ns"]
            lat_all.append(lat)
            keep = np.ones(lat.size, bool)
            for a0, a1 in windows:
                keep &= ~((st["host_ns"] >= a0) & (st["host_ns"] <= a1))
            lat_out.append(lat[keep])
            ends = np.r_[np.flatnonzero(np.diff(st["recv_ns"]) != 0), seq.size - 1]  # last sample of each chunk
            lat_last.append(lat[ends][keep[ends]])
    def cat(xs):
        return np.concatenate(xs) if xs else np.zeros(0, np.int64)

    la, lo, ll = cat(lat_all), cat(lat_out), cat(lat_last)
    return {"samples_sent": sent_total, "samples_recorded": recorded, "lost": lost, "duplicated": dup,
            "problems": problems, "sessions_with_parts": {str(k): parts.count(k) for k in sorted(set(parts))},
            "latency_ms": {"all": {"p50": _pct(la, 50), "p99": _pct(la, 99), "max": _pct(la, 100)},
                           "outside_faults": {"p50": _pct(lo, 50), "p99": _pct(lo, 99), "max": _pct(lo, 100)},
                           "chunk_end_outside_faults": {"p50": _pct(ll, 50), "p99": _pct(ll, 99)}}}
