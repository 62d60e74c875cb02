"""tools/analysis/kernel_report.py: every kernel and shipped tile config of
``mmc2f.ops`` compiles for sm_80 and sm_90 without a GPU, spills nothing,
and the forward and data-gradient kernels reach 2 multiply-adds per loaded
byte."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip('triton', reason='the kernels are written in triton')

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    'kernel_report', ROOT / 'tools/analysis/kernel_report.py')
kernel_report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(kernel_report)

SASS = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   LDG.E.U16 R2, desc[UR4][R2.64] ;
        /*0020*/              @!P0 LDG.E.128 R4, desc[UR4][R6.64] ;
        /*0030*/                   LDS.64 R8, [R9] ;
        /*0040*/                   FFMA R10, R2, R4, R10 ;
        /*0050*/               @P1 HFMA2 R11, R2, R5, R11 ;
        /*0060*/                   HMMA.16816.F32 R12, R14, R16, R12 ;
        /*0070*/                   STG.E desc[UR4][R6.64], R10 ;
        /*0080*/                   NOP ;
"""


def test_instruction_mix_counts_as_documented():
    """FFMA 1, HFMA2 2, an m16n8k16 MMA 16*8*16/32 per thread; loads by
    width (2 + 16 + 8 bytes), the constant bank's left out; NOPs are not
    instructions."""
    macs, loaded, count = kernel_report.instruction_mix(SASS)
    assert (macs, loaded, count) == (1 + 2 + 64, 26, 8)


@pytest.mark.parametrize('kernel_size', [11, 7])
def test_every_config_compiles_without_spills(capsys, tmp_path,
                                              kernel_size):
    """k = 11 (T, S, B, L) for sm_80 and sm_90; k = 7 (N, the 22k B) for
    sm_90."""
    out = tmp_path / 'rows.json'
    targets = ['80', '90'] if kernel_size == 11 else ['90']
    status = kernel_report.main(['--kernel-size', str(kernel_size),
                                 '--targets', *targets, '--json', str(out)])
    lines = capsys.readouterr().out.splitlines()
    rows = __import__('json').loads(out.read_text())
    variants = list(kernel_report.variants(kernel_size, 'float16'))
    assert len(rows) == len(lines) == len(variants) * len(targets)
    for line in lines:
        assert kernel_report.LINE.match(line), line
    assert status == 0 and all(r['spill_bytes'] == 0 for r in rows), lines
    for row in rows:
        assert 0 < row['fma_share'] < 1 and row['regs'] <= 255
        if row['kernel'] in ('forward', 'grad_x'):
            assert row['macs_per_byte'] >= 2, row
