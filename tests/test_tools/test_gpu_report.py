"""tools/analysis/gpu_report.sh, run dry on the CPU: every step of the GPU
run, at toy sizes, into one markdown report."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools/analysis/gpu_report.sh'
HEADINGS = ['Set-up', 'Triton kernels', 'dwconv_modulate per stage',
            'Inference throughput', 'Train step and peak memory']


def run(tmp_path, **env):
    report = tmp_path / 'report.md'
    result = subprocess.run(
        ['bash', str(SCRIPT), '--dry-run', str(report)], capture_output=True,
        text=True, env={**os.environ, 'PYTHON': sys.executable, **env})
    return result, report.read_text()


def test_dry_run_writes_every_step(tmp_path):
    pytest.importorskip('triton')
    result, text = run(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'DRY RUN' in text and '0 step(s) failed' in result.stderr
    found = re.findall(r'^## (.+)$', text, re.M)
    assert len(found) == len(HEADINGS) and all(
        h.startswith(start) for h, start in zip(found, HEADINGS)), found
    assert 'mmcv ops on cpu : nms ok' in text
    assert re.search(r'^forward \S+ sm_90: regs=\d+ spill_bytes=0 ', text,
                     re.M)
    # The op table: 4 stages x 4 ways; Triton needs CUDA.
    ways = re.findall(r'^\| stage \d \| \S+ \| (\S+) \|', text, re.M)
    assert sorted(set(ways)) == ['cudnn', 'cudnn+benchmark', 'native-nchw',
                                 'triton'] and len(ways) == 16
    # The model rows of the inference and the train-step tables.
    assert len(re.findall(r'^\| conv2former-t \| 1x3x32x32 \|', text,
                          re.M)) == 2
    assert 'failed' not in text


def test_a_failing_step_is_recorded_and_the_others_run(tmp_path):
    result, text = run(tmp_path, PYTHON='false')
    assert result.returncode == 1
    assert text.count('**failed** (exit 1)') == len(HEADINGS)
    assert '5 step(s) failed' in result.stderr
