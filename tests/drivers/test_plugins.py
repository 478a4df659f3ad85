"""Driver plugins through the ``synchub.drivers`` entry point: a package from tests/data/plugin_demo is pip-installed
(into a target directory on the test's PYTHONPATH) and synchub finds, validates and runs its driver; a broken
plugin is one line naming it."""

import json
import os
import subprocess
import sys

import pytest
from support.paths import DATA

PKG = DATA / "plugin_demo"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    import shutil

    shutil.copytree(PKG, build / "pkg")  # building writes egg-info next to the sources: not into the repository
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(build / "pkg")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return target


def _run(plugin_path, *args, code=None):
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "synchub.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_synchub_drivers_lists_built_in_and_plugin_drivers_and_names_a_broken_plugin(plugin_path):
    out = _run(plugin_path, "drivers", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["serial"]["origin"] == "built-in" and rows["lsl"]["origin"] == "built-in"
    assert rows["counter-demo"]["origin"].startswith("plugin synchub-plugin-demo 0.1.0")
    assert rows["counter-demo"]["doc"] == "A counter at rate_hz, stamped with the host clock (a third-party plugin)."
    assert any(k.startswith("rate_hz: number, default 100.0") for k in rows["counter-demo"]["keys"])
    assert "is broken: RuntimeError: this plugin needs libfoo" in rows["broken-demo"]["error"]
    assert "is not a synchub driver" in rows["notadriver-demo"]["error"]
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("synchub drivers:")][0].count("broken-demo") == 1
    text = _run(plugin_path, "drivers")
    assert "counter-demo" in text.stdout and "UNAVAILABLE: driver plugin 'broken-demo'" in text.stdout


def test_a_plugin_driver_is_validated_like_a_built_in_and_runs(plugin_path, tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[[stream]]\nname = "c0"\ntype = "other"\ndriver = "counter-demo"\nrate_hz = 200.0\n')
    code = f"""
import time
from synchub.agent.config.loader import load_config
from synchub.agent.pipeline.runtime import _driver_class
cfg = load_config({str(cfg)!r})
s = cfg.streams[0]
drv = _driver_class(s.common.driver)(s.common, s.driver, None)
got = []
class Sink:
    def samples(self, stream, data, dev, host): got.append(float(data[0][0]))
drv.start(Sink()); time.sleep(0.3); drv.stop()
print(s.driver.rate_hz, len(got) > 10, got[:3])
"""
    out = _run(plugin_path, code=code)
    assert out.stdout.strip() == "200.0 True [0.0, 1.0, 2.0]", out.stderr
    cfg.write_text('[[stream]]\nname = "c0"\ntype = "other"\ndriver = "counter-demo"\nrate_hx = 200.0\n')
    bad = _run(plugin_path, "config", "--insecure", str(cfg))
    assert bad.returncode == 2 and "stream[0].rate_hx: unknown key (did you mean 'rate_hz'?)" in bad.stderr
    cfg.write_text('[[stream]]\nname = "c0"\ntype = "other"\ndriver = "broken-demo"\n')
    broken = _run(plugin_path, "config", "--insecure", str(cfg))
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert "driver plugin 'broken-demo'" in broken.stderr and "Traceback" not in broken.stderr
    cfg.write_text('[[stream]]\nname = "c0"\ntype = "other"\ndriver = "counter-dem"\n')
    typo = _run(plugin_path, "config", "--insecure", str(cfg))
    assert "unknown driver 'counter-dem' (did you mean 'counter-demo'?)" in typo.stderr
