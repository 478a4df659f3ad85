"""The min-RTT filter (``RttWindow``) must not lock out a stream's probes.

Seen in ``synchub demo`` (telemetry answering probes): the first probes' bands were tightened to under 1 ms by the
arrival envelope carried along a skew fitted on 4 s of probes (424 ppm against a true -45); every later band was
~15 ms wide, so the filter rejected all of them for 45 s (until the narrow ones left its 30 s horizon) while the
wrong line's error grew to 20 ms.  After eight rejections in a row the floor is now the smallest of the last eight."""

from synchub.agent.clock.probes import RttWindow
from synchub.agent.core.units import NS


def _run(widths_ms, bank_n=10):
    w = RttWindow(window_s=120.0, margin=0.25)
    return [w.admit(int(i * NS), int(x * 1e6), bank_n) for i, x in enumerate(widths_ms)]


def test_narrow_early_bands_do_not_lock_out_later_probes():
    widths = [0.8, 0.9, 0.8] + [15.0 + (i % 5) for i in range(40)]  # later round trips 15-19 ms
    admitted = _run(widths)
    assert admitted[:3] == [True, True, True]
    late = admitted[3:]
    first = late.index(True)
    assert first <= 8, late  # within nine probes (nine seconds), not after the 30 s horizon
    assert sum(late[:30]) >= 3  # and it keeps admitting some while the floor stays that wide


def test_the_filter_still_filters():
    widths = [(1.0 if i % 4 == 0 else 6.0) for i in range(60)]  # every fourth probe a quick round trip
    admitted = _run(widths)
    quick = [a for a, x in zip(admitted, widths, strict=True) if x == 1.0]
    slow = [a for a, x in zip(admitted, widths, strict=True) if x == 6.0]
    assert all(quick) and not any(slow[2:])  # slow ones pass only before a quick one has set the floor


def test_one_lucky_probe_does_not_hold_the_floor():
    widths = [10.0] * 5 + [0.5] + [10.0 + (i % 3) * 0.1 for i in range(30)]
    admitted = _run(widths)
    assert admitted[5]
    assert any(admitted[6:16])  # a lucky (or lying) 0.5 ms band holds the floor for eight probes, not 30 s
