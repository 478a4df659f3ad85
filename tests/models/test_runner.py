"""EncoderRunner on the committed ONNX files (onnxruntime only; these tests never import torch)."""

import shutil

import numpy as np
import pytest

from synchub.agent.core.units import NS
from synchub.models import features as F
from synchub.models.evaluate import lag_curve, peak_lag
from synchub.models.runner import (
    EMB_DIM,
    MODALITIES,
    MODEL_DIR,
    EncoderRunner,
    ModelMismatchError,
    NoModelError,
    available_modalities,
)
from synchub.models.simdata import HELDOUT_SEED_BASE, make_recording


@pytest.fixture(scope="module")
def runners():
    return {m: EncoderRunner.load(m) for m in MODALITIES}


@pytest.fixture(scope="module")
def rec():
    return make_recording(HELDOUT_SEED_BASE + 777, 12.0)


def test_every_modality_has_a_small_model():
    assert available_modalities() == list(MODALITIES)
    for m in MODALITIES:
        size = (MODEL_DIR / f"{m}.onnx").stat().st_size
        assert 0 < size <= 1_000_000, (m, size)


def test_metadata(runners):
    for m, r in runners.items():
        meta = r.meta
        assert meta["modality"] == m
        assert meta["frame_rate_hz"] == F.FRAME_RATE_HZ
        assert meta["emb_dim"] == EMB_DIM
        assert meta["normalization"] == F.NORMALIZATION
        assert meta["opset"] == 17 and meta["version"] == "1"
        assert 0 < 2 * meta["margin_frames"] < meta["window_frames"]
        assert meta["providers"] == ["CPUExecutionProvider"]


def test_committed_onnx_reproduces_pytorch_outputs(runners):
    ref = np.load(MODEL_DIR / "reference_outputs.npz")
    for m, r in runners.items():
        emb, anomaly, logits = r.run_windows(ref[f"{m}/features"])
        np.testing.assert_allclose(emb, ref[f"{m}/emb"], atol=2e-4, err_msg=m)
        np.testing.assert_allclose(anomaly, ref[f"{m}/anomaly"], rtol=1e-3, atol=1e-4, err_msg=m)
        np.testing.assert_allclose(logits, ref[f"{m}/modality_logits"], atol=1e-3, err_msg=m)
        assert np.abs(ref[f"{m}/features"]).sum() > 0  # a real input, not zeros


@pytest.mark.parametrize("modality", MODALITIES)
def test_embed_shapes_and_grid(runners, rec, modality):
    s = rec[modality]
    e = runners[modality].embed(s.samples, s.times_ns, span_ns=(0, 12 * NS))
    T = len(e)
    assert T == 600 and e.frame_times_ns[0] == F.FRAME_NS // 2
    assert e.vectors.shape == (T, EMB_DIM) and e.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, atol=1e-3)
    assert e.anomaly.shape == (T,) and np.all(np.isfinite(e.anomaly)) and np.all(e.anomaly >= 0)
    assert e.modality_probs.shape == (len(MODALITIES),)
    assert e.modality_probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.diff(e.frame_times_ns) == F.FRAME_NS)


def test_stitching_does_not_depend_on_where_the_stream_is_cut(runners, rec):
    """Windows keep only frames with full context, so a sub-span of the features embeds like the same frames of
    the whole stream, whatever the window boundaries and batch size."""
    r = runners["imu"]
    s = rec["imu"]
    feats = F.featurize("imu", s.samples, s.times_ns)
    full = r.embed_features(feats)
    m = r.meta["margin_frames"]
    for a, b in ((0, 300), (77, 411), (150, 600)):
        sub = F.Features(feats.x[:, a:b], feats.frame_times_ns[a:b], feats.valid[a:b])
        part = r.embed_features(sub)
        lo, hi = (0 if a == 0 else m), (b - a) - (0 if b >= feats.n_frames else m)
        np.testing.assert_allclose(part.vectors[lo:hi], full.vectors[a + lo : a + hi], atol=1e-5)
    r1 = EncoderRunner.load("imu", max_batch=1)
    np.testing.assert_allclose(r1.embed_features(feats).vectors, full.vectors, atol=1e-5)


