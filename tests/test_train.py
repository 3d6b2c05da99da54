"""The training engine: exact resumption, SIGTERM, two processes under torchrun, and a smoke run that learns."""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlsa.config import get_config, override
from vlsa.synth import generate
from vlsa.train import finetune, latest_checkpoint, pretrain

BIN = Path(sys.executable).parent
SMALL = ['model.encoder.width=64', 'model.encoder.heads=2', 'model.encoder.depth=2', 'model.decoder.width=32',
         'model.decoder.heads=2', 'model.decoder.depth=1', 'model.embed_dim=32', 'data.num_workers=0']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('train')
    manifest = generate(root / 'syncbench', counts={'pretrain': 64, 'train': 64, 'val': 32}, workers=2, progress=False)
    return root, manifest


def config(data, *extra):
    root, manifest = data
    return override(get_config('tiny'), SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}', *extra])


def test_interrupted_and_resumed_run_ends_with_identical_weights(data, tmp_path):
    cfg = config(data, 'pretrain.batch_size=8', 'pretrain.steps=6', 'pretrain.warmup_steps=2', 'pretrain.log_every=1')
    whole = pretrain(cfg, name='whole', out=tmp_path, progress=False)
    part = pretrain(cfg, name='part', out=tmp_path, stop_after=3, progress=False)
    assert latest_checkpoint(part).name == 'step-0000003'
    saved = latest_checkpoint(part) / 'trainer.json'
    trainer = json.loads(saved.read_text())
    assert trainer['info']['seconds'] > 0
    saved.write_text(json.dumps({**trainer, 'info': {**trainer['info'], 'seconds': 1000.0}}))   # as if the first part took long
    pretrain(cfg, name='part', out=tmp_path, resume=True, progress=False)
    assert json.loads((part / 'summary.json').read_text())['train_seconds'] >= 1000   # the training time adds up over the resume
    a = load_file(whole / 'checkpoints' / 'final' / 'model.safetensors')
    b = load_file(part / 'checkpoints' / 'final' / 'model.safetensors')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(l) for l in (r / 'log.jsonl').read_text().splitlines()] for r in (whole, part)]
    assert [r['loss'] for r in logs[0]] == [r['loss'] for r in logs[1]]


def test_checkpoints_keep_the_newest_steps_and_a_finished_run_keeps_only_final(data, tmp_path):
    cfg = config(data, 'pretrain.batch_size=8', 'pretrain.steps=5', 'pretrain.warmup_steps=1', 'pretrain.ckpt_every=1',
                 'pretrain.keep_last=2')
    run_dir = pretrain(cfg, name='k', out=tmp_path, stop_after=4, progress=False)
    assert sorted(p.name for p in (run_dir / 'checkpoints').iterdir()) == ['step-0000003', 'step-0000004']
    (run_dir / 'checkpoints' / '.step-0000005.tmp-x1y2').mkdir()   # what a save killed by SIGKILL leaves
    pretrain(cfg, name='k', out=tmp_path, resume=True, progress=False)
    assert [p.name for p in (run_dir / 'checkpoints').iterdir()] == ['final']


def test_a_run_folder_belongs_to_its_run(data, tmp_path):
    """Starting over a run needs --overwrite; --resume takes the run's own settings and refuses a --set that changes one."""
    root, manifest = data
    cli = lambda *extra: subprocess.run([str(BIN / 'vlsa'), 'pretrain', '--name', 'r', '--out', str(tmp_path), *extra],
                                        capture_output=True, text=True, timeout=300)
    sets = lambda *kv: [a for x in kv for a in ('--set', x)]
    first = SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}', 'pretrain.batch_size=8',
                     'pretrain.steps=4', 'pretrain.warmup_steps=1', 'pretrain.log_every=1', 'pretrain.lr=0.002']
    stopped = cli(*sets(*first), '--stop-after', '2')
    assert stopped.returncode == 0 and f'stopped at step 2 of 4; continue with: vlsa pretrain --name r --out {tmp_path} --resume' in stopped.stderr
    saved, log = (tmp_path / 'r' / 'config.json').read_text(), (tmp_path / 'r' / 'log.jsonl').read_text()
    again = cli(*sets(*first))                                                   # no --resume, no --overwrite
    assert again.returncode == 2 and 'already holds a run' in again.stderr and 'Traceback' not in again.stderr
    changed = cli('--resume', *sets('pretrain.lr=0.01'))
    assert changed.returncode == 2 and 'pretrain.lr: 0.002 -> 0.01' in changed.stderr, changed.stderr
    assert (tmp_path / 'r' / 'config.json').read_text() == saved and (tmp_path / 'r' / 'log.jsonl').read_text() == log
    with open(tmp_path / 'r' / 'log.jsonl', 'a') as f: f.write(json.dumps({'step': 3, 'loss': 0.0}) + '\n')   # logged, then killed
    resumed = cli('--resume')                                                    # its own settings: no --set needed
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / 'r' / 'config.json').read_text() == saved
    steps = [json.loads(l)['step'] for l in (tmp_path / 'r' / 'log.jsonl').read_text().splitlines()]
    assert steps == [1, 2, 3, 4]                                                 # step 3 was done again and logged once
    assert cli(*sets(*first), '--overwrite', '--stop-after', '1').returncode == 0
    assert [json.loads(l)['step'] for l in (tmp_path / 'r' / 'log.jsonl').read_text().splitlines()] == [1]
    assert not (tmp_path / 'r' / 'checkpoints' / 'final').exists()             # nothing of the old run is left


