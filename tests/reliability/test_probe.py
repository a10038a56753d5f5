"""The whole reliability probe (`tests/reliability/probe.py`): no silent wrong and no unhelpful outcome."""

import pytest


@pytest.mark.slow  # about 20 s alone, several minutes on a loaded machine
def test_the_probe_finds_nothing_silent_or_unhelpful(capsys):
    from reliability import probe

    assert probe.main([]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    tried, clear, correct, silent, unhelpful = (int(x) for x in total.split()[1:])
    assert tried >= 326 and silent == 0 and unhelpful == 0 and clear + correct == tried
