"""Scripts of the Makefile; ``cluster`` is importable for the tests that run nginx."""
