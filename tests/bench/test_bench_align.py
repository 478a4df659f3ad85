"""`synchub bench align`: runs a small held-out scenario end to end, writes the documented JSON; bad scenarios
are user errors."""

import json
from pathlib import Path

from synchub.bench.align import pairs as B
from synchub.cli import main

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
[bench]
seeds = [1000]
duration_s = 40.0
methods = ["arrival", "classical", "hybrid"]
pairs = [{name = "IMU+Audio", ref = "imu", targets = ["audio"]},
         {name = "Text+Metadata", ref = "telemetry", targets = ["text"]}]

[link.audio]
latency_min_ms = 8.0
"""


def test_bench_align_writes_the_documented_json(tmp_path, capsys):
    sc = tmp_path / "align-test.toml"
    sc.write_text(SCENARIO)
    out = tmp_path / "align.json"
    assert main(["bench", "align", "--scenario", str(sc), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["scenario"] == "align-test"
    rows = doc["results"]
    assert [(r["pair"], r["method"]) for r in rows] == [
        (p, m) for p in ("IMU+Audio", "Text+Metadata") for m in ("arrival", "classical", "hybrid")]
    for r in rows:
        held = {"held_pct", "held_max_s", "cover_1sigma_ci95"} if r["method"] == "hybrid" else set()
        assert set(r) == {"pair", "method", "median_ms", "p95_ms", "within_tol_pct", "drift_err_ppm", "abstain_pct",
                          "sigma_median_ms", "cover_1sigma_pct", "cover_2sigma_pct"} | held
        if r["method"] == "arrival":  # no sigma of its own
            assert r["cover_1sigma_pct"] is None and r["sigma_median_ms"] is None
        elif r["cover_1sigma_pct"] is not None:
            assert 0.0 <= r["cover_1sigma_pct"] <= r["cover_2sigma_pct"] <= 100.0 and r["sigma_median_ms"] > 0
    by = {(r["pair"], r["method"]): r for r in rows}
    assert by[("IMU+Audio", "hybrid")]["cover_1sigma_ci95"] is None  # one world: no interval over worlds
    assert doc["pooled_hybrid"]["events"] > 0 and doc["pooled_hybrid"]["cover_1sigma_ci95"] is None
    # functional sanity (accuracy figures themselves belong in the bench JSON): arrival is late by the audio
    # link's >= 8 ms latency, correlation of taps is not
    assert by[("IMU+Audio", "arrival")]["median_ms"] > 8.0
    assert by[("IMU+Audio", "hybrid")]["median_ms"] < 3.0
    assert by[("IMU+Audio", "hybrid")]["within_tol_pct"] > 80.0
    assert 0.0 <= by[("Text+Metadata", "classical")]["abstain_pct"] <= 100.0
    assert "IMU+Audio" in capsys.readouterr().out


def test_tolerance_follows_the_coarser_stream():
    assert B.tolerance_ns("imu", ["audio"]) == 2_500_000
    assert B.tolerance_ns("image", ["text"]) == 500_000_000
    assert B.tolerance_ns("text", ["text"]) == 1_000_000


def test_hybrid_map_without_an_arrival_envelope_ignores_it():
    import numpy as np

    from synchub.agent.clock.model import ClockModel

    model = ClockModel("x")
    model.add_edges([1_000_000_000], [1_700_000_000], 2e3)  # a segment (offset 0.7 s), but no arrivals
    d = np.array([1_000_000_000, 1_200_000_000], dtype=np.int64)
    assert np.array_equal(B.hybrid_map(model, d, []), d)  # nothing said yet: device time, not the identity map
    est = model.map(d, method="hybrid")[0]
    assert np.array_equal(B.hybrid_map(model, d, [(1_000_000_000, 7e8, 1e6)]), est)  # the filter alone


def test_bad_scenarios_are_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[bench]\nseedz = [1]\n")
    assert main(["bench", "align", "--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "seedz" in err and "seeds" in err
    bad.write_text("[link.sonar]\njitter_us = 1.0\n")
    assert main(["bench", "align", "--scenario", str(bad)]) == 2
    assert "sonar" in capsys.readouterr().err
    assert main(["bench", "align", "--scenario", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_fit_sigma_on_a_scenario_needs_seeds_apart_from_its_own(tmp_path, capsys):
    sc = tmp_path / "align-test.toml"
    sc.write_text(SCENARIO)
    assert main(["bench", "align", "--scenario", str(sc), "--fit-sigma", str(tmp_path / "t.json")]) == 2
    assert "--seeds" in capsys.readouterr().err
    own = SCENARIO.split("seeds = [", 1)[1].split("]", 1)[0].split(",")[0].strip()
    assert main(["bench", "align", "--scenario", str(sc), "--seeds", own, "--fit-sigma", str(tmp_path / "t.json")]) == 2
    assert not (tmp_path / "t.json").exists()


def test_seeds_take_lists_and_ranges_and_refuse_the_rest(tmp_path, capsys):
    from synchub.bench.align.run import parse_seeds

    assert parse_seeds("1000-1002") == (1000, 1001, 1002)
    assert parse_seeds("3000..3001, 7") == (3000, 3001, 7)
    assert parse_seeds("5") == (5,)
    sc = tmp_path / "align-test.toml"
    sc.write_text(SCENARIO)
    for bad, word in (("1000-x", "1000-x"), ("12,,3", "''"), ("1002-1000", "backwards"), ("-3", "-3")):
        assert main(["bench", "align", "--scenario", str(sc), "--seeds", bad]) == 2, bad
        assert word in capsys.readouterr().err, bad


def test_the_shipped_simulator_table_was_fitted_apart_from_the_heldout_scenario():
    from synchub.agent.align.calibration import SIM_TABLE, SigmaTable

    t = SigmaTable.load(SIM_TABLE)
    held = (ROOT / "bench" / "scenarios" / "align-heldout.toml").read_text().split("seeds = [", 1)[1].split("]")[0]
    fitted = t.source["split"].split("seeds ", 1)[1].split(",")
    assert fitted and not {int(s) for s in fitted} & {int(s) for s in held.split(",")}
    assert len(t.scales) >= 6 and all(k > 0 and g >= 0 for _a, _b, k, g in t.scales)


def test_hybrid_map_does_not_prefer_an_envelope_whose_latency_makes_it_worse():
    """An arrival envelope late by a 30 ms link latency, tight in itself (2.5 ms), against one aligner offset of
    25 ms sigma (the first window): one offset cannot judge the latency, and counting it the envelope is the worse
    estimate (~39 ms), so the offset is used.  The old choice compared the envelope's own spread only and put the
    events 30 ms late.  Once three or more offsets have judged the latency, the envelope's own spread decides."""
    import numpy as np

    from synchub.agent.clock.model import ClockModel

    rng = np.random.default_rng(1)
    model = ClockModel("x")
    dev = np.arange(1_000_000_000, 11_000_000_000, 10_000_000, dtype=np.int64)
    off = 700_000_000
    model.add_arrivals(dev, dev + off + 30_000_000 + rng.integers(0, 5_000_000, len(dev)))
    d = np.array([6_000_000_000], dtype=np.int64)
    assert model.map(d, method="arrival")[1][0] < 5e6  # the envelope alone looks precise
    mapped, unc = B.hybrid_map_unc(model, d, [(6_000_000_000, off, 25_000_000)])
    assert abs(int(mapped[0]) - (6_000_000_000 + off)) < 1e6 and unc[0] == 25e6
    several = [(d0, off, 25_000_000) for d0 in (3_000_000_000, 4_500_000_000, 6_000_000_000)]
    model2 = ClockModel("y")
    model2.add_arrivals(dev, dev + off + rng.integers(0, 2_000_000, len(dev)))  # a fast link: L ~ 0, judged
    mapped2, unc2 = B.hybrid_map_unc(model2, d, several)
    assert np.array_equal(mapped2, model2.map(d, method="arrival")[0]) and unc2[0] < 25e6


