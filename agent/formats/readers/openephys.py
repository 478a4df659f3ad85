"""Open Ephys recordings in its binary format (the GUI's default since 0.5): a recording folder's
``structure.oebin`` (JSON) naming its continuous streams, each a ``continuous.dat`` of interleaved int16 samples with
``sample_numbers.npy`` (0.6 and later; ``timestamps.npy`` before, holding the same sample numbers), and its TTL
events (``events/<stream>/TTL/``: ``states.npy``, +line at a rise, -line at a fall, and ``sample_numbers.npy``; the
lines' word at the start is the event stream's ``initial_state``).

One stream per continuous stream, named as Open Ephys names it (its ``stream_name``; ``<name>-<stream>`` with
``--name``): the channels' raw int16 counts (``bit_volts`` in the stream's facts) and, when the stream has TTL events,
one more channel ``TTL``: the word of its TTL lines (line n is bit n - 1) as the events set it at each sample, the
level a DAQ's digital input would have recorded, so that ``--sync TTL`` (found by itself where one line toggles;
``--sync-bit`` picks a line of several) reads the sync pulses there.  Time: sample number / sample rate, the
acquisition board's own counter (what ``timestamps.npy``'s synchronized seconds were derived from, left out here).
The input named is the recording's ``structure.oebin``.

Refused in one line (``InputError``): a ``structure.oebin`` that is not JSON or has no continuous stream with a rate
and channel count, a ``continuous.dat`` missing or not whole samples, sample numbers of another length than the
samples.  TTL lines above 16 are left out of the word and counted (``stats``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from synchub.agent.core.stream import StreamInfo

from .base import FileStream, InputError, InputOptions, Piece, check_readable

NS = 1_000_000_000
PIECE_BYTES = 16 << 20
LINES = 16  # TTL lines the word holds


def _npy(path: Path) -> np.ndarray | None:
    """A 1-D array of whole numbers from ``path`` (memory-mapped), None where there is no such file."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy array ({exc})") from None
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(path, f"not a list of numbers (an array of shape {a.shape}, {a.dtype})")
    if np.issubdtype(a.dtype, np.floating) and len(a) and not np.all(np.isfinite(a) & (a == np.round(a))):
        raise InputError(path, "holds numbers that are not whole (sample numbers and TTL states are)")
    return a


