"""A synchub session as the collector writes it, from a simulated ``bench sync`` recording (``Recording``): chunks a
correction delay after their samples arrived, evidence as it came, the agent's clock config and stream infos, split
over part files.  Driver-reported resets as ``ClockReset`` evidence (today's form) or as ``device_reset`` gaps (the
form before issue 10).  For the tests, and ``session_rerun``: the ``align-files`` benchmark's part on ``synchub align
SESSION.mcap`` (streamed vs the in-memory rerun, each in its own process)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

from synchub.agent.clock.replay import evidence_time
from synchub.agent.core.evidence import evidence_to_dict
from synchub.agent.formats.mcap_layout import channel_metadata
from synchub.agent.formats.mcap_write import new_writer
from synchub.bench.sync.run import Recording
from synchub.bench.sync.scenario import SCENARIO_DIR, parse_scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DELAY_NS = 1_500_000_000


def write_session(rec: Recording, paths, resets: str = "evidence", evidence=()) -> None:
    """Write ``rec`` over ``paths`` (the parts of one session, the items cut evenly between them); ``evidence``:
    more items the agent recorded (an aligner's offsets), each at the time it speaks of."""
    if resets not in ("evidence", "gaps"):
        raise ValueError("resets: 'evidence' or 'gaps'")
    items = [(evidence_time(e), 0, i, ("evidence", e))
             for i, e in enumerate([*rec.evidence({"edges", "probes"}), *evidence])]
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


#: ``synchub align ARGS`` in a child, then its own peak RSS (VmHWM, after exec) on stderr.
ALIGN = ("import sys\nfrom synchub.cli import main\ntry:\n    rc = main(['align', *sys.argv[1:]])\nfinally:\n"
            "    print('VmHWM:', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
            "sys.exit(rc)\n")
#: The in-memory rerun (``read_raw`` + ``correct_recording``, what ``synchub align`` did before), its peak RSS, then
#: whether the streamed copy (argv[2]) holds exactly its times.
IN_MEMORY = ("import sys\nimport numpy as np\nfrom synchub.agent.cli.align import rerun\n"
             "from synchub.agent.formats.mcap_read import read_session\n"
             "c, _ = rerun(sys.argv[1])\n"
             "print('VmHWM:', open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
             "b = read_session(sys.argv[2])['streams']\nsame = True\n"
             "for k in b:\n    mine = sorted((x for x in c if x.stream == k), key=lambda x: x.seq)\n"
             "    same &= bool(mine) and np.array_equal(np.concatenate([x.ref_ns for x in mine]), b[k]['ref_ns'])\n"
             "    same &= np.array_equal(np.concatenate([x.unc_ns for x in mine]), b[k]['unc_ns'])\n"
             "print('SAME', same)\n")


def child_rss(code: str, *argv) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of ``code`` in a fresh interpreter."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the child failed: {proc.stderr.strip()[-300:]}")
    return wall, int(proc.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024.0, proc.stdout


def session_rerun(seconds: float, scenario: str = "lab-10min") -> dict:
    """A ``scenario`` session of ``seconds`` (a 1 kHz DAQ and a 200 Hz IMU on triggers) rerun by ``synchub align``
    streamed and by the in-memory rerun: wall time, peak RSS, and whether the times are the same."""
    with open(SCENARIO_DIR / f"{scenario}.toml", "rb") as f:
        doc = tomllib.load(f)
    doc["duration_s"] = float(seconds)
    rec = Recording(parse_scenario(doc, scenario))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "agent-s-p1.mcap"
        write_session(rec, [src])
        size = src.stat().st_size
        del rec
        s_wall, s_rss, _ = child_rss(ALIGN, src, "-o", Path(d) / "copy.mcap", "--json", Path(d) / "r.json")
        m_wall, m_rss, out = child_rss(IN_MEMORY, src, Path(d) / "copy.mcap")
    return {"scenario": scenario, "duration_s": float(seconds), "session_bytes": size,
            "streamed": {"wall_s": s_wall, "peak_rss_mb": s_rss},
            "in_memory": {"wall_s": m_wall, "peak_rss_mb": m_rss}, "same_times": "SAME True" in out}
