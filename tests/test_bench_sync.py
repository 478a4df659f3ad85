"""``synchub bench sync``: a tiny scenario end to end (JSON shape), shipped scenarios parse, typos name the key."""

from __future__ import annotations

import json

import pytest

from synchub.agent.settings import ConfigError
from synchub.bench.scenario import SCENARIO_DIR, load_scenario, parse_scenario
from synchub.bench.sync import run_scenario
from synchub.cli import main

TINY = {
    "name": "tiny", "duration_s": 40.0, "seed": 3, "eval_points": 500, "chunk_ms": 100.0,
    "trigger": {"period_s": 1.0, "ref_jitter_us": 2.0},
    "probes": {"rate_hz": 2.0},
    "device": [
        {"name": "usb0", "rate_hz": 50.0, "clock": {"drift_ppm": 50.0, "jitter_us": 2.0, "latency_min_ms": 5.0,
                                                   "latency_max_ms": 20.0, "counter_bits": 16, "tick_hz": 10000.0}},
        {"name": "tlm0", "rate_hz": 0.0, "mean_rate_hz": 5.0, "trigger": False,
         "clock": {"drift_ppm": -20.0, "resets_at_s": [20.0], "latency_min_ms": 1.0, "latency_max_ms": 3.0}},
    ],
}


def test_tiny_scenario_runs_every_method():
    res = run_scenario(parse_scenario(TINY, "tiny.toml"))
    assert set(res) == {"scenario", "results", "bound_us", "checks"} and res["scenario"] == "tiny"
    keys = {"stream", "method", "rms_us", "median_us", "p99_us", "max_us", "drift_err_ppm", "within_tol_pct"}
    assert all(set(r) == keys for r in res["results"])
    by = {(r["stream"], r["method"]): r for r in res["results"]}
    assert set(m for s, m in by if s == "usb0") == {"arrival", "pyxdf", "envelope", "probes", "triggers",
                                                    "triggers-live"}
    assert ("tlm0", "triggers") not in by  # not wired
    assert set(res["bound_us"]) == {"usb0"}
    # the ordering the issue is about, on a tiny run: triggers << probes << pyxdf / arrival
    assert by[("usb0", "triggers")]["rms_us"] < 50 < by[("usb0", "probes")]["rms_us"] < by[("usb0", "pyxdf")]["rms_us"]
    st = res["checks"]["streams"]
    assert st["tlm0"]["resets_true"] == 1 and st["usb0"]["wraps"] >= 5


def test_shipped_scenarios_parse():
    names = ("lab-10min", "field-1h", "dropouts-reset", "usb-latency")  # the folder also holds other benches' files
    for f in (SCENARIO_DIR / f"{n}.toml" for n in names):
        sc = load_scenario(f)
        assert sc.name == f.stem and sc.device


@pytest.mark.parametrize("bad, key", [
    ({**TINY, "duraton_s": 5.0}, "duraton_s"),
    ({**TINY, "trigger": {"period": 1.0}}, "trigger.period"),
    ({**TINY, "device": [{"name": "a", "clock": {"drift_pmm": 1.0}}]}, "device[0].clock.drift_pmm"),
    ({**TINY, "device": [{"name": "a", "clock": {"latency_kind": "usb"}}]}, "device[0].clock.latency_kind"),
])
def test_typo_names_the_key(bad, key):
    with pytest.raises(ConfigError) as e:
        parse_scenario(bad, "s.toml")
    assert f"s.toml: {key}" in str(e.value)


def test_cli_writes_json_and_reports_typos(tmp_path, capsys):
    f = tmp_path / "t.toml"
    f.write_text('name = "t"\nduration_s = 20.0\neval_points = 200\n[[device]]\nname = "d"\nrate_hz = 20.0\n'
                 '[device.clock]\ndrift_ppm = 10.0\n')
    out = tmp_path / "r.json"
    assert main(["bench", "sync", "--scenario", str(f), "--json", str(out), "--methods", "arrival,triggers"]) == 0
    res = json.loads(out.read_text())
    assert [r["method"] for r in res["results"]] == ["arrival", "triggers"]
    f.write_text(f.read_text().replace("drift_ppm", "drift_ppn"))
    assert main(["bench", "sync", "--scenario", str(f)]) == 2
    assert "device[0].clock.drift_ppn" in capsys.readouterr().err