class OpenEphysInput:
    """One Open Ephys binary recording (see the module docstring)."""

    kind = "openephys"

    def __init__(self, path, options: InputOptions | None = None):
        self.options = options or InputOptions()
        self.oebin = Path(path)
        self.path = str(path)
        self.root = self.oebin.parent
        self.fraction = 0.0
        self.stats: dict[str, int] = {}
        check_readable(self.oebin)
        try:
            info = json.loads(self.oebin.read_text(encoding="utf-8"))
            conts = [c for c in info["continuous"] if float(c["sample_rate"]) > 0 and int(c["num_channels"]) > 0]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(self.oebin, "not an Open Ephys structure.oebin (JSON naming continuous streams with "
                                         "sample_rate and num_channels)") from None
        if not conts:
            raise InputError(self.oebin, "no continuous stream with a sample rate and channels")
        events = [e for e in info.get("events", []) if isinstance(e, dict) and "TTL" in str(e.get("folder_name", ""))]
        self.streams, self.parts = [], []
        for c in conts:
            self._add(c, events)

    def _add(self, c: dict, events: list[dict]) -> None:
        folder = self.root / "continuous" / str(c.get("folder_name", ""))
        dat = folder / "continuous.dat"
        size = check_readable(dat)
        nch, rate = int(c["num_channels"]), float(c["sample_rate"])
        if size % (2 * nch):
            raise InputError(dat, f"truncated: {size} bytes are not whole samples of {nch} int16 channels")
        n = size // (2 * nch)
        sn = _npy(folder / "sample_numbers.npy")
        if sn is None:
            sn = _npy(folder / "timestamps.npy")  # before 0.6: the sample numbers, under this name
        if sn is not None and len(sn) != n:
            raise InputError(folder, f"{len(sn)} sample numbers for {n} samples")
        chans = c.get("channels")
        if not (isinstance(chans, list) and len(chans) == nch and all(isinstance(ch, dict) for ch in chans)):
            chans = []  # no channel list of the stream's width: the channels are named by number
        labels = [str(ch.get("channel_name", f"CH{i + 1}")) for i, ch in enumerate(chans)] or \
            [f"CH{i + 1}" for i in range(nch)]
        ttl = self._ttl(c, events)
        if ttl is not None:
            labels.append("TTL")
        name = str(c.get("stream_name") or folder.name.rstrip("/"))
        key = f"{self.options.name}-{name}" if self.options.name else name
        si = StreamInfo(name=key, type="other", nominal_srate=rate, channel_count=len(labels), channel_format="int16",
                        channel_labels=tuple(labels),
                        quality=(("lsl_type", "EEG"), ("clock", "sample number / sample rate"),
                                 ("source", f"open ephys {c.get('source_processor_name', '')}".strip())))
        volts = [ch.get("bit_volts") for ch in chans]
        self.streams.append(FileStream(key=key, info=si, meta={"bit_volts": volts, "samples": n}))
        self.parts.append((key, dat, nch, rate, n, sn, ttl))

    def _ttl(self, c: dict, events: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
        """(event sample numbers, the TTL word after each event; word[0] before any) of this stream's TTL events."""
        mine = [e for e in events if str(e.get("folder_name", "")).startswith(str(c.get("folder_name", "")))
                and e.get("stream_name", c.get("stream_name")) == c.get("stream_name")]
        if not mine:
            return None
        d = self.root / "events" / str(mine[0]["folder_name"])
        states, at = _npy(d / "states.npy"), _npy(d / "sample_numbers.npy")
        if states is None:  # before 0.6
            states, at = _npy(d / "channel_states.npy"), _npy(d / "timestamps.npy")
        if states is None or at is None:
            return None
        if len(states) != len(at):
            raise InputError(d, f"{len(states)} TTL states for {len(at)} sample numbers")
        order = np.argsort(np.asarray(at), kind="stable")
        states, at = np.asarray(states, dtype=np.int64)[order], np.asarray(at, dtype=np.int64)[order]
        far = (np.abs(states) > LINES) | (states == 0)
        if far.any():
            self.stats["ttl_events_beyond_16_lines"] = self.stats.get("ttl_events_beyond_16_lines", 0) + int(far.sum())
        w = mine[0].get("initial_state")  # the lines' word when the recording started (GUI 0.6.5 and later)
        w = int(w) & ((1 << LINES) - 1) if isinstance(w, int) and not isinstance(w, bool) else 0
        word = np.full(len(states) + 1, w, dtype=np.int64)
        for k, s in enumerate(states.tolist()):
            if 0 < abs(s) <= LINES:
                bit = 1 << (abs(s) - 1)
                w = (w | bit) if s > 0 else (w & ~bit)
            word[k + 1] = w
        return at, word

    def read(self, evidence: bool = True, streams: set[str] | None = None) -> Iterator[Piece]:
        parts = [q for q in self.parts if streams is None or q[0] in streams]
        total = max(sum(q[4] for q in parts), 1)
        done = 0
        for key, dat, nch, rate, n, sn, ttl in parts:
            data = np.memmap(dat, dtype="<i2", mode="r", shape=(n, nch)) if n else np.zeros((0, nch), "<i2")
            per = max(1, PIECE_BYTES // (2 * nch + 2))
            for i0 in range(0, n, per):
                k = min(per, n - i0)
                num = np.asarray(sn[i0 : i0 + k], dtype=np.int64) if sn is not None else \
                    np.arange(i0, i0 + k, dtype=np.int64)
                t = np.rint(num.astype(np.float64) * (NS / rate)).astype(np.int64)
                x = np.array(data[i0 : i0 + k])
                if ttl is not None:
                    word = ttl[1][np.searchsorted(ttl[0], num, side="right")]
                    x = np.column_stack([x, (word & 0xFFFF).astype(np.uint16).view(np.int16)])
                yield Piece(key, i0, t, x)
                done += k
                self.fraction = done / total
