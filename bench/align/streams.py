"""``bench align``'s streams: one simulated world rendered into every modality a pair needs, each stream on its
own ``DeviceClock`` (offset, drift, the link's latency and the device's stamp jitter), and their embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synchub.agent.core.stream import StreamInfo
from synchub.drivers.sim import render as R
from synchub.drivers.sim.clocks import ClockSpec, DeviceClock
from synchub.drivers.sim.world import World

from .scenario import RATES, SHAPES, BenchSpec


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


def cut(t, x, a, b):
    i, j = int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="left"))
    return t[i:j], x[i:j]


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
