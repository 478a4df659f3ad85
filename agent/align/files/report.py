"""What ``synchub align`` tells about each stream: a JSON report and a plot of offsets and residuals over time.

``StreamStats`` follows a stream through the writing pass with bounded memory: counts, first and last times, and a
decimated record of ``(reference time, reference - device, 1-sigma)`` (device times after dejittering: the clock's
offset, not the stamps' jitter) (``Decimated``: every k-th sample, k doubling
whenever ``KEEP`` points are held), from which the offset, the drift (ppm: the device runs fast by this much, the
``ClockModel`` convention) and the uncertainty's median / p95 / max are taken.

``plot(report_curves, png)`` draws, per stream, the offset over time (minus its value at the start) and the
residuals of its evidence (XDF ClockOffsets, sync edge pairs, aligner offsets) against the fitted clock model.
matplotlib is imported when a plot is asked for (the ``plot`` extra).
"""

from __future__ import annotations

import numpy as np

from synchub.extras import require

NS = 1_000_000_000
KEEP = 4096
#: A jump of the offset between two plotted points larger than this is a clock reset (a new segment).
JUMP_NS = 100_000_000


class Decimated:
    """At most ``2 * KEEP`` evenly spaced rows of a long sequence of rows."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self.stride = 1
        self.seen = 0
        self.rows: list[np.ndarray] = []
        self.n = 0

    def add(self, *cols: np.ndarray) -> None:
        n = len(cols[0])
        if n == 0:
            return
        first = (-self.seen) % self.stride
        idx = np.arange(first, n, self.stride)
        self.seen += n
        if len(idx):
            self.rows.append(np.stack([np.asarray(c, dtype=np.float64)[idx] for c in cols], axis=1))
            self.n += len(idx)
        if self.n > 2 * self.keep:
            allr = np.concatenate(self.rows)[::2]
            self.rows, self.n = [allr], len(allr)
            self.stride *= 2

    def array(self, ncols: int) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.zeros((0, ncols))


class StreamStats:
    def __init__(self):
        self.samples = 0
        self.first: tuple[int, int] | None = None  # (device, reference) of the first sample
        self.last: tuple[int, int] | None = None
        self.unc_max = 0
        self.unknown = 0
        self.curve = Decimated()
        self.methods: dict[str, int] = {}

    def add(self, device_ns: np.ndarray, ref_ns: np.ndarray, unc_ns: np.ndarray, method: str,
            unknown_ns: int) -> None:
        n = len(device_ns)
        if n == 0:
            return
        self.samples += n
        self.methods[method] = self.methods.get(method, 0) + n
        if self.first is None:
            self.first = (int(device_ns[0]), int(ref_ns[0]))
        self.last = (int(device_ns[-1]), int(ref_ns[-1]))
        known = unc_ns < unknown_ns
        self.unknown += int(n - known.sum())
        if known.any():
            self.unc_max = max(self.unc_max, int(unc_ns[known].max()))
        self.curve.add(ref_ns, ref_ns - device_ns, np.where(known, unc_ns, -1))

    def summary(self) -> dict:
        out: dict = {"samples": self.samples}
        if self.first is None:
            return out
        c = self.curve.array(3)
        out["first_ref_s"] = self.first[1] / NS
        out["last_ref_s"] = self.last[1] / NS
        out["offset_ms"] = (self.first[1] - self.first[0]) / 1e6
        drift = _drift_ppm(c)
        if drift is not None:
            out["drift_ppm"] = drift
        u = c[:, 2][c[:, 2] >= 0]
        if len(u):
            out["uncertainty_us"] = {"median": float(np.median(u)) / 1e3,
                                     "p95": float(np.percentile(u, 95)) / 1e3, "max": self.unc_max / 1e3}
        if self.unknown:
            out["samples_without_mapping"] = self.unknown
        return out


#: reader ``stats`` of rows left out (and of samples clipped), as the report's warnings say them
_SKIPS = {"bad_time": "rows skipped: no time",
          "time_in_another_form": "rows skipped: their time is a date among numbers or a number among dates",
          "cut_last_row": "row left out: the last, cut short (fewer fields than the header, no line end)",
          "cut_last_marker": "marker left out: the last, cut short (fewer than its 5 fields, no line end)",
          "cut_last_line": "line left out: the last, cut short (no entry, no line end)",
          "cut_short": "video file cut short: its tracks end before the duration its header declares",
          "audio_overlap": "audio frames left out: their timestamps put them over the frames before",
          "audio_gaps": "gaps in a video file's audio track (its samples restart at the frame after each)",
          "clipped": "samples clipped at full scale (a recorder's gain set too high): the sounds' rise is flattened "
                     "there, its onsets less sharp, the mapping less sure than its 1-sigma may say"}


def input_warnings(path: str, stats: dict[str, int]) -> list[str]:
    """The report's warnings of what an input's reader left out (the rows themselves are logged one by one)."""
    return [f"{path}: {stats[k]} {text}" for k, text in _SKIPS.items() if stats.get(k)]


def reset_warning(path: str, key: str, starts: list[int], reference: bool) -> str:
    """A stream whose time went back and stayed back (a clock reset) at the samples ``starts`` (file order), and
    what became of the samples after it."""
    at = ", ".join(str(s + 1) for s in starts[:3]) + (", ..." if len(starts) > 3 else "")
    how = ("it is on the reference clock: the samples after a reset keep their own times, which repeat the times "
           "before it" if reference else
           "each run after a reset is a clock timeline of its own, tied to the reference on its own")
    return f"{path}: {key}: its time went back {len(starts)} time(s), a clock reset? (at sample {at}): {how}"


def _drift_ppm(c: np.ndarray) -> float | None:
    """ppm the device runs fast, from a decimated (reference, offset) curve: the slope of the offset over device
    time per stretch between clock resets (offset jumps), weighted by each stretch's length."""
    if len(c) < 2:
        return None
    cuts = np.flatnonzero((np.abs(np.diff(c[:, 1])) > JUMP_NS) | (np.diff(c[:, 0]) < 0)) + 1
    num = den = 0.0
    for part in np.split(c, cuts):
        dev = part[:, 0] - part[:, 1]
        span = float(dev.max() - dev.min()) if len(part) > 1 else 0.0
        if span <= 0:
            continue
        slope = np.polyfit(dev - dev[0], part[:, 1] - part[0, 1], 1)[0]
        num += -slope * 1e6 * span
        den += span
    return num / den if den else None


