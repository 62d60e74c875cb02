import os
import re
import subprocess
import sys

import pytest
import torch

TOOL = 'tools/analysis/benchmark.py'


def run_tool(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, TOOL, '--threads', '1', *map(str, args)],
        capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def parse_plain(out):
    """{model: {column: cell}} of the whitespace-aligned table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('model'))
    header = lines[start].split()
    assert set(lines[start + 1]) == {'-'}, out
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith('ratio ='):
            break
        cells = line.split()
        assert len(cells) == len(header), line
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def parse_markdown(out):
    lines = [line for line in out.splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    assert set(lines[1]) <= set('|-:'), out
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert len(cells) == len(header), line
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def check_numbers(rows, baseline):
    for row in rows.values():
        assert float(row['median_ms']) > 0
        assert float(row['IQR_ms']) >= 0
        assert float(row['images/s']) > 0
        assert float(row['ratio']) > 0
    assert rows[baseline]['ratio'] == '1.00'


def test_inference_table():
    out = run_tool('--models', 'conv2former-n', 'released-n', 'convnext-t',
                   '--shape', 1, 3, 64, 64, '--repeats', 2, '--warmup', 1,
                   '--baseline', 'released-n')
    rows = parse_plain(out)
    assert list(rows) == ['conv2former-n', 'released-n', 'convnext-t']
    check_numbers(rows, 'released-n')
    assert all(r['input'] == '1x3x64x64' for r in rows.values())
    # Same weights, same outputs, checked before timing.
    assert float(rows['conv2former-n']['err']) < 1e-4
    assert float(rows['released-n']['err']) < 1e-4
    assert rows['convnext-t']['err'] == '-'
    # The ratio is the quotient of the medians printed.
    ratio = (float(rows['conv2former-n']['median_ms']) /
             float(rows['released-n']['median_ms']))
    assert float(rows['conv2former-n']['ratio']) == pytest.approx(
        ratio, abs=0.02, rel=0.02)
    assert f'torch {torch.__version__}' in out and 'threads 1' in out
    assert '--baseline released-n' in out  # the exact command


def test_train_with_and_without_checkpointing_in_one_run():
    """``+cp`` on one model: the same weights with and without gradient
    checkpointing side by side; recomputing saves activation memory. (The
    table in markdown.)"""
    out = run_tool('--models', 'conv2former-n', 'conv2former-n+cp',
                   '--shape', 1, 3, 160, 160, '--repeats', 1, '--warmup', 1,
                   '--train', '--markdown')
    assert 'train step' in out and out.splitlines()[0].startswith('torch ')
    rows = parse_markdown(out)
    assert list(rows) == ['conv2former-n', 'conv2former-n+cp']
    check_numbers(rows, 'conv2former-n')
    # Measured 126 and 101 MiB (gradients of the 13M weights included).
    peaks = [float(rows[m]['peak_MiB'].rstrip('*')) for m in rows]
    assert peaks[1] < peaks[0]


def test_unfused_runs_the_reference_ops(monkeypatch):
    """``+unfused``: the model called within ``mmc2f.ops.forced('reference')``
    (no Triton op, no fused CPU engine)."""
    from mmc2f.toolkit.benchmark.models import build_entries
    from mmc2f.toolkit.benchmark.spec import RunSpec
    from mmc2f.ops import dispatch
    run = RunSpec(models=('conv2former-n', 'conv2former-n+unfused'),
                  shape=(1, 3, 32, 32)).resolved()
    plain, unfused = build_entries(run, torch.device('cpu'))
    seen = []
    monkeypatch.setattr(unfused.module, 'forward',
                        lambda x: seen.append(dispatch._forced))
    monkeypatch.setattr(plain.module, 'forward',
                        lambda x: seen.append(dispatch._forced))
    unfused.forward(*unfused.inputs)
    plain.forward(*plain.inputs)
    assert seen == ['reference', None]


@pytest.mark.parametrize('name,message', [
    ('conv2former-x', 'Unknown model'),
    ('conv2former-n+cp+cp', 'Unknown model'),
    ('released-n+cp', 'no gradient checkpointing'),
    ('released-n+compile+cp', 'no gradient checkpointing'),
    ('conv2former-n+unfused+unfused', 'Unknown model'),
    ('convnext-t+unfused', 'which the others lack'),
])
def test_unknown_model_is_an_error(name, message):
    result = subprocess.run([sys.executable, TOOL, '--models', name],
                            capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr


def test_check_catches_a_different_computation(monkeypatch):
    """A model that computes something else is refused before timing."""
    from mmc2f.toolkit.benchmark import models
    from mmc2f.toolkit.benchmark.numerics import check_outputs
    from mmc2f.toolkit.benchmark.spec import RunSpec
    monkeypatch.setattr(models, '_STATE_DICTS', {})
    run = RunSpec(models=('conv2former-n', 'released-n'),
                  shape=(1, 3, 64, 64)).resolved()
    device = torch.device('cpu')
    entries = models.build_entries(run, device)
    check_outputs(entries, run, device)  # passes as built
    assert entries[0].err < 1e-4 and entries[1].err < 1e-4
    with torch.no_grad():
        entries[0].module.stages[2][3].attn.v.weight.mul_(1.01)
    with pytest.raises(SystemExit, match='conv2former-n: max rel err'):
        check_outputs(entries, run, device)


@pytest.mark.parametrize('kwargs,message', [
    (dict(models=('conv2former-n', ), shape=(1, 2, 3)), '--shape takes'),
    (dict(), 'nothing to time'),
    (dict(models=('conv2former-n', ), repeats=0), '--repeats must be'),
    (dict(models=('conv2former-n', 'conv2former-n')), 'named twice'),
    (dict(models=('conv2former-n', ), baseline='released-n'),
     '--baseline released-n is not among'),
    (dict(models=('conv2former-n+compile', ), warmup=0),
     r'\+compile needs'),
    (dict(floor='x'), '--floor x: not one of'),
    (dict(floor='t', models=('conv2former-n', )), 'no --models'),
    (dict(floor='t', shape=(16, 64)), 'H and W >= 32'),
])
def test_run_spec_refuses_what_cannot_run(kwargs, message):
    """The goal runs are RunSpecs built in code: they get the checks that
    the command line's options get, with the same messages."""
    from mmc2f.toolkit.benchmark.spec import RunSpec
    with pytest.raises(ValueError, match=message):
        RunSpec(**kwargs).resolved()
    run = RunSpec(models=('conv2former-n', 'released-n'),
                  shape=(64, 64)).resolved()
    assert (run.shape, run.baseline, run.amp_dtype) == (
        (1, 3, 64, 64), 'conv2former-n', 'bf16')