def test_fit_windows_recovers_each_methods_scale_per_pair():
    import numpy as np

    from synchub.bench.align.calibrate import fit_windows

    rng = np.random.default_rng(4)
    sig = rng.uniform(2e6, 20e6, 2000)
    samples = {("audio", "video", "neural"): (np.abs(rng.normal(0, 0.3 * sig)), sig),  # 3x pessimistic
               ("audio", "video", "classical"): (np.abs(rng.normal(0, 1.5 * sig)), sig),  # optimistic
               ("imu", "audio", "neural"): ([], [])}  # no data: no entry
    w = {(d["pair"][1], d["method"]): d for d in fit_windows(samples)}
    assert set(w) == {("video", "neural"), ("video", "classical")}
    assert abs(w[("video", "neural")]["scale"] - 0.3) < 0.03 and abs(w[("video", "classical")]["scale"] - 1.5) < 0.15
    assert all(60.0 <= d["cover_1sigma_pct_fitted"] <= 76.0 for d in w.values())


def test_hybrid_map_is_bounded_by_the_arrivals_not_by_a_tilted_envelope_line():
    """A sparse log (four lines, 1-40 ms late): the envelope's hull line through them tilts by thousands of ppm and
    lies 26-55 ms below the truth 0.5-2 s on.  One good offset: the events are mapped with it; bounding them by the
    line (as before) put them that early, the arrivals themselves bound nothing here."""
    import numpy as np

    from synchub.agent.clock.model import ClockModel

    off = 1_175_000_000
    dev = np.array([1, 2, 3, 4], dtype=np.int64) * 1_000_000_000
    model = ClockModel("log", skew_prior_ppm=300.0)
    model.add_arrivals(dev, dev + off + np.array([40, 25, 2, 1], dtype=np.int64) * 1_000_000)
    d = np.array([3_000_000_000, 4_500_000_000, 6_000_000_000], dtype=np.int64)
    assert np.all(model.map(d[1:], method="arrival")[0] < d[1:] + off - 20_000_000)
    mapped, unc = B.hybrid_map_unc(model, d, [(3_500_000_000, off, 5_700_000)])
    assert np.all(np.abs(mapped - (d + off)) < 100_000) and np.all(unc < 6_000_000)
    # an offset later than the arrivals allow is still bounded by them (a sample is taken before it arrives)
    late, _u = B.hybrid_map_unc(model, d, [(3_500_000_000, off + 30_000_000, 5_700_000)])
    assert np.all(late <= model.arrival_bound(d, 300.0) + 500_000) and np.all(late < d + off + 3_000_000)


