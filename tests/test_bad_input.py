"""Every kind of bad input through the `vlsa` command line, as one table: each case ends with exit status 2, one line
that names the file, key or split and the cause, no traceback, and no output created or overwritten. Then the paths
that must not depend on the current folder."""
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from vlsa.cli import main
from vlsa.config import get_config, override
from vlsa.media import write_media
from vlsa.synth import generate
from vlsa.train import pretrain

SMALL = ['model.encoder.width=64', 'model.encoder.heads=2', 'model.encoder.depth=1', 'model.decoder.width=32',
         'model.decoder.heads=2', 'model.decoder.depth=1', 'model.embed_dim=32', 'data.num_workers=0']


def bit_flipped(src:Path, out:Path, flips:int=60, seed:int=0):
    "A copy with bits flipped in the compressed streams (after the mdat box header), as a damaged download would have."
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    body = data.find(b'mdat') + 8
    for i in rng.integers(body, min(len(data), body + 20_000), flips): data[i] ^= 1 << int(rng.integers(8))
    out.write_bytes(bytes(data))


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "Generated clips, manifests with one fault each (beside the clips: paths are relative to the manifest), damaged media, a finished run and an index."
    root = tmp_path_factory.mktemp('bad')
    manifest = generate(root / 'sb', counts={'pretrain': 8, 'train': 8, 'val': 8, 'test': 4}, workers=1, progress=False)
    rows = [json.loads(l) for l in manifest.read_text().splitlines()]

    def variant(name, change=lambda r: None, keep=lambda r: True):
        out = []
        for r in json.loads(json.dumps(rows)):
            change(r)
            if keep(r): out.append(r)
        (manifest.parent / name).write_text(''.join(json.dumps(r) + '\n' for r in out))
        return str(manifest.parent / name)

    pre = lambda f: (lambda r: f(r) if r['split'] == 'pretrain' else None)
    bad = root / 'media'; bad.mkdir()
    (bad / 'empty.mp4').write_bytes(b'')
    (bad / 'text.mp4').write_text('not a video\n')
    clip = manifest.parent / rows[0]['video']
    (bad / 'truncated.mp4').write_bytes(clip.read_bytes()[:clip.stat().st_size // 3])
    rng = np.random.default_rng(0)   # noise compresses badly: a large video stream for the flips to land in
    write_media(bad / 'noise.mp4', rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8), 16, np.zeros(88_200, np.float32), 44_100)
    bit_flipped(bad / 'noise.mp4', bad / 'bitflips.mp4')
    m = {'no_transcript': variant('no_transcript.jsonl', pre(lambda r: r['meta'].pop('transcript'))),
         'no_captions': variant('no_captions.jsonl', lambda r: r.__setitem__('captions', []) if r['split'] == 'train' else None),
         'no_pretrain': variant('no_pretrain.jsonl', keep=lambda r: r['split'] != 'pretrain'),
         'missing': variant('missing.jsonl', pre(lambda r: r.__setitem__('video', 'gone/' + Path(r['video']).name))),
         'undecodable': variant('undecodable.jsonl', pre(lambda r: r.__setitem__('video', str(bad / 'text.mp4'))))}
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}',
                                                'pretrain.batch_size=4', 'pretrain.steps=2', 'pretrain.warmup_steps=1'])
    run = pretrain(cfg, name='ok', out=root / 'runs', progress=False)
    index = root / 'index.safetensors'
    assert main(['embed', str(run), str(manifest), '--split', 'test', '--out', str(index)]) == 0
    (root / 'truncated.safetensors').write_bytes(index.read_bytes()[:200])
    (root / 'hello.safetensors').write_text('hello')
    (root / 'before.safetensors').write_bytes(b'an index from before')
    return root, manifest, m, bad, run, index


def _sets(*kv): return [a for x in kv for a in ('--set', x)]


