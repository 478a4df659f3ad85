"""``--help`` of each (sub)command (in this process; the top level's also as a program), and as real subprocesses
the failure modes that must be one line on stderr with exit status 2, never a traceback: a missing optional
dependency (blocked here by a ``None`` in ``sys.modules``, which makes its import fail as if it were not installed),
a closed output pipe, a bad argument.  ``-v`` is accepted anywhere on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.paths import ROOT

from synchub.bench.main import SUBCOMMANDS as BENCHES
from synchub.cli import COMMANDS, build_parser


def synchub(args: list[str], block: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    code = (f"import sys\nfor m in {list(block)!r}: sys.modules[m] = None\n"
            f"from synchub.cli import main\nsys.exit(main({args!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _many(arg_lists, block=()):
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda a: synchub(a, block), arg_lists))


HELPS = ([[c, "--help"] for c in COMMANDS] + [["bench", b, "--help"] for b in BENCHES]
         + [["keys", "new", "--help"], ["keys", "show", "--help"], ["--help"]])


def test_every_command_has_help(capsys):
    """In this process (a subprocess each took 20 s of the suite); the top level's also as a program of its own
    (below)."""
    from synchub.cli import main

    for args in HELPS:
        with pytest.raises(SystemExit) as done:
            main(args)
        out = capsys.readouterr().out
        assert done.value.code == 0 and "usage: synchub" in out and "Traceback" not in out, (args, out[-500:])
        if args == ["--help"]:
            assert all(name in out for name in COMMANDS), out


def test_the_top_level_help_imports_no_command():
    """``synchub --help``, ``synchub`` alone and ``--version`` list the commands without importing them: they
    imported every one, torch among them (3.4 s here; on a Pi Zero 2, without the train extra, every module)."""
    code = ("import sys\nfrom synchub.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('imported:', sorted(m for m in sys.modules if m == 'torch' or m.startswith('synchub.agent.cli')))\n"
            "sys.exit(code)")
    for args, rc in ((["--help"], 0), ([], 2), (["-v"], 2), (["--version"], 0)):
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == rc and "imported: []" in r.stdout, (args, r.stdout, r.stderr)
        assert "--version" in args or "usage: synchub" in r.stdout, (args, r.stdout)


def _one_line_error(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_optional_dependencies_name_their_extra(tmp_path):
    fake = tmp_path / "rec.mcap"
    fake.write_bytes(b"not read: the check comes first")
    cases = [
        (["inspect", str(fake), "--plot", str(tmp_path / "p.png")], ("matplotlib",), "synchub[plot]"),
        (["bench", "sync", "--scenario", "lab-10min", "--methods", "arrival,pyxdf"], ("pyxdf",), "synchub[bench]"),
        (["bench", "encoders"], ("onnxruntime",), "synchub[neural]"),
        (["demo", "--duration", "1", "--out", str(tmp_path / "demo")], ("onnxruntime",), "synchub[neural]"),
        (["train"], ("torch",), "synchub[train]"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: synchub(c[0], c[1]), cases))
    for (args, _block, extra), r in zip(cases, results, strict=True):
        _one_line_error(r, f"synchub {args[0]}:", extra)


def test_agent_with_neural_alignment_and_no_onnxruntime_refuses_in_one_line(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[agent]\nname = "n"\n[sim]\nseed = 1\n'
                   '[[stream]]\nname = "imu0"\ntype = "imu"\ndriver = "serial"\nport = "sim:imu0"\nformat = "imu-bin"\n'
                   '[[stream]]\nname = "mic0"\ntype = "audio"\ndriver = "sim"\ndevice = "mic0"\nalign_to = "imu0"\n')
    r = synchub(["agent", "--config", str(cfg), "--insecure", "--duration", "1"], ("onnxruntime",))
    _one_line_error(r, "stream mic0", "onnxruntime", "synchub[neural]")
    r = synchub(["config", str(cfg), "--insecure"], ("onnxruntime",))
    _one_line_error(r, "synchub config:", "synchub[neural]")


def test_closed_output_pipe_is_one_line_not_a_traceback():
    # the reader is gone before the first write (as `| head` that has exited): every write gets EPIPE.  (Reading a
    # few bytes and then closing races with the writer: a short output fits the pipe's buffer and exits 0.)
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.Popen([sys.executable, "-m", "synchub.cli", "config", "--reference"], cwd=ROOT,
                             stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    err = p.stderr.read().decode()
    assert p.wait(30) == 2, err
    assert len(err.strip().splitlines()) == 1 and "broken pipe" in err and "Traceback" not in err, err


def test_bad_use_is_one_line():
    r1, r2, r3 = _many([["keys"], ["config"], ["uninstall", "--root", "/nonexistent-root"]])
    _one_line_error(r1, "synchub keys:", "which action")
    _one_line_error(r2, "synchub config:", "--reference")
    _one_line_error(r3, "synchub uninstall:", "nothing to uninstall")


@pytest.mark.parametrize("argv", [["-v", "config", "x.toml"], ["config", "-v", "x.toml"], ["config", "x.toml", "-v"],
                                  ["bench", "sync", "--list", "-v"], ["keys", "new", "a", "-v"],
                                  ["install", "--dry-run", "-v"]])
def test_verbose_anywhere(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["synchub", *argv])
    parser, _ = build_parser()
    assert parser.parse_args(argv).verbose is True
    quiet = [a for a in argv if a != "-v"]
    monkeypatch.setattr(sys, "argv", ["synchub", *quiet])
    parser, _ = build_parser()
    assert parser.parse_args(quiet).verbose is False