def test_goals_in_one_command(monkeypatch, capsys):
    """--goals runs every run the machine can do (the GPU ones are skipped
    without CUDA) and prints each goal's ratio, computed from the tables
    above it, against its target, and the ONNX check."""
    import dataclasses

    from mmc2f.toolkit.benchmark import cli, goals

    def small(shape):  # the real runs at sizes a test can afford
        n, c, h, w = shape
        return (2 if n == 128 else n, c) + ((64, 96) if (h, w) == (
            800, 1216) else (64, 64))

    runs = {
        name: dataclasses.replace(run, shape=small(run.shape))
        for name, run in goals.GOAL_RUNS.items()
    }
    monkeypatch.setattr(goals, 'GOAL_RUNS', runs)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cli.main(['--goals', '--threads', '1', '--repeats', '1', '--warmup', '0'])
    out = capsys.readouterr().out
    assert '## gpu: skipped, no CUDA device' in out
    tables = {}
    for section in out.split('## ')[1:]:
        name, body = section.split('\n', 1)
        if 'skipped' not in name:
            tables[name] = body
    assert list(tables) == ['detection', 'classification', 'training',
                            'goals']
    assert 'input 1x3x64x96' not in tables['detection']  # plain table
    det = parse_plain(tables['detection'])
    assert det['conv2former-t']['input'] == '1x3x64x96'
    assert parse_plain(tables['classification'])['conv2former-t'][
        'input'] == '8x3x64x64'
    train = parse_plain(tables['training'])
    goal_rows = {}
    for line in tables['goals'].splitlines()[2:]:
        if line.strip() and set(line) != {'-'}:
            what, *cells = re.split(r'\s{2,}', line.strip())
            goal_rows[what] = cells
    assert list(goal_rows) == [g.what for g in goals.GOALS] + [
        goals.ONNX_GOAL.what]
    ratio = (float(det['conv2former-t']['median_ms']) /
             float(det['convnext-t']['median_ms']))
    measured, target, reached = goal_rows[
        'inference 1x3x800x1216, mmc2f / ConvNeXt-T']
    assert float(measured) == pytest.approx(ratio, rel=0.01)
    assert target == '<= 1'
    assert reached == ('yes' if float(measured) <= 1 else 'no')
    memory = (float(train['conv2former-t+cp']['peak_MiB'].rstrip('*')) /
              float(train['conv2former-t']['peak_MiB'].rstrip('*')))
    assert float(goal_rows['train step peak memory, with_cp / without'][0]) \
        == pytest.approx(memory, rel=0.01, abs=0.002)
    for name in ('gpu-floor', 'gpu', 'gpu-training'):
        assert f'## {name}: skipped, no CUDA device' in out
    for goal in goals.GOALS:
        if goal.run.startswith('gpu'):
            assert goal_rows[goal.what] == [
                'not run', f'<= {goal.target:g}', '-']
    err, target, reached = goal_rows[
        'ONNX opset 17, onnxruntime vs PyTorch, max rel err']
    assert float(err) < 1e-4 and (target, reached) == ('< 1e-4', 'yes')


