"""``UserError``: an error the user can fix (a missing file, a bad argument, an unreachable collector).

Every command raises it with one line that says what is wrong; ``synchub.cli`` prints that line and exits with
status 2, never a traceback.  (Config problems raise ``synchub.agent.core.settings.ConfigError``, a missing optional
dependency ``synchub.extras.MissingExtra``; the CLI treats them the same way.)
"""


class UserError(Exception):
    """An error the user can fix; printed as one line, exit status 2."""
