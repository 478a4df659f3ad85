"""Fuser: per-window fused vectors + anomaly scores as a 'fused' stream, and the JSON export from a real MCAP."""

import json

import msgpack
import numpy as np
import pytest

from synchub.agent.align.fusion import Fuser, export_fused_json
from synchub.agent.align.window import load_runners
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS
from synchub.agent.formats import mcap_layout, mcap_write
from synchub.drivers.sim import render as R
from synchub.drivers.sim.world import World

INFOS = {"imu0": StreamInfo("imu0", "imu", 200.0, 6), "mic0": StreamInfo("mic0", "audio", 16000.0, 1),
         "log0": StreamInfo("log0", "marker", 0.0, 1, "string")}


def streams(duration=6.0, seed=1011):
    w = World(duration, seed=seed)
    rng = np.random.default_rng(0)
    t_imu = np.arange(int(duration * 200), dtype=np.int64) * 5_000_000
    t_mic = np.arange(int(duration * 16000), dtype=np.int64) * 62_500
    log = w.log_messages()
    return {"imu0": (t_imu, R.render(w, "imu", t_imu, rng=rng)), "mic0": (t_mic, R.render(w, "audio", t_mic, rng=rng)),
            "log0": (np.array([t for t, _ in log], dtype=np.int64), [s for _, s in log])}


def push_all(f, data, every_s=0.5):
    out = []
    for k in range(int(6.0 / every_s)):
        a, b = int(k * every_s * NS), int((k + 1) * every_s * NS)
        for name, (t, x) in data.items():
            sel = np.nonzero((t >= a) & (t < b))[0]
            if len(sel) == 0:
                continue
            xs = [x[i] for i in sel] if isinstance(x, list) else x[sel]
            f.push(name, Chunk(name, 0, xs, t[sel], t[sel], ref_ns=t[sel], unc_ns=np.zeros(len(sel))))
        out.extend(f.poll())
    return out


def test_fuser_without_models_emits_activity_windows():
    f = Fuser(INFOS, runners=None, window_s=1.0)
    out = push_all(f, streams())
    assert f.info.type == "fused" and f.emb_dim == 0
    assert len(out) >= 4
    labels = f.info.channel_labels
    assert labels[:3] == ("anomaly.imu0", "anomaly.log0", "anomaly.mic0")
    rows = np.concatenate([c.data for c in out])
    assert rows.shape[1] == len(labels)
    assert np.all(np.isnan(rows[:, :3]))  # no encoders: no anomaly scores
    act = rows[:, 3:]
    assert np.nanmax(act) > 0  # the world's events show as onset energy
    assert [c.seq for c in out] == list(range(len(out)))
    assert all(c.ref_ns[0] == (i * NS + NS // 2) for i, c in enumerate(out))


def test_fuser_counts_bad_chunks_and_late_samples():
    f = Fuser(INFOS, window_s=1.0)
    t = np.arange(10, dtype=np.int64)
    f.push("imu0", Chunk("imu0", 0, np.zeros((10, 6)), t, t))  # uncorrected
    f.push("cam9", Chunk("cam9", 0, np.zeros((10, 6)), t, t, ref_ns=t, unc_ns=t))
    assert f.counts["uncorrected_chunks"] == 1 and f.counts["unknown_stream"] == 1
    push_all(f, streams())
    late = np.array([10, 20], dtype=np.int64)
    f.push("imu0", Chunk("imu0", 0, np.zeros((2, 6)), late, late, ref_ns=late, unc_ns=late))
    assert f.counts["late_samples"] == 2
    with pytest.raises(ValueError):
        Fuser(INFOS, window_s=0)


def test_fuser_with_encoders_gives_unit_vectors_and_anomaly():
    runners = load_runners(["imu", "audio", "text"])
    if any(isinstance(r, str) for r in runners.values()):
        pytest.skip(f"encoders not available: {runners}")
    f = Fuser(INFOS, runners=runners, window_s=1.0)
    out = push_all(f, streams())
    rows = np.concatenate([c.data for c in out])
    d = f.emb_dim
    assert d > 0
    norms = np.linalg.norm(rows[:, :d], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
    assert np.all(np.isfinite(rows[:, d : d + 3]))  # anomaly scores of all three streams


def write_recording(path, infos, chunks):
    """An MCAP file in the collector's layout (real mcap writer, read back by mcap_read.read_session)."""
    with open(path, "wb") as fh:
        w, ids = mcap_write.new_writer(fh)
        meta = w.register_channel("/agent/_meta", "msgpack", ids["synchub.Meta"])
        chans = {}
        for info in infos:
            d = info.to_dict()
            chans[info.name] = w.register_channel(f"/agent/{info.name}", "msgpack", ids["synchub.Chunk"],
                                                  mcap_layout.channel_metadata(d))
            w.add_message(meta, 1, msgpack.packb({"mid": 0, "stream": info.name, "kind": "stream_info", "info": d,
                                                  "recv_ns": 1}), 1)
        for mid, c in enumerate(chunks):
            payload = {"mid": mid, "seq": c.seq, "n": c.n, "method": c.method, "dtype": c.data.dtype.str,
                       "shape": list(c.data.shape[1:]), "device_ns": c.device_ns.tobytes(),
                       "host_ns": c.host_ns.tobytes(), "ref_ns": c.ref_ns.tobytes(), "unc_ns": c.unc_ns.tobytes(),
                       "segment": None, "data": c.data.tobytes(), "recv_ns": 5}
            w.add_message(chans[c.stream], int(c.ref_ns[0]), msgpack.packb(payload, use_bin_type=True), 5, c.seq)
        w.finish()


def test_export_fused_json_from_mcap(tmp_path):
    f = Fuser(INFOS, window_s=1.0)
    out = push_all(f, streams())
    rec = tmp_path / "session.mcap"
    write_recording(rec, [f.info], out)
    n = export_fused_json(rec, tmp_path / "fused.json")
    doc = json.loads((tmp_path / "fused.json").read_text())
    recs = doc["streams"]["fused"]
    assert n == len(out) == len(recs)
    assert recs[0]["t_ns"] == NS // 2 and set(recs[0]["activity"]) == {"imu0", "mic0", "log0"}
    assert recs[0]["anomaly"]["imu0"] is None and recs[0]["vector"] == []
    assert any(r["activity"]["mic0"] and r["activity"]["mic0"] > 0 for r in recs)
    other = tmp_path / "no_fused.mcap"
    write_recording(other, [INFOS["imu0"]], [])
    with pytest.raises(ValueError, match="no stream of type 'fused'"):
        export_fused_json(other, tmp_path / "x.json")
