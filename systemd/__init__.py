"""systemd units, the sysusers file and the udev rules, shipped as package data (``synchub install`` writes them)."""
