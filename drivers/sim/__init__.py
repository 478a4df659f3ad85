"""The simulated rig: a seeded world of shared events rendered by simulated devices with their own clocks."""
