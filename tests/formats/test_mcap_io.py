"""Recovering an MCAP file left unfinished by a crashed collector."""

import shutil
import threading

import numpy as np

from synchub.agent.collector.server import Collector
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.formats import mcap_read, mcap_write
from synchub.agent.transport.sender import Sender


def test_truncated_file_is_recovered_to_its_last_complete_chunk(tmp_path):
    col = Collector("tcp://127.0.0.1:0", tmp_path / "a", flush_s=0.01)
    stop = threading.Event()
    t = threading.Thread(target=col.run, args=(stop,), daemon=True)
    t.start()
    s = Sender(col.endpoint, "x", [StreamInfo("imu", "imu", 100.0, 2)])
    for k in range(50):
        s.send_chunk(Chunk("imu", k * 4, np.full((4, 2), k, np.float32), np.arange(4) + k * 4, np.arange(4)))
        if k % 10 == 9:
            s.flush(5)
    assert s.flush(5)
    stop.set()
    t.join(5)
    path = next((tmp_path / "a").glob("*.mcap"))
    # copy the file as it is on disk *before* finish: flushed chunks, no summary, no footer
    crashed = tmp_path / "crashed.mcap"
    shutil.copy(path, crashed)
    col.close()
    assert mcap_read.is_finished(path) and not mcap_read.is_finished(crashed)
    with open(crashed, "ab") as f:
        f.write(b"\x06torn-record")  # a torn tail
    last = mcap_write.recover(crashed)
    assert mcap_read.is_finished(crashed) and last == 50
    assert mcap_read.session_last_mid(crashed) == 50
    a = mcap_read.read_session([path])["streams"]["imu"]
    b = mcap_read.read_session([crashed])["streams"]["imu"]
    assert np.array_equal(a["seq"], b["seq"]) and np.array_equal(a["data"], b["data"]) and len(b["seq"]) == 200
    s.close(0.1)
