"""``[agent] transport = "nats"`` from a config file: no plain text and no anonymous agent unless --insecure (one
line saying what to configure), the preflight says the same before anything starts, and an unreachable cluster
leaves the data in the spool with the reason in ``last_error``."""

import time

import numpy as np
import pytest

from synchub.agent.config.loader import load_config
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.deploy.needs import preflight
from synchub.agent.transport.nats.auth import write_nkey
from synchub.agent.transport.nats.setup import nats_sender_from_settings
from synchub.agent.transport.session import TransportError

try:
    import nats
except ImportError:  # pragma: no cover - the nats extra is part of `make test`
    nats = None


def _cfg(tmp_path, **agent):
    keys = "".join(f'{k} = "{v}"\n' for k, v in agent.items())
    p = tmp_path / "a.toml"
    p.write_text(f'[agent]\nname = "pi-01"\ntransport = "nats"\nsite = "lab"\nnats = ["tls://127.0.0.1:9"]\n'
                 f'spool_dir = "{tmp_path / "spool"}"\n{keys}[sim]\nseed = 1\n'
                 '[[stream]]\nname = "imu0"\ntype = "imu"\ndriver = "serial"\nport = "sim:imu0"\nformat = "imu-bin"\n')
    return load_config(p)


def _infos(cfg):
    return [StreamInfo("imu0", "imu", 200.0, 6)]


def test_plain_text_or_no_credentials_are_refused_unless_insecure(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(TransportError, match="--insecure"):
        nats_sender_from_settings(cfg.agent, _infos(cfg), env={})
    problems = {p.key: p.text for p in preflight(cfg, exists=lambda _p: True, have_module=lambda _m: True)
                if p.level == "error"}
    assert set(problems) == {"agent.nats_credentials", "agent.nats_ca"}, problems
    assert all("--insecure" in t for t in problems.values())
    assert not [p for p in preflight(cfg, insecure=True, have_module=lambda _m: True) if p.level == "error"]
    key = write_nkey(tmp_path / "pi.nk")
    cfg = _cfg(tmp_path, nats_credentials=key.source)
    with pytest.raises(TransportError, match="--insecure"):  # credentials, but still no CA: plain text
        nats_sender_from_settings(cfg.agent, _infos(cfg), env={})
    cfg = _cfg(tmp_path, nats_credentials=tmp_path / "missing.nk", nats_ca=tmp_path / "missing.pem")
    with pytest.raises(TransportError, match="missing"):
        nats_sender_from_settings(cfg.agent, _infos(cfg), env={})


@pytest.mark.skipif(nats is None, reason="nats-py is not installed (pip install 'synchub[nats]')")
def test_an_unreachable_cluster_keeps_the_data_spooled_and_says_why(tmp_path):
    cfg = _cfg(tmp_path)
    s = nats_sender_from_settings(cfg.agent, _infos(cfg), insecure=True, env={})
    try:
        dev = np.arange(20, dtype=np.int64)
        s.send_chunk(Chunk("imu0", 0, np.zeros((20, 6), np.float32), dev, dev))
        with pytest.raises(TransportError, match="not reachable"):
            s.connect(0.5)
        deadline = time.monotonic() + 20
        while not s.last_error and time.monotonic() < deadline:  # one connect attempt takes up to 5 s
            time.sleep(0.05)
        assert s.pending() == 1 and "Connect call failed" in s.last_error
    finally:
        assert not s.close(0.1)  # nothing acked: it stays in the spool
    assert list((tmp_path / "spool").iterdir())
