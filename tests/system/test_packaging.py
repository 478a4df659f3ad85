"""The installed layout: everything imports under `synchub`, and every package folder is listed in pyproject."""

import pathlib
import sys

import pytest
from support.paths import ROOT

MAPPED = {"synchub": "synchub", "agent": "synchub.agent", "drivers": "synchub.drivers", "models": "synchub.models",
          "bench": "synchub.bench", "firmware": "synchub.firmware", "systemd": "synchub.systemd",
          "examples": "synchub.examples"}


def _listed_packages():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_listed():
    listed = _listed_packages()
    for top, pkg in MAPPED.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            name = ".".join([pkg, *rel.parts]) if rel.parts else pkg
            assert name in listed, f"{init.parent} has __init__.py but {name} is not in pyproject packages"


def test_no_top_level_agent_or_models_importable_from_site_packages():
    import synchub.agent
    import synchub.models

    assert pathlib.Path(synchub.agent.__file__).parent == ROOT / "agent"
    assert pathlib.Path(synchub.models.__file__).parent == ROOT / "models"
    for name in ("agent", "models", "drivers"):
        spec = __import__("importlib.util").util.find_spec(name)
        if spec is not None:
            origin = pathlib.Path(spec.origin or "").resolve()
            # only the checkout itself (pytest's rootdir on sys.path) may provide these names, never site-packages
            assert "site-packages" not in str(origin), f"top-level {name!r} installed in site-packages"


@pytest.mark.parametrize("cmd", ["demo", "agent", "collector", "sim", "inspect", "bench"])
def test_cli_help(cmd, capsys):
    from synchub.cli import main

    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: synchub" in capsys.readouterr().out


def test_the_corpus_subpackage_and_its_data_card_are_installed():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "synchub.models.corpus" in data["tool"]["setuptools"]["packages"]
    assert "*.md" in data["tool"]["setuptools"]["package-data"]["synchub.models.corpus"]
    import synchub.models.corpus as corpus

    here = pathlib.Path(corpus.__file__).parent
    assert here == ROOT / "models" / "corpus" and (here / "DATA_CARD.md").is_file()
