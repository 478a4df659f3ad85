"""A synchub session as the collector writes it, from a simulated ``bench sync`` recording (``Recording``): chunks a
correction delay after their samples arrived, evidence as it came, the agent's clock config and stream infos, split
over part files.  Driver-reported resets as ``ClockReset`` evidence (today's form) or as ``device_reset`` gaps (the
form before issue 10).  For the tests and the ``align-files`` benchmark of ``synchub align SESSION.mcap``."""

from __future__ import annotations

import msgpack

from synchub.agent.clock.replay import evidence_time
from synchub.agent.core.evidence import evidence_to_dict
from synchub.agent.formats.mcap_layout import channel_metadata
from synchub.agent.formats.mcap_write import new_writer
from synchub.bench.sync.run import Recording

DELAY_NS = 1_500_000_000


def write_session(rec: Recording, paths, resets: str = "evidence") -> None:
    """Write ``rec`` over ``paths`` (the parts of one session, the items cut evenly between them)."""
    if resets not in ("evidence", "gaps"):
        raise ValueError("resets: 'evidence' or 'gaps'")
    items = [(evidence_time(e), 0, i, ("evidence", e)) for i, e in enumerate(rec.evidence({"edges", "probes"}))]
    for i, c in enumerate(rec.chunks):
        at = int(c.host_ns[-1]) + DELAY_NS
        for r in rec.resets:
            if r.stream == c.stream and c.seq <= r.seq < c.seq_end:
                gap = {"stream": r.stream, "seq": r.seq, "count": 0, "cause": "device_reset"}
                items.append((at, 1, i, ("gap", gap) if resets == "gaps" else ("evidence", r)))
        items.append((at, 2, i, ("chunk", c)))
    items.sort(key=lambda x: x[:3])
    paths = [str(p) for p in paths]
    per = -(-len(items) // len(paths))
    for part, path in enumerate(paths, 1):
        _write_part(rec, path, part, items[(part - 1) * per: part * per])


def _write_part(rec: Recording, path: str, part: int, items: list) -> None:
    with open(path, "wb") as fh:
        w, ids = new_writer(fh)
        w.add_metadata("synchub.session", {"agent": "agent", "session": "s", "part": str(part)})
        meta = w.register_channel("/agent/_meta", "msgpack", ids["synchub.Meta"])
        gaps = w.register_channel("/agent/_gaps", "msgpack", ids["synchub.Gap"])
        chans = {}
        for name, info in rec.infos.items():
            d = info.to_dict()
            chans[name] = w.register_channel(f"/agent/{name}", "msgpack", ids["synchub.Chunk"], channel_metadata(d))
            w.add_message(meta, 0, msgpack.packb({"mid": 0, "stream": name, "kind": "stream_info", "info": d}), 0)
        w.add_message(meta, 0, msgpack.packb({"mid": 0, "stream": "_agent", "kind": "update",
                                              "meta": {"kind": "clock_config", **rec.config("auto").to_dict()}}), 0)
        for t, _, _, (kind, x) in items:
            if kind == "evidence":
                body = {"mid": 0, "stream": "_evidence", "kind": "update",
                        "meta": {"kind": "evidence", **evidence_to_dict(x)}}
                w.add_message(meta, max(t, 0), msgpack.packb(body), 0)
            elif kind == "gap":
                w.add_message(gaps, max(t, 0), msgpack.packb(x), 0)
            else:
                payload = {"mid": 0, "seq": x.seq, "n": x.n, "method": "none", "dtype": x.data.dtype.str,
                           "shape": list(x.data.shape[1:]), "device_ns": x.device_ns.tobytes(),
                           "host_ns": x.host_ns.tobytes(), "ref_ns": None, "unc_ns": None, "segment": None,
                           "data": x.data.tobytes(), "recv_ns": t}
                w.add_message(chans[x.stream], max(t, 0), msgpack.packb(payload, use_bin_type=True), t, x.seq)
        w.finish()
