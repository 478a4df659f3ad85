"""``bench align``'s scenario files (``bench/scenarios/align-*.toml``): the pairs, the modalities' rates and shapes,
the links (latency, jitter) of each modality, and ``load_scenario``.  ``synchub bench align --reference``-style
docs are in the settings' metadata."""

from __future__ import annotations

from dataclasses import dataclass

from synchub.agent.core.settings import Where, build, read_toml, setting
from synchub.drivers.sim.world import WorldSpec

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
    hold_s: float = setting(60.0, min=0.0, doc="hybrid: events before the target's third offset wait this long "
                            "(device s) for it and are mapped with the offsets, not with the unjudged envelope "
                            "(0: never)")
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