def plot(curves: dict[str, dict], png: str, title: str = "synchub align") -> None:
    """``curves[stream] = {"offset": (n, 2) array of (reference ns, offset ns), "residuals": {kind: (m, 2) array of
    (reference ns, residual ns)}}`` drawn into ``png``."""
    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    line_color = None
    t0 = min((float(c["offset"][0, 0]) for c in curves.values() if len(c["offset"])), default=0.0)
    for name, c in curves.items():
        off = c["offset"]
        if not len(off):
            continue
        # a clock reset: the offset jumps; each segment is drawn from its own start
        cuts = np.flatnonzero(np.abs(np.diff(off[:, 1])) > JUMP_NS) + 1
        for k, part in enumerate(np.split(off, cuts)):
            line = ax1.plot((part[:, 0] - t0) / NS, (part[:, 1] - part[0, 1]) / 1e6, lw=1,
                            label=name if k == 0 else None, color=None if k == 0 else line_color)
            line_color = line[0].get_color()
            if k:
                ax1.axvline((part[0, 0] - t0) / NS, color=line_color, ls=":", lw=0.8)
        for kind, r in c.get("residuals", {}).items():
            if len(r):
                ax2.plot((r[:, 0] - t0) / NS, r[:, 1] / 1e3, ".", ms=3, label=f"{name}: {kind}")
    ax1.set_ylabel("offset - offset at segment start (ms)")
    ax1.set_xlabel("reference time (s)")
    ax1.set_title(f"{title}: reference - device time")
    ax2.set_ylabel("residual (us)")
    ax2.set_xlabel("reference time (s)")
    ax2.set_title("evidence against the fitted clock model")
    for ax in (ax1, ax2):
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
