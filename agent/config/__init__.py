"""The agent's config: TOML files validated into typed, frozen settings, with errors that name the file, the key
and a did-you-mean.

* ``schema``: the ``[agent]`` table and the whole ``Config`` (``[clock]`` is the clock layer's ``ClockSettings``,
  ``[[trigger]]``/``[[stream]]`` the options in ``synchub.agent.core.options``, ``[sim]`` the simulated rig's);
* ``loader``: ``load_config``/``parse_config``, each stream's keys checked by its driver's settings class (the
  driver registry); drivers never import this package;
* ``reference``: the config reference, generated from the settings classes.
"""
