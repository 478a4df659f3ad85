"""``synchub bench align``: alignment of streams without a trigger against a reference stream.  ``run`` is the
command (simulated held-out worlds: ``scenario``, ``streams``, ``pairs``); ``real`` the real-signal corpus variant
(``--real``)."""
