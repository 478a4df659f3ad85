"""The real-signal corpus: speech from Debian's TTS engines and recorded sounds from Debian packages, mixed into
microphone recordings with babble, music-like tones and noise, with a marker log (and, for sound effects, an IMU
and a camera) on drifting device clocks, and the truth of every onset.

    from synchub.models import corpus
    specs = corpus.plan("train", 100, kind="speech", duration_s=60)   # or "validation", "heldout"; "events"
    rec = corpus.render(specs[0], cache=corpus.ClipCache(corpus.default_cache_dir()))
    rec.tracks["audio"].true_ns, rec.tracks["text"].device_ns, rec.events["onset_ns"], rec.markers["event"]
    for rec in corpus.recordings("train", 8, "events", 30.0): ...  # the same, one by one

Modules: ``sources`` (which Debian packages provide what), ``split`` (train/validation/held-out), ``clips`` (TTS
and sound clips with their onsets, cached), ``audio`` (reading, resampling, onset truth), ``texts`` (utterances
and marker lines), ``scene`` (a recording's plan and its microphone mix), ``render`` (streams on device clocks
and the truth).  ``DATA_CARD.md`` documents the sources, licences and the split.
"""

from .clips import Clip, ClipCache, default_cache_dir
from .render import Recording, Track, render
from .scene import RecordingSpec, plan
from .sources import Unavailable, missing
from .split import SPLITS, seed_of, sound_split, sounds, split_of_seed, voices

__all__ = ["SPLITS", "Clip", "ClipCache", "Recording", "RecordingSpec", "Track", "Unavailable", "default_cache_dir",
           "missing", "plan", "recordings", "render", "seed_of", "sound_split", "sounds", "split_of_seed", "voices"]


def recordings(split: str, n: int, kind: str = "speech", duration_s: float = 60.0, start: int = 0, cache=None,
               **plan_kw):
    """Recordings ``start..start+n-1`` of ``split`` one by one (``plan`` + ``render``; clips cached in the default
    cache unless ``cache`` is given).  For parallel rendering, send the ``plan`` specs to worker processes and
    call ``render`` there: a spec is a small frozen dataclass and the clip cache is safe to share."""
    cache = cache if cache is not None else ClipCache(default_cache_dir())
    for spec in plan(split, n, kind, duration_s, start, **plan_kw):
        yield render(spec, cache)