@pytest.mark.parametrize('name,parsed', [
    ('conv2former-t', ('conv2former', 'tiny', False, False, False)),
    ('conv2former-t+cp+compile', ('conv2former', 'tiny', True, True, False)),
    ('conv2former-t+compile+cp', ('conv2former', 'tiny', True, True, False)),
    ('released-t+compile', ('released', 'tiny', False, True, False)),
    ('convnext-t+compile', ('convnext', 'tiny', False, True, False)),
    ('conv2former-t+unfused+cp', ('conv2former', 'tiny', True, False, True)),
])
def test_model_name_suffixes(name, parsed):
    from mmc2f.toolkit.benchmark.spec import parse_model_name
    assert parse_model_name(name) == parsed


@pytest.mark.parametrize('train', [False, True])
def test_compiled_model_is_checked_and_timed(train):
    """``+compile``: the entry times ``torch.compile(module)`` and keeps the
    module; the compiled model passes the output check, then is timed in
    inference or in a train step (compiling in the untimed calls)."""
    from mmc2f.toolkit.benchmark.models import build_entries
    from mmc2f.toolkit.benchmark.numerics import check_outputs
    from mmc2f.toolkit.benchmark.spec import RunSpec
    from mmc2f.toolkit.benchmark.timing import time_entries
    from mmc2f.models import Conv2Former
    run = RunSpec(models=('conv2former-n+compile', ), shape=(1, 3, 64, 64),
                  repeats=1, warmup=1, train=train).resolved()
    device = torch.device('cpu')
    entry, = build_entries(run, device)
    assert type(entry.module) is Conv2Former
    assert entry.forward._orig_mod is entry.module  # torch.compile's
    check_outputs([entry], run, device)
    assert entry.err < 1e-4
    time_entries([entry], run, device)
    assert len(entry.times) == 1 and entry.times[0] > 0


def floor_tables(out):
    """The floor profile's markdown table: {stage: {column: float}}, None
    where a cell is '-' (a step not run)."""
    rows = parse_markdown(out)
    return {
        stage: {k: None if v == '-' else float(v)
                for k, v in row.items() if k not in ('stage', 'input')}
        for stage, row in rows.items()
    }


def test_floor_table():
    """--floor: per stage and for the network, the depthwise conv (and the
    modulation) against the bandwidth floor measured in the same run."""
    out = run_tool('--floor', 'n', '--shape', 1, 3, 64, 64, '--repeats', 1,
                   '--warmup', 0, '--markdown')
    rows = floor_tables(out)
    assert list(rows) == ['stage 1', 'stage 2', 'stage 3', 'stage 4',
                          'total']
    assert [r['blocks'] for r in rows.values()] == [2, 2, 8, 2, 14]
    for row in rows.values():
        for step in ('dw', 'dw+mod'):
            assert 0 < row[f'{step}_floor_us'] < row[f'{step}_us']
            # A lower bound, up to measurement noise.
            assert 0.8 < row[f'{step}_ratio'] < float('inf')
    stages = list(rows.values())[:4]
    assert rows['total']['dw+mod_us'] == pytest.approx(
        sum(r['dw+mod_us'] * r['blocks'] for r in stages), rel=0.01)
    assert '7x7 depthwise conv' in out and 'GB/s' in out
    # The fused kernel needs CUDA.
    assert all(row[f'fused_{c}'] is None for row in rows.values()
               for c in ('us', 'ratio', 'err'))


