"""The device plan on the CPU: bench/on_device.sh's budget fits the lease and bench/README.md states it."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def plan(**limits):
    env = {**os.environ, **{k: str(v) for k, v in limits.items()}}
    return subprocess.run(["bash", "bench/on_device.sh", "--plan"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def calls(stdout):
    """{part: (steps, timeout_s, step limits)} from the --plan table."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        m = re.match(r"^(tests|bench|pretrain)\s+(\d+)\s+(\d+)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
    return rows


def test_the_three_calls_fit_the_lease():
    r = plan()
    assert r.returncode == 0 and "fits:" in r.stdout, r.stdout + r.stderr
    rows = calls(r.stdout)
    assert set(rows) == {"tests", "bench", "pretrain"}
    for part, (steps, timeout, _) in rows.items():
        assert steps <= timeout <= 600, (part, steps, timeout)


def test_a_plan_over_the_lease_is_refused():
    r = plan(CALL_TIMEOUT_BENCH=400)  # 420 + 400 + 160 + the machine start > 900 s
    assert r.returncode == 1 and "DOES NOT FIT" in r.stdout, r.stdout
    r = plan(LIMIT_BENCH_GEMM=200)  # the bench call's steps exceed its timeout_s
    assert r.returncode == 1, r.stdout


def test_bench_readme_states_the_plan_of_on_device_sh():
    """The README's table of the three calls is the script's budget: change the LIMIT_* / CALL_TIMEOUT_* there,
    then the table (bash bench/on_device.sh --plan prints it)."""
    with open(os.path.join(ROOT, "bench", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for part, (_, timeout, limits) in calls(plan().stdout).items():
        row = next((line for line in readme.splitlines() if f"`PARTS={part} bash bench/on_device.sh`" in line), None)
        assert row is not None, f"bench/README.md has no row for PARTS={part}"
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[2] == str(timeout), f"PARTS={part}: README timeout_s {cells[2]}, on_device.sh {timeout}"
        assert cells[3] == limits, f"PARTS={part}: README step limits {cells[3]!r}, on_device.sh {limits!r}"
