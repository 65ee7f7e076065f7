"""The project's tests are pure: no torch, no Qt (tests/test_checks.py runs them with both hidden)."""
