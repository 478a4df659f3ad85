"""Checksums from many threads at once: every serial driver (and every simulated device) runs in its own thread, and
a ``crc.Calculator`` keeps its running value in itself, so one shared between threads gave wrong checksums when two
calls interleaved (a good imu-bin frame dropped as malformed, seen in ``synchub demo`` under load)."""

import sys
import threading

import numpy as np
import pytest

from synchub.drivers.serial import frames as F
from synchub.drivers.serial.binframes import CRC_NAMES, Checksum


@pytest.fixture
def busy_switching():
    """Make the interpreter switch threads every microsecond, so interleavings happen in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _hammer(fn, n_threads=4):
    errors: list = []

    def run(k):
        try:
            fn(k)
        except AssertionError as exc:  # collected: a thread's failure must fail the test
            errors.append(str(exc))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("name", ["crc16-ibm-3740", "crc32", "crc8-ccitt", "crc16-modbus"])
def test_checksums_are_right_from_several_threads(busy_switching, name):
    assert name in CRC_NAMES
    rng = np.random.default_rng(1)
    data = [rng.bytes(int(n)) for n in rng.integers(1, 40, 64)]
    shared = Checksum(name)  # one object, as a decoder's, used from every thread
    want = [Checksum(name).value(d) for d in data]
    want16 = [F.crc16(d) for d in data]

    def work(_k):
        bad = sum(shared.value(d) != w for _ in range(50) for d, w in zip(data, want, strict=True))
        bad16 = sum(F.crc16(d) != w for _ in range(50) for d, w in zip(data, want16, strict=True))
        assert bad == 0 and bad16 == 0, f"{bad} wrong {name}, {bad16} wrong crc16"

    assert _hammer(work) == []
    assert F.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value, after all that


def test_devices_and_decoders_in_threads_lose_no_frame(busy_switching):
    """Two encoders (simulated devices) and two decoders (drivers) at once: every frame decodes, none malformed."""
    n = 600
    vals = np.random.default_rng(2).normal(0, 5, (n, 6))
    ticks = np.arange(n) * 5000

    def work(k):
        frames = F.encode_imu_samples(ticks + k, np.arange(n), vals)
        dec = F.ImuDecoder()
        items = [it for f in frames for it in dec.feed(f)]
        bad = [it for it in items if isinstance(it, F.Malformed)]
        assert not bad and len(items) == n, f"thread {k}: {len(bad)} malformed of {len(items)} items"

    assert _hammer(work) == []
