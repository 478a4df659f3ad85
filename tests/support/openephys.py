"""Open Ephys binary recordings for the tests, laid out as the GUI (0.6 and later) writes them: ``Record Node 101/
experiment1/recording1/`` with ``structure.oebin`` (the fields of the GUI's own schema, open-ephys-python-tools'
``oebin_schema.json``), ``continuous/<stream>/continuous.dat`` + ``sample_numbers.npy`` + ``timestamps.npy`` and
``events/<stream>/TTL/`` ``states.npy`` + ``sample_numbers.npy`` + ``timestamps.npy`` + ``full_words.npy``.  neo's
Open Ephys reader reads them back (``tests/formats/readers/test_openephys.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STREAM = "Rhythm Data"
FOLDER = "Acquisition_Board-100.Rhythm Data"


def write(root: Path, data: np.ndarray, rate_hz: float = 30000.0, first_sample: int = 0,
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
