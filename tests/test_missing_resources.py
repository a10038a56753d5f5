"""A missing shared resource skips a test on a user's clone and fails it under CI (`tiny.missing_resource`)."""

import pytest

from tiny import missing_resource


def test_skip_on_a_clone_and_fail_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="fixture absent"):
        missing_resource("fixture absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="fixture absent; CI must provide it"):
        missing_resource("fixture absent")
