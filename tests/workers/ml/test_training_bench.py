"""The training bench, run small (demo model, DPO, two repeats of two steps), so that the script cannot
rot: it must finish and print its table and a summary line with finite figures. Its speed and
memory figures are the bench's business, never asserted here."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SUMMARY = re.compile(
    r"^summary (\S+) (\S+): overhead (\S+) se (\S+) verdict (\S+) peak_mib (\d+) raw_peak_mib (\d+)"
    r"(?: cpu_overhead (\S+) cpu_se (\S+) cpu_verdict (\S+))?$",
    re.MULTILINE,
)


def test_the_quick_bench_measures_dpo_on_the_demo_model_against_the_raw_loop() -> None:
    arguments = ["--quick", "--trainers", "dpo", "--repeats", "2", "--steps", "1"]

    finished = subprocess.run(
        [sys.executable, "-m", "bench.training", *arguments],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )

    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    assert "1 warm-up + 1 measured steps, 2 repeats" in output
    assert "dpo repeat 2: trainer" in output
    summaries = SUMMARY.findall(finished.stdout)
    assert [(model, trainer) for model, trainer, *_ in summaries] == [("demo", "dpo")]
    _, _, overhead, error, verdict, peak, raw_peak, cpu_overhead, cpu_error, cpu_verdict = summaries[0]
    assert math.isfinite(float(overhead)) and float(overhead) > 0
    assert math.isfinite(float(error)) and float(error) >= 0
    assert verdict in {"met", "not_met", "inconclusive"}
    if cpu_overhead:  # the CPU-time figures come on a CPU-only machine
        assert math.isfinite(float(cpu_overhead)) and float(cpu_overhead) > 0
        assert math.isfinite(float(cpu_error)) and float(cpu_error) >= 0
        assert cpu_verdict in {"met", "not_met", "inconclusive"}
    # Both sides load the model inside the measured call: neither peak can be zero.
    assert int(peak) > 0 and int(raw_peak) > 0
