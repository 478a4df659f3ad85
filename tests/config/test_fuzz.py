"""Malformed configs and command-line arguments: one line and exit 2, never a traceback, and nothing accepted that
cannot work.  Hypothesis mutates a working config (any key, any TOML value: NaN, inf, huge numbers, long strings,
nesting), feeds random TOML text to ``synchub config``, and random values to the collector's and the agent's flags."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from synchub.agent.cli.collector import check_args
from synchub.agent.clock.settings import ClockLayerConfig
from synchub.agent.config.loader import parse_config
from synchub.agent.core.settings import ConfigError
from synchub.agent.transport.endpoints import check_endpoint
from synchub.cli import main
from synchub.errors import UserError

BASE = {
    "agent": {"name": "a", "collector": ["tcp://127.0.0.1:7100"], "spool_max_mb": 8.0, "chunk_ms": 20.0,
              "queue_chunks": 64},
    "clock": {"method": "auto"},
    "trigger": [{"name": "sync", "backend": "sim", "period_s": 1.0}],
    "stream": [{"name": "imu0", "type": "imu", "driver": "serial", "port": "/dev/ttyUSB0", "format": "imu-bin",
                "nominal_rate": 200.0, "trigger": "sync"}],
}
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.floats(), st.floats(allow_nan=False, min_value=-1e308, max_value=1e308),
                    st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=40),
                    st.just("x" * 5000), st.just(""))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _mutate(data, where, value):
    import copy

    cfg = copy.deepcopy(data)
    section, key = where
    table = cfg[section][0] if isinstance(cfg[section], list) else cfg[section]
    table[key] = value
    return cfg


KEYS = [("agent", k) for k in ("name", "collector", "spool_max_mb", "chunk_ms", "queue_chunks", "overflow",
                               "spool_dir", "fusion_window_s", "curve_secret_key")] + \
       [("clock", k) for k in ("method", "window_s", "ntp_interval_s", "correction_delay_ms")] + \
       [("trigger", k) for k in ("name", "period_s", "line", "debounce_us", "min_width_us")] + \
       [("stream", k) for k in ("name", "nominal_rate", "baudrate", "tick_hz", "probe_interval_s", "trigger",
                                "channel_labels", "port")]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=3))
@example([(("trigger", "name"), "\n")])  # a name with a control character went into an "allowed: ..." list raw
@example([(("stream", "name"), "mic\t0")])
def test_mutated_configs_are_refused_in_one_line_or_work(mutations):
    cfg = BASE
    for where, value in mutations:
        cfg = _mutate(cfg, where, value)
    try:
        c = parse_config(cfg, "fuzz.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml")
        return
    # accepted: what the agent derives from it must be computable
    assert 1 <= len(c.agent.name) <= 200 and c.agent.collector
    for ep in c.agent.collector:
        check_endpoint(ep)
    assert 0 < int(c.agent.spool_max_mb * (1 << 20)) < 2**63
    layer = ClockLayerConfig.of(c.clock, c.triggers, [s.common for s in c.streams], None)
    assert 0 <= layer.delay_ns < 2**63
    for s in c.streams:
        assert math.isfinite(s.common.nominal_rate)


def _run_main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # a usage error (argparse): one line, exit 2
            rc = exc.code
    return rc, err.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.integers(1, 3000).map(lambda n: "a = " + "[" * n + "]" * n),
                 st.integers(1, 3000).map(lambda n: "a = " + "{b = " * n + "1" + "}" * n)))
def test_random_toml_is_one_line_exit_2_or_ok(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        p.write_text(text, encoding="utf-8", errors="replace")
        rc, err = _run_main(["config", str(p), "--insecure"])
    assert rc == 2 and "Traceback" not in err and err.strip().count("\n") == 0, err


@SETTINGS
@given(bind=st.one_of(st.text(max_size=40), st.integers(-5, 99999).map(lambda p: f"tcp://127.0.0.1:{p}"),
                      st.sampled_from(["tcp://*:0", "ipc://", "inproc://x", "tcp://[::1]:80", "tcp://h:"])),
       flush=st.floats(), name=st.one_of(st.none(), st.text(max_size=300)),
       out=st.sampled_from(["/proc/nope", "/etc/passwd", "", "OUT", "OUT/sub"]))
def test_collector_flags_are_checked(tmp_path_factory, bind, flush, name, out):
    tmp = tmp_path_factory.mktemp("c")
    args = argparse.Namespace(bind=bind, live=None, flush_ms=flush, name=name, out=out.replace("OUT", str(tmp)),
                              lsl_outlet=False, lsl_prefix="")
    try:
        check_args(args)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    check_endpoint(bind, bind=True)
    assert 1 <= flush <= 60000 and Path(args.out).is_dir()


@pytest.mark.parametrize("argv,needle", [
    (["collector", "--insecure", "--out", "/proc/nope"], "cannot write"),
    (["collector", "--insecure", "--out", "/etc/passwd"], "not a directory"),
    (["collector", "--insecure", "--out", "OUT", "--flush-ms", "nan"], "--flush-ms"),
    (["collector", "--insecure", "--out", "OUT", "--bind", "tcp://127.0.0.1:99999"], "port 99999"),
    (["agent", "--config", "CFG", "--duration", "nan"], "--duration"),
    (["agent", "--config", "CFG", "--status-every", "-1"], "--status-every"),
    (["live", "--connect", "tcp://127.0.0.1:1", "--insecure", "--every", "nan"], "--every"),
    (["status", "--watch", "nan"], "--watch"),
    (["status", "--timeout", "inf"], "--timeout"),
    (["bench", "soak", "--minutes", "inf"], "--minutes"),
    (["status", "--bogus"], "--bogus"),
])
def test_bad_flags_one_line_exit_2(tmp_path, argv, needle):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[[trigger]]\nname = "t"\nbackend = "sim"\n')
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("CFG", str(cfg)) for a in argv]
    rc, err = _run_main(argv)
    assert rc == 2 and needle in err and err.strip().count("\n") == 0, err


def test_no_numeric_flag_takes_nan_or_inf():
    """Every float flag of every command (benchmarks included) goes through a checked type (synchub/argtypes.py):
    ``type=float`` takes "nan" and "inf", which then fail deep inside with a traceback."""
    import argparse

    from synchub.cli import build_parser

    parser, _ = build_parser(every_command=True)
    loose = []

    def walk(p, prog):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    walk(sp, f"{prog} {name}")
            elif a.type is float:
                loose.append(f"{prog} {'/'.join(a.option_strings)}")

    walk(parser, "synchub")
    assert not loose, loose
