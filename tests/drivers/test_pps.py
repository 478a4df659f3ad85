"""The kernel PPS API back end (``backend = "pps"``): its ioctl numbers and structs against <linux/pps.h> compiled
here, the real syscall path on a file that is not a PPS device, and pulses, losses, unplugging and mode checks
against tests/fakes/pps.py (no PPS device on this machine)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.paths import FAKES
from support.sinks import TriggerSink, wait_for

from synchub.agent.config.loader import parse_config
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.units import NS
from synchub.agent.deploy.needs import device_access
from synchub.drivers.gpio import make_trigger_input
from synchub.drivers.gpio import pps_abi as abi
from synchub.drivers.gpio.pps_backend import PpsError

sys.path.insert(0, str(FAKES))
import pps as fake  # noqa: E402  (tests/fakes/pps.py)

C_CHECK = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/pps.h>
int main(void) {
  printf("{\"fdata\": %zu, \"kparams\": %zu, \"ktime\": %zu, \"fetch\": %lu, \"getcap\": %lu, \"getparams\": %lu, "
         "\"setparams\": %lu, \"assert_tu\": %zu, \"clear_tu\": %zu, \"current_mode\": %zu, \"timeout\": %zu, "
         "\"captureassert\": %d, \"captureclear\": %d, \"canwait\": %d, \"time_invalid\": %d}\n",
         sizeof(struct pps_fdata), sizeof(struct pps_kparams), sizeof(struct pps_ktime), (unsigned long)PPS_FETCH,
         (unsigned long)PPS_GETCAP, (unsigned long)PPS_GETPARAMS, (unsigned long)PPS_SETPARAMS,
         offsetof(struct pps_fdata, info.assert_tu), offsetof(struct pps_fdata, info.clear_tu),
         offsetof(struct pps_fdata, info.current_mode), offsetof(struct pps_fdata, timeout),
         PPS_CAPTUREASSERT, PPS_CAPTURECLEAR, PPS_CANWAIT, PPS_TIME_INVALID);
  return 0;
}
"""


