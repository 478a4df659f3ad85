"""A plugin whose import fails (a dependency it lacks): synchub must name it in one line."""

raise RuntimeError("this plugin needs libfoo, which is not installed")
