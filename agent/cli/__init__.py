"""The command line: one module per ``synchub`` command (``synchub.cli`` only dispatches to them).

``agent``, ``collector``, ``config``, ``align``, ``inspect`` (``inspect_cmd``: the standard library has an ``inspect``),
``keys``, ``install``/``uninstall`` (``install``), ``demo``, ``sim``, ``drivers``, ``export``.  (``synchub bench`` is ``synchub.bench.main``,
``synchub train`` ``synchub.models.train``.)  Each has ``add_arguments(parser)`` and ``run(args) -> int``; errors a
user can fix are a ``synchub.errors.UserError``: one line, exit status 2.
"""
