"""synchub MCAP sessions read as a stream (several part files, one session) and re-corrected by the engine with
the agent's clock layer fed as the recording is read: the same times as ``synchub align``'s in-memory rerun."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from synchub.agent.align.files.engine import FileAlignment, InputSpec
from synchub.agent.cli.align import rerun
from synchub.agent.clock.replay import evidence_time
from synchub.agent.core.evidence import evidence_to_dict
from synchub.agent.formats.mcap_layout import channel_metadata
from synchub.agent.formats.mcap_read import read_session
from synchub.agent.formats.mcap_write import new_writer
from synchub.agent.formats.readers.base import InputError, Piece
from synchub.agent.formats.readers.mcap_parts import McapInput
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import parse_scenario

NS = 1_000_000_000


def _recording() -> Recording:
    return Recording(parse_scenario({
        "name": "t", "duration_s": 90.0, "seed": 3, "chunk_ms": 100.0, "trigger": {"period_s": 1.0},
        "probes": {"rate_hz": 2.0},
        "device": [
            {"name": "a", "rate_hz": 40.0, "clock": {"offset_s": 30.0, "drift_ppm": 40.0, "jitter_us": 1.0,
                                                    "resets_at_s": [50.0], "reset_to_s": [2.0]}},
            {"name": "b", "rate_hz": 25.0, "trigger": False, "clock": {"offset_s": -5.0, "drift_ppm": -20.0}},
        ]}, "t.toml"))


def write_session(rec: Recording, paths) -> None:
    """The recording as a collector writes it (chunks a correction delay after they arrived, evidence and gaps as
    they come), split over ``paths`` (the parts of one session)."""
    items = [(evidence_time(e), 0, i, ("evidence", e)) for i, e in enumerate(rec.evidence({"edges", "probes"}))]
    resets = {(r.stream, r.seq) for r in rec.resets}
    for i, c in enumerate(rec.chunks):
        at = int(c.host_ns[-1]) + 1_500_000_000
        for s, q in resets:
            if s == c.stream and c.seq <= q < c.seq_end:
                items.append((at, 1, i, ("gap", {"stream": s, "seq": q, "count": 0, "cause": "device_reset"})))
        items.append((at, 2, i, ("chunk", c)))
    items.sort(key=lambda x: x[:3])
    cut = len(items) // 2
    for part, (path, chunk) in enumerate(zip(paths, (items[:cut], items[cut:]), strict=True), 1):
        with open(path, "wb") as fh:
            w, ids = new_writer(fh)
            w.add_metadata("synchub.session", {"agent": "agent", "session": "s", "part": str(part)})
            meta = w.register_channel("/agent/_meta", "msgpack", ids["synchub.Meta"])
            gaps = w.register_channel("/agent/_gaps", "msgpack", ids["synchub.Gap"])
            chans = {}
            for name, info in rec.infos.items():
                d = info.to_dict()
                chans[name] = w.register_channel(f"/agent/{name}", "msgpack", ids["synchub.Chunk"],
                                                 channel_metadata(d))
                w.add_message(meta, 0, msgpack.packb({"mid": 0, "stream": name, "kind": "stream_info", "info": d}), 0)
            w.add_message(meta, 0, msgpack.packb({"mid": 0, "stream": "_agent", "kind": "update",
                                                  "meta": {"kind": "clock_config", **rec.config("auto").to_dict()}}), 0)
            for t, _, _, (kind, x) in chunk:
                if kind == "evidence":
                    body = {"mid": 0, "stream": "_evidence", "kind": "update", "meta": {"kind": "evidence",
                                                                                      **evidence_to_dict(x)}}
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


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = tmp_path_factory.mktemp("session")
    paths = [str(d / "agent-s-p1.mcap"), str(d / "agent-s-p2.mcap")]
    write_session(_recording(), paths)
    return paths


def test_parts_read_as_one_stream_equal_read_session(session):
    whole = read_session(session)
    got: dict[str, list[Piece]] = {}
    for item in McapInput(list(reversed(session))).read():  # parts in any order: sorted by their part number
        if isinstance(item, Piece):
            got.setdefault(item.stream, []).append(item)
    for name, s in whole["streams"].items():
        pieces = sorted(got[name], key=lambda p: p.seq)
        assert np.array_equal(np.concatenate([p.device_ns for p in pieces]), s["device_ns"])
        assert np.array_equal(np.concatenate([p.host_ns for p in pieces]), s["host_ns"])
        assert np.array_equal(np.concatenate([p.data for p in pieces]), s["data"])


def test_streaming_rerun_equals_synchub_aligns_in_memory_rerun(session, tmp_path):
    corrected, _ = rerun(session)
    want: dict[str, list] = {}
    for c in corrected:
        want.setdefault(c.stream, []).append((c.seq, c.ref_ns))
    out = tmp_path / "out.mcap"
    rep = FileAlignment([InputSpec(list(session))]).write(out)
    back = read_session(out)
    for name, parts in want.items():
        ref = np.concatenate([r for _, r in sorted(parts, key=lambda p: p[0])])
        assert np.array_equal(back["streams"][name]["ref_ns"], ref), name
    a = next(s for s in rep["streams"] if s["name"] == "a")
    assert a["method"] == "synchub-clock-layer" and len(a["segments"]) == 2
    assert [(g["stream"], g["cause"]) for g in back["gaps"]] == [("a", "device_reset")]  # carried to the output
    assert a["gaps_recorded"] == {"device_reset": 0}


def test_not_an_mcap(tmp_path):
    p = tmp_path / "x.mcap"
    p.write_text("not mcap")
    with pytest.raises(InputError, match=r"x\.mcap: not an MCAP file"):
        FileAlignment([InputSpec([str(p)])])
