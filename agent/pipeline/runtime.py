"""Assembles a running agent from a ``Config``: the simulated rig (when ``[sim]`` is present), drivers, trigger
inputs, the clock layer, online aligners, the pipeline and the sender.  ``synchub agent`` and ``synchub demo``
both use ``Agent``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

from synchub.agent.align.fusion import Fuser
from synchub.agent.align.latency import PairKey
from synchub.agent.align.markers import rules_from
from synchub.agent.align.tracker import AlignmentTracker, calibrated_settings
from synchub.agent.align.window import load_runners, modality_of, sigma_table
from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.config.schema import Config
from synchub.agent.core.evidence import UtcSample
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import now_ns, utc_now_ns
from synchub.agent.transport.configure import sender_from_settings
from synchub.agent.transport.nats.setup import nats_sender_from_settings
from synchub.agent.transport.session import TransportError
from synchub.drivers import registry
from synchub.drivers.base import DriverContext
from synchub.drivers.gpio import make_trigger_input
from synchub.drivers.ntp import NtpMonitor
from synchub.drivers.sim.rig import SimRig

from .chunkqueue import BoundedQueue, DerivedChunk
from .hub import Hub
from .latency_io import SessionLatency, calibration_path
from .lsl_outlet import LslPublisher
from .shipper import IdentityClocks, Locked, Shipper

log = logging.getLogger("synchub.agent")


class AgentError(RuntimeError):
    """A problem starting or running the agent that the user can act on (printed as one line)."""


def _driver_class(name: str):
    try:
        return registry.load(name).driver
    except ImportError as exc:  # DriverUnavailable: one line naming the driver
        raise AgentError(str(exc)) from None


class Agent:
    """One agent: ``start()``, then ``stop()``; ``status()`` for progress; ``check()`` raises if a thread died."""

    def __init__(self, config: Config, *, outlet=None, rig=None, insecure: bool = False,
                 correction_delay_ms: float | None = None, session: str | None = None):
        self.config = config
        self.rig = rig
        self._own_rig = False
        if self.rig is None and config.sim is not None:
            self.rig = SimRig(config.sim)
            self._own_rig = True
        ctx = DriverContext(agent_name=config.agent.name, rig=self.rig)
        self.drivers = []
        for s in config.streams:
            cls = _driver_class(s.common.driver)
            try:
                self.drivers.append(cls(s.common, s.driver, ctx))
            except (OSError, ValueError) as exc:
                raise AgentError(f"stream {s.name!r}: {exc}") from None
        self.infos: dict[str, StreamInfo] = {d.info.name: d.info for d in self.drivers}
        self.triggers = self._make_triggers(ctx)
        for t in self.triggers:
            info = getattr(t, "info", None)
            if info is not None and hasattr(t, "as_stream") and t.as_stream:
                self.infos[info.name] = info
        self._encoders: dict = {}  # modality -> EncoderRunner or why there is none
        self.fuser = self._make_fuser()
        if self.fuser is not None:
            self.infos[self.fuser.inner.info.name] = self.fuser.inner.info
        self.queue = BoundedQueue(config.agent.queue_chunks, config.agent.overflow)
        self.hub = Hub(self.infos, self.queue)
        # what `synchub align` needs to rebuild the clock layer offline; recorded as "_agent" meta at start
        layer = ClockLayerConfig.of(config.clock, config.triggers, [s.common for s in config.streams],
                                    correction_delay_ms)
        self.clock_config = dataclasses.replace(layer, correction_delay_ms=layer.delay_ns / 1e6)
        self.clocks = self._make_clocks()
        self.trackers = self._make_trackers()
        self.latency = self._make_latency(session)
        if self.latency is not None and isinstance(self.clocks, StreamClocks):
            for name, lat in self.latency.fallback.items():  # a wired stream's stored latency: its fallback's prior
                self.clocks.latency_prior(name, lat.latency_ns, lat.sigma_ns)
        if outlet is None:
            outlet = self._make_sender(insecure, session)
        self.outlet = outlet
        if self.latency is not None and not self.latency.session:  # the stored latency names the session it came from
            sid = getattr(outlet, "session", "")
            self.latency.session = sid if isinstance(sid, str) else ""
        self.hub.marks = getattr(outlet, "marks", None)
        taps = [t.push for t in self.trackers] + ([self.fuser.push] if self.fuser is not None else [])
        self.lsl = LslPublisher(self.infos, config.lsl, config.agent.name)  # [lsl] outlet: corrected streams to LSL
        if self.lsl.specs:
            taps.append(self.lsl.push)
        self.shipper = Shipper(self.queue, self.clocks, outlet,
                               correction_delay_ms=self.clock_config.correction_delay_ms, taps=taps,
                               stream_delays=self.clock_config.stream_delays_ns(),
                               arrival_taps=[t.push_arrival for t in self.trackers])
        self._house_thread: threading.Thread | None = None
        self.house_beat_ns = 0  # the housekeeping loop's last turn (liveness: pipeline/monitor.py)
        self.ntp = self._make_ntp()
        self._stopping = threading.Event()
        self.started_ns = 0
        self.delivery = ""  # the sender's summary line, after stop()

    # ---- assembly
    def _make_triggers(self, ctx: DriverContext) -> list:
        if not self.config.triggers:
            return []
        out = []
        for t in self.config.triggers:
            try:
                out.append(make_trigger_input(t, rig=self.rig))
            except ImportError as exc:
                extra = {"gpiod": "gpio", "rpi-gpio": "rpi"}.get(t.backend)
                hint = f" (install it: pip install 'synchub[{extra}]')" if extra else ""
                raise AgentError(f"trigger {t.name!r} ({t.backend}): {exc}{hint}") from None
            except (OSError, ValueError) as exc:
                raise AgentError(f"trigger {t.name!r} ({t.backend}): {exc}") from None
        return out

    def _make_clocks(self):
        if self.config.clock.method == "identity":
            return IdentityClocks()
        return StreamClocks(self.infos, self.clock_config, history=False)  # live: never smoothed, bounded

    def _make_trackers(self) -> list:
        wanted = [s for s in self.config.streams if s.common.align_to and s.common.method in ("neural", "hybrid", "auto")]
        if not wanted:
            return []

        runners = self._runners({modality_of(self.infos[n]) for s in wanted for n in (s.common.align_to, s.name)},
                                "alignment")
        out = []
        by_name = {s.name: s for s in self.config.streams}
        table = sigma_table(self.rig is not None)
        for s in wanted:
            ref = s.common.align_to
            method = "hybrid" if s.common.method == "auto" else s.common.method
            rules = s.common.markers or by_name[ref].common.markers  # the marker stream's, either side
            settings = calibrated_settings(table, self.rig is not None, rules_from(rules) if rules else None)
            out.append(Locked(AlignmentTracker(ref, s.name, self.infos[ref], self.infos[s.name], runners=runners,
                                               method=method, settings=settings, table=table)))
        return out

    def _make_latency(self, session: str | None) -> SessionLatency | None:
        """The stored pair latencies (``latency_io``): applied where an aligned stream has no trigger, measured
        where it has one."""
        if not self.trackers:
            return None
        pairs = {}
        aligned = {t.inner.tgt_stream for t in self.trackers}
        for s in self.config.streams:
            if s.name in aligned:
                ref = s.common.align_to
                key = PairKey(s.name, modality_of(self.infos[s.name]), ref, modality_of(self.infos[ref]))
                pairs[s.name] = (key, bool(s.common.trigger))
        return SessionLatency(calibration_path(self.config.agent, os.environ), pairs, session or "")

    def _make_fuser(self):
        if not self.config.agent.fusion:
            return None

        data = {n: i for n, i in self.infos.items() if i.type not in ("trigger", "fused")}
        runners = self._runners({modality_of(i) for i in data.values()}, "fusion")
        return Locked(Fuser(data, runners, window_s=self.config.agent.fusion_window_s))

    def _runners(self, modalities: set[str], user: str) -> dict:
        """The encoders of ``modalities``, each loaded once for the aligners and the fusion together; a missing
        model is a logged reason (the aligner abstains, the fusion leaves NaN), not an error."""
        missing = modalities - self._encoders.keys()
        self._encoders.update(load_runners(sorted(missing)))
        runners = {m: self._encoders[m] for m in modalities}
        for reason in sorted(r for r in runners.values() if isinstance(r, str)):
            log.warning("%s: %s", user, reason)
        return runners

    def _make_ntp(self):
        clock = self.config.clock
        if clock.utc != "ntp" or not clock.ntp_servers:
            return None

        return NtpMonitor(list(clock.ntp_servers), interval_s=clock.ntp_interval_s)

    def _on_ntp(self, mon) -> None:
        """After each NTP round: its UTC sample goes to the clock layer as evidence, its health into the recording."""
        est = mon.evidence()
        if est is not None:
            self.hub.evidence(est)
        self.hub.meta("_ntp", {"kind": "ntp_health", **mon.health()})

    def _system_utc(self) -> None:
        """A reference (monotonic) -> UTC sample from the system clock, bracketed by two monotonic reads."""
        a = now_ns()
        utc = utc_now_ns()
        b = now_ns()
        mono = (a + b) // 2
        sigma = max((b - a) // 2, 1_000_000)  # the system clock itself is good to ~1 ms at best without NTP health
        self.hub.evidence(UtcSample(mono, utc, sigma, source="system"))

    def _make_sender(self, insecure: bool, session: str | None):
        try:
            make = nats_sender_from_settings if self.config.agent.transport == "nats" else sender_from_settings
            return make(self.config.agent, list(self.infos.values()), insecure=insecure, session=session)
        except TransportError as exc:
            raise AgentError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot set up transport to {', '.join(self.config.agent.collector)}: {exc}") from None

    # ---- life cycle
    def start(self) -> None:
        """Start everything; a trigger line or stream that cannot start (a busy GPIO line, a permission) raises
        ``AgentError`` naming it, and the caller's ``stop()`` still stops and flushes what had started."""
        self.started_ns = now_ns()
        self.hub.meta("_agent", self.clock_config.to_dict())
        if self.latency is not None:  # which stored latencies this session's aligners are corrected by
            self.hub.meta("_latency", self.latency.describe())
        if self.rig is not None and self._own_rig:
            self.rig.start()
        try:
            self.lsl.open()
        except (ImportError, ValueError) as exc:  # pylsl (the lsl extra) or liblsl missing: one line
            raise AgentError(f"[lsl] outlet: {exc}") from None
        self.shipper.start()
        parts = [(f"trigger {c.name!r}", t) for c, t in zip(self.config.triggers, self.triggers, strict=True)]
        parts += [(f"stream {d.info.name!r}", d) for d in self.drivers]
        for what, part in parts:
            try:
                part.start(self.hub)
            except (OSError, ValueError) as exc:
                raise AgentError(f"{what}: cannot start: {exc}") from None
        if self.ntp is not None:
            self.ntp.start(self._on_ntp)
        self._house_thread = threading.Thread(target=self._housekeeping, name="synchub-house", daemon=True)
        self._house_thread.start()
        log.info("agent %s started: %d streams, %d triggers", self.config.agent.name, len(self.drivers),
                 len(self.triggers))

    def _housekeeping(self) -> None:
        """Aligners every 0.5 s; a system-clock UTC sample every 10 s (when UTC comes from the system or NTP)."""
        last_utc = 0.0
        while True:
            self.house_beat_ns = now_ns()
            if self.config.clock.utc in ("system", "ntp") and time.monotonic() - last_utc >= 10.0:
                last_utc = time.monotonic()
                self._system_utc()
            if self._stopping.wait(0.5):
                return
            self._poll_consumers()

    def _poll_consumers(self) -> None:
        """Aligner estimates go to the queue as evidence, finished fusion windows as corrected chunks."""
        for t in self.trackers:
            try:
                for est in t.poll():  # stamped with when the agent had it: a causal rerun feeds it no earlier
                    est = dataclasses.replace(est, host_ns=now_ns())
                    self.hub.evidence(self.latency(est) if self.latency is not None else est)
            except Exception:  # an aligner bug must not take the recording down; logged
                log.exception("aligner %s failed", getattr(t.inner, "tgt_stream", "?"))
        if self.fuser is not None:
            try:
                for chunk in self.fuser.poll():
                    self.queue.put(DerivedChunk(chunk))
            except Exception:
                log.exception("fusion failed")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop and drain; True when everything reached the collector (``delivery`` says what did not)."""
        self._stopping.set()
        if self.rig is not None and self._own_rig:
            self.rig.quiesce(2.0)  # simulated devices fall silent and the readers drain them: the truth stays exact
        for d in self.drivers:
            d.stop()
        for t in self.triggers:
            t.stop()
        if self.ntp is not None:
            self.ntp.stop()
        if self.rig is not None and self._own_rig:
            self.rig.stop()
        if self._house_thread is not None:  # its last aligner/fusion output reaches the queue before the drain
            self._house_thread.join(timeout)
        self.shipper.stop()
        self.shipper.join(timeout)
        if self.shipper.is_alive():  # never silent: what it still holds is not in the recording (yet)
            log.error("pipeline did not drain within %.0f s: %d chunks queued, %d held for correction",
                      timeout, len(self.queue), self.shipper.pending)
        else:
            # the drain fed the held-back chunks to the aligners and the fusion: their output is recorded too
            self._poll_consumers()
            self.shipper.final_drain()
            if self.latency is not None:  # the trigger path against the aligners: the pairs' latencies, stored
                self.latency.finish(self.clocks)
                self.outlet.send_meta("_latency", self.latency.describe())
        self.queue.close()
        self.lsl.close()
        close = getattr(self.outlet, "close", None)
        ok = close(timeout) is not False if close is not None else True
        summary = getattr(self.outlet, "summary", None)
        self.delivery = summary() if summary is not None else ""
        return ok and not self.shipper.is_alive()

    def check(self) -> None:
        if self.shipper.error is not None:
            raise AgentError(f"pipeline failed: {self.shipper.error!r}")
        refused = getattr(self.outlet, "refused", "")  # a NATS cluster's permanent refusal (credentials, subjects)
        if isinstance(refused, str) and refused:
            raise AgentError(f"transport refused: {refused}")

    def status(self) -> dict[str, Any]:
        per = {}
        for name, st in self.hub.stats.items():
            per[name] = {"samples": st.samples, "sent": self.shipper.sent_samples.get(name, 0),
                         "gaps": st.gaps, "dropped": st.dropped, "malformed": st.malformed}
        return {"streams": per, "queue": len(self.queue), "pending": self.shipper.pending,
                "queue_dropped": self.queue.stats.dropped_samples, "tap_errors": self.shipper.tap_errors,
                **({"lsl_pushed": dict(self.lsl.pushed)} if self.lsl.specs else {}),
                **({"latency": self.latency.describe()} if self.latency is not None else {})}
