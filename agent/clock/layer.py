"""StreamClocks: the clock layer of the agent pipeline (pure; one instance, touched from the shipper thread only).

Per stream a ``ClockModel`` and, when the stream's ``trigger`` option names a trigger line, a ``TriggerMatcher``.

* ``feed(evidence)``: ``TriggerEdge(clock="device", source=stream)`` goes to that stream's matcher;
  ``TriggerEdge(clock="ref", source=trigger)`` goes to the matcher of every stream whose ``trigger`` names the line
  (and, for a ``pps`` line, numbers the second and feeds the reference -> UTC model); matched pairs go to the
  stream's model.  ``Probe`` and ``OffsetEstimate`` go to their stream's model, a ``UtcSample`` to the reference ->
  UTC model.  Barcode/Harp lines are decoded on both sides and matched by value.  (A ``ClockReset`` is applied to
  the chunk it precedes: ``synchub.agent.clock.replay``, then ``reset``.)
* ``feed_arrivals(stream, device_ns, host_ns)``: the arrival-time baseline (and the fastest reset detector).
* ``correct(chunk)``: a new chunk with ``ref_ns``, ``unc_ns``, ``segment`` and ``method`` (raw times untouched).
* ``state()``: per stream model and matcher state, for stream metadata; ``utc_state()`` for the UTC mapping.
* ``feed_utc(mono_ns, utc_ns, sigma_ns, source)`` (a ``UtcSample``): a coarse reference -> UTC sample (the system
  clock, or NTP as measured by ``synchub.drivers.ntp``); GPS PPS edges refine it to microseconds.  ``to_utc(ref_ns)``
  maps.

A stream with a trigger line gets a ``TriggerFallback`` (``synchub.agent.clock.fallback``): its aligner offsets
never move its trigger path; once its edges go stale (``[clock] trigger_stale_s``) they map it; ``take_events``
says so once.

Whenever a stream's clock model starts a segment (a reset the driver reported, device time going back or jumping
ahead, a step in the edges), its matcher starts over (``TriggerMatcher.restart``): pairs from the old timeline say
nothing about the new one.

The offline path (collector, ``synchub align``, benchmarks) reruns the same code on stored raw times
(``synchub.agent.clock.replay``: the same calls, in the recorded order, live or two-sided).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synchub.agent.core.evidence import OffsetEstimate, Probe, TriggerEdge, UtcSample
from synchub.agent.core.options import TriggerSettings
from synchub.agent.core.stream import Chunk, StreamInfo
from synchub.agent.core.units import NS

from .barcode import BarcodeDecoder, HarpDecoder
from .choice import UNKNOWN_UNC_NS
from .fallback import TriggerFallback, default_stale_ns
from .harp_clock import HarpClockDecoder
from .model import ClockModel
from .settings import ClockLayerConfig
from .triggers import TriggerMatcher

#: Default 1-sigma jitter of a matched edge pair per GPIO back end (kernel stamps vs userspace callbacks), ns.
EDGE_SIGMA_NS = {"gpiod": 5_000, "sim": 5_000, "rpi-gpio": 150_000}
#: The least sigma a trigger line's prior (the stream's model) says: arrival-based estimates sit late by the link's
#: minimum latency, which their uncertainty cannot show, and a model just after its device's clock stepped is surer
#: than it should be (bench sync messy-2h without the floor: 0.39 -> 118 us RMS).  On a line faster than ~12 Hz the
#: matcher locks by causality instead (``triggers``).
PRIOR_MIN_SIGMA_NS = 10_000_000
BARCODE_BIT_NS = 0  # barcode bit time learnt from each start pulse (the sync box and the sim rig use 10-30 ms)


@dataclass(frozen=True)
class TriggerLine:
    """What the clock layer needs to know of a trigger line (built from ``TriggerSettings``)."""

    name: str
    period_ns: int = NS
    role: str = "sync"
    min_width_ns: int = 0
    polarity: int = 1
    edge_sigma_ns: float = 5_000.0

    @classmethod
    def from_settings(cls, t: TriggerSettings) -> TriggerLine:
        pol = {"rising": 1, "falling": -1, "both": 0}[t.edge]
        if t.role in ("barcode", "harp", "harp-clock"):
            pol = 0  # codes need both edges; pairs come from decoded values
        return cls(name=t.name, period_ns=int(round(t.period_s * NS)), role=t.role,
                   min_width_ns=int(t.min_width_us * 1000), polarity=pol,
                   edge_sigma_ns=float(EDGE_SIGMA_NS.get(t.backend, 5_000)))


class _StreamClock:
    def __init__(self, info: StreamInfo, trigger: str, method: str, window_s: float, line: TriggerLine | None):
        rate = float(info.nominal_srate)
        period = int(NS / rate) if rate >= 1e-6 and math.isfinite(rate) else None
        self.info = info
        self.model = ClockModel(info.name, nominal_period_ns=period, window_s=window_s, method=method)
        self.trigger = trigger
        self.line = line
        self.matcher: TriggerMatcher | None = None
        self.decoder = None
        self.utc_sink = None  # a GPS stream on its PPS line: its pairs also number the reference clock's UTC seconds
        self.announces = info.quality_dict().get("device_clock") == "utc" and line is not None and line.role == "pps"
        if self.announces:
            # the device (NMEA) announces each second after the PPS edge that started it, within a period; there
            # is no prior: the arrival envelope sits late by the sentence latency (100-500 ms), not a window's worth
            self.matcher = TriggerMatcher(line.period_ns, min_width_ns=line.min_width_ns, polarity=line.polarity,
                                          max_latency_ns=line.period_ns)
            self.matcher.dev_filter.min_width = 0  # announced seconds have no pulse width
        elif line is not None:
            periodic = line.role in ("sync", "pps")
            self.matcher = TriggerMatcher(
                line.period_ns if periodic else 0, min_width_ns=line.min_width_ns,
                polarity=line.polarity if periodic else 0, prior=self._prior,
                bound=self._latest,
            )
            if line.role == "barcode":
                self.decoder = BarcodeDecoder(BARCODE_BIT_NS)
            elif line.role == "harp":
                self.decoder = HarpDecoder()
            elif line.role == "harp-clock":
                self.decoder = HarpClockDecoder()
        # a Harp device's stream is in Harp time: each decoded second of its clock line is a pair by itself
        self.harp_time = info.quality_dict().get("device_clock") == "harp" and line is not None and line.role in (
            "harp", "harp-clock")
        self.counts: dict[str, int] = {}
        self.segments_seen = 0
        self.out_of_order_told = 0  # samples out of time order the log was told of (at 1, 10, 100, ...)

    def follow(self) -> None:
        """After the model took evidence: a segment it started restarts the matcher (edges reported since the
        segment began are kept)."""
        n = len(self.model.segments)
        if n == self.segments_seen:
            return
        if self.segments_seen and self.matcher is not None:
            self.matcher.restart(since_host_ns=self.model.segments[-1].host0)
        self.segments_seen = n

    def _prior(self, device_ns: int):
        """The model's current estimate of a device time on the reference clock (arrivals or probes)."""
        if not self.model.segments:
            return None
        ref, unc, _ = self.model.map(np.array([device_ns]))
        if unc[0] >= UNKNOWN_UNC_NS:
            return None
        return int(ref[0]), max(int(unc[0]), PRIOR_MIN_SIGMA_NS)

    def _latest(self, device_ns: int) -> int | None:
        """The latest reference time a device time can have: no sample arrives before it was taken (the arrival
        envelope, ``ClockModel.arrival_bound``), or None before any arrival."""
        b = float(self.model.arrival_bound([device_ns], self.model.skew_prior * 1e6)[0])
        return int(b) if math.isfinite(b) else None

    def pairs(self, pairs: list[tuple[int, int]], extra_sigma_ns: float = 0.0) -> None:
        if pairs and self.line is not None:
            arr = np.asarray(pairs, dtype=np.int64)
            self.model.add_edges(arr[:, 0], arr[:, 1], float(np.hypot(self.line.edge_sigma_ns, extra_sigma_ns)))
            self.follow()
            if self.utc_sink is not None:
                self.utc_sink(arr, max(self.line.edge_sigma_ns, 1_000.0))


