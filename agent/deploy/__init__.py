"""Deployment as systemd services: what a config needs from the machine, and installing it there.

* ``needs``: the documented places of deployment files, a config's device classes, groups, extras and programs, the
  unit drop-in and sysusers text, and ``preflight`` (what the unit's agent would refuse); pure.
* ``install``: ``install``/``uninstall`` (venv, user and groups, keys, config, units, udev rules; a manifest so that
  uninstall removes what install made); ``fs``: the file operations, in ``/`` or a throwaway root, with ``--dry-run``.
"""
