"""``synchub bench align``: alignment of streams without a trigger against a reference stream.  ``run`` is the
command (simulated held-out worlds: ``scenario``, ``streams``, ``pairs``); ``real`` the real-signal corpus variant
(``--real``); ``files`` synchub align on the corpus's WAV + marker CSV files (``--real-files``); ``onsets`` the
onset check on the corpus's sounds mapped right and late (``--onset-check``); ``replay`` recorded demo runs
(``--replay``); ``recordings`` the corpus recordings the real-signal variants run on."""