class StreamClocks:
    """See the module docstring.  ``infos``: every stream of the agent; ``config``: the clock layer's config (the
    ``[clock]`` and ``[[trigger]]`` tables, each stream's clock options).  Streams stamped on the reference clock
    (``quality`` ``clock=reference``: GPIO lines recorded as streams) are corrected one to one.  ``history=False``
    (the live agent): the clocks keep no history for the two-sided ``smooth``, so their memory stays bounded."""

    def __init__(self, infos: dict[str, StreamInfo], config: ClockLayerConfig | None = None, *,
                 smooth: bool = False, history: bool = True):
        config = ClockLayerConfig() if config is None else config
        self.config = config
        self.lines: dict[str, TriggerLine] = {}
        for t in config.triggers:
            self.lines[t.name] = TriggerLine.from_settings(t)
        window_s = config.clock.window_s
        self.smooth = smooth
        self.history = history
        self.clocks: dict[str, _StreamClock] = {}
        self.reference_streams: set[str] = set()  # streams stamped on the reference clock (GPIO lines)
        for name, info in infos.items():
            if info.quality_dict().get("clock") == "reference":
                self.reference_streams.add(name)
                continue
            opts = config.options(name)
            trigger = opts.trigger
            method = config.default_method if opts.method == "auto" else opts.method
            if trigger and trigger not in self.lines:
                # a trigger named after a stream (a gpio stream): aperiodic edges on the reference clock
                self.lines[trigger] = TriggerLine(trigger, period_ns=0)
            line = self.lines.get(trigger) if trigger else None
            self.clocks[name] = sc = _StreamClock(info, trigger, method, window_s, line)
            if line is not None:  # its aligner (if any) is its fallback, never its path
                sc.model.fallback = TriggerFallback(default_stale_ns(line.period_ns, config.clock.trigger_stale_s))
        self._ref_decoders: dict[str, BarcodeDecoder | HarpDecoder | HarpClockDecoder] = {}
        for line in self.lines.values():
            if line.role == "barcode":
                self._ref_decoders[line.name] = BarcodeDecoder(BARCODE_BIT_NS)
            elif line.role == "harp":
                self._ref_decoders[line.name] = HarpDecoder()
            elif line.role == "harp-clock":
                self._ref_decoders[line.name] = HarpClockDecoder()
        self.utc = ClockModel("utc", window_s=max(window_s, 600.0), consensus=1)  # one system-clock reading maps
        for model in [self.utc, *(sc.model for sc in self.clocks.values())]:
            model.history = history
        self.utc_source = "none"
        self.counts: dict[str, int] = {}
        self._announced = {sc.trigger for sc in self.clocks.values() if sc.announces}
        for sc in self.clocks.values():
            if sc.announces:
                sc.utc_sink = self._utc_pairs

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    # ---- evidence
    def feed(self, item) -> None:
        if isinstance(item, TriggerEdge):
            if item.clock == "ref":
                self._feed_ref_edge(item)
            elif item.clock == "device":
                sc = self.clocks.get(item.source)
                relayed = any(o.trigger == item.source for o in self.clocks.values())
                if sc is None or (sc.matcher is None and not relayed):
                    self._count("edge_unrouted")
                    return
                self._relay(item)
                if sc is not None and sc.matcher is None:
                    return
                if sc.decoder is not None:
                    lvl = 1 if item.polarity > 0 else 0
                    for t0, value in sc.decoder.feed([(item.t_ns, lvl)]):
                        sc.pairs(sc.matcher.add_device_code(t0, value))
                    return
                sc.pairs(sc.matcher.add_device([item]))
            else:
                self._count("edge_bad_clock")
        elif isinstance(item, Probe):
            sc = self.clocks.get(item.stream)
            if sc is None:
                self._count("probe_unrouted")
                return
            sc.model.add_probe(item.host_send_ns, item.device_ns, item.host_recv_ns)
            sc.follow()
        elif isinstance(item, UtcSample):
            self.feed_utc(item.mono_ns, item.utc_ns, item.sigma_ns, item.source)
        elif isinstance(item, OffsetEstimate):
            sc = self.clocks.get(item.stream)
            if sc is None:
                self._count("offset_unrouted")
                return
            sc.model.add_offset(item)
            sc.follow()
        else:
            self._count("unknown_evidence")

    def _relay(self, e: TriggerEdge) -> None:
        """A pulse a device (a sync box) emitted, stamped on its clock, that other streams name as their trigger:
        mapped onto the reference clock by that device's model, its uncertainty added to the pairs' sigma."""
        src = self.clocks.get(e.source)
        if src is None or not any(o.trigger == e.source for o in self.clocks.values()):
            return
        ref, unc, _ = src.model.map(np.array([e.t_ns]))
        if unc[0] >= UNKNOWN_UNC_NS:
            self._count("relay_unmapped")
            return
        self._feed_ref_edge(TriggerEdge(e.source, int(ref[0]), "ref", e.polarity, e.width_ns, e.seq, e.host_ns),
                            extra_sigma_ns=float(unc[0]))

    def _feed_ref_edge(self, e: TriggerEdge, extra_sigma_ns: float = 0.0) -> None:
        line = self.lines.get(e.source)
        users = [sc for sc in self.clocks.values() if sc.trigger == e.source and sc.matcher is not None]
        if line is not None and line.role == "pps" and e.polarity > 0 and e.source not in self._announced:
            self._pps(e.t_ns, line)
        dec = self._ref_decoders.get(e.source)
        if dec is not None:
            for t0, value in dec.feed([(e.t_ns, 1 if e.polarity > 0 else 0)]):
                for sc in users:
                    if sc.harp_time:
                        sc.pairs([(value * NS, t0)], extra_sigma_ns)
                    else:
                        sc.pairs(sc.matcher.add_ref_code(t0, value), extra_sigma_ns)
            return
        if not users and line is None:
            self._count("ref_edge_unrouted")
        for sc in users:
            sc.pairs(sc.matcher.add_ref([e]), extra_sigma_ns)

    def feed_arrivals(self, stream: str, device_ns, host_ns) -> None:
        sc = self.clocks.get(stream)
        if sc is None:
            return
        sc.model.add_arrivals(device_ns, host_ns)
        sc.follow()

    def latency_prior(self, stream: str, latency_ns: int, sigma_ns: int) -> None:
        """A latency an earlier session stored for a wired stream's aligner pair: its fallback's until this session
        measures its own (``TriggerFallback.prior``)."""
        sc = self.clocks.get(stream)
        if sc is not None and sc.model.fallback is not None:
            sc.model.fallback.prior = (int(latency_ns), int(sigma_ns))

    def take_events(self, stream: str | None = None) -> list[tuple[str, str]]:
        """What changed since the last call, (stream, line) each (a trigger lost and the aligner falling back, the
        trigger back; samples out of time order, at the 1st, 10th, 100th, ...): for the agent's log and status.
        ``stream``: that stream's only (after one of its chunks)."""
        out = []
        for name in self.clocks if stream is None else [n for n in (stream,) if n in self.clocks]:
            sc = self.clocks[name]
            if sc.model.fallback is not None:
                out += [(name, e) for e in sc.model.fallback.take_events()]
            n = sc.model.rejected.get("arrival_out_of_order", 0)
            if n and len(str(n)) > len(str(sc.out_of_order_told or "")):
                out.append((name, f"{name}: {n} sample(s) out of time order so far (device time went back alone: a "
                                  "line logged late, merged logs); kept on the stream's clock timeline"))
                sc.out_of_order_told = n
        return out

    # ---- UTC
    def feed_utc(self, mono_ns: int, utc_ns: int, sigma_ns: float, source: str = "system") -> None:
        """A reference-clock instant and its UTC time (system clock read, or corrected by NTP)."""
        self.utc.add_offset(OffsetEstimate("utc", int(mono_ns), int(utc_ns) - int(mono_ns), int(max(sigma_ns, 1)),
                                           source="classical"))
        if self.utc_source in ("none", "system", "classical"):
            self.utc_source = source

    def _pps(self, t_ns: int, line: TriggerLine) -> None:
        ref, unc, _ = self.utc.map(np.array([t_ns]))
        if unc[0] > 0.3 * NS:
            self._count("pps_unnumbered")  # no coarse UTC yet to tell which second this is
            return
        second = int(round(int(ref[0]) / NS)) * NS
        self.utc.add_edges(np.array([t_ns]), np.array([second]), max(line.edge_sigma_ns, 1_000.0))
        self.utc_source = "pps"

    def _utc_pairs(self, pairs: np.ndarray, sigma_ns: float) -> None:
        """(UTC second a GPS announced, its PPS edge on the reference clock) pairs: numbered UTC seconds."""
        self.utc.add_edges(pairs[:, 1], pairs[:, 0], sigma_ns)
        self.utc_source = "pps+nmea"

    def to_utc(self, ref_ns) -> tuple[np.ndarray, np.ndarray]:
        """UTC (ns since the epoch) and its 1-sigma uncertainty for reference times."""
        utc, unc, _ = self.utc.map(np.asarray(ref_ns, dtype=np.int64))
        return utc, unc

    def utc_state(self) -> dict:
        st = self.utc.state()
        st["source"] = self.utc_source
        return st

    # ---- correction
    def correct(self, chunk: Chunk, *, smooth: bool | None = None) -> Chunk:
        sc = self.clocks.get(chunk.stream)
        if sc is None:
            if chunk.stream in self.lines or chunk.stream in self.reference_streams:
                # a trigger line recorded as a stream: its times are reference times
                return chunk.corrected(chunk.device_ns, np.zeros(chunk.n, dtype=np.int64), "identity")
            self._count("correct_unknown_stream")
            return chunk.corrected(chunk.host_ns, np.full(chunk.n, UNKNOWN_UNC_NS, dtype=np.int64), "identity")
        if sc.model.forced == "identity":
            return chunk.corrected(chunk.host_ns, np.full(chunk.n, UNKNOWN_UNC_NS, dtype=np.int64), "identity")
        segs = sc.model.segment_of(chunk.device_ns, chunk.host_ns)
        smooth = self.smooth if smooth is None else smooth
        if smooth and not self.history:
            raise ValueError("StreamClocks(history=False) keeps no history to smooth with")
        ref, unc, segs = sc.model.map(chunk.device_ns, segs, smooth=smooth)
        return chunk.corrected(ref, unc, sc.model.last_method, segment=segs)

    def reset(self, stream: str, device_ns: int, host_ns: int = 0) -> None:
        """A driver reported a device clock reset (a ``device_reset`` gap): the stream's model starts a new segment
        at ``device_ns`` (the first sample after the reset, received at ``host_ns``)."""
        sc = self.clocks.get(stream)
        if sc is None:
            self._count("reset_unknown_stream")
            return
        sc.model.reset_detected(int(device_ns), int(host_ns))
        sc.follow()

    def segments(self, stream: str) -> list[dict]:
        """Every clock segment of a stream: why and where it began, its evidence (``ClockModel.segments_info``)."""
        sc = self.clocks.get(stream)
        return sc.model.segments_info() if sc is not None else []

    def state(self) -> dict[str, dict]:
        out = {}
        for name, sc in self.clocks.items():
            st = sc.model.state()
            st["segments_info"] = sc.model.segments_info()[-8:]  # the latest (``segments`` has them all)
            if sc.matcher is not None:
                st["trigger"] = sc.trigger
                st["matcher"] = sc.matcher.state()
            if sc.decoder is not None:
                st["decoder_malformed"] = sc.decoder.malformed
            out[name] = st
        return out
