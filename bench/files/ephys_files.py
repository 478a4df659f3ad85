"""Recordings of the field's acquisition systems, written as they write them, for the benchmark and the tests:
SpikeGLX (``.bin`` of interleaved int16 + ``.meta`` of ``key=value`` lines; the keys of its metadata guide): a
Neuropixels 1.0 probe's AP band with its SY0 word, an NI-DAQ stream with analog channels and a digital word; Open
Ephys binary, laid out as the GUI (0.6 and later) writes it: ``Record Node 101/experiment1/recording1/`` with
``structure.oebin`` (the fields of the GUI's own schema, open-ephys-python-tools' ``oebin_schema.json``),
``continuous/<stream>/continuous.dat`` + ``sample_numbers.npy`` + ``timestamps.npy`` and ``events/<stream>/TTL/``
``states.npy`` + ``sample_numbers.npy`` + ``timestamps.npy`` + ``full_words.npy``.  neo's readers read both back
(``tests/formats/readers/test_spikeglx.py``, ``test_openephys.py``), so they are the formats, not synchub's idea of
them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NS = 1_000_000_000
STREAM = "Rhythm Data"  # Open Ephys: the acquisition board's stream
FOLDER = "Acquisition_Board-100.Rhythm Data"


def _write_sglx(bin_path: Path, data: np.ndarray, meta: dict[str, str]) -> Path:
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
    return _write_sglx(folder / f"{run}_g0_t0.imec0.ap.bin", data, meta)


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
    return _write_sglx(folder / f"{run}_g0_t0.nidq.bin", data, meta)


def pulses(n: int, rate_hz: float, edges_s: np.ndarray, width_s: float = 0.5) -> np.ndarray:
    """0/1 per sample: high from each edge (seconds on the file's clock from its first sample) for ``width_s``."""
    t = np.arange(n) / rate_hz
    if not len(edges_s):
        return np.zeros(n, dtype=np.int16)
    k = np.searchsorted(edges_s, t, side="right") - 1
    return ((k >= 0) & (t - edges_s[np.maximum(k, 0)] < width_s)).astype(np.int16)

def write_openephys(root: Path, data: np.ndarray, rate_hz: float = 30000.0, first_sample: int = 0,
          events: list[tuple[int, int]] = (), initial_state: int = 0, version: str = "0.6.7") -> Path:
    """The recording's ``structure.oebin``: ``data`` (n, k) int16 channels CH1..CHk numbered from ``first_sample``;
    ``events`` (sample number, +line rise / -line fall) on its TTL lines."""
    rec = root / "Record Node 101" / "experiment1" / "recording1"
    cont, ev = rec / "continuous" / FOLDER, rec / "events" / FOLDER / "TTL"
    cont.mkdir(parents=True)
    ev.mkdir(parents=True)
    n, k = data.shape
    np.ascontiguousarray(data, dtype="<i2").tofile(cont / "continuous.dat")
    sn = np.arange(first_sample, first_sample + n, dtype=np.int64)
    np.save(cont / "sample_numbers.npy", sn)
    np.save(cont / "timestamps.npy", sn / rate_hz)
    at = np.array([s for s, _ in events], dtype=np.int64)
    states = np.array([st for _, st in events], dtype=np.int16)
    np.save(ev / "sample_numbers.npy", at)
    np.save(ev / "states.npy", states)
    np.save(ev / "timestamps.npy", at / rate_hz)
    words, w = [], initial_state
    for st in states.tolist():
        w = (w | 1 << (abs(st) - 1)) if st > 0 else (w & ~(1 << (abs(st) - 1)))
        words.append(w)
    np.save(ev / "full_words.npy", np.array(words, dtype=np.uint64))
    chans = [{"channel_name": f"CH{i + 1}", "description": "headstage data channel", "identifier": "genericdata.continuous",
              "history": "Acquisition Board", "bit_volts": 0.195, "units": "uV"} for i in range(k)]
    info = {"GUI version": version,
            "continuous": [{"folder_name": FOLDER + "/", "sample_rate": rate_hz, "source_processor_name":
                            "Acquisition Board", "source_processor_id": 100, "stream_name": STREAM,
                            "recorded_processor": "Acquisition Board", "recorded_processor_id": 100,
                            "num_channels": k, "channels": chans}],
            "events": [{"folder_name": FOLDER + "/TTL/", "channel_name": "Acquisition Board TTL Input",
                        "description": "TTL events from the acquisition board", "identifier": "acq-board.ttl",
                        "sample_rate": rate_hz, "type": "int16", "source_processor": "Acquisition Board",
                        "stream_name": STREAM, "initial_state": initial_state}],
            "spikes": []}
    (rec / "structure.oebin").write_text(json.dumps(info, indent=4))
    return rec / "structure.oebin"
