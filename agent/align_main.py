"""``synchub align SESSION.mcap``: rerun the clock layer offline on a recording's stored raw times.

The agent corrects time live (causally, with a short delay).  Offline, the same ``StreamClocks`` sees every piece of
evidence before and after each sample (two-sided smoothing), as TPrime and IBL do after the fact.  The recording keeps
raw device and host times and the evidence the agent saw (``_evidence`` meta), so nothing is lost by correcting live.

The rerun is ``synchub.agent.clock.replay.replay``: the same calls the agent makes live, fed with the recorded chunks,
evidence and ``device_reset`` gaps; two-sided by default (the result does not depend on how the recording was
chunked), or causal with ``--live`` (each chunk corrected with what the agent knew ``correction_delay_ms`` after it
arrived).

Writes ``--out FILE.mcap``: the same recording with re-corrected ``ref_ns``/``unc_ns``/``segment``/``method`` (all
other records copied), and prints a per-stream summary of how far the offline correction moved each stream.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgpack
import numpy as np

from synchub.agent.clock.layer import StreamClocks
from synchub.agent.clock.replay import correct_recording
from synchub.agent.clock.settings import RECORD_KIND, ClockLayerConfig
from synchub.agent.core.evidence import ClockReset, evidence_from_dict
from synchub.agent.core.stream import Chunk, StreamInfo


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="MCAP recording written by the collector")
    p.add_argument("--out", help="write the re-corrected recording here (MCAP)")
    p.add_argument("--json", help="write the per-stream summary here")
    p.add_argument("--live", action="store_true", help="causal (one-sided) correction, as the agent does live")


def load_raw(path) -> tuple[dict[str, StreamInfo], ClockLayerConfig, list, list[Chunk]]:
    """Stream infos, the agent's clock config, the recorded evidence and the raw chunks of a recording."""
    from .mcap_io import read_session

    return raw_of(read_session(path))


def raw_of(data: dict) -> tuple[dict[str, StreamInfo], ClockLayerConfig, list, list[Chunk]]:
    """``load_raw`` of a recording already read by ``read_session``.  Derived streams (fused vectors) were made on
    the reference clock: they have no raw times to correct, so no chunks."""
    infos, chunks = {}, []
    for name, rec in data["streams"].items():
        if rec["info"] is None:
            continue
        info = StreamInfo.from_dict(rec["info"])
        infos[name] = info
        if not len(rec["seq"]) or info.type == "fused":
            continue
        # rebuild chunks as the agent shipped them (one per received message keeps arrival structure)
        bounds = np.flatnonzero(np.diff(rec["host_ns"]) != 0) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(rec["seq"])], strict=True):
            chunks.append(Chunk(stream=name, seq=int(rec["seq"][a]), data=rec["data"][a:b],
                                device_ns=rec["device_ns"][a:b], host_ns=rec["host_ns"][a:b]))
    config, evidence = ClockLayerConfig(), []
    resets: dict[tuple[str, int], ClockReset] = {}
    for g in data.get("gaps", []):  # a reset recorded the old way (before ClockReset): a device_reset gap
        if g.get("cause") == "device_reset" and g.get("stream") in infos:
            r = ClockReset(str(g["stream"]), int(g["seq"]), int(g.get("device_ns_to", 0)),
                           int(g.get("device_ns_from", 0)), str(g.get("detail", "")))
            resets[(r.stream, r.seq)] = r
    for m in data["meta"]:
        meta = m.get("meta") or {}
        if meta.get("kind") == RECORD_KIND:
            config = ClockLayerConfig.from_dict(meta)
        elif meta.get("kind") == "evidence":
            try:
                item = evidence_from_dict(meta)
            except ValueError:
                continue
            if isinstance(item, ClockReset):
                resets[(item.stream, item.seq)] = item
            else:
                evidence.append(item)
    return infos, config, evidence + list(resets.values()), chunks


def rerun(path, smooth: bool = True) -> tuple[list[Chunk], StreamClocks]:
    return correct_recording(*load_raw(path), smooth=smooth)


def write_corrected(src, dst, corrected: list[Chunk]) -> None:
    """Copy ``src`` to ``dst`` record by record, replacing each chunk message's correction layer."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    by_key = {(c.stream, c.seq): c for c in corrected}
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        reader = make_reader(fi)
        header = reader.get_header()
        w = Writer(fo)
        w.start(profile=header.profile, library=f"{header.library} + synchub align")
        schema_ids, channel_ids = {}, {}
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            if schema is not None and schema.id not in schema_ids:
                schema_ids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
            if channel.id not in channel_ids:
                channel_ids[channel.id] = w.register_channel(channel.topic, channel.message_encoding,
                                                             schema_ids.get(channel.schema_id, 0),
                                                             dict(channel.metadata))
            data, log_time = message.data, message.log_time
            d = msgpack.unpackb(data, raw=False) if channel.message_encoding == "msgpack" else None
            stream = channel.topic.rsplit("/", 1)[-1]
            if isinstance(d, dict) and "seq" in d and (stream, d["seq"]) in by_key:
                c = by_key[(stream, d["seq"])]
                d["ref_ns"] = c.ref_ns.astype("<i8").tobytes()
                d["unc_ns"] = c.unc_ns.astype("<i8").tobytes()
                d["segment"] = c.segment.astype("<i4").tobytes() if c.segment is not None else None
                d["method"] = c.method
                data = msgpack.packb(d, use_bin_type=True)
                log_time = int(max(c.ref_ns[0], 0))
            w.add_message(channel_ids[channel.id], log_time=log_time, data=data,
                          publish_time=message.publish_time, sequence=message.sequence)
        for record in reader.iter_metadata():
            w.add_metadata(record.name, dict(record.metadata))
        w.finish()


def run(args) -> int:
    from synchub.errors import UserError

    path = Path(args.session)
    if not path.exists():
        raise UserError(f"{path}: no such recording")
    from .mcap_io import read_session

    try:
        data = read_session(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's problem to know about
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    infos, config, evidence, chunks = raw_of(data)
    corrected, _ = correct_recording(infos, config, evidence, chunks, smooth=not args.live)
    live = data["streams"]
    summary = {"session": str(path), "evidence": len(evidence), "streams": []}
    for name in sorted(infos):
        mine = [c for c in corrected if c.stream == name]
        if not mine:
            continue
        ref = np.concatenate([c.ref_ns for c in mine])
        unc = np.concatenate([c.unc_ns for c in mine])
        moved = None
        if live[name]["ref_ns"] is not None and len(live[name]["ref_ns"]) == len(ref):
            moved = float(np.median(np.abs(ref - live[name]["ref_ns"])) / 1e3)
        summary["streams"].append({"name": name, "method": mine[-1].method, "samples": int(len(ref)),
                                   "median_unc_us": float(np.median(unc) / 1e3),
                                   "median_change_vs_live_us": moved})
        print(f"{name:10} {mine[-1].method:10} {len(ref):9d} samples  median 1-sigma {np.median(unc) / 1e3:9.1f} us"
              + (f"  moved {moved:9.1f} us vs live" if moved is not None else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if args.out:
        write_corrected(path, args.out, corrected)
        print(f"re-corrected recording -> {args.out}")
    return 0
