"""SpikeGLX files for the tests, written as SpikeGLX writes them (``.bin`` of interleaved int16 + ``.meta`` of
``key=value`` lines; the keys of its metadata guide, Metadata_30): a Neuropixels 1.0 probe's AP band with its SY0
word, an NI-DAQ stream with analog channels and a digital word.  neo's SpikeGLX reader reads them back
(``tests/formats/readers/test_spikeglx.py``), so they are the format, not synchub's idea of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NS = 1_000_000_000


def _write(bin_path: Path, data: np.ndarray, meta: dict[str, str]) -> Path:
    data = np.ascontiguousarray(data, dtype="<i2")
    data.tofile(bin_path)
    meta = {**meta, "fileName": str(bin_path), "fileSizeBytes": str(data.nbytes), "nSavedChans": str(data.shape[1]),
            "fileTimeSecs": repr(data.shape[0] / float(meta.get("imSampRate") or meta["niSampRate"]))}
    bin_path.with_suffix(".meta").write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
    return bin_path


def write_probe(folder: Path, data: np.ndarray, rate_hz: float = 30000.0, first_sample: int = 0,
                run: str = "run") -> Path:
    """``<run>_g0_t0.imec0.ap.bin`` of a Neuropixels 1.0 probe: ``data`` (n, k + 1) int16, its k AP channels then the
    SY0 word (sync on bit 6)."""
    k = data.shape[1] - 1
    imro = f"(0,{k})" + "".join(f"({c} 0 0 500 250 1)" for c in range(k))
    chans = f"({k},0,1)" + "".join(f"(AP{c};{c}:{c})" for c in range(k)) + f"(SY0;{k}:{k})"
    meta = {"typeThis": "imec", "imSampRate": repr(rate_hz), "snsApLfSy": f"{k},0,1", "imDatPrb_pn": "NP1000",
            "imDatPrb_type": "0", "imAiRangeMax": "0.6", "imAiRangeMin": "-0.6", "imMaxInt": "512",
            "~imroTbl": imro, "~snsChanMap": chans, "snsSaveChanSubset": "all", "firstSample": str(first_sample),
            "fileCreateTime": "2026-11-28T10:00:00", "syncSourcePeriod": "1"}
    folder.mkdir(parents=True, exist_ok=True)
    return _write(folder / f"{run}_g0_t0.imec0.ap.bin", data, meta)


def write_nidq(folder: Path, data: np.ndarray, rate_hz: float = 25000.0, first_sample: int = 0, sync_line: int = 0,
               run: str = "run") -> Path:
    """``<run>_g0_t0.nidq.bin``: ``data`` (n, k + 1) int16, k analog channels XA0.. then the digital word XD0; the
    sync input on digital line ``sync_line``."""
    k = data.shape[1] - 1
    chans = f"(0,0,{k},1,1)" + "".join(f"(XA{c};{c}:{c})" for c in range(k)) + f"(XD0;{k}:{k})"
    meta = {"typeThis": "nidq", "niSampRate": repr(rate_hz), "snsMnMaXaDw": f"0,0,{k},1", "niAiRangeMax": "5",
            "niAiRangeMin": "-5", "niMNGain": "200", "niMAGain": "1", "niXAChans1": f"0:{k - 1}",
            "niXDChans1": "0:7", "~snsChanMap": chans, "snsSaveChanSubset": "all", "firstSample": str(first_sample),
            "syncNiChanType": "0", "syncNiChan": str(sync_line), "syncNiThresh": "1.1",
            "fileCreateTime": "2026-11-28T10:00:00", "syncSourcePeriod": "1"}
    folder.mkdir(parents=True, exist_ok=True)
    return _write(folder / f"{run}_g0_t0.nidq.bin", data, meta)


def pulses(n: int, rate_hz: float, edges_s: np.ndarray, width_s: float = 0.5) -> np.ndarray:
    """0/1 per sample: high from each edge (seconds on the file's clock from its first sample) for ``width_s``."""
    t = np.arange(n) / rate_hz
    if not len(edges_s):
        return np.zeros(n, dtype=np.int16)
    k = np.searchsorted(edges_s, t, side="right") - 1
    return ((k >= 0) & (t - edges_s[np.maximum(k, 0)] < width_s)).astype(np.int16)
