"""SpikeGLX recordings (Neuropixels probes, NI-DAQ and OneBox streams): a ``.bin`` of interleaved int16 samples and
its ``.meta`` of ``key=value`` lines, as SpikeGLX writes them and TPrime, CatGT, SpikeInterface and neo read them.

One stream per file, named after the file (``run_g0_t0.imec0.ap``): ``nSavedChans`` channels of raw ADC counts (int16,
as saved; the meta's gains say volts), labelled from ``~snsChanMap`` (``AP0``..``AP383``, ``SY0``; ``XA0``, ``XD0``),
at the meta's calibrated rate (``imSampRate``, ``niSampRate``, ``obSampRate``).  Time: sample ``i`` at
``(firstSample + i) / rate`` on the stream's own clock (the sample count since acquisition started, so the files of
one run's triggers ``_t0``, ``_t1`` keep their places).  Either file of the pair may be named.

The sync pulses TPrime pairs are where SpikeGLX says they are: bit 6 of a probe's ``SY0`` word (the imec sync
input), the NI or OneBox line ``syncNiChan``/``syncObChan`` (a bit of the digital words, or an analog channel when
its type is 1); ``--sync``/``--sync-bit`` name others.  Refused in one line (``InputError``): no ``.meta`` beside the
``.bin`` (SpikeGLX writes it when the file closes), a meta without a channel count or rate, a ``.bin`` whose size is
not whole samples or is short of the meta's ``fileSizeBytes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import StreamInfo

from .base import FileStream, InputError, InputOptions, Piece, check_readable

NS = 1_000_000_000
PIECE_BYTES = 16 << 20  # at most this much of the .bin per piece
RATE_KEYS = ("imSampRate", "niSampRate", "obSampRate")
IMEC_SYNC_BIT = 6  # SpikeGLX: the imec sync input is bit 6 of the SY word


def pair_of(path) -> tuple[Path, Path]:
    """(the .bin, the .meta) of a SpikeGLX file, whichever of them ``path`` names."""
    p = Path(path)
    if p.suffix.lower() == ".meta":
        return p.with_suffix(".bin"), p
    return p, p.with_suffix(".meta")


def parse_meta(text: str) -> dict[str, str]:
    """The ``key=value`` lines of a ``.meta`` (a leading ``~`` kept: SpikeGLX marks its long tables so)."""
    meta = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            meta[key.strip()] = value.strip()
    return meta


def channel_labels(meta: dict[str, str], n: int) -> tuple[str, ...]:
    """Saved channels' names from ``~snsChanMap`` (``(AP0;0:0)`` -> ``AP0``), else ``ch0``..; a map that does not
    list exactly ``n`` channels is not used."""
    names = re.findall(r"\(([^;()]+);\d+:\d+\)", meta.get("~snsChanMap", ""))
    return tuple(names) if len(names) == n and len(set(names)) == n else tuple(f"ch{i}" for i in range(n))


def declared_sync(meta: dict[str, str], labels: tuple[str, ...]) -> tuple[str, int | None] | None:
    """(channel label, bit or None for an analog channel) of the sync input the meta declares, or None."""
    if meta.get("typeThis", "imec") == "imec" or "imSampRate" in meta:
        return ("SY0", IMEC_SYNC_BIT) if "SY0" in labels else None
    for kind in ("Ni", "Ob"):
        chan, typ = meta.get(f"sync{kind}Chan"), meta.get(f"sync{kind}ChanType")
        if chan is None or typ is None or not chan.lstrip("-").isdigit() or int(chan) < 0:
            continue
        if typ == "1":  # analog: that XA channel's level
            return (f"XA{chan}", None) if f"XA{chan}" in labels else None
        word, bit = divmod(int(chan), 16)
        return (f"XD{word}", bit) if f"XD{word}" in labels else None
    return None


class SpikeGlxInput:
    """One SpikeGLX ``.bin`` + ``.meta`` (see the module docstring)."""

    kind = "spikeglx"

    def __init__(self, path, options: InputOptions | None = None):
        self.options = options or InputOptions()
        self.bin, self.meta_path = pair_of(path)
        self.path = str(path)
        self.fraction = 0.0
        if not self.meta_path.exists():
            raise InputError(path, f"no SpikeGLX meta file {self.meta_path.name} beside it (SpikeGLX writes it "
                                   "when the recording closes; without it the channels and rate are unknown)")
        check_readable(self.meta_path)
        size = check_readable(self.bin)
        try:
            meta = parse_meta(self.meta_path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise InputError(self.meta_path, f"cannot read: {exc.strerror or exc}") from None
        self.meta = meta
        try:
            self.nch = int(meta["nSavedChans"])
            rate = next(float(meta[k]) for k in RATE_KEYS if k in meta)
        except (KeyError, ValueError, StopIteration):
            raise InputError(self.meta_path, "not a SpikeGLX meta file (no nSavedChans and sampling rate "
                                             f"{'/'.join(RATE_KEYS)})") from None
        if self.nch <= 0 or not np.isfinite(rate) or rate <= 0:
            raise InputError(self.meta_path, f"nSavedChans {self.nch} and rate {rate} must both be > 0")
        self.rate = rate
        frame = 2 * self.nch
        if size % frame:
            raise InputError(self.bin, f"truncated: {size} bytes are not whole samples of {self.nch} int16 channels")
        declared = meta.get("fileSizeBytes", "")
        if declared.isdigit() and int(declared) > size:
            raise InputError(self.bin, f"truncated: {size} of the {declared} bytes its meta file declares")
        self.n = size // frame
        first = meta.get("firstSample", "0")
        if not first.isdigit():
            raise InputError(self.meta_path, f"firstSample {first!r} is not a sample count")
        self.first = int(first)
        labels = channel_labels(meta, self.nch)
        name = self.options.name or self.bin.name[: -len(self.bin.suffix)]
        kind = meta.get("typeThis", "imec")
        si = StreamInfo(name=name, type="other", nominal_srate=rate, channel_count=self.nch, channel_format="int16",
                        channel_labels=labels,
                        quality=(("lsl_type", "EEG"), ("clock", "(firstSample + sample index) / rate"),
                                 ("source", f"spikeglx {kind}")))
        sync = declared_sync(meta, labels)
        self.streams = [FileStream(key=name, info=si, local=None,
                                   meta={"units": ["counts"] * self.nch, "samples": self.n,
                                         **({"sync": sync} if sync else {})})]

    def times(self, i0: int, n: int) -> np.ndarray:
        """Device times (ns) of samples ``i0 .. i0 + n - 1``: ``(firstSample + i) / rate``."""
        k = np.arange(self.first + i0, self.first + i0 + n, dtype=np.int64)
        return np.rint(k.astype(np.float64) * (NS / self.rate)).astype(np.int64)

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        key = self.streams[0].key
        if (streams is not None and key not in streams) or self.n == 0:
            return
        per = max(1, PIECE_BYTES // (2 * self.nch))
        data = np.memmap(self.bin, dtype="<i2", mode="r", shape=(self.n, self.nch))
        for i0 in range(0, self.n, per):
            k = min(per, self.n - i0)
            yield Piece(key, i0, self.times(i0, k), np.array(data[i0 : i0 + k]))
            self.fraction = (i0 + k) / self.n
