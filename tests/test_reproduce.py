"""`make reproduce` end to end on a smoke profile: every table, nothing redone, one deleted table redone alone and
byte for byte, the same weights and scores from the same seed, and the profile files that ship."""
import dataclasses, json, os, re, subprocess, sys
from pathlib import Path

import pytest
import torch
import yaml

from vlsa.experiments import Profile, SMOKE_MODEL, SMOKE_STAGE, train_variant
from vlsa.report import load_profile
from vlsa.synth import generate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# `make -j2` runs two notebooks at once: half the cores each, or their torch threads wait on each other
J2_THREADS = max(1, (os.cpu_count() or 2) // 2)
TABLES = ['tab2_text_video', 'tab3_text_audio', 'tab4_r1', 'tab4_all_directions', 'tab5_ablation', 'tab5_probe', 'control',
          'search_check']


def make(*args, timeout=600):
    env = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}
    if '-j2' in args: env['OMP_NUM_THREADS'] = str(J2_THREADS)
    r = subprocess.run(['make', '--no-print-directory', *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "A smoke profile over a few generated clips, with its own runs and results."
    root = tmp_path_factory.mktemp('reproduce')
    manifest = generate(root / 'syncbench', counts={'pretrain': 8, 'train': 8, 'val': 8, 'test': 8}, workers=2, progress=False)
    profile = {'profile': 'ci', 'preset': 'tiny', 'synth': 'smoke', 'manifest': str(manifest),
               'cache_dir': str(root / 'cache'), 'runs': str(root / 'a' / 'runs'), 'results': str(root / 'a' / 'results'),
               'seeds': [0], 'settings': SMOKE_MODEL, 'pretrain_settings': {**SMOKE_STAGE, 'precision': 'auto'},
               'finetune_settings': {**SMOKE_STAGE, 'precision': 'auto'},   # as configs/cpu.yaml
               'finetune_only': {'model.video.num_frames': 8}}   # fine-tuning sees more frames than pre-training
    (root / 'a.yaml').write_text(yaml.safe_dump(profile, sort_keys=False, default_flow_style=None))
    return root, root / 'a.yaml'


def test_reproduce_builds_everything_then_nothing_then_only_what_was_deleted(smoke):
    root, a = smoke
    out = make('-j2', 'reproduce', f'PCFG={a}')     # two notebooks at a time
    res = root / 'a' / 'results'
    for t in TABLES:
        assert (res / 'tables' / f'{t}.md').exists() and (res / 'tables' / f'{t}.csv').exists(), t
    assert (res / 'figures' / 'tab5_ablation.png').stat().st_size > 10_000
    assert len(list((res / 'executed').glob('*.ipynb'))) == 4 + 4 + 6   # pre-training: the ablation's 3 and both_vtm; 4 fine-tuning, 6 tables
    assert json.loads((root / 'syncbench-unlinked' / 'syncbench.json').read_text())['linked'] is False   # the control's data
    assert (res / 'figures' / 'control.png').exists() and (root / 'a' / 'runs' / 'gam-control-s0' / 'summary.json').exists()
    assert 'What the numbers say' in (res / 'README.md').read_text()
    assert '| ceiling (a perfect reader of the video) |' in (res / 'tables' / 'tab2_text_video.md').read_text()
    assert 'What the data allows, T->A' in (res / 'README.md').read_text()
    assert "| VLSA, LPMM + GAM + video-text (ours, not the paper's) | zero-shot |" in (res / 'tables' / 'tab2_text_video.md').read_text()
    assert "LPMM + GAM + video-text (`global_objective: gam_vtm`, not the paper's)" in (res / 'README.md').read_text()
    assert not (root / 'a' / 'runs' / 'both_vtm-s0-ft').exists()            # pre-trained only: no fine-tuning
    assert 'reproduction of profile' in out and '| LPMM + GAM |' in out      # where everything is, and the summary
    assert 'over 1 seed (0; no spread can be given' in (res / 'README.md').read_text()
    assert 'The control (GAM only' in (res / 'README.md').read_text() and 'test captions finds its clip' in out
    frames = lambda run: json.loads((root / 'a' / 'runs' / run / 'config.json').read_text())['model']['video']['num_frames']
    assert (frames('both-s0'), frames('both-s0-ft'), frames('neither-s0-ft')) == (4, 8, 8)
    assert 'Fine-tuning only** (pre-training keeps the settings above): `model.video.num_frames=8`' in (res / 'README.md').read_text()
    assert re.search(r'\*\*Machine\*\* .* the runs trained in (bf16|fp32) \(9 runs\)', (res / 'README.md').read_text())   # and the control

    again = make('reproduce', f'PCFG={a}')
    STAGE = r'^\s+(pre-training|fine-tuning|table) \S+ ->'      # the line make prints before each stage
    assert 'nothing to do' in again and not re.search(STAGE, again, flags=re.M), again

    tab3 = {ext: (res / 'tables' / f'tab3_text_audio.{ext}').read_bytes() for ext in ('md', 'csv')}
    (res / 'tables' / 'tab3_text_audio.md').unlink()
    redo = make('reproduce', f'PCFG={a}')
    assert [m.group(0).split()[1] for m in re.finditer(STAGE, redo, flags=re.M)] == ['tab3_text_audio'], redo
    for ext, before in tab3.items():   # the same runs give the same table, byte for byte
        assert (res / 'tables' / f'tab3_text_audio.{ext}').read_bytes() == before, f'tab3_text_audio.{ext} changed'

    # the same seed gives the same runs: the full model trained again, here and not in a notebook, into other folders
    # with as many torch threads as the notebooks had: bytes need the same thread count (configs/README.md)
    P = dataclasses.replace(load_profile(a), runs=str(root / 'b' / 'runs'), results=str(root / 'b' / 'results'))
    threads = torch.get_num_threads()
    torch.set_num_threads(J2_THREADS)
    try:
        for stage in ('pretrain', 'finetune'):
            again = train_variant(P, 'both', 0, stage, progress=False)
            first = root / 'a' / 'runs' / again.name
            for f in ('eval-test.json', 'checkpoints/final/model.safetensors'):
                assert (first / f).read_bytes() == (again / f).read_bytes(), f'{again.name}/{f} differs between two runs'
    finally: torch.set_num_threads(threads)


def test_shipped_profiles_resolve_and_keep_the_paper_settings_for_gpu():
    cpu, gpu = (load_profile(ROOT / 'configs' / f'{p}.yaml') for p in ('cpu', 'gpu'))
    assert (cpu.name, cpu.preset, cpu.results, cpu.runs) == ('cpu', 'tiny', 'results', 'results/runs')
    c = gpu.config('both', 0)
    assert (c.model.encoder.width, c.model.encoder.depth, c.finetune.batch_size, c.finetune.epochs) == (768, 12, 256, 20)
    assert c.model.loss.lambda_global == 5.0 and gpu.seeds == [0, 1, 2]


def test_reproduce_all_adds_the_studies_runs_and_tables_and_reproduce_does_not(smoke):
    "The plan of `make reproduce-all` (make -n): every study variant pre-trained and fine-tuned, then its tables."
    from vlsa.experiments import STUDY_VARIANTS
    from vlsa.report import STUDY_NOTEBOOKS
    root, a = smoke
    plan = lambda *args: set(re.findall(r'results/executed/(\S+)\.ipynb', make('-n', *args, f'PCFG={a}')))
    everything, reproduce = plan('reproduce-all'), plan('reproduce')
    study = {f'{stage}-{v}-s0' for v in STUDY_VARIANTS for stage in ('pretrain', 'finetune')} | set(STUDY_NOTEBOOKS)
    assert study <= everything, study - everything
    assert not study & reproduce, study & reproduce
    assert 'make reproduce-all' in make('help')


def test_reproduce_names_a_missing_profile():
    env = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}
    r = subprocess.run(['make', '--no-print-directory', 'reproduce', 'PROFILE=laptop'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and 'configs/laptop.yaml' in r.stderr


def test_table_notebooks_refuse_unfinished_runs_of_a_real_profile(tmp_path):
    from vlsa.experiments import ensure_runs
    P = Profile('cpu', manifest=str(tmp_path / 'm.jsonl'), runs=str(tmp_path / 'runs'), results=str(tmp_path / 'res'))
    with pytest.raises(FileNotFoundError, match=r'make reproduce PROFILE=cpu'):
        ensure_runs(P, ['both'])


def test_a_benchmark_profile_goes_from_the_downloaded_files_to_its_table_then_does_nothing(tmp_path):
    "`make reproduce PROFILE=<benchmark> ROOT=... INIT=...`: MSR-VTT's official files (over generated clips) to Table 2's row."
    from vlsa.benchmark import smoke_msrvtt
    from vlsa.experiments import smoke_profile, train_variant
    P = smoke_profile(tmp_path / 'smoke')
    init = train_variant(P, 'both', 0, 'pretrain', progress=False)
    shipped = yaml.safe_load((ROOT / 'configs' / 'msrvtt.yaml').read_text())
    profile = {**shipped, 'manifest': str(tmp_path / 'msrvtt' / 'manifest.jsonl'), 'cache_dir': str(tmp_path / 'cache'),
               'runs': str(tmp_path / 'runs'), 'results': str(tmp_path / 'results'), 'seeds': [0, 1],
               'settings': {**shipped['settings'], 'data.num_workers': 0}, 'finetune_settings': {**SMOKE_STAGE, 'batch_size': 4}}
    (tmp_path / 'msrvtt.yaml').write_text(yaml.safe_dump(profile, sort_keys=False, default_flow_style=None))
    root = smoke_msrvtt(tmp_path / 'download', P.manifest)
    out = make('reproduce', f'PCFG={tmp_path / "msrvtt.yaml"}', f'ROOT={root}', f'INIT={init}')
    assert '# Table 2: MSR-VTT, protocol msrvtt-1k-A (R@K, %)' in out and '| VLSA | fine-tuned | T->V | 27.1 | 57.3 | 68.9 |' in out
    runs = [tmp_path / 'runs' / f'msrvtt-s{s}-ft' / 'eval-test.json' for s in (0, 1)]
    assert all(json.loads(r.read_text())['protocol'] == 'msrvtt-1k-A' for r in runs)
    before = [r.stat().st_mtime_ns for r in runs]
    make('reproduce', f'PCFG={tmp_path / "msrvtt.yaml"}', f'INIT={init}')   # the manifest is there: no ROOT needed, nothing trained
    assert [r.stat().st_mtime_ns for r in runs] == before


def test_a_benchmark_profile_asks_for_the_data():
    env = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}
    r = subprocess.run(['make', '--no-print-directory', 'reproduce', 'PROFILE=msrvtt', 'PCFG=configs/msrvtt.yaml',
                        'MANIFEST=/nonexistent/manifest.jsonl'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and 'ROOT=DIR (data_cards/msrvtt.md says how to get it)' in r.stderr


def test_fine_tuning_seeds_can_share_one_pre_training(tmp_path):
    "seeds: [0, 1] with pretrain_seeds: [0]: make plans one pre-training per variant, and both fine-tunings start from it."
    manifest = tmp_path / 'manifest.jsonl'
    manifest.write_text('')
    pcfg = tmp_path / 'p.yaml'
    pcfg.write_text(f"profile: p\nmanifest: {manifest}\nruns: {tmp_path / 'runs'}\nresults: {tmp_path / 'res'}\n"
                    "seeds: [0, 1]\npretrain_seeds: [0]\n")
    plan = make('-n', 'reproduce-tables', f'PCFG={pcfg}')
    runs = lambda nb: set(re.findall(nb + r'\.ipynb \S+ -p variant (\w+) -p seed (\d)', plan))
    assert runs('pretrain') == {(v, '0') for v in ('lpmm', 'gam', 'both', 'both_vtm')}   # and the objective's zero-shot run
    assert runs('finetune') == {(v, s) for v in ('neither', 'lpmm', 'gam', 'both') for s in '01'}
    one = make('-n', str(tmp_path / 'runs' / 'both-s1-ft' / 'eval-test.json'), f'PCFG={pcfg}')   # what seed 1 needs first
    assert re.findall(r'(pretrain|finetune)\.ipynb \S+ -p variant (\w+) -p seed (\d)', one) == [('pretrain', 'both', '0'), ('finetune', 'both', '1')]
