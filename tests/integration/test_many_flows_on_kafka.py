"""Many flows in one worker, changed live (issue 19, "Measured"), on the real broker: the
`many_flows` scenario of `make reliability` (examples/reliability/many_flows.py) at a small
size, 3 x 1,000 leads at 40/s per flow. One worker runs flows a, b, c from a directory;
while leads flow a is changed to v2, to an invalid v3 and to v4, b's file is removed and
written again, c is left alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples" / "reliability"))  # (appended: its module names shadow nothing)

from many_flows import Size, scenario_many_flows  # noqa: E402

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(240)
async def test_live_changes_to_three_flows_lose_and_repeat_no_lead(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    size = Size.small()
    measured = await scenario_many_flows(kafka_bootstrap, tmp_path, size)
    line = measured.line()
    print(line)
    assert sum(len(seen.count.inputs) for seen in measured.seen.values()) == 3 * size.leads, line
    assert measured.lost == 0 and measured.duplicates == 0, line
    # Each event ran one version from its start to its end: its step and field are that text's.
    assert not measured.mismatched, line
    assert all(measured.a_versions.values()), f"a version that never ran: {line}"
    assert measured.invalid_ran == 0, line
    a_file = str(tmp_path / next(tmp_path.glob("*-flows")).name / "a.yaml")
    assert any(problem.startswith(f"{a_file}:13:") for problem in measured.rejection), measured.rejection
    assert measured.rejection_logged, line
    assert measured.reloads.get("applied") == 2 and measured.reloads.get("rejected") == 1, line
    assert measured.reloads.get("stopped") == 1 and measured.reloads.get("started") == 1, line
    during, outside = measured.c_latency()
    assert max(during) <= outside + size.stall_ms, f"c slowed during a change: {line}"
    assert measured.exit_code == 0, line