def test_offset_between_streams_found_by_embedding_correlation(runners):
    """The committed models are time-discriminative: imu vs audio of held-out recordings, audio shifted."""
    hits = 0
    for i in range(4):
        rec = make_recording(HELDOUT_SEED_BASE + 800 + i, 20.0)
        off_frames = 37 - 23 * i
        ea = runners["imu"].embed(rec["imu"].samples, rec["imu"].times_ns)
        eb = runners["audio"].embed(rec["audio"].samples, rec["audio"].times_ns + off_frames * F.FRAME_NS)
        ka, kb = ea.frame_times_ns // F.FRAME_NS, eb.frame_times_ns // F.FRAME_NS
        k0, k1 = max(ka[0], kb[0]), min(ka[-1], kb[-1]) + 1
        p = peak_lag(lag_curve(ea.vectors[k0 - ka[0] : k1 - ka[0]], eb.vectors[k0 - kb[0] : k1 - kb[0]], 100))
        hits += abs(p - off_frames) <= 1
    assert hits >= 3


def test_bad_input_never_crashes(runners):
    t = np.arange(400, dtype=np.int64) * 5_000_000
    e = runners["imu"].embed(np.full((400, 6), np.nan), t)
    assert len(e) == 0 and e.problems["nan_samples"] == 400 and e.problems["empty"] == 1
    x = np.random.default_rng(0).normal(size=(400, 6))
    x[100:200] = np.nan
    e = runners["imu"].embed(x, t)
    assert e.problems["nan_samples"] == 100 and e.problems["masked_frames"] > 0
    assert np.all(np.isfinite(e.vectors)) and np.all(np.isfinite(e.anomaly))
    e = runners["telemetry"].embed(np.ones((50, 5)), np.arange(50, dtype=np.int64) * 100_000_000)
    assert e.problems["flat_channels"] == 5 and np.all(np.isfinite(e.vectors))
    e = runners["text"].embed([], np.zeros(0, np.int64))
    assert len(e) == 0 and e.vectors.shape == (0, EMB_DIM)
    e = runners["text"].embed(["", "???", b"bytes line", "x" * 10_000], np.array([0, 1, 2, 3]) * NS)
    assert len(e) == 151 and e.problems["empty_lines"] == 2
    assert runners["imu"].counts["nan_samples"] >= 500


def test_anomaly_score_flags_garbage(runners, rec):
    s = rec["imu"]
    normal = runners["imu"].embed(s.samples, s.times_ns).anomaly
    junk = np.random.default_rng(5).standard_cauchy(s.samples.shape) * 50.0
    weird = runners["imu"].embed(junk, s.times_ns).anomaly
    assert np.median(weird) > 2 * np.median(normal)


def test_wrong_sample_shape_is_a_clear_error(runners):
    with pytest.raises(ValueError, match="feature channels"):
        runners["telemetry"].embed(np.zeros((20, 7)), np.arange(20, dtype=np.int64) * 100_000_000)


def test_no_model_for_modality(tmp_path):
    for m in ("trigger", "marker", "nonsense"):
        with pytest.raises(NoModelError, match=m):
            EncoderRunner.load(m)
    with pytest.raises(NoModelError, match="does not exist"):
        EncoderRunner.load("audio", model_dir=tmp_path)
    assert available_modalities(tmp_path) == []


def test_mismatched_metadata_refused(tmp_path):
    # an audio model presented as the imu model
    shutil.copy(MODEL_DIR / "audio.onnx", tmp_path / "imu.onnx")
    with pytest.raises(ModelMismatchError, match="modality"):
        EncoderRunner.load("imu", model_dir=tmp_path)
    # a normalization this runtime does not compute (same length, so the protobuf stays valid)
    data = (MODEL_DIR / "video.onnx").read_bytes()
    old = F.NORMALIZATION.encode()
    assert data.count(old) == 1
    (tmp_path / "video.onnx").write_bytes(data.replace(old, b"v0" + old[2:]))
    with pytest.raises(ModelMismatchError, match="normalization"):
        EncoderRunner.load("video", model_dir=tmp_path)
    # a truncated file
    (tmp_path / "text.onnx").write_bytes((MODEL_DIR / "text.onnx").read_bytes()[:5000])
    with pytest.raises(ModelMismatchError, match="not a loadable"):
        EncoderRunner.load("text", model_dir=tmp_path)


def test_provider_selection():
    r = EncoderRunner.load("audio", providers=["NoSuchExecutionProvider", "CPUExecutionProvider"])
    assert r.meta["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="available"):
        EncoderRunner.load("audio", providers=["NoSuchExecutionProvider"])
