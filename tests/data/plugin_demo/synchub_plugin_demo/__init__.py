"""A third-party synchub driver package (a test fixture): adds driver = "counter-demo" through an entry point."""
