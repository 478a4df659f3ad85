"""The config reference in docs/CONFIG.md is what the code validates."""


from support.paths import ROOT

from synchub.agent.config.reference import reference_text


def test_config_reference_is_current():
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    assert reference_text() in doc, "docs/CONFIG.md is stale: regenerate it with `synchub config --reference`"


def test_readme_quick_start_is_make_demo_and_make_test():
    readme = (ROOT / "README.md").read_text()
    start = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in start and "make test" in start
    assert "make test" in (ROOT / ".ci" / "run").read_text()
