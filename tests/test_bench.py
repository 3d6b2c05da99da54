"""Smoke checks of the benchmark scripts' measurements (the timed runs belong to `make bench`, not to the tests)."""
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(*args):
    out = subprocess.run([sys.executable, 'bench/train.py', '--one', json.dumps(list(args))], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_benchmark_times_a_step_and_counts_its_flops():
    got = one('one', 'finetune', 'both', 'auto', 1, 0, [12, 20, 7])
    assert got['precision'] in ('fp32', 'bf16') and got['clips_per_second'] > 0
    # fine-tuning's three encoder passes over 64 video, 16 audio and ~13 text tokens of a 4-block, 192-wide encoder
    assert 0.5e9 < got['flops_per_clip'] < 3e9
    assert abs(got['clips_per_second'] - 64 * got['steps_per_second']) < 1e-6 * got['clips_per_second']


def test_train_benchmark_reads_real_text_lengths():
    lengths = one('lengths')
    assert set(lengths) == {'pretrain', 'finetune'} and len(lengths['pretrain']) == 64
    assert 3 <= min(lengths['pretrain']) and max(lengths['finetune']) <= 32   # [CLS] word [SEP] at least; tiny's max_len


def test_attention_benchmark_times_both_forms_and_they_agree(tmp_path):
    out = subprocess.run([sys.executable, 'bench/attention.py', '--rounds', '1', '--steps', '1', '--out', str(tmp_path / 'a.json')],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / 'a.json').read_text())
    rows = report['rows']
    assert {r['stage'] for r in rows} == {'pretrain', 'finetune'} and 'fp32' in {r['precision'] for r in rows}
    for r in rows:
        assert set(r['seconds_per_step']) == {'written out', 'fused (torch SDPA)'} and r['speedup_written_over_fused'] > 0
        assert r['first_step_loss_difference'] < 1e-2 * r['first_step_loss']['fused (torch SDPA)']   # the same step, bf16 rounding aside
