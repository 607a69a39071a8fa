"""Helpers shared by the test suite, the benchmarks and the demo scripts (not used by the search).

They start throw-away servers and worker processes; nothing here is imported by ``ghostnas``
itself.
"""
