"""The real-signal variants of `synchub bench align` (--real, --real-files, --onset-check) plan and render their
recordings the same way: bad counts and a corpus that cannot be rendered here are one-line errors, for each."""

import pytest

from synchub.cli import main
from synchub.models import corpus

VARIANTS = (["--real"], ["--real-files"], ["--onset-check"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_counts_are_one_line_errors(variant, capsys):
    assert main(["bench", "align", *variant, "--speech", "0", "--sounds", "0"]) == 2
    assert main(["bench", "align", *variant, "--duration", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("--speech + --sounds" in line for line in err)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_corpus_that_cannot_render_is_a_one_line_error(variant, monkeypatch, tmp_path, capsys):
    def missing(spec, cache=None):
        raise corpus.Unavailable("flite is not installed (Debian package flite)")

    monkeypatch.setattr(corpus, "render", missing)
    assert main(["bench", "align", *variant, "--speech", "1", "--sounds", "0", "--duration", "40", "--cache",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["synchub bench: real-signal corpus unavailable: flite is not installed (Debian package flite)"]
