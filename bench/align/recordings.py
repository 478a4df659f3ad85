"""The real-signal corpus recordings a ``bench align`` run asks for (``--real``'s ``--split``, ``--speech``,
``--sounds``, ``--duration``, ``--cache``), and each one rendered, for the variants that run on them (``real``,
``files``, ``onsets``).  A corpus that cannot be rendered here (a TTS engine or sound package missing) is a one-line
error naming what is missing, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator

from synchub.errors import UserError
from synchub.models import corpus


def planned(args, durations: list[float] | None = None) -> list:
    """The recordings' specs: ``--speech`` speech and ``--sounds`` sound-effect ones of ``--split``, at each of
    ``durations`` (seconds; default ``--duration``), after checking the counts and lengths make a run."""
    durations = durations or [args.duration]
    if min(durations) < 30 or args.speech < 0 or args.sounds < 0 or args.speech + args.sounds == 0:
        raise UserError("--duration(s) must be >= 30 s and --speech + --sounds >= 1")
    return [s for d in durations for s in corpus.plan(args.split, args.speech, "speech", d) +
            corpus.plan(args.split, args.sounds, "events", d)]


def cache_of(args) -> corpus.ClipCache:
    """The clip cache: ``--cache``, else ``$SYNCHUB_CORPUS_CACHE`` or the user's cache folder."""
    return corpus.ClipCache(args.cache or corpus.default_cache_dir())


def rendered(specs, cache: corpus.ClipCache) -> Iterator[tuple[object, object]]:
    """``(spec, recording)`` for each of ``specs``, rendered in turn (the clips cached in ``cache``)."""
    for spec in specs:
        try:
            rec = corpus.render(spec, cache=cache)
        except corpus.Unavailable as exc:
            raise UserError(f"real-signal corpus unavailable: {exc}") from None
        yield spec, rec
