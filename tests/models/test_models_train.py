"""Encoders, losses, export round trip and a tiny training run (need the train extra: torch, onnx)."""

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is only in the train extra (pip install 'synchub[train]')")
pytest.importorskip("onnx", reason="onnx is only in the train extra (pip install 'synchub[train]')")

from synchub.models import encoders, export, train  # noqa: E402
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
    seq0, frame0 = train.pair_losses(e, e, act, 50, torch.tensor(30.0), torch.tensor(10.0))
    shifted = torch.roll(e, 7, dims=1)
    seq1, frame1 = train.pair_losses(e, shifted, act, 50, torch.tensor(30.0), torch.tensor(10.0))
    assert seq0 < seq1 and frame0 < frame1


def test_export_round_trip_and_metadata(tmp_path):
    torch.manual_seed(1)
    m = encoders.build("telemetry", F.channels("telemetry")).eval()
    export.export_one(m, tmp_path / "telemetry.onnx")
    r = EncoderRunner.load("telemetry", model_dir=tmp_path)
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


def test_init_from_exported_onnx(tmp_path):
    torch.manual_seed(2)
    a = encoders.build("text", F.channels("text")).eval()
    export.export_one(a, tmp_path / "text.onnx")
    b = encoders.build("text", F.channels("text"))
    train.load_onnx_weights(b, tmp_path / "text.onnx")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.slow
def test_quick_training_run_exports_loadable_models(tmp_path, capsys):
    p = argparse.ArgumentParser()
    train.add_arguments(p)
    args = p.parse_args(["--quick", "--out", str(tmp_path), "--threads", "1"])
    assert train.run(args) == 0
    out = capsys.readouterr().out
    assert "30/30" in out and "held-out imu-audio" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["onnx_heldout_lag_accuracy"]) == {"imu-audio", "imu-video", "audio-video", "text-video",
                                                         "text-telemetry", "telemetry-video", "text-image",
                                                         "telemetry-image"}
    lo, hi = metrics["train"]["heldout_seeds"]
    a, b = metrics["train"]["train_seeds"]
    assert b < lo or a > hi  # held-out seeds never trained on
    for m in F.MODALITIES:
        EncoderRunner.load(m, model_dir=tmp_path)
    ref = np.load(tmp_path / "reference_outputs.npz")
    r = EncoderRunner.load("audio", model_dir=tmp_path)
    np.testing.assert_allclose(r.run_windows(ref["audio/features"])[0], ref["audio/emb"], atol=2e-4)
