"""Checkpoints out and back: save/from_pretrained, the model card, vlsa push (dry run and a recorded upload), offline
failures, and vlsa embed / vlsa search on real files."""
import hashlib, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from vlsa.config import get_config, override
from vlsa.features import tokenize
from vlsa.cli import embed_command, push_command, search_command
from vlsa.hub import check_card
from vlsa.model import VLSA
from vlsa.search import sound_inputs, video_inputs
from vlsa.synth import generate
from vlsa.train import pretrain

SMALL = ['model.encoder.width=64', 'model.encoder.heads=2', 'model.encoder.depth=1', 'model.decoder.width=32',
         'model.decoder.heads=2', 'model.decoder.depth=1', 'model.embed_dim=32', 'data.num_workers=0']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('hub')
    manifest = generate(root / 'syncbench', counts={'pretrain': 8, 'train': 8, 'val': 8, 'test': 4}, workers=1, progress=False)
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}',
                                                'pretrain.batch_size=4', 'pretrain.steps=2', 'pretrain.warmup_steps=1'])
    run_dir = pretrain(cfg, name='hubtest', out=root / 'runs', progress=False)
    soundfile.write(root / 'tone.wav', 0.3 * np.sin(np.arange(3 * 22_050) / 22_050 * 2 * np.pi * 660), 22_050)
    return root, manifest, run_dir


def sha(path): return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_save_then_from_pretrained_gives_identical_embeddings(run, tmp_path):
    root, manifest, run_dir = run
    model = VLSA.from_pretrained(run_dir)                       # from the run's final checkpoint
    model.save_pretrained(tmp_path / 'saved')
    again = VLSA.from_pretrained(tmp_path / 'saved')
    clip = next((manifest.parent / 'clips' / 'test').glob('*.mp4'))
    frames, spec = video_inputs(clip, model.cfg)
    sound = sound_inputs(root / 'tone.wav', model.cfg)
    ids, mask = tokenize(['a low bell rings twice as the red ball bounces'], model.cfg.text)
    with torch.no_grad():
        for a, b in [(model.encode_video(frames[None]), again.encode_video(frames[None])),
                     (model.encode_audio(spec[None]), again.encode_audio(spec[None])),
                     (model.encode_audio(sound[None]), again.encode_audio(sound[None])),
                     (model.encode_text(ids, mask), again.encode_text(ids, mask))]:
            assert torch.equal(a, b)
    assert again.cfg == model.cfg and again.cfg.audio.spec_mean is not None   # preprocessing travels with it


def test_dry_run_folder_has_a_valid_card_config_and_weights_and_no_pickle(run, tmp_path, capsys):
    root, manifest, run_dir = run
    assert push_command([str(run_dir), '--repo', 'someone/vlsa-tiny', '--dry-run', '--out', str(tmp_path / 'up')]) == 0
    files = sorted(p.name for p in (tmp_path / 'up').iterdir())
    assert files == ['README.md', 'config.json', 'model.safetensors']
    meta = check_card((tmp_path / 'up' / 'README.md').read_text())
    assert meta['library_name'] == 'vlsa' and 'arxiv:2405.07202' in meta['tags'] and meta['license'] == 'apache-2.0'
    assert 'someone/vlsa-tiny' in (tmp_path / 'up' / 'README.md').read_text()
    for p in (tmp_path / 'up').iterdir():
        assert not p.read_bytes().startswith(b'\x80'), f'{p.name} looks like a pickle'
    json.loads((tmp_path / 'up' / 'config.json').read_text())
    assert 'nothing uploaded' in capsys.readouterr().out