def test_ioctl_numbers_and_struct_layout_match_the_kernel_header(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not Path("/usr/include/linux/pps.h").exists():
        pytest.skip("needs a C compiler and <linux/pps.h> (Debian packages gcc, linux-libc-dev)")
    (tmp_path / "c.c").write_text(C_CHECK)
    subprocess.run([cc, "-o", str(tmp_path / "c"), str(tmp_path / "c.c")], check=True, timeout=60)
    h = json.loads(subprocess.run([str(tmp_path / "c")], capture_output=True, text=True, check=True).stdout)
    assert (abi.FDATA.size, abi.KPARAMS.size, abi.KTIME.size) == (h["fdata"], h["kparams"], h["ktime"])
    assert (abi.PPS_FETCH, abi.PPS_GETCAP, abi.PPS_GETPARAMS, abi.PPS_SETPARAMS) == (
        h["fetch"], h["getcap"], h["getparams"], h["setparams"])
    assert (fake.FETCH, fake.GETCAP, fake.GETPARAMS, fake.SETPARAMS) == (
        h["fetch"], h["getcap"], h["getparams"], h["setparams"])
    assert (abi.PPS_CAPTUREASSERT, abi.PPS_CAPTURECLEAR, abi.PPS_CANWAIT, abi.PPS_TIME_INVALID) == (
        h["captureassert"], h["captureclear"], h["canwait"], h["time_invalid"])
    # the timestamps sit where the kernel writes them
    buf = bytearray(abi.FDATA.size)
    buf[h["assert_tu"]:h["assert_tu"] + 12] = (7).to_bytes(8, sys.byteorder) + (5).to_bytes(4, sys.byteorder)
    buf[h["clear_tu"]:h["clear_tu"] + 12] = (9).to_bytes(8, sys.byteorder) + (3).to_bytes(4, sys.byteorder)
    buf[h["current_mode"]:h["current_mode"] + 4] = (0x1003).to_bytes(4, sys.byteorder)
    info = abi.unpack_fdata(buf)
    assert (info.assert_ns, info.clear_ns, info.mode) == (7 * NS + 5, 9 * NS + 3, 0x1003)
    t = abi.pack_fdata(1.25)
    assert int.from_bytes(t[h["timeout"]:h["timeout"] + 8], sys.byteorder) == 1
    assert int.from_bytes(t[h["timeout"] + 8:h["timeout"] + 12], sys.byteorder) == 250_000_000


def _settings(**kw):
    return replace(TriggerSettings(name="pps", backend="pps", device="/dev/pps0", role="pps"), **kw)


def test_a_file_that_is_not_a_pps_device_is_one_clear_error():
    """The real open + ioctl path: /dev/null answers PPS_GETCAP with ENOTTY."""
    trig = make_trigger_input(_settings(device="/dev/null"))
    with pytest.raises(PpsError, match="/dev/null: not a PPS device"):
        trig.start(TriggerSink())
    with pytest.raises(PpsError, match="cannot open PPS device"):
        make_trigger_input(_settings(device="/dev/pps-none")).start(TriggerSink())


def test_assert_pulses_become_edges_on_the_reference_clock():
    dev = fake.FakePps()
    dev.pulse(time.time_ns() - NS)  # older than the agent: never reported
    trig = make_trigger_input(_settings(), module=dev)
    sink = TriggerSink()
    trig.start(sink)
    try:
        stamps = []
        for k in range(1, 4):
            t = time.time_ns() - 300_000  # stamped 300 us before the fetch returns
            stamps.append(t)
            dev.pulse(t)
            assert wait_for(lambda k=k: len(sink.ev) >= k)
        off = time.time_ns() - time.monotonic_ns()
        for ev, t in zip(sink.ev, stamps, strict=True):
            assert ev.clock == "ref" and ev.polarity == 1 and ev.source == "pps"
            assert abs(ev.t_ns - (t - off)) < 2_000_000  # realtime stamp moved onto CLOCK_MONOTONIC
            assert ev.t_ns < ev.host_ns
        assert len(sink.ev) == 3 and len(sink.got) == 3 and not sink.gaps
        assert trig.info.source_id == "pps:/dev/pps0" and dict(trig.info.quality)["backend"] == "pps"
    finally:
        trig.stop()
    assert dev.calls.count(fake.GETCAP) == 1


def test_pulses_overwritten_while_the_reader_stalled_are_a_gap():
    dev = fake.FakePps()
    trig = make_trigger_input(_settings(), module=dev)
    sink = TriggerSink()
    trig.start(sink)
    try:
        now = time.time_ns()
        dev.burst([now - 2 * NS, now - NS, now])  # three pulses, one read: the kernel keeps the last
        assert wait_for(lambda: len(sink.ev) == 1)
        assert sink.gaps == [("pps", 2, "device_drop", sink.gaps[0][3])] and "sequence 0 -> 3" in sink.gaps[0][3]
        assert trig.lost == 2
        assert abs(sink.ev[0].t_ns - (now - (time.time_ns() - time.monotonic_ns()))) < 2_000_000
    finally:
        trig.stop()


def test_both_edges_need_a_device_capturing_clear_events():
    dev = fake.FakePps()  # pps-gpio's default: assert only
    with pytest.raises(PpsError, match="does not capture clear events.*capture-clear"):
        make_trigger_input(_settings(edge="both"), module=dev).start(TriggerSink())
    dev = fake.FakePps(mode=fake.CAPTUREASSERT | fake.CAPTURECLEAR | fake.TSFMT_TSPEC)
    trig = make_trigger_input(_settings(edge="both"), module=dev)
    sink = TriggerSink()
    trig.start(sink)
    try:
        t = time.time_ns()
        dev.pulse(t - 5_000_000, "assert")
        dev.pulse(t, "clear")
        assert wait_for(lambda: len(sink.ev) == 2)
        rise = next(e for e in sink.ev if e.polarity == 1)
        assert abs(rise.width_ns - 5_000_000) < 1_000  # the width of the pulse from the two kernel stamps
    finally:
        trig.stop()


def test_unplugged_device_is_counted_and_stop_is_prompt():
    dev = fake.FakePps()
    trig = make_trigger_input(_settings(), module=dev)
    sink = TriggerSink()
    trig.start(sink)
    time.sleep(0.3)  # a few empty waits (ETIMEDOUT) first
    dev.unplug()
    assert wait_for(lambda: trig.health().get("read_error", 0) >= 1)
    assert ("pps", "read_error") in sink.problems
    t0 = time.monotonic()
    trig.stop()
    assert time.monotonic() - t0 < 1.5


def test_config_and_device_access_for_a_pps_trigger():
    cfg = parse_config({"trigger": [{"name": "pps", "backend": "pps", "device": "/dev/pps1", "role": "pps"}],
                        "stream": [{"name": "pulses", "type": "trigger", "driver": "gpio", "backend": "pps",
                                    "device": "/dev/pps0"}]})
    assert cfg.triggers[0].device == "/dev/pps1" and cfg.streams[0].driver.device == "/dev/pps0"
    a = device_access(cfg)
    assert a.devices == {"char-pps": "r"} and "dialout" in a.groups and "gpio" not in a.groups
