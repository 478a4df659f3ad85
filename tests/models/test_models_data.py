"""Training data of the encoders (``models/dataset.py``, ``models/corpus_data.py``): rendered the same whatever the
number of worker processes, workers without torch, the on-disk caches, and the corpus data files (int8 storage,
lossless held-out streams, refusal of files made by other feature code).  Numpy only: no train extra needed."""

import json

import numpy as np
import pytest

from synchub.models import corpus_data, dataset, simdata
from synchub.models import features as F
from synchub.models.corpus import texts as TX


def test_a_set_is_the_same_with_one_or_two_worker_processes_and_workers_have_no_torch(tmp_path):
    seeds = simdata.TRAIN_SEED_BASE + np.arange(3)
    one = dataset.sim_set("a", seeds, 4.0, workers=1, cache_dir=False)
    two = dataset.sim_set("b", seeds, 4.0, workers=2, cache_dir=False)
    for m in F.MODALITIES:
        assert one.feats[m].dtype == np.float16 and one.feats[m].shape == (3, F.channels(m), 200)
        np.testing.assert_array_equal(one.feats[m], two.feats[m])
    np.testing.assert_array_equal(one.act, two.act)
    np.testing.assert_array_equal(one.onset, two.onset)
    assert dataset.render(dataset.worker_modules, [(), ()], workers=2) == [[], []]


def test_the_simulator_cache_serves_the_same_set_and_keys_on_the_seeds(tmp_path):
    seeds = simdata.TRAIN_SEED_BASE + np.arange(2)
    a = dataset.sim_set("a", seeds, 2.0, cache_dir=tmp_path)
    files = list(tmp_path.glob("sim-*.npz"))
    assert len(files) == 1
    lines = []
    b = dataset.sim_set("b", seeds, 2.0, cache_dir=tmp_path, log=lines.append)
    assert "from" in lines[0] and str(files[0]) in lines[0]
    np.testing.assert_array_equal(a.feats["video"], b.feats["video"])
    dataset.sim_set("c", seeds + 1, 2.0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("sim-*.npz"))) == 2
    files[0].write_bytes(b"torn")  # an unreadable cache file is rendered again, not fatal
    lines = []
    d = dataset.sim_set("d", seeds, 2.0, cache_dir=tmp_path, log=lines.append)
    assert "unreadable" in lines[0]
    np.testing.assert_array_equal(a.feats["imu"], d.feats["imu"])


def test_frame_marks_cover_starts_and_ends_and_mark_onset_frames():
    act, onset = dataset.frame_marks(100, [1_000_000_000], [1_500_000_000], [1_002_000_000, 1_030_000_000])
    assert act[45:66].all() and act[70:91].all() and not act[:44].any() and not act[92:].any()
    assert np.nonzero(onset)[0].tolist() == [50, 51]


def test_int8_storage_keeps_features_within_a_32nd():
    x = np.random.default_rng(0).uniform(-F.CLIP, F.CLIP, (3, 50)).astype(np.float32)
    p = corpus_data.pack("audio", x)
    assert p.dtype == np.int8
    assert np.abs(corpus_data.unpack(p).astype(np.float32) - x).max() <= 1 / 32 + 1e-3
    t = corpus_data.pack("text", x)
    assert t.dtype == np.float16 and np.abs(corpus_data.unpack(t) - x).max() < 5e-3


def test_corpus_files_are_refused_when_missing_or_made_by_other_feature_code(tmp_path):
    with pytest.raises(corpus_data.CorpusDataError, match="--prepare-corpus"):
        corpus_data.load(tmp_path / "corpus.npz")
    meta = {"format": corpus_data.FORMAT, "features": "0123456789ab", "sets": {}}
    dataset.save_npz(tmp_path / "corpus.npz", {"x": np.zeros(1)}, meta)
    with pytest.raises(corpus_data.CorpusDataError, match="other feature code"):
        corpus_data.load(tmp_path / "corpus.npz")
    (tmp_path / "corpus.npz").write_bytes(b"not a zip")
    with pytest.raises(corpus_data.CorpusDataError, match="unreadable"):
        corpus_data.load(tmp_path / "corpus.npz")


def test_held_out_streams_round_trip_exactly(tmp_path):
    """The held-out file keeps the microphone's 16-bit samples, marker lines and irregular times exactly."""
    mic = (np.arange(-5, 5, dtype=np.float32) * 1000 / 32768.0)
    t_mic = 62_500 * np.arange(10, dtype=np.int64)
    t_txt = np.array([5, 900_000_017], dtype=np.int64)
    arrays = {"heldout-speech-0000/audio/x": np.rint(mic * 32768).astype(np.int16),
              **{f"heldout-speech-0000/audio/{k}": v for k, v in corpus_data._times(t_mic).items()},
              "heldout-speech-0000/text/x": np.array(["TRIAL 1 STIM_ON word=go", "lick left"], dtype=str),
              **{f"heldout-speech-0000/text/{k}": v for k, v in corpus_data._times(t_txt).items()}}
    meta = {"format": corpus_data.FORMAT, "recordings": [{"name": "heldout-speech-0000", "kind": "speech"}]}
    dataset.save_npz(tmp_path / "h.npz", arrays, meta)
    assert "t0dtn" in "".join(arrays) and json.loads(json.dumps(meta))
    rec = corpus_data.load_heldout(tmp_path / "h.npz")[0]
    x, t = rec["streams"]["audio"]
    np.testing.assert_array_equal(x[:, 0], mic)
    np.testing.assert_array_equal(t, t_mic)
    lines, t = rec["streams"]["text"]
    assert lines == ["TRIAL 1 STIM_ON word=go", "lick left"] and t.tolist() == t_txt.tolist()


def test_marker_lines_of_every_rig_style_reach_the_text_features():
    """The text features hash word tokens, whatever the vocabulary: each rig style's sound line and its soundless
    lines give token buckets, and sound lines differ from the soundless lines of their own style."""
    for style in range(len(TX.SOUND_STYLES)):
        sound = TX.marker_line(style, 3, "press the red button", "s412")
        silent = {TX.silent_line(style, 3, np.random.default_rng(k)) for k in range(30)}
        lines = [sound, *sorted(silent)]
        t = np.arange(len(lines), dtype=np.int64) * F.FRAME_NS * 10
        x = F.featurize("text", lines, t).x[: F.TEXT_BUCKETS, ::10]
        assert (x.sum(axis=0) > 0.99).all(), lines  # every line's tokens are in the buckets
        for k in range(1, len(lines)):
            assert not np.allclose(x[:, 0], x[:, k]), (sound, lines[k])
