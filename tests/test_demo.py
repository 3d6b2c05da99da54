"""`vlsa demo`: the demo trains the cpu profile's model, and its command line refuses what it cannot run."""
import subprocess, sys
from pathlib import Path

import yaml

from vlsa.demo import DEMO_SETTINGS, demo_profile

ROOT = Path(__file__).resolve().parents[1]

def test_the_demo_model_is_the_cpu_profiles():
    settings = yaml.safe_load((ROOT / 'configs' / 'cpu.yaml').read_text())['settings']
    for key, value in DEMO_SETTINGS.items(): assert settings[key] == value, f'{key}: demo {value!r}, configs/cpu.yaml {settings[key]!r}'
    assert set(settings) - set(DEMO_SETTINGS) == {'model.loss.audio_text_after'}   # scaled to the demo's pre-training

def test_audio_text_joins_half_way_through_the_demo_pre_training(tmp_path):
    P = demo_profile(tmp_path, pretrain_steps=60)
    assert P.config('both', 0, 'pretrain').model.loss.audio_text_after == 30
    assert P.config('both', 0, 'finetune').finetune.steps == 300

def test_the_demo_refuses_too_few_steps_and_names_a_missing_manifest(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, '-m', 'vlsa.cli', 'demo', '--out', str(tmp_path), *a],
                                    capture_output=True, text=True)
    r = run('--steps', '1')
    assert r.returncode == 2 and '--steps must be 2 or more, got 1' in r.stderr, r.stderr
    r = run('--manifest', str(tmp_path / 'none.jsonl'))
    assert r.returncode == 2 and f'{tmp_path / "none.jsonl"}: no such manifest' in r.stderr, r.stderr
    assert not (tmp_path / 'syncbench').exists()   # nothing generated in its place
