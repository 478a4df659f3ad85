"""A lossy, slow link (tc netem in a private network namespace): every sample still arrives exactly once.
Skipped, with the reason, where the machine cannot do it (no root, no unshare/tc, no sch_netem in the kernel)."""

import shutil
import subprocess
import sys
import textwrap

import pytest
from support.paths import ROOT

NETEM = "delay 15ms 5ms loss 3% duplicate 1% reorder 5%"


def _probe() -> str:
    for tool in ("unshare", "ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    r = subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && tc qdisc add dev lo root netem {NETEM}"],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"cannot set up netem in a network namespace: {(r.stderr or r.stdout).strip()[:200]}"
    return ""


SCRIPT = textwrap.dedent("""
    import sys, threading, numpy as np
    from pathlib import Path
    from synchub.agent.collector.server import Collector
    from synchub.agent.formats.mcap_read import read_session
    from synchub.agent.core.stream import Chunk, StreamInfo
    from synchub.agent.transport.sender import Sender
    out = Path(sys.argv[1])
    col = Collector("tcp://127.0.0.1:0", out)
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    s = Sender(col.endpoint, "netem", [StreamInfo("imu", "imu", 1000.0, 8)], liveness_s=3.0)
    for k in range(300):
        s.send_chunk(Chunk("imu", k * 20, np.zeros((20, 8), np.float32), np.arange(20) + k * 20, np.arange(20)))
    assert s.close(60), s.stats()
    stop.set(); t.join(10); col.close()
    seq = read_session(list(out.glob("*.mcap")))["streams"]["imu"]["seq"]
    assert np.array_equal(seq, np.arange(6000)), len(seq)
    print("OK", s.stats()["reconnects"])
""")


@pytest.mark.slow
def test_lossy_slow_link_loses_nothing(tmp_path):
    why = _probe()
    if why:
        pytest.skip(why)
    script = tmp_path / "netem_run.py"
    script.write_text(SCRIPT)
    r = subprocess.run(["unshare", "-n", "sh", "-c",
                        f"ip link set lo up && tc qdisc add dev lo root netem {NETEM} && "
                        f"exec {sys.executable} {script} {tmp_path / 'out'}"],
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