def _world(errs_ms, sigma_ms=1.0) -> B.PairOutcome:
    e = [x * 1e6 for x in errs_ms]
    return B.PairOutcome({"hybrid": e}, {"hybrid": 0}, {"hybrid": [0, 0]}, {"hybrid": []},
                         {"hybrid": [sigma_ms * 1e6] * len(e)})


def test_coverage_intervals_take_the_worlds_as_the_samples():
    """Each world's events share its bias: four worlds all inside their sigma and four all outside pool to 50 %,
    and however many events they have, the interval over worlds is wide (a per-event interval would be +-3 %)."""
    worlds = [_world([0.5] * 200) for _ in range(4)] + [_world([3.0] * 200) for _ in range(4)]
    lo, hi = B.world_ci(worlds, "hybrid")
    assert lo < 30.0 and hi > 70.0
    assert B.world_ci(worlds[:2], "hybrid") is None  # too few worlds to say
    same = [_world([0.5] * 50 + [3.0] * 50) for _ in range(8)]  # every world alike: a tight interval at 50 %
    assert B.world_ci(same, "hybrid") == [50.0, 50.0]
    pooled = B.pooled_coverage({"a": worlds, "b": same})
    assert pooled["events"] == 2400 and pooled["cover_1sigma_pct"] == 50.0 and pooled["cover_2sigma_pct"] == 50.0
    lo, hi = pooled["cover_1sigma_ci95"]
    assert 15.0 < lo < 50.0 < hi < 85.0  # a world's two pairs are one sample
    assert B.pooled_coverage({"a": [_world([])] * 3}) == {}