@pytest.mark.parametrize('stage, split', [('pretrain', 'train'), ('finetune', 'pretrain')])
def test_a_manifest_without_the_stages_split_gives_one_line(data, tmp_path, stage, split):
    "Data that cannot serve a stage: exit 2, one line naming the manifest and the missing split, no run folder."
    root, manifest = data
    only = manifest.parent / f'only-{split}.jsonl'     # beside the clips: their paths are relative to the manifest
    only.write_text(''.join(l + '\n' for l in manifest.read_text().splitlines() if json.loads(l)['split'] == split))
    args = [a for kv in SMALL + [f'data.manifest={only}', f'data.cache_dir={root / "cache"}'] for a in ('--set', kv)]
    out = subprocess.run([str(BIN / 'vlsa'), stage, '--name', 'x', '--out', str(tmp_path), *args],
                         capture_output=True, text=True, timeout=300)
    wanted = 'pretrain' if stage == 'pretrain' else 'train'
    assert out.returncode == 2 and 'Traceback' not in out.stderr, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert str(only) in line and f"split '{wanted}'" in line, line
    assert not (tmp_path / 'x').exists()


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data, tmp_path):
    root, manifest = data
    args = [str(BIN / 'vlsa'), 'pretrain', '--name', 'sig', '--out', str(tmp_path)] + [
        a for kv in SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}', 'pretrain.batch_size=8',
                             'pretrain.steps=100000', 'pretrain.log_every=1'] for a in ('--set', kv)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / 'sig' / 'log.jsonl'
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2): time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    ck = latest_checkpoint(tmp_path / 'sig')
    assert ck is not None and json.loads((ck / 'trainer.json').read_text())['info']['step'] >= 2


def _without_audio(data, name:str, which) -> Path:
    "A manifest beside the clips in which the pre-training clips `which(k)` point to a copy of their video without audio."
    from vlsa.media import write_media
    root, manifest = data
    rows, k = [json.loads(l) for l in manifest.read_text().splitlines()], 0
    for r in rows:
        if r['split'] != 'pretrain': continue
        if which(k):
            silent = manifest.parent / 'silent' / Path(r['video']).name
            if not silent.exists():
                silent.parent.mkdir(exist_ok=True)
                write_media(silent, None, video_from=manifest.parent / r['video'])   # the video stream alone, copied
            r['video'] = str(silent.relative_to(manifest.parent))
        k += 1
    out = manifest.parent / name
    out.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return out


