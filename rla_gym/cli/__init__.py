"""The ``rla-gym`` command line: one command, one verb per job."""
