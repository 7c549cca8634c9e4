"""The hostile-input campaign of issue #11: seeded generators of hostile requests, a raw HTTP/1.1 client that
sends exactly the bytes it is given and tells an answer from a reset, and the checks every answer must pass.
Used by tests/e2e/test_hostile_input.py and tests/e2e/test_hostile_regressions.py; this package holds no tests."""