@pytest.mark.parametrize('audio', ['some clips without', 'none at all'])
def test_two_processes_with_gloo_match_one_at_the_same_global_batch(data, tmp_path, audio):
    """torchrun, 2 processes x 8 clips against 1 process x 16 clips, same weights and clips, where some clips (on
    either rank) or all of them have no audio track. What still differs is random: rank 1 draws its own masks, and
    hard negatives come from each rank's 8 clips. The global embeddings here pool every token
    (`global_visible_only=false`) so that the contrastive terms see no mask: they must agree to 1 % (and are 0 without
    audio); the total loss, finite, to 2 %."""
    root, _ = data
    manifest = _without_audio(data, f'audio-{audio[:4]}.jsonl', (lambda k: k % 5 == 2) if audio.startswith('some') else (lambda k: True))
    common = SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}', 'pretrain.batch_size=16',
                      'pretrain.steps=2', 'pretrain.log_every=1', 'pretrain.warmup_steps=1', 'model.global_visible_only=false']
    if audio == 'none at all':   # no clip to measure spectrogram statistics on: they are given
        common += ['model.audio.spec_mean=0.0', 'model.audio.spec_std=1.0', 'pretrain.steps=1']
    pretrain(override(get_config('tiny'), common), name='one', out=tmp_path, progress=False)
    cmd = [str(BIN / 'torchrun'), '--nproc_per_node', '2', '--master_port', '29517', '-m', 'vlsa.cli', 'pretrain',
           '--name', 'two', '--out', str(tmp_path)] + [a for kv in common + ['pretrain.micro_batch=8'] for a in ('--set', kv)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = ([json.loads(l) for l in (tmp_path / n / 'log.jsonl').read_text().splitlines()][0] for n in ('one', 'two'))
    for k in ('gam_audio_video_nce', 'gam_audio_text_nce'):
        if audio == 'none at all': assert one[k] == two[k] == 0.0, (k, one[k], two[k])
        else: assert abs(one[k] - two[k]) <= 0.01 * one[k], (k, one[k], two[k])
    assert math.isfinite(two['loss']) and abs(one['loss'] - two['loss']) <= 0.02 * one['loss'], (one, two)


def test_smoke_pretraining_lowers_every_loss_and_finetuning_raises_recall(data, tmp_path):
    # recall is scored on the 64 clips fine-tuning sees: on 32 unseen clips (chance R@5 16 %) a smoke run's gain is
    # noise, and what is asserted here is that the stages learn, not that a few steps generalise
    cfg = config(data, 'pretrain.batch_size=16', 'pretrain.steps=40', 'pretrain.warmup_steps=4', 'pretrain.log_every=1',
                 'pretrain.lr=2e-3', 'finetune.batch_size=16', 'finetune.steps=80', 'finetune.warmup_steps=4',
                 'finetune.lr=2e-3', 'finetune.log_every=5', 'data.eval_split=train')
    pre = pretrain(cfg, name='pre', out=tmp_path, progress=False)
    rows = [json.loads(l) for l in (pre / 'log.jsonl').read_text().splitlines()]
    terms = [k for k in rows[0] if k.startswith(('lpmm_', 'gam_')) and not k.endswith(('_acc', '_top1'))]   # the losses
    assert len(terms) == 7
    for k in terms:
        first, last = (sum(r[k] for r in part) / 5 for part in (rows[:5], rows[-5:]))
        assert last < first, f'{k}: {first:.3f} -> {last:.3f}'
    zero_shot = json.loads((pre / 'summary.json').read_text())['retrieval']['T->V']['R@5']
    ft = finetune(cfg, init_from=pre, name='ft', out=tmp_path, progress=False)
    tuned = json.loads((ft / 'summary.json').read_text())['retrieval']['T->V']['R@5']
    assert tuned > zero_shot, (zero_shot, tuned)
    from vlsa.model import VLSA   # a fine-tuned run loads as a plain model: its checkpoint holds the model's weights
    loaded = VLSA.from_pretrained(ft)
    saved = load_file(ft / 'checkpoints' / 'final' / 'model.safetensors')
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize('stage', ['pretrain', 'finetune'])
def test_fast_path_gives_the_plain_step(stage):
    """One step on a fixed batch: bf16 autocast and the fused AdamW (the fast path where the hardware has bf16) against
    fp32 and AdamW's loop. The loss terms agree within bf16's rounding and the gradients point the same way. (The first
    AdamW update is about lr x sign(gradient), so its cosine says little; `test_fused_adamw_is_adamw` checks the step.)"""
    from vlsa.model import VLSA
    from vlsa.objectives import OBJECTIVES
    cfg = get_config('tiny')
    m, g = cfg.model, torch.Generator().manual_seed(0)
    B, L = 8, 14
    batch = {'video': torch.randn(B, m.video.num_frames, 3, m.video.frame_size, m.video.frame_size, generator=g),
             'audio': torch.randn(B, 1, m.audio.freq_bins, m.audio.time_frames, generator=g),
             'text_ids': torch.randint(m.text.first_word_id, m.text.vocab_size, (B, L), generator=g),
             'text_mask': (torch.arange(L)[None] < torch.randint(6, L + 1, (B, 1), generator=g)).long()}
    runs = {}
    for path in ('plain', 'fast'):
        torch.manual_seed(0)
        net = OBJECTIVES[stage](VLSA(cfg))
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=path == 'fast'):
            terms = net(batch, torch.Generator().manual_seed(1))
            terms['loss'].backward()
        grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        runs[path] = {k: v.detach().float() for k, v in terms.items()}, grad
    (plain, g_plain), (fast, g_fast) = runs['plain'], runs['fast']
    for k in plain:   # bf16 keeps 8 bits of mantissa: products and sums are rounded to about 0.4 % each
        torch.testing.assert_close(fast[k], plain[k], rtol=3e-2, atol=3e-2, msg=lambda msg: f'{stage} {k}: {msg}')
    cos = torch.nn.functional.cosine_similarity
    assert cos(g_fast, g_plain, dim=0) > 0.99, f'{stage}: gradient cosine {cos(g_fast, g_plain, dim=0):.4f}'


def test_fused_adamw_is_adamw():
    "The CPU's fused AdamW takes the loop's step, to rounding, with weight decay on the right groups."
    from vlsa.model import VLSA
    from vlsa.train import make_optimizer, param_groups
    cfg = get_config('tiny')
    nets = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = VLSA(cfg)
        opt = make_optimizer(net, cfg.pretrain, torch.device('cpu')) if fused else \
            torch.optim.AdamW(param_groups(net, cfg.pretrain.weight_decay), lr=cfg.pretrain.lr, foreach=False)
        assert opt.defaults.get('fused') == (True if fused else None)
        for step in range(3):
            for p in net.parameters(): p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(step))
            opt.step()
        nets.append(net)
    for (name, a), b in zip(nets[0].named_parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda msg: f'{name}: {msg}')