class Recorder:
    "Stands in for huggingface_hub.HfApi: records what would be sent."
    def __init__(self, fail=False): self.calls, self.fail = [], fail
    def create_repo(self, repo_id, private=False, exist_ok=False): self.calls.append(('create_repo', repo_id, private))
    def upload_folder(self, repo_id, folder_path, commit_message=''):
        if self.fail: raise ConnectionError('the network is down')
        self.calls.append(('upload_folder', repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type('Info', (), {'commit_url': f'https://huggingface.co/{repo_id}/commit/1'})()


def test_push_sends_exactly_those_files_to_the_named_repo(run, tmp_path):
    root, manifest, run_dir = run
    api = Recorder()
    assert push_command([str(run_dir), '--repo', 'someone/vlsa-tiny', '--private', '--out', str(tmp_path / 'up')], api=api) == 0
    assert api.calls == [('create_repo', 'someone/vlsa-tiny', True),
                         ('upload_folder', 'someone/vlsa-tiny', ['README.md', 'config.json', 'model.safetensors'])]


def test_a_failed_upload_says_so_and_leaves_the_checkpoint_untouched(run, tmp_path, capsys):
    root, manifest, run_dir = run
    weights = run_dir / 'checkpoints' / 'final' / 'model.safetensors'
    before = sha(weights)
    assert push_command([str(run_dir), '--repo', 'someone/vlsa-tiny', '--out', str(tmp_path / 'up')], api=Recorder(fail=True)) == 1
    assert 'the upload to someone/vlsa-tiny failed' in capsys.readouterr().err
    assert sha(weights) == before


def test_unknown_hub_id_offline_fails_fast_with_advice():
    code = ("import time; from vlsa.model import VLSA; import vlsa.pretrained\nt = time.time()\n"
            "try: VLSA.from_pretrained('nobody/no-such-vlsa')\nexcept vlsa.pretrained.HubError as e: print(round(time.time() - t, 3)); print(e)")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert float(out[0]) < 2.0
    assert 'HF_HUB_OFFLINE=1 is set' in out[1] and 'save_pretrained' in out[1]


def test_embed_and_search_from_the_command_line(run, tmp_path, capsys):
    root, manifest, run_dir = run
    (tmp_path / 'bad.mp4').write_text('no video here')
    assert embed_command([str(run_dir), str(manifest), str(root / 'tone.wav'), str(tmp_path / 'bad.mp4'),
                          '--out', str(tmp_path / 'index.safetensors')]) == 0
    out = capsys.readouterr().out
    assert '29 files (28 with video, 29 with audio)' in out                 # 8 + 8 + 8 + 4 clips and a sound
    assert '1 skipped' in out and 'bad.mp4: not a readable media file' in out
    assert search_command([str(tmp_path / 'index.safetensors'), 'a high clink sounds twice', '-k', '5']) == 0
    assert len([l for l in capsys.readouterr().out.splitlines() if l.strip()]) == 5
    assert search_command([str(tmp_path / 'index.safetensors'), '--audio', str(root / 'tone.wav'), '-k', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(l.split()[0].rstrip('.').isdigit() for l in lines)
    scores = [float(l.split()[1]) for l in lines]
    assert scores == sorted(scores, reverse=True)
    # --check: every caption of the 28 clips searched for its own clip; 28 files in the top 28 is every one
    assert search_command([str(tmp_path / 'index.safetensors'), '--check', '-k', '29']) == 0
    assert 'in the top 29 of 29 for 168 of 168 sentences (100.0 %)' in capsys.readouterr().out
    assert search_command([str(tmp_path / 'index.safetensors'), '--check', '-k', '1']) == 0
    share = re.search(r'for (\d+) of 168 sentences', capsys.readouterr().out)
    assert share and int(share.group(1)) < 168                            # a model from two steps is not that good
    assert search_command([str(tmp_path / 'missing.safetensors'), '--check']) == 2
    assert 'missing.safetensors' in capsys.readouterr().err


def test_embed_writes_no_empty_index_and_search_refuses_a_bad_k(run, tmp_path, capsys):
    "Nothing to embed (a missing file, a split with no clip): exit 2, one line, and an existing index stays as it was."
    root, manifest, run_dir = run
    good = tmp_path / 'index.safetensors'
    good.write_bytes(b'an index from before')
    for inputs in ([str(tmp_path / 'nonexistent.mp4')], [str(manifest), '--split', 'nosuch']):
        assert embed_command([str(run_dir), *inputs, '--out', str(good)]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]           # after the progress bar: one line
        assert last.startswith('vlsa embed: nothing to embed') and 'not written' in last, last
        assert good.read_bytes() == b'an index from before'
    with pytest.raises(SystemExit) as e:                                    # refused before any embedding
        embed_command([str(run_dir), str(manifest), '--out', str(tmp_path / 'no' / 'such' / 'x.safetensors')])
    assert e.value.code == 2 and 'does not exist' in capsys.readouterr().err
    for k in ('0', '-2'):
        with pytest.raises(SystemExit) as e: search_command([str(good), 'a clink', '-k', k])
        assert e.value.code == 2 and '-k must be 1 or more' in capsys.readouterr().err


@pytest.mark.parametrize('repo', ['bad id!!', 'no-slash', 'a/b/c', 'user/na me'])
def test_push_refuses_a_bad_repo_id_before_writing_anything(run, tmp_path, capsys, repo):
    root, manifest, run_dir = run
    out = tmp_path / 'up'
    assert push_command([str(run_dir), '--repo', repo, '--dry-run', '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and repr(repo) in err and 'not a Hub repository id' in err
    assert not out.exists()


def test_push_warns_when_the_run_has_not_finished(run, tmp_path, capsys):
    root, manifest, run_dir = run
    unfinished = tmp_path / 'unfinished'
    shutil.copytree(run_dir, unfinished)
    (unfinished / 'summary.json').unlink()
    assert push_command([str(unfinished), '--repo', 'someone/vlsa-tiny', '--dry-run', '--out', str(tmp_path / 'up')]) == 0
    assert 'has not finished' in capsys.readouterr().err


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'text'])
def test_a_damaged_weights_file_is_named_in_one_line(run, tmp_path, damage):
    "embed and evaluate on a run whose only checkpoint is damaged: exit 2, one line naming the file, no traceback."
    root, manifest, run_dir = run
    broken = tmp_path / 'broken'
    shutil.copytree(run_dir, broken)
    weights = broken / 'checkpoints' / 'final' / 'model.safetensors'
    data = weights.read_bytes()
    weights.write_bytes({'empty': b'', 'truncated': data[:len(data) // 2], 'text': b'not a checkpoint'}[damage])
    for argv in (['embed', str(broken), str(manifest), '--out', str(tmp_path / 'idx.safetensors')], ['evaluate', str(broken / 'checkpoints' / 'final')]):
        out = subprocess.run([str(Path(sys.executable).parent / 'vlsa'), *argv], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, (argv, out.stderr[-1500:])
        assert 'Traceback' not in out.stderr and str(weights) in out.stderr and 'not a readable safetensors file' in out.stderr
    assert not (tmp_path / 'idx.safetensors').exists()


def test_a_run_resumes_from_the_last_good_checkpoint_when_the_newest_is_damaged(tmp_path):
    from vlsa.train import latest_checkpoint
    from vlsa.checkpoint import save_checkpoint
    model = torch.nn.Linear(2, 2)
    for step in (1, 2): save_checkpoint(tmp_path / 'checkpoints' / f'step-{step:07d}', model)
    (tmp_path / 'checkpoints' / 'step-0000002' / 'model.safetensors').write_bytes(b'')
    assert latest_checkpoint(tmp_path).name == 'step-0000001'


def test_a_config_without_model_settings_or_a_misfitting_checkpoint_is_named(run, tmp_path):
    from vlsa.checkpoint import CheckpointError
    from vlsa.pretrained import HubError
    root, manifest, run_dir = run
    folder = VLSA.from_pretrained(run_dir).save_pretrained(tmp_path / 'saved')
    (folder / 'config.json').write_text('{"data": {}}')
    with pytest.raises(HubError, match="config.json: no 'model' settings"): VLSA.from_pretrained(folder)
    cfg = json.loads((run_dir / 'config.json').read_text())
    cfg['model']['encoder']['width'] = 96; cfg['model']['encoder']['heads'] = 2
    (folder / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match='model.safetensors: does not fit the model'): VLSA.from_pretrained(folder)


def test_a_model_saved_by_an_earlier_version_loads_and_embeds_the_same():
    "A tiny model saved by commit 51ba7d1 (its config still names the retired `pool` and `similarity`): the same embeddings today."
    from safetensors.torch import load_file
    fixture = Path(__file__).parent / 'fixtures' / 'vlsa-51ba7d1'
    assert '"pool"' in (fixture / 'model' / 'config.json').read_text()
    model = VLSA.from_pretrained(fixture / 'model').eval()
    then = load_file(fixture / 'embeddings.safetensors')
    with torch.no_grad():
        now = {'video_emb': model.encode_video(then['video']), 'audio_emb': model.encode_audio(then['audio']),
               'text_emb': model.encode_text(then['text_ids'], then['text_mask'])}
    for k, v in now.items(): torch.testing.assert_close(v, then[k], rtol=0, atol=1e-6)   # bit-equal here; kernels may differ elsewhere



def test_the_objective_of_an_earlier_version_migrates_and_gives_the_same_terms():
    """That model kept GAM's temperature and matching heads inside the network (`criterion.*`). Today the network loads
    without them, and `Pretraining.from_pretrained` renames them into the objective: the pre-training terms on fixed
    inputs equal those that commit fec2c11 computed (tests/fixtures/vlsa-51ba7d1/terms.py)."""
    from safetensors.torch import load_file
    from vlsa.objectives import Finetuning, Pretraining
    from vlsa.checkpoint import CheckpointError
    fixture = Path(__file__).parent / 'fixtures' / 'vlsa-51ba7d1'
    assert not any('match' in k or 'log_scale' in k for k in VLSA.from_pretrained(fixture / 'model').state_dict())
    objective = Pretraining.from_pretrained(fixture / 'model').train()
    inputs = load_file(fixture / 'embeddings.safetensors')
    terms = objective({k: inputs[k] for k in ('video', 'audio', 'text_ids', 'text_mask')}, torch.Generator().manual_seed(3))
    then = json.loads((fixture / 'terms.json').read_text())
    assert set(terms) == set(then)
    for k, v in then.items(): assert float(terms[k].detach()) == pytest.approx(v, rel=1e-5, abs=1e-6), k
    with pytest.raises(CheckpointError, match='not those of Finetuning'): Finetuning.from_pretrained(fixture / 'model')


def test_a_run_gives_its_objective_with_the_network_only_when_asked(run):
    "A pre-training run's checkpoint keeps the objective's weights beside the network's; `Pretraining.from_pretrained` reads them."
    from safetensors.torch import load_file
    from vlsa.objectives import Pretraining
    root, manifest, run_dir = run
    objective = Pretraining.from_pretrained(run_dir)
    saved = load_file(run_dir / 'checkpoints' / 'final' / 'trainer.safetensors')
    assert torch.equal(objective.heads.nce.log_scale, saved['extra.objective.nce.log_scale'])
    assert saved['extra.objective.nce.log_scale'].item() != pytest.approx(float(np.log(1 / 0.07)))   # it trained
    network = load_file(run_dir / 'checkpoints' / 'final' / 'model.safetensors')
    assert not any(k.startswith(('objective.', 'criterion.')) for k in network)


def test_a_run_checkpoint_of_an_earlier_version_resumes_with_its_objective(run, tmp_path):
    "Before 2026-12 a pre-training checkpoint kept GAM's weights in model.safetensors (`criterion.*`): resuming finds them there."
    from safetensors.torch import load_file, save_file
    from vlsa.checkpoint import load_checkpoint
    from vlsa.config import load_config
    from vlsa.objectives import Pretraining
    root, manifest, run_dir = run
    old = tmp_path / 'step-old'
    shutil.copytree(run_dir / 'checkpoints' / 'final', old)
    trainer, network = load_file(old / 'trainer.safetensors'), load_file(old / 'model.safetensors')
    heads = {k[len('extra.objective.'):]: trainer.pop(k) for k in list(trainer) if k.startswith('extra.objective.')}
    assert heads
    save_file({**network, **{f'criterion.global_matching.{k}': v for k, v in heads.items()}}, old / 'model.safetensors')
    save_file(trainer, old / 'trainer.safetensors')
    objective = Pretraining(VLSA(load_config(run_dir / 'config.json')))
    load_checkpoint(old, objective.model, extra={'objective': objective.heads})
    assert all(torch.equal(objective.heads.state_dict()[k], v) for k, v in heads.items())
    assert all(torch.equal(objective.model.state_dict()[k], v) for k, v in network.items())
