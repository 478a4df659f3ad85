"""Config validation: a typo or a bad value names the file, the key and what is allowed."""

from dataclasses import dataclass

import pytest

from synchub.agent.config.loader import load_config, parse_config
from synchub.agent.core.settings import ConfigError, Where, build, setting


@dataclass(frozen=True)
class Demo:
    rate: float = setting(10.0, min=0.0)
    mode: str = setting("a", choices=("a", "b"))
    names: tuple[str, ...] = setting(())
    count: int = setting(1)


def test_build_defaults_and_types():
    d = build(Demo, {"rate": 5, "names": ["x", "y"]}, Where("f.toml", "sec"))
    assert d.rate == 5.0 and isinstance(d.rate, float) and d.names == ("x", "y")


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"rte": 1.0}, "f.toml: sec.rte: unknown key (did you mean 'rate'?)"),
        ({"mode": "c"}, "sec.mode: 'c' is not allowed"),
        ({"rate": -1}, "sec.rate: -1.0 is too small; allowed: >= 0.0"),
        ({"count": 1.5}, "sec.count: expected an integer"),
        ({"count": True}, "sec.count: expected an integer"),
        ({"names": "x"}, "sec.names: expected list of string"),
    ],
)
def test_build_errors_name_file_key_and_allowed(table, needle):
    with pytest.raises(ConfigError) as exc:
        build(Demo, table, Where("f.toml", "sec"))
    assert needle in str(exc.value)


def test_unknown_section_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"x.toml: agnet: unknown section \(did you mean 'agent'\?\)"):
        parse_config({"agnet": {}}, "x.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_is_a_config_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[agent\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(p)


def test_stream_unknown_driver_and_driver_key_typo():
    with pytest.raises(ConfigError, match=r"stream\[0\].driver: unknown driver 'seria' \(did you mean 'serial'\?\)"):
        parse_config({"stream": [{"name": "a", "type": "imu", "driver": "seria"}]}, "c.toml")
    with pytest.raises(ConfigError, match=r"stream\[0\].type: 'imux' is not allowed"):
        parse_config({"stream": [{"name": "a", "type": "imux", "driver": "serial", "port": "/dev/null", "format": "imu-bin"}]}, "c.toml")


def test_trigger_reference_must_exist():
    with pytest.raises(ConfigError, match=r"stream\[0\].trigger: no trigger or stream named 'sync'"):
        parse_config({"stream": [{"name": "a", "type": "imu", "driver": "serial", "port": "/dev/null", "format": "imu-bin",
                                  "trigger": "sync"}]}, "c.toml")


def test_agent_and_clock_sections_validate():
    cfg = parse_config({"agent": {"name": "rig", "overflow": "drop-oldest"}, "clock": {"method": "triggers"}}, "c")
    assert cfg.agent.name == "rig" and cfg.agent.overflow == "drop-oldest" and cfg.clock.method == "triggers"
    with pytest.raises(ConfigError, match=r"c: agent.overflow: 'drop' is not allowed \(did you mean 'drop-oldest'\?\)"):
        parse_config({"agent": {"overflow": "drop"}}, "c")
