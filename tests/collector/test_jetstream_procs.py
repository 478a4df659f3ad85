"""The NATS path with the real processes: `synchub agent` (``[agent] transport = "nats"``, the simulated rig) and
`synchub collector --nats ... --partition K` on a real 3-node cluster with two partitions.  A collector killed with
SIGKILL mid-run and restarted resumes from its durable consumer: every session ends complete (its bye recorded,
every message in order, no sample twice, every hole a recorded gap).  An agent with refused credentials, or
publishing outside its subjects, exits 2 with one line saying why."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install 'synchub[nats]')")

from support.paths import ROOT  # noqa: E402

from synchub.agent.formats.mcap_read import read_session  # noqa: E402
from synchub.agent.transport.nats.auth import write_nkey  # noqa: E402

pytest_plugins = ("support.nats_cluster",)  # fixtures fleet, own_fleet, make_fleet


def _config(tmp_path: Path, fl, name: str, key, *, site: str = "lab") -> Path:
    cfg = tmp_path / f"{name}.toml"
    urls = ", ".join(f'"{u}"' for u in fl.cluster.urls)
    cfg.write_text(f'[agent]\nname = "{name}"\ntransport = "nats"\nsite = "{site}"\nnats = [{urls}]\n'
                   f'nats_credentials = "{key}"\nnats_ca = "{fl.cluster.tls.ca}"\n'
                   f'spool_dir = "{tmp_path / ("spool-" + name)}"\nlog_level = "warning"\n'
                   '[sim]\nseed = 1\n'
                   '[[stream]]\nname = "imu0"\ntype = "imu"\ndriver = "serial"\nport = "sim:imu0"\nformat = "imu-bin"\n'
                   'nominal_rate = 200.0\n'
                   '[[stream]]\nname = "tlm0"\ntype = "telemetry"\ndriver = "serial"\nport = "sim:tlm0"\n'
                   'format = "tlm-nmea"\ntick_hz = 1000.0\nnominal_rate = 10.0\n')
    return cfg


def _synchub(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synchub.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _collector(fl, out: Path, k: int) -> subprocess.Popen:
    return _synchub("collector", "--nats", ",".join(fl.cluster.urls), "--nats-credentials",
                    str(fl.key_files["collector"]), "--nats-ca", fl.cluster.tls.ca, "--partition", str(k),
                    "--out", str(out), "--ack-wait-s", "3")


def _sessions(outs: list[Path]) -> dict[str, list[Path]]:
    by: dict[str, list[Path]] = {}
    for out in outs:
        for p in out.glob("*.mcap"):
            by.setdefault(p.stem.rsplit("-p", 1)[0].rsplit("-", 1)[1], []).append(p)
    return by


def test_agents_and_collectors_as_processes_survive_a_collector_kill_with_every_sample_once(make_fleet, tmp_path):
    fl = make_fleet(partitions=2)
    from synchub.agent.transport.nats import bus as nb

    with fl.stream(nb.StreamPlan(subjects=("synchub_p.>",))):
        outs = [tmp_path / "out0", tmp_path / "out1"]
        cols = [_collector(fl, outs[k], k) for k in range(2)]
        agents = {a: _synchub("agent", "--config", str(_config(tmp_path, fl, a, fl.key_files[a])), "--duration",
                              "8", "--status-every", "0") for a in ("a1", "a3")}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(list(o.glob("*.mcap")) for o in outs):
            time.sleep(0.1)
        time.sleep(1.5)
        k = next(i for i in range(2) if list(outs[i].glob("*.mcap")))  # a collector that records an agent
        cols[k].send_signal(signal.SIGKILL)  # mid-run: what it wrote and had not acked comes back to its successor
        cols[k].wait(10)
        time.sleep(1.0)
        cols[k] = _collector(fl, outs[k], k)
        for a, p in agents.items():
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, f"agent {a}: {err[-2000:]}"
        time.sleep(4.0)  # the collectors record the last messages (and the redeliveries after the ack wait)
        for c in cols:
            c.send_signal(signal.SIGTERM)
        errs = [c.communicate(timeout=30)[1] for c in cols]
        assert all(c.returncode == 0 for c in cols), errs
        assert not any("Traceback" in e or "internal error" in e for e in errs), errs
    sessions = _sessions(outs)
    assert len(sessions) == 2, (sessions, errs)
    for sid, files in sessions.items():
        data = read_session(sorted(files))
        ends = [m.get("ended") for name, m in data["metadata"] if name == "synchub.transport"]
        assert "bye" in ends, f"session {sid}: not ended by its agent ({ends}); {errs}"
        for name in ("imu0", "tlm0"):
            seq = data["streams"][name]["seq"]
            assert len(seq) > 0 and len(np.unique(seq)) == len(seq), f"{sid}/{name}: duplicated samples"
            lost = int(seq[-1] - seq[0] + 1 - len(seq))
            gaps = sum(g["count"] for g in data["gaps"] if g["stream"] == name)
            assert seq[0] == 0 and lost == gaps, f"{sid}/{name}: {lost} missing samples, {gaps} in gap records"
        assert len(data["streams"]["imu0"]["seq"]) > 800  # ~7 s of 200 Hz
    # the kill was real: the killed collector's sessions went on in a second part file written by its successor
    assert any(len(files) > 1 for files in sessions.values()), sessions


def test_an_agent_with_refused_credentials_or_foreign_subjects_exits_2_with_the_reason(fleet, tmp_path):
    with fleet.stream():
        bad = write_nkey(tmp_path / "unknown.nk")
        r = _synchub("agent", "--config", str(_config(tmp_path, fleet, "a1", bad.source)), "--duration", "20",
                     "--status-every", "0")
        _, err = r.communicate(timeout=60)
        lines = [ln for ln in err.strip().splitlines() if "synchub agent:" in ln]
        assert r.returncode == 2 and lines and "authorization violation" in lines[-1].lower(), err[-2000:]
        assert "Traceback" not in err
        # a2's credentials, but named a1: it may publish only synchub.lab.a2.*
        r = _synchub("agent", "--config", str(_config(tmp_path, fleet, "a1", fleet.key_files["a2"])), "--duration",
                     "20", "--status-every", "0")
        _, err = r.communicate(timeout=60)
        lines = [ln for ln in err.strip().splitlines() if "synchub agent:" in ln]
        assert r.returncode == 2 and lines and "credentials are not agent lab/a1's" in lines[-1], err[-2000:]
        assert "Traceback" not in err
    assert os.path.exists(tmp_path / "spool-a1")  # what it could not send stays spooled
