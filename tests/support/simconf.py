"""Agent configs for process tests: an in-process simulated rig, a 1 Hz trigger line the IMU sees (a 1.5 s correction
hold), and the streams asked for."""

from __future__ import annotations

STREAMS = {
    "imu0": 'type = "imu"\ndriver = "serial"\nport = "sim:imu0"\nformat = "imu-bin"\nnominal_rate = 200.0\n'
            'trigger = "sync"\n',
    "mic0": 'type = "audio"\ndriver = "sim"\ndevice = "mic0"\n',
    "cam0": 'type = "video"\ndriver = "sim"\ndevice = "cam0"\nchannel_format = "uint8"\n',
}


def sim_agent_toml(name: str, port: int, streams=("imu0", "mic0"), seed: int = 5, agent_extra: str = "") -> str:
    text = (f'[agent]\nname = "{name}"\ncollector = ["tcp://127.0.0.1:{port}"]\n{agent_extra}'
            f'[sim]\nseed = {seed}\n[[trigger]]\nname = "sync"\nbackend = "sim"\nrole = "sync"\nperiod_s = 1.0\n')
    return text + "".join(f'[[stream]]\nname = "{s}"\n{STREAMS[s]}' for s in streams)
