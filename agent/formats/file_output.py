"""Writers of ``synchub align``'s output: every stream on the reference clock, raw times kept; no partial file.

``atomic_output(path)`` gives a file object on a temporary file next to ``path`` (``.<name>.partial-*``) that is
renamed onto ``path`` only when the block ends without an error, and removed when it does not: a failed run leaves
no output behind, and never a half-written file under the name asked for.

* ``XdfOut``: XDF for pyxdf and MNE users (``xdf.XdfWriter``): each stream with its corrected times as the
  samples' stamps (seconds on the reference clock, no ClockOffset chunks: they are applied), markers as ``string``
  streams, and beside each one a ``<name>.device_time`` stream (``double64``, same stamps) holding every sample's raw
  device time in seconds.  Load with ``pyxdf.load_xdf(..., dejitter_timestamps=False)`` to get exactly these times
  (regular streams are already dejittered where they were jittery).
* ``McapOut``: MCAP in synchub's collector layout (``mcap_layout``): ``/align/<stream>`` channels with ``synchub.Chunk``
  messages (``device_ns`` raw, ``host_ns`` the time on the input file's own clock, ``ref_ns``/``unc_ns`` on the
  reference clock, ``segment``), ``stream_info`` records on ``/align/_meta``, gaps on ``/align/_gaps``, and the
  report as ``synchub.align`` metadata; ``log_time`` is the reference time (clipped at 0: MCAP times are unsigned).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import msgpack
import numpy as np

from synchub.agent.core.stream import StreamInfo

from .mcap_layout import channel_metadata
from .mcap_write import new_writer
from .xdf import XdfWriter

NS = 1_000_000_000


@contextlib.contextmanager
def atomic_output(path):
    """A binary file object that becomes ``path`` when the block succeeds (see the module docstring)."""
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.partial-", dir=str(dest.parent or Path(".")))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class XdfOut:
    """See the module docstring."""

    def __init__(self, fh, infos: list[StreamInfo], desc: dict[str, dict] | None = None):
        self.w = XdfWriter(fh, header={"writer": "synchub align"})
        self.ids: dict[str, tuple[int, int]] = {}
        for info in infos:
            sid = self.w.add_stream(info, desc={"synchub": (desc or {}).get(info.name, {})})
            raw = StreamInfo(f"{info.name}.device_time", "other", info.nominal_srate, 1, "double64",
                             channel_labels=("device_time_s",), source_id=info.source_id)
            rid = self.w.add_stream(raw, desc={"synchub": {"device_time_of": info.name}})
            self.ids[info.name] = (sid, rid)

    def write(self, name: str, seq: int, ref_ns: np.ndarray, unc_ns: np.ndarray, device_ns: np.ndarray,
              file_ns: np.ndarray, segment: np.ndarray, method: str, data) -> None:
        sid, rid = self.ids[name]
        self.w.write_samples(sid, ref_ns, data)
        self.w.write_samples(rid, ref_ns, (device_ns / NS)[:, None])

    def gap(self, record: dict) -> None:
        return None

    def close(self, report: dict) -> None:
        self.w.close()


class McapOut:
    """See the module docstring."""

    def __init__(self, fh, infos: list[StreamInfo], desc: dict[str, dict] | None = None):
        self.w, ids = new_writer(fh)
        self.mid = 0
        self.meta = self.w.register_channel("/align/_meta", "msgpack", ids["synchub.Meta"])
        self.gaps = self.w.register_channel("/align/_gaps", "msgpack", ids["synchub.Gap"])
        self.ch: dict[str, int] = {}
        self.infos = {i.name: i for i in infos}
        for info in infos:
            d = info.to_dict()
            self.ch[info.name] = self.w.register_channel(f"/align/{info.name}", "msgpack", ids["synchub.Chunk"],
                                                         channel_metadata(d))
            self._msg(self.meta, 0, {"stream": info.name, "kind": "stream_info", "info": d, "recv_ns": 0})
            extra = (desc or {}).get(info.name)
            if extra:
                self._msg(self.meta, 0, {"stream": info.name, "kind": "update", "meta": extra, "recv_ns": 0})

    def _msg(self, channel: int, log_time: int, payload: dict, seq: int = 0) -> None:
        self.mid += 1
        payload = {"mid": self.mid, **payload}
        self.w.add_message(channel, max(int(log_time), 0), msgpack.packb(payload, use_bin_type=True), 0,
                           seq & 0xFFFFFFFF)

    def write(self, name: str, seq: int, ref_ns: np.ndarray, unc_ns: np.ndarray, device_ns: np.ndarray,
              file_ns: np.ndarray, segment: np.ndarray, method: str, data) -> None:
        info = self.infos[name]
        if isinstance(data, list):
            dtype, shape, body = "str", [], [str(x) for x in data]
        else:
            arr = np.ascontiguousarray(np.asarray(data, dtype=info.dtype).reshape(len(ref_ns), *info.sample_shape))
            dtype, shape, body = arr.dtype.newbyteorder("<").str, list(arr.shape[1:]), arr.astype(
                arr.dtype.newbyteorder("<")).tobytes()
        payload = {"seq": int(seq), "n": len(ref_ns), "method": method, "dtype": dtype, "shape": shape,
                   "device_ns": device_ns.astype("<i8").tobytes(), "host_ns": file_ns.astype("<i8").tobytes(),
                   "ref_ns": ref_ns.astype("<i8").tobytes(), "unc_ns": unc_ns.astype("<i8").tobytes(),
                   "segment": segment.astype("<i4").tobytes(), "data": body, "recv_ns": 0}
        self._msg(self.ch[name], int(ref_ns[0]), payload, seq)

    def gap(self, record: dict) -> None:
        self._msg(self.gaps, 0, {k: v for k, v in record.items() if k != "mid"})

    def close(self, report: dict) -> None:
        self.w.add_metadata("synchub.align", {"report": json.dumps(report, default=json_default)})
        self.w.finish()


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and dataclasses (the report)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return str(o)


def check_output(path) -> None:
    """ValueError unless ``path`` is an ``.xdf`` or ``.mcap`` file in an existing folder."""
    p = Path(path)
    if p.suffix.lower() not in (".xdf", ".mcap"):
        raise ValueError(f"{path}: the output must end in .xdf or .mcap")
    if not (p.parent if str(p.parent) else Path(".")).is_dir():
        raise ValueError(f"{path}: no such folder for the output")


def writer_for(path, fh, infos: list[StreamInfo], desc: dict[str, dict] | None = None):
    """``XdfOut`` for ``*.xdf``, ``McapOut`` for ``*.mcap`` (ValueError otherwise)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".xdf":
        return XdfOut(fh, infos, desc)
    if suffix == ".mcap":
        return McapOut(fh, infos, desc)
    raise ValueError(f"{path}: the output must end in .xdf or .mcap")
