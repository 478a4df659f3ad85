"""Encoders, losses, export round trip and a tiny training run (need the train extra: torch, onnx)."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is only in the train extra (pip install 'synchub[train]')")
pytest.importorskip("onnx", reason="onnx is only in the train extra (pip install 'synchub[train]')")

from synchub.models import corpus_data, encoders, export, losses, train  # noqa: E402
from synchub.models import features as F  # noqa: E402
from synchub.models.runner import EMB_DIM, EncoderRunner, ModelMismatchError  # noqa: E402


def test_encoder_outputs():
    torch.manual_seed(0)
    m = encoders.build("imu", F.channels("imu"))
    m.eval()
    emb, anomaly, logits = m(torch.randn(3, F.channels("imu"), 90))
    assert emb.shape == (3, 90, EMB_DIM) and anomaly.shape == (3, 90) and logits.shape == (3, len(F.MODALITIES))
    assert torch.allclose(emb.norm(dim=2), torch.ones(3, 90), atol=1e-3)
    assert encoders.EMB_DIM == EMB_DIM


def test_receptive_margin_is_exact():
    """Changing input frame k changes no output frame farther than margin away (the runner relies on it)."""
    torch.manual_seed(0)
    m = encoders.build("video", F.channels("video")).eval()
    x = torch.randn(1, F.channels("video"), 200)
    y = x.clone()
    y[0, :, 100] += 5.0
    with torch.no_grad():
        d = (m(x)[0] - m(y)[0]).abs().sum(dim=2)[0]
    changed = torch.nonzero(d > 1e-6).flatten()
    margin = encoders.receptive_margin("video")
    assert changed.min() >= 100 - margin and changed.max() <= 100 + margin
    assert changed.max() - changed.min() > margin  # the margin is not needlessly large


def test_pair_loss_prefers_the_true_lag():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(2, 300, EMB_DIM, generator=g), dim=2)
    act = torch.ones(2, 300)
    seq0, frame0 = losses.pair_losses(e, e, act, 50, torch.tensor(30.0), torch.tensor(10.0))
    shifted = torch.roll(e, 7, dims=1)
    seq1, frame1 = losses.pair_losses(e, shifted, act, 50, torch.tensor(30.0), torch.tensor(10.0))
    assert seq0 < seq1 and frame0 < frame1


def test_at_onsets_a_one_frame_late_partner_is_a_negative():
    """Slowly varying embeddings: a partner one frame late (a marker matched to the sound's energy peak rather
    than its start) costs the frame loss little when +-1-2 frames are excluded, and a lot at onset frames."""
    g = torch.Generator().manual_seed(1)
    e = torch.randn(2, 300, EMB_DIM, generator=g)
    for t in range(1, 300):  # AR(1): neighbouring frames alike (cosine ~0.7)
        e[:, t] += 0.7 * e[:, t - 1]
    e = torch.nn.functional.normalize(e, dim=2)
    act, onset = torch.ones(2, 300), torch.ones(2, 300, dtype=torch.bool)
    late = torch.roll(e, 1, dims=1)
    s = (torch.tensor(30.0), torch.tensor(10.0))
    loose = losses.pair_losses(e, late, act, 50, *s)[1] - losses.pair_losses(e, e, act, 50, *s)[1]
    strict = losses.pair_losses(e, late, act, 50, *s, onset)[1] - losses.pair_losses(e, e, act, 50, *s, onset)[1]
    assert strict > 1.0 and strict > 3 * loose


def test_time_mask_and_crop():
    x = torch.ones(64, 3, 100)
    a = losses.time_mask(x, torch.Generator().manual_seed(3))
    b = losses.time_mask(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # from the generator alone
    zeroed = (a == 0).all(dim=1).sum(dim=1)  # frames zeroed in all channels, per recording
    assert ((zeroed == 0) | ((zeroed >= 5) & (zeroed < 50))).all() and 5 < (zeroed > 0).sum() < 40
    y = torch.arange(2 * 1 * 30, dtype=torch.float32).reshape(2, 1, 30)
    c = losses.crop(y, torch.tensor([0, 7]), 5)
    assert c[0, 0].tolist() == [0, 1, 2, 3, 4] and c[1, 0].tolist() == [37, 38, 39, 40, 41]


def test_export_round_trip_and_metadata(tmp_path, monkeypatch):
    torch.manual_seed(1)
    m = encoders.build("telemetry", F.channels("telemetry"), hidden=40).eval()
    export.export_one(m, tmp_path / "telemetry.onnx")
    monkeypatch.setenv("SYNCHUB_MODEL_DIR", str(tmp_path))  # a trained set, benchmarked without replacing ours
    r = EncoderRunner.load("telemetry")
    assert r.path == tmp_path / "telemetry.onnx"
    assert r.meta["window_frames"] == export.WINDOW_FRAMES and r.meta["opset"] == export.OPSET
    x = np.random.default_rng(0).normal(size=(4, F.channels("telemetry"), export.WINDOW_FRAMES)).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in m(torch.from_numpy(x))]
    got = r.run_windows(x)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # the same model exported under another modality name is refused by the runner
    import onnx

    proto = onnx.load(str(tmp_path / "telemetry.onnx"))
    for p in proto.metadata_props:
        if p.key == "frame_rate_hz":
            p.value = "100"
    onnx.save(proto, str(tmp_path / "telemetry.onnx"))
    with pytest.raises(ModelMismatchError, match="frame_rate_hz"):
        EncoderRunner.load("telemetry", model_dir=tmp_path)


def test_init_from_exported_onnx_of_any_width(tmp_path):
    torch.manual_seed(2)
    made = {m: encoders.build(m, F.channels(m), hidden=24).eval() for m in F.MODALITIES}
    for m, model in made.items():
        export.export_one(model, tmp_path / f"{m}.onnx")
    got = train.init_models(tmp_path, {m: F.channels(m) for m in F.MODALITIES})
    for m, model in made.items():
        assert got[m].hidden == 24
        for k, v in model.state_dict().items():
            assert torch.equal(v, got[m].state_dict()[k]), (m, k)


def _args(*argv):
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return p.parse_args(list(argv))


def test_a_device_that_is_not_there_and_a_folder_without_models_are_one_line_errors(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["--device", "cuda", "--quick"], ["--evaluate", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-c", "import sys; from synchub.cli import main; sys.exit(main())",
                            "train", *argv, "--data", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "CUDA" in r.stderr or "imu.onnx" in r.stderr


@pytest.mark.slow
def test_quick_training_run_on_simulator_and_corpus_exports_loadable_models(tmp_path, capsys):
    """Simulator + a tiny corpus (when its packages are installed here): validation, selection, held-out
    metrics on both, export."""
    from synchub.models import corpus

    data = tmp_path / "data"
    try:
        corpus_data.prepare(data, corpus_data.QUICK_SIZES, workers=1)
        have_corpus = True
    except corpus.Unavailable:  # the corpus's Debian packages are not installed: the simulator alone
        have_corpus = False
    out = tmp_path / "out"
    assert train.run(_args("--quick", "--out", str(out), "--threads", "1", "--workers", "2", "--batch", "2",
                           "--corpus-batch", "2", "--data", str(data))) == 0  # batches of 8: 25 s more
    text = capsys.readouterr().out
    assert "30/30" in text and "held-out imu-audio" in text and "validation at step 30" in text
    metrics = json.loads((out / "metrics.json").read_text())
    if have_corpus:
        assert "speech/audio-text" in metrics["corpus_heldout_lag_accuracy"]
        assert set(metrics["validation"]["history"][-1]) >= {"sim", "corpus/speech", "corpus/events", "score"}
        assert metrics["train"]["corpus"]["train/speech"]["seeds"][0] == corpus.seed_of("train", 0)
    assert metrics["train"]["selected_step"] in (15, 30)
    assert set(metrics["onnx_heldout_lag_accuracy"]) == {"imu-audio", "imu-video", "audio-video", "text-video",
                                                         "text-telemetry", "telemetry-video", "text-image",
                                                         "telemetry-image"}
    lo, hi = metrics["train"]["heldout_seeds"]
    a, b = metrics["train"]["train_seeds"]
    assert b < lo or a > hi  # held-out seeds never trained on
    for m in F.MODALITIES:
        EncoderRunner.load(m, model_dir=out)
    ref = np.load(out / "reference_outputs.npz")
    r = EncoderRunner.load("audio", model_dir=out)
    np.testing.assert_allclose(r.run_windows(ref["audio/features"])[0], ref["audio/emb"], atol=2e-4)