def test_floor_fused_step(monkeypatch, capsys):
    """The fused column, with a stand-in for the kernel (it needs CUDA): the
    step is checked against the conv + modulation, then timed and summed
    over the blocks like them; a wrong one is reported, not timed."""
    from mmc2f.toolkit.benchmark import floor
    from mmc2f.toolkit.benchmark.spec import RunSpec
    monkeypatch.setattr(floor, 'COPY_BYTES', 2**20)
    run = RunSpec(floor='n', shape=(1, 3, 64, 64), repeats=1, warmup=0,
                  markdown=True).resolved()
    device = torch.device('cpu')

    def stand_in(scale):
        return lambda run, device, conv: (
            lambda x, v: conv(x) * v * scale)

    monkeypatch.setattr(floor, 'fused_step', stand_in(1.0))
    rows = floor.measure_floor(run, device)
    assert all(r.fused_s > 0 and r.fused_err < 1e-5 for r in rows)
    floor.report_floor(rows, run, device, 'load')
    table = floor_tables(capsys.readouterr().out)
    assert table['total']['fused_us'] == pytest.approx(
        sum(table[f'stage {i}']['fused_us'] * table[f'stage {i}']['blocks']
            for i in range(1, 5)), rel=0.01)
    for r in rows:
        assert table[r.label]['fused_ratio'] == pytest.approx(
            r.fused_s / r.mod_floor_s, rel=0.01, abs=0.006)
    monkeypatch.setattr(floor, 'fused_step', stand_in(1.1))
    rows = floor.measure_floor(run, device)
    assert 'WRONG, not timed: stage 1: max rel err 1.00e-01' in \
        capsys.readouterr().err
    assert all(r.fused_s is None and r.fused_err == pytest.approx(0.1)
               for r in rows)
    floor.report_floor(rows, run, device, 'load')
    assert all(row['fused_us'] == 'wrong' for row in parse_markdown(
        capsys.readouterr().out).values())


@pytest.mark.parametrize('amp,sizes', [
    (None, (4, 4, 4)), ('bf16', (2, 2, 2)), ('fp16', (2, 2, 4))])
def test_floor_bytes(monkeypatch, amp, sizes):
    """The floor's bytes: the conv's input and V in the autocast dtype, and
    A * V in the dtype the model computes it in (float32 under float16)."""
    from mmc2f.toolkit.benchmark import floor
    from mmc2f.toolkit.benchmark.spec import RunSpec
    monkeypatch.setattr(floor, 'COPY_BYTES', 2**20)
    run = RunSpec(floor='n', shape=(1, 3, 64, 64), repeats=1, warmup=0,
                  amp=amp is not None, amp_dtype=amp).resolved()
    rows = floor.measure_floor(run, torch.device('cpu'))
    x, v, out = sizes
    elements = [64 * 16 * 16, 128 * 8 * 8, 256 * 4 * 4, 512 * 2 * 2]
    for row, n in zip(rows, elements):
        assert row.dw_bytes == n * (x + x)
        assert row.mod_bytes == n * (x + v + out)
    assert rows[-1].mod_bytes == sum(
        r.mod_bytes * r.blocks for r in rows[:4])


def test_goals_of_some_runs(monkeypatch, capsys):
    """``--goals RUN``: only that run; the floor goal is the network's
    dw+mod time over its floor (here the GPU floor run on the CPU, small);
    the goals of the other runs, ONNX included, are not run."""
    import dataclasses

    from mmc2f.toolkit.benchmark import cli, floor, goals
    monkeypatch.setattr(floor, 'COPY_BYTES', 2**20)
    monkeypatch.setitem(goals.GOAL_RUNS, 'gpu-floor', dataclasses.replace(
        goals.GOAL_RUNS['gpu-floor'], device='cpu', shape=(1, 3, 64, 64)))
    cli.main(['--goals', 'gpu-floor', '--threads', '1', '--repeats', '1',
              '--warmup', '0', '--markdown'])
    profile, table = capsys.readouterr().out.split('## goals')
    assert '## gpu-floor' in profile and '## detection' not in profile
    total = floor_tables(profile)['total']
    rows = parse_markdown(table)
    for goal in goals.GOALS + [goals.ONNX_GOAL]:
        if goal.run != 'gpu-floor':
            assert rows[goal.what]['measured'] == 'not run'
            continue
        assert float(rows[goal.what]['measured']) == pytest.approx(
            total['dw+mod_ratio'], rel=0.01)
        assert rows[goal.what]['target'] == '<= 1.5'


def test_goals_refuses_an_unknown_run(capsys):
    from mmc2f.toolkit.benchmark import cli
    with pytest.raises(SystemExit):
        cli.parse_args(['--goals', 'gpu-inference'])
    assert 'unknown runs' in capsys.readouterr().err


@pytest.mark.parametrize('flag', [True, False])
def test_cudnn_benchmark_is_set_for_the_run(monkeypatch, flag):
    """--cudnn-benchmark sets torch's flag for the timed calls, and the
    default is cuDNN's heuristics, whatever the flag was before."""
    from mmc2f.toolkit.benchmark import cli
    seen = {}

    def measure_floor(run, device):
        seen.update(run=run.cudnn_benchmark,
                    torch=torch.backends.cudnn.benchmark)
        return []

    monkeypatch.setattr(cli, 'measure_floor', measure_floor)
    monkeypatch.setattr(cli, 'report_floor', lambda *args: None)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', not flag)
    cli.main(['--floor', 'n'] + ['--cudnn-benchmark'] * flag)
    assert seen == dict(run=flag, torch=flag)