def cases(root, manifest, m, bad, run, index):
    "(name, argv, words the one line must hold, the path that must not appear or must keep its bytes)."
    stage = lambda cmd, man, name, *more: [cmd, '--config', 'tiny', '--name', name, '--out', str(root / 'runs'),
                                           *_sets(*SMALL, 'pretrain.steps=2', 'pretrain.batch_size=4', 'finetune.steps=2',
                                                  'finetune.batch_size=4', f'data.cache_dir={root / "cache"}',
                                                  f'data.manifest={man}'), *more]
    runs = root / 'runs'
    return [
        ('no transcript', stage('pretrain', m['no_transcript'], 'a'), ['no_transcript.jsonl', "clip 'pretrain-00000' (line 1) has no meta.transcript"], runs / 'a'),
        ('captions []', stage('finetune', m['no_captions'], 'b'), ['no_captions.jsonl', "clip 'train-00000'", 'has no captions'], runs / 'b'),
        ('no pre-training clips', stage('pretrain', m['no_pretrain'], 'c'), ['no_pretrain.jsonl', "no clips in split 'pretrain'"], runs / 'c'),
        ('every clip missing', stage('pretrain', m['missing'], 'd'), ['missing.jsonl', "8 of 8 clips of split 'pretrain' lack a file", 'gone/pretrain-00000.mp4'], runs / 'd'),
        ('every clip undecodable', stage('pretrain', m['undecodable'], 'e'), ['undecodable.jsonl', 'could not be read', 'text.mp4: not a readable media file'], runs / 'e'),
        ('a missing manifest', stage('pretrain', root / 'nope.jsonl', 'f'), ['nope.jsonl', 'cannot read the manifest'], runs / 'f'),
        ('an unknown key', ['config', 'tiny', '--set', 'model.nope=1'], ["unknown key 'model.nope'"], None),
        ('a missing initial checkpoint', stage('finetune', manifest, 'g', '--init', str(runs / 'nope')), ['runs/nope', 'no such checkpoint'], runs / 'g'),
        ('evaluate a split that does not exist', ['evaluate', str(run), '--split', 'nosuch'], ["no clips in split 'nosuch'"], None),
        ('evaluate a run that does not exist', ['evaluate', str(runs / 'nope')], ['runs/nope: no such run'], None),
        ('evaluate with a model setting', ['evaluate', str(run), '--set', 'model.embed_dim=64'], ['--set model.embed_dim=64', 'changes only data.* and eval.*'], None),
        ('search a truncated index', ['search', str(root / 'truncated.safetensors'), 'a clink'], ['truncated.safetensors: not an index'], None),
        ('search a file that is not an index', ['search', str(root / 'hello.safetensors'), 'a clink'], ['hello.safetensors: not an index'], None),
        ('search a folder', ['search', str(root), 'a clink'], ['is a folder, not an index'], None),
        ('search with -k -2', ['search', str(index), 'a clink', '-k', '-2'], ['-k must be 1 or more, got -2'], None),
        ('synth --size 7', ['synth', '--size', '7', '--out', str(root / 's7')], ['--size must be an even number', 'got 7'], root / 's7'),
        ('synth --test -3', ['synth', '--test', '-3', '--out', str(root / 's3')], ['--test must be 0 or more, got -3'], root / 's3'),
        *[(f'embed a {kind} file', ['embed', str(run), str(bad / f'{kind}.mp4'), '--out', str(root / 'before.safetensors')],
           [f'{kind}.mp4', why, 'not written'], root / 'before.safetensors')
          for kind, why in (('empty', 'empty file (0 bytes)'), ('text', 'not a readable media file'),
                            ('truncated', 'not a readable media file'), ('bitflips', 'damaged video: decord reported'))],
        ('embed a split that does not exist', ['embed', str(run), str(manifest), '--split', 'nosuch', '--out', str(root / 'before.safetensors')],
         ['nothing to embed', 'not written'], root / 'before.safetensors'),
    ]


CASE_NAMES = [c[0] for c in cases(Path('/x'), Path('/x/m.jsonl'), defaultdict(str), Path('/x'), Path('/x'), Path('/x/i'))]


@pytest.mark.parametrize('name', CASE_NAMES)
def test_bad_input_ends_in_one_line_and_exit_2(world, capsys, name):
    root, *_ = world
    _, argv, words, output = next(c for c in cases(*world) if c[0] == name)
    before = output.read_bytes() if output is not None and output.is_file() else None
    try: code = main(argv)                      # an exception here would be the traceback a user sees
    except SystemExit as e: code = e.code       # argparse's own errors
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(('caching clips', 'embedding files'))]
    assert code == 2, err[-2000:]
    assert 'Traceback' not in err and lines, err[-2000:]
    assert all(w in lines[-1] for w in words), lines[-1]
    assert lines[-1].startswith(f'vlsa {argv[0]}') and len(lines[-1]) < 400, lines[-1]
    if output is not None:
        assert (output.read_bytes() == before) if before is not None else not output.exists(), f'{output} was written'


def test_debug_shows_the_traceback_instead(world):
    root, *_ = world
    with pytest.raises(FileNotFoundError, match='no such run'):
        main(['--debug', 'evaluate', str(root / 'runs' / 'nope')])
    assert main(['evaluate', str(root / 'runs' / 'nope')]) == 2     # and the next command reports as usual


def test_a_run_and_an_index_work_from_any_folder(world, tmp_path, monkeypatch, capsys):
    "Named with relative paths, a run's manifest and cache and an index's checkpoint are found from another folder."
    root, manifest, *_ = world
    monkeypatch.chdir(root)
    cfg = override(get_config('tiny'), SMALL + ['data.manifest=sb/manifest.jsonl', 'data.cache_dir=cache',
                                                'pretrain.batch_size=4', 'pretrain.steps=1', 'pretrain.warmup_steps=1'])
    pretrain(cfg, name='rel', out='runs', progress=False)
    assert main(['embed', 'runs/rel', 'sb/manifest.jsonl', '--split', 'test', '--out', 'rel.safetensors']) == 0
    assert json.loads((root / 'runs' / 'rel' / 'config.json').read_text())['data']['manifest'] == str(manifest)
    elsewhere = tmp_path / 'elsewhere'; elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(['evaluate', str(root / 'runs' / 'rel'), '--split', 'test']) == 0
    assert 'T->V' in capsys.readouterr().out
    assert main(['search', str(root / 'rel.safetensors'), 'a red ball', '-k', '2']) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    # the same run resumed from another folder, named by its absolute paths, is the same run
    monkeypatch.chdir(root)
    again = override(cfg, [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}'])
    pretrain(again, name='rel', out=root / 'runs', resume=True, progress=False)
