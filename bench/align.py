"""``synchub bench align --scenario FILE [--json OUT]``: alignment accuracy of arrival, classical, neural and hybrid.

What it does, per seed of the scenario:

1. renders one simulated world (``drivers/sim/render.py``) into every modality the pairs need: IMU 200 Hz,
   audio 16 kHz, video 30 fps, image (still frames at 1 fps), telemetry ("metadata") 10 Hz, text (event log lines);
2. gives every stream its own ``DeviceClock``: an offset drawn in +-``offset_max_s`` (1.5 s), a drift in
   +-``drift_max_ppm`` (100 ppm), the link's latency and the device's timestamp jitter from ``[link.<modality>]``.
   Samples are taken on the device's own clock, stamped by it (with jitter) and received by the host later;
3. per pair, the *reference* stream is taken as already on the reference clock (its trigger line put it there:
   its corrected times are the true times plus ``ref_jitter_us`` of noise), and each *target* stream is aligned
   against it in windows of ``window_s`` hopped by ``hop_s`` of target device time, every window independently
   searched over +-2 s around zero (no prior from earlier windows), by every method on the same data:

   * ``arrival``: the target's raw host receive times (what a hub without clock evidence records);
   * ``classical``: onset correlation of hand-made features (``agent/align/onsets.py``), coarse then fine;
   * ``neural``: encoders only: coarse lag from embedding similarity + parabolic vertex (``EncoderRunner``);
   * ``hybrid``: neural coarse + fine onset correlation, cross-checked against the classical wide search,
     bounded by the arrival times (a sample cannot arrive before it was taken: offset <= min(host - device) over
     the window), fused with the trigger edges of targets listed in ``triggered`` in the target's ``ClockModel``.

   classical and neural map a window's events with that window's offset and the drift fitted (Theil-Sen) over the
   windows accepted so far; hybrid maps them with the ClockModel after adding that window's evidence (causal: a
   live agent has the same information one window later).

**What counts as an event (accuracy).**  Every onset of a world event (tap, motion, flash, sound, marker) inside
the evaluated span, as the target stream's device clock stamps it, is mapped to the reference clock by each
method; its error is |mapped - true time|.  That is what a user means by "the streams are aligned": an event seen
in the target lands at the right moment on the common timeline.  Each event belongs to the window whose centre is
nearest.  ``within_tol_pct`` is the share of all events mapped within tolerance, where an event a method could not
map (its window abstained, or hybrid had no evidence yet) counts as a miss.  ``median_ms``/``p95_ms`` are over the
mapped events.  Tolerance = max(1 ms, half the coarser stream's sample period; text has no period).
``abstain_pct`` = share of windows where the method said "not aligned".  ``drift_err_ppm`` = |estimated - true|
drift at the end of the session, median over seeds (arrival: slope of a line through host - device).

Seeds: use seeds the encoders never saw (``models/simdata.py`` trains on seeds >= 1_000_000 and validates on
>= 9_000_000; the shipped scenarios use 1000+).  Numbers belong in the JSON this writes, not in unit tests.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from synchub.agent.align.aligner import AlignerSettings
from synchub.agent.align.drift import DriftTracker, theil_sen
from synchub.agent.align.window import WindowAligner, load_runners
from synchub.agent.core.settings import Where, build, read_toml, setting
from synchub.agent.core.stream import StreamInfo
from synchub.agent.core.units import NS
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.world import World, WorldSpec
from synchub.errors import UserError

RATES = {"imu": 200.0, "audio": 16000.0, "video": 30.0, "image": 1.0, "telemetry": 10.0, "text": 0.0}
SHAPES = {"imu": (6,), "audio": (1,), "video": (24, 32), "image": (24, 32), "telemetry": (5,), "text": ()}
NAMES = {"text": "Text", "image": "Image", "video": "Video", "telemetry": "Metadata", "imu": "IMU", "audio": "Audio"}
METHODS = ("arrival", "classical", "neural", "hybrid")

#: default pairs: (name, reference, targets).  The reference is the stream a trigger line would reach.
DEFAULT_PAIRS = (
    ("Text+Image", "image", ("text",)),
    ("Text+Video", "video", ("text",)),
    ("Text+Metadata", "telemetry", ("text",)),
    ("Metadata+Image", "image", ("telemetry",)),
    ("Metadata+Video", "video", ("telemetry",)),
    ("Text+Image+Metadata", "image", ("text", "telemetry")),
    ("IMU+Audio", "imu", ("audio",)),
    ("IMU+Video", "imu", ("video",)),
    ("Audio+Video", "audio", ("video",)),
)

#: default links per modality (overridable per scenario in [link.<modality>]).
DEFAULT_LINKS = {
    "imu": dict(jitter_us=20.0, latency_min_ms=1.0, latency_max_ms=16.0, latency_kind="usb-buffer"),
    "audio": dict(jitter_us=0.0, latency_min_ms=5.0, latency_max_ms=20.0, latency_kind="usb-buffer"),
    "video": dict(jitter_us=200.0, latency_min_ms=30.0, latency_max_ms=80.0, latency_kind="uniform"),
    "image": dict(jitter_us=200.0, latency_min_ms=50.0, latency_max_ms=150.0, latency_kind="uniform"),
    "telemetry": dict(jitter_us=50.0, latency_min_ms=2.0, latency_max_ms=20.0, latency_kind="uniform"),
    "text": dict(jitter_us=100.0, latency_min_ms=1.0, latency_max_ms=50.0, latency_kind="exponential"),
}


@dataclass(frozen=True)
class PairSpec:
    name: str = setting(doc="pair label in the results")
    ref: str = setting(doc="reference stream modality", choices=tuple(RATES))
    targets: tuple[str, ...] = setting(doc="target stream modalities", choices=tuple(RATES))


@dataclass(frozen=True)
class BenchSpec:
    seeds: tuple[int, ...] = setting((1000, 1001, 1002), doc="world seeds (held out from encoder training)")
    duration_s: float = setting(120.0, min=20.0, doc="simulated seconds per seed")
    window_s: float = setting(16.0, min=1.0, doc="alignment window, target device seconds")
    window_periods: float = setting(32.0, min=1.0, doc="window at least this many coarser-stream sample periods")
    hop_s: float = setting(4.0, min=0.5, doc="hop between windows")
    offset_max_s: float = setting(1.5, min=0.0, max=1.9, doc="device clock offsets drawn in +-this")
    drift_max_ppm: float = setting(100.0, min=0.0, doc="device clock drifts drawn in +-this")
    ref_jitter_us: float = setting(5.0, min=0.0, doc="noise of the reference stream's corrected times")
    skew_prior_ppm: float = setting(300.0, min=1.0, doc="hybrid ClockModel's prior on a device's rate error")
    triggered: tuple[str, ...] = setting((), doc="target modalities whose device also sees the 1 Hz trigger")
    methods: tuple[str, ...] = setting(METHODS, choices=METHODS, doc="methods to run")
    pairs: tuple[PairSpec, ...] = setting((), doc="pairs (default: the paper's six + IMU/Audio/Video)")


@dataclass(frozen=True)
class LinkSpec:
    jitter_us: float = setting(0.0, min=0.0)
    latency_min_ms: float = setting(0.5, min=0.0)
    latency_max_ms: float = setting(2.0, min=0.0)
    latency_kind: str = setting("uniform", choices=("uniform", "usb-buffer", "exponential"))
    drop_rate: float = setting(0.0, min=0.0, max=0.5)


def add_arguments(p) -> None:
    p.add_argument("--scenario", help="scenario TOML (bench/scenarios/align-*.toml); or --real")
    p.add_argument("--json", default="", help="write results here")
    p.add_argument("--seeds", default="", help="override the scenario's seeds (comma list)")
    p.add_argument("--quiet", action="store_true", help="no per-pair table")
    from synchub.bench import align_real  # the real-signal corpus variant (``--real``)

    align_real.add_arguments(p)


def load_scenario(path: str):
    doc = read_toml(path, "scenario")
    where = Where(str(path))
    allowed = {"bench", "world", "link"}
    for k in doc:
        if k not in allowed:
            raise where.child(k).error(f"unknown table; allowed: {', '.join(sorted(allowed))}")
    bench = build(BenchSpec, doc.get("bench", {}), where.child("bench"))
    world = build(WorldSpec, doc.get("world", {}), where.child("world"))
    links = {}
    for m in RATES:
        base = dict(DEFAULT_LINKS[m])
        base.update(doc.get("link", {}).get(m, {}))
        links[m] = build(LinkSpec, base, where.child("link").child(m))
    for m in doc.get("link", {}):
        if m not in RATES:
            raise where.child("link").child(m).error(f"unknown modality; allowed: {', '.join(RATES)}")
    return bench, world, links


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Stream:
    modality: str
    true_ns: np.ndarray  # reference time of each sample (int64)
    device_ns: np.ndarray  # device stamp (with jitter)
    host_ns: np.ndarray  # host receive time
    data: object  # ndarray or list[str]
    clock: DeviceClock

    def info(self) -> StreamInfo:
        shape = SHAPES[self.modality]
        t = "text" if self.modality == "text" else self.modality
        fmt = "string" if t == "text" else ("uint8" if t in ("video", "image") else "float32")
        return StreamInfo(self.modality, t, RATES[self.modality], int(np.prod(shape)) if shape else 1, fmt,
                          shape=shape if len(shape) > 1 else ())


def render_streams(world: World, modalities, bench: BenchSpec, links: dict, seed: int) -> dict[str, Stream]:
    rng = np.random.default_rng([seed, 77])
    out = {}
    for k, m in enumerate(sorted(modalities)):
        link = links[m]
        spec = ClockSpec(offset_s=float(rng.uniform(-bench.offset_max_s, bench.offset_max_s)),
                         drift_ppm=float(rng.uniform(-bench.drift_max_ppm, bench.drift_max_ppm)),
                         jitter_us=link.jitter_us, latency_min_ms=link.latency_min_ms,
                         latency_max_ms=link.latency_max_ms, latency_kind=link.latency_kind,
                         drop_rate=link.drop_rate)
        clock = DeviceClock(spec, world.duration_s, seed=int(seed) * 100 + k + 1)
        srng = np.random.default_rng([seed, k, 5])
        if m == "text":
            msgs = world.log_messages()
            true = np.array([t for t, _ in msgs], dtype=np.int64)
            data: object = [s for _, s in msgs]
            dev = clock.to_device(true, jitter=True)
        else:
            true, dev, _seg = clock.regular_samples(RATES[m], 0.0, world.duration_s)
            dev = dev + (clock.to_device(true, jitter=True) - clock.to_device(true))
            data = R.render(world, "video" if m == "image" else m, true, rng=srng)
        host = clock.arrivals(true)
        if link.drop_rate > 0 and len(true):
            keep = ~clock.drop_mask(len(true))
            true, dev, host = true[keep], dev[keep], host[keep]
            data = [d for d, k_ in zip(data, keep, strict=True) if k_] if isinstance(data, list) else data[keep]
        order = np.argsort(dev, kind="stable")  # jitter may reorder stamps a hair; streams are sorted by stamp
        true, dev, host = true[order], dev[order], host[order]
        data = [data[i] for i in order] if isinstance(data, list) else data[order]
        out[m] = Stream(m, true, dev, host, data, clock)
    return out


def _cut(t, x, a, b):
    i, j = int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="left"))
    return t[i:j], x[i:j]


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass
class PairOutcome:
    errors: dict  # method -> list of abs error ns (mapped events)
    missed: dict  # method -> events not mapped
    windows: dict  # method -> (abstained, total)
    drift_err: dict  # method -> list of |ppm err| per target


def _true_drift(clock: DeviceClock, true_end: int) -> float:
    return float(clock.drift_ppm_at(np.array([true_end]))[0])


def embed_stream(runners: dict, modality: str, t_ns: np.ndarray, data):
    """Whole-stream embedding (computed once; the runner's output does not depend on how a stream is cut), or the
    reason there is none."""
    r = runners.get(modality)
    if r is None or isinstance(r, str):
        return r or f"no model for {modality}"
    if len(t_ns) == 0:
        return f"no {modality} samples"
    try:
        return r.embed(data, t_ns, span_ns=(int(t_ns[0]), int(t_ns[-1]) + 1))
    except Exception as exc:  # noqa: BLE001 - reported as the neural method's abstention reason
        return f"{modality} encoder failed: {exc}"


def run_pair(streams: dict[str, Stream], world: World, ref_m: str, targets, bench: BenchSpec, runners: dict,
             settings: AlignerSettings, rng: np.random.Generator, emb_cache: dict | None = None) -> PairOutcome:
    from synchub.agent.clock.model import ClockModel

    methods = bench.methods
    out = PairOutcome({m: [] for m in methods}, {m: 0 for m in methods}, {m: [0, 0] for m in methods},
                      {m: [] for m in methods})
    ref = streams[ref_m]
    ref_t = ref.true_ns + np.rint(rng.normal(0, bench.ref_jitter_us * 1e3, len(ref.true_ns))).astype(np.int64)
    order = np.argsort(ref_t, kind="stable")
    ref_t = ref_t[order]
    ref_x = [ref.data[i] for i in order] if isinstance(ref.data, list) else ref.data[order]
    ev_true = world.events["t_ns"].astype(np.int64)
    neural_on = "neural" in methods or "hybrid" in methods
    emb_cache = {} if emb_cache is None else emb_cache
    ref_emb = None
    if neural_on:
        ref_emb = embed_stream(runners, ref_m, ref_t, ref_x)
    hop_ns = int(bench.hop_s * NS)
    for tm in targets:
        coarser = max([1.0 / RATES[m] for m in (ref_m, tm) if RATES[m] > 0] or [0.0])
        win_ns = int(max(bench.window_s, bench.window_periods * coarser) * NS)
        tgt = streams[tm]
        wa = WindowAligner(ref.info(), tgt.info(), runners, settings)
        tgt_emb = None
        if neural_on:
            if tm not in emb_cache:
                emb_cache[tm] = embed_stream(runners, tm, tgt.device_ns, tgt.data)
            tgt_emb = emb_cache[tm]
        # events as the target's device clock stamps them
        ev_dev = tgt.clock.to_device(ev_true)
        d_start = int(tgt.clock.to_device(np.array([0]))[0]) + int(0.5 * NS)
        d_end = int(tgt.clock.to_device(np.array([int(world.duration_s * NS)]))[0]) - int(0.5 * NS)
        starts = np.arange(d_start, d_end - win_ns + 1, hop_ns)
        if len(starts) == 0:
            continue
        centres = starts + win_ns // 2
        sel = (ev_dev >= centres[0] - hop_ns // 2) & (ev_dev < centres[-1] + hop_ns // 2)
        e_dev, e_true = ev_dev[sel], ev_true[sel]
        owner = np.clip(np.rint((e_dev - centres[0]) / hop_ns).astype(np.int64), 0, len(centres) - 1)
        trackers = {m: DriftTracker() for m in ("classical", "neural")}
        model = ClockModel(name=tm, window_s=120.0, skew_prior_ppm=bench.skew_prior_ppm)
        model_has = False
        offsets: list = []
        fed_until = -(1 << 62)
        if tm in bench.triggered:  # the target's device sees the 1 Hz trigger: edges into the model
            rises, _w = R.render_trigger(0, int(world.duration_s * NS))
            d_edges = tgt.clock.to_device(rises, jitter=True)
            r_edges = rises + np.rint(rng.normal(0, 2e3, len(rises))).astype(np.int64)
            # the device stamps the edge with its own jitter; the host GPIO stamp adds ~2 us
            edge_sigma = float(np.hypot(tgt.clock.spec.jitter_us * 1e3, 2e3))
        for w, d0 in enumerate(starts):
            d1 = d0 + win_ns
            idx = np.nonzero(owner == w)[0]
            ed, et = e_dev[idx], e_true[idx]
            if "arrival" in methods:
                out.windows["arrival"][1] += 1
                if len(ed):
                    off = np.interp(ed, tgt.device_ns, (tgt.host_ns - tgt.device_ns).astype(np.float64))
                    out.errors["arrival"].extend(np.abs(ed + off - et).tolist())
            span = (int(d0), int(d1))
            lo, hi = wa.ref_range(span, 0)
            rt, rx = _cut(ref_t, ref_x, lo, hi)
            tt, tx = _cut(tgt.device_ns, tgt.data, d0, d1)
            i0, i1 = np.searchsorted(tgt.device_ns, [d0, d1])
            bound = int(np.min(tgt.host_ns[i0:i1] - tgt.device_ns[i0:i1])) if i1 > i0 else None
            res = wa.estimate(rt, rx, tt, tx, span, 0, methods=[m for m in methods if m != "arrival"],
                              ref_emb=ref_emb, tgt_emb=tgt_emb, arrival_bound_ns=bound)
            for m, r in res.items():
                out.windows[m][1] += 1
                if not r.ok:
                    out.windows[m][0] += 1
                if m == "hybrid":
                    # the agent feeds every stream's arrival times (and trigger edges, where wired) to its clock
                    # model, in device-time order, up to the window's centre: ClockModel takes evidence more than
                    # 1 s older than its newest as out of order (or a clock reset)
                    centre = int(d0) + win_ns // 2
                    if tm in bench.triggered:
                        k = d_edges < centre
                        for de, rf in zip(d_edges[k], r_edges[k], strict=True):
                            a0, a1 = np.searchsorted(tgt.device_ns, [fed_until, de])
                            if a1 > a0:
                                model.add_arrivals(tgt.device_ns[a0:a1], tgt.host_ns[a0:a1])
                            fed_until = max(fed_until, int(de))
                            model.add_edges(np.array([de]), np.array([rf]), edge_sigma)
                            offsets.append((int(de), int(rf - de), int(edge_sigma)))
                            model_has = True
                        d_edges, r_edges = d_edges[~k], r_edges[~k]
                    fed_until, fed = feed_window(model, tgt, fed_until, centre, r, tm, win_ns / hop_ns, offsets)
                    model_has = model_has or fed
                    if not model_has:
                        out.missed[m] += len(ed)
                        continue
                    if len(ed):
                        out.errors[m].extend(np.abs(hybrid_map(model, ed, offsets, bench.skew_prior_ppm, coarser * NS) - et).tolist())
                    continue
                tr = trackers[m]
                if not r.ok:
                    out.missed[m] += len(ed)
                    continue
                tr.add(r)
                if len(ed):
                    drift = tr.drift_ppm
                    mapped = ed + r.offset_ns - drift * 1e-6 * (ed - r.device_ns)
                    out.errors[m].extend(np.abs(mapped - et).tolist())
        true_drift = _true_drift(tgt.clock, int(world.duration_s * NS))
        if "arrival" in methods:
            a, b = theil_sen(((tgt.device_ns[::max(1, len(tgt.device_ns) // 400)] - tgt.device_ns[0]) / NS),
                             (tgt.host_ns - tgt.device_ns)[::max(1, len(tgt.device_ns) // 400)].astype(float))
            out.drift_err["arrival"].append(abs(-b / 1e3 - true_drift))
        for m in ("classical", "neural"):
            if m in methods and len(trackers[m].points) >= trackers[m].min_points:
                out.drift_err[m].append(abs(trackers[m].drift_ppm - true_drift))
        if "hybrid" in methods and model_has:
            st = model.state()
            if "drift_ppm" in st:
                out.drift_err["hybrid"].append(abs(float(st["drift_ppm"]) - true_drift))
    return out


def feed_window(model, tgt, fed_until: int, centre: int, r, name: str, overlap: float, offsets: list,
                arrivals: bool = True) -> tuple[int, bool]:
    """What the agent gives the target's ClockModel for one window: the target's arrival times (device, host)
    from ``fed_until`` up to the window's centre (unless ``arrivals`` is False: no host times) and the window's
    offset when ``r`` is ok, its sigma scaled by sqrt(``overlap`` = window / hop: overlapping windows share
    events).  The offset is appended to ``offsets``; returns (fed until, whether anything was fed)."""
    fed = False
    a0, a1 = np.searchsorted(tgt.device_ns, [fed_until, centre])
    if a1 > a0 and arrivals:
        model.add_arrivals(tgt.device_ns[a0:a1], tgt.host_ns[a0:a1])
        fed_until, fed = centre, True
    if r.ok:
        ev = r.evidence(name)
        ev = replace(ev, sigma_ns=int(ev.sigma_ns * max(1.0, overlap) ** 0.5))
        model.add_offset(ev)
        offsets.append((ev.device_ns, ev.offset_ns, ev.sigma_ns))
        fed = True
    return fed_until, fed


def hybrid_map(model, device_ns: np.ndarray, offsets: list, skew_prior_ppm: float = 300.0,
               period_ns: float = 0.0, slack_ns: int = 500_000) -> np.ndarray:
    """Reference times of ``device_ns`` from a ClockModel fed with aligner offsets, trigger edges and arrivals.

    The arrival envelope is late by the link's minimum latency, which its own spread cannot show; the aligner's
    offsets ``[(device_ns, offset_ns, sigma_ns)]`` measure it: L = weighted mean of (envelope - offset).  Where
    L is not significantly above zero (<= 2 standard errors + 1 ms) and the envelope is the more precise, the
    envelope is used; elsewhere the offset/edge filter, bounded above by the envelope (a sample cannot be taken
    after it arrived).  Before the aligner or a trigger has said anything: the envelope alone."""
    from synchub.agent.clock.choice import UNKNOWN_UNC_NS

    arr, arr_unc, _s = model.map(device_ns, method="arrival")
    if np.all(arr_unc >= UNKNOWN_UNC_NS):  # no arrival envelope in this segment yet: the model answers identity
        arr, arr_unc = None, None
    if not offsets:
        return arr if arr is not None else device_ns + 0
    est, est_unc, _s = model.map(device_ns, method="hybrid")
    if arr is None:
        return est
    d = np.array([o[0] for o in offsets], dtype=np.int64)
    off = np.array([o[1] for o in offsets], dtype=np.float64)
    sig = np.maximum(np.array([o[2] for o in offsets], dtype=np.float64), 1e3)
    w = 1.0 / sig**2
    # the filter is slow to trust its first offsets: the nearest offset itself, sigma grown by the skew prior
    # over the distance, where that is more certain
    j = np.argmin(np.abs(device_ns[:, None] - d[None, :]), axis=1)
    own = device_ns + np.rint(off[j]).astype(np.int64)
    own_unc = np.sqrt(sig[j] ** 2 + (skew_prior_ppm * 1e-6 * np.abs(device_ns - d[j])) ** 2)
    better = own_unc < est_unc
    est = np.where(better, own, est)
    est_unc = np.where(better, own_unc, est_unc)
    env_at, _u, _s = model.map(d, method="arrival")
    lat = (env_at - d).astype(np.float64) - off
    bias = float(np.sum(w * lat) / np.sum(w))
    se = float(np.sqrt(1.0 / np.sum(w)))
    if len(lat) > 2:  # the offsets' own scatter, when it says more than their sigmas
        se = max(se, float(np.std(lat)) / np.sqrt(len(lat)))
    se = max(se, 0.1 * period_ns)  # a systematic floor: onsets seen at a coarse rate can be biased that much
    env_ok = bias <= 2.0 * se + 1e6
    use_arr = env_ok & (arr_unc < est_unc)
    return np.where(use_arr, arr, np.minimum(est, arr + slack_ns))


def tolerance_ns(ref_m: str, targets) -> float:
    periods = [1.0 / RATES[m] for m in (ref_m, *targets) if RATES[m] > 0]
    return max(1e6, 0.5 * max(periods) * NS) if periods else 1e6


def summarize(name: str, tol_ns: float, outs: list[PairOutcome], methods) -> list[dict]:
    rows = []
    for m in methods:
        err = np.concatenate([np.asarray(o.errors[m], dtype=np.float64) for o in outs]) if outs else np.zeros(0)
        missed = sum(o.missed[m] for o in outs)
        ab = sum(o.windows[m][0] for o in outs)
        tot = sum(o.windows[m][1] for o in outs)
        drifts = [d for o in outs for d in o.drift_err[m]]
        n_ev = len(err) + missed
        rows.append({
            "pair": name,
            "method": m,
            "median_ms": round(float(np.median(err)) / 1e6, 4) if len(err) else None,
            "p95_ms": round(float(np.percentile(err, 95)) / 1e6, 4) if len(err) else None,
            "within_tol_pct": round(100.0 * float(np.sum(err <= tol_ns)) / n_ev, 2) if n_ev else None,
            "drift_err_ppm": round(float(np.median(drifts)), 3) if drifts else None,
            "abstain_pct": round(100.0 * ab / tot, 2) if tot else None,
        })
    return rows


def bench_align(bench: BenchSpec, world_spec: WorldSpec, links: dict, scenario: str, log=print) -> dict:
    pairs = [(p.name, p.ref, p.targets) for p in bench.pairs] or list(DEFAULT_PAIRS)
    modalities = {m for _, r, ts in pairs for m in (r, *ts)}
    runners = {}
    if "neural" in bench.methods or "hybrid" in bench.methods:
        runners = load_runners(sorted(modalities))
        for m, r in sorted(runners.items()):
            if isinstance(r, str):
                log(f"  encoder {m}: {r}")
    settings = AlignerSettings()
    per_pair: dict[str, list[PairOutcome]] = {name: [] for name, _, _ in pairs}
    for seed in bench.seeds:
        t0 = time.time()
        world = World(bench.duration_s, seed=int(seed), spec=world_spec)
        streams = render_streams(world, modalities, bench, links, int(seed))
        t1 = time.time()
        emb_cache: dict = {}  # target-stream embeddings on their device clocks, shared by the pairs
        for name, ref_m, targets in pairs:
            rng = np.random.default_rng([int(seed), len(name)])
            per_pair[name].append(run_pair(streams, world, ref_m, targets, bench, runners, settings, rng,
                                           emb_cache))
        log(f"  seed {seed}: rendered in {t1 - t0:.1f} s, aligned in {time.time() - t1:.1f} s")
    results = []
    for name, ref_m, targets in pairs:
        results.extend(summarize(name, tolerance_ns(ref_m, targets), per_pair[name], bench.methods))
    return {"scenario": scenario, "results": results}


def run(args) -> int:
    if getattr(args, "real", False):
        from synchub.bench import align_real

        return align_real.run(args)
    if not args.scenario:
        raise UserError("which data? --scenario FILE (simulator) or --real (real-signal corpus)")
    bench, world_spec, links = load_scenario(args.scenario)
    if args.seeds:
        try:
            seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise UserError(f"--seeds: expected a comma list of integers, got {args.seeds!r}") from None
        bench = replace(bench, seeds=seeds)
    t0 = time.time()
    out = bench_align(bench, world_spec, links, Path(args.scenario).stem, log=lambda s: print(s, file=sys.stderr))
    if not args.quiet:
        print(f"{'pair':22s} {'method':9s} {'median_ms':>10s} {'p95_ms':>9s} {'within%':>8s} {'drift_ppm':>9s} "
              f"{'abstain%':>8s}")
        for r in out["results"]:
            def f(v, w=9, p=3):
                return f"{v:{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}s}"
            print(f"{r['pair']:22s} {r['method']:9s} {f(r['median_ms'], 10)} {f(r['p95_ms'])} "
                  f"{f(r['within_tol_pct'], 8, 2)} {f(r['drift_err_ppm'])} {f(r['abstain_pct'], 8, 1)}")
        print(f"({time.time() - t0:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0
