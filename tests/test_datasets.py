"""The paper's data sets, each from its official files to a manifest and a score: a few generated clips named by the
data set's ids, its annotation files in their exact format, and its quirks (a video without audio, a clip that was
never downloaded). Then the manifest feeds an evaluation (or, for HowTo100M, a pre-training) with a tiny model."""
import json, shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vlsa.config import get_config, override
from vlsa.data import decode_window, read_manifest
from vlsa.datasets import DatasetError, prepare, report_path
from vlsa.media import MediaError, probe, read_clip, write_media
from vlsa.synth import generate
from vlsa.train import evaluate_run, pretrain

SMALL = ['model.encoder.width=32', 'model.encoder.heads=2', 'model.encoder.depth=1', 'model.decoder.width=32',
         'model.decoder.heads=2', 'model.decoder.depth=1', 'model.embed_dim=16', 'data.num_workers=0']


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    "Six generated SyncBench clips (mp4, H.264 and AAC, 4 s) to be named as each data set names its files."
    root = tmp_path_factory.mktemp('datasets')
    manifest = generate(root / 'syncbench', counts={'pretrain': 8, 'train': 0, 'val': 4, 'test': 0}, workers=1, progress=False)
    return root, manifest, sorted((manifest.parent / 'clips').rglob('*.mp4'))


@pytest.fixture(scope='module')
def tiny_run(clips):
    "A two-step pre-training on SyncBench: a tiny checkpoint (and its spectrogram statistics) to evaluate with."
    root, manifest, _ = clips
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={manifest}', f'data.cache_dir={root / "cache"}', 'pretrain.batch_size=4',
                                                'pretrain.steps=2', 'pretrain.warmup_steps=1'])
    return pretrain(cfg, name='tiny', out=root / 'runs', progress=False)


def place(src:Path, dst:Path, audio:bool=True) -> Path:
    "Copy a clip to `dst`; without `audio`, only its video stream (as the MSR-VTT videos that have no sound)."
    dst.parent.mkdir(parents=True, exist_ok=True)
    if audio: shutil.copy(src, dst)
    else: write_media(dst, None, video_from=src)
    return dst


def evaluate(run, manifest):
    return evaluate_run(run, [f'data.manifest={manifest}', f'data.cache_dir={Path(manifest).parent / "cache"}'], split='test')


def test_msrvtt_from_its_files_to_a_score(clips, tiny_run, tmp_path, capsys):
    _, _, mp4 = clips
    root = tmp_path / 'msrvtt'
    vids = [f'video{i}' for i in (0, 1, 2, 7010, 7011, 7012)]
    (root / 'msrvtt_data').mkdir(parents=True)
    (root / 'msrvtt_data' / 'MSRVTT_data.json').write_text(json.dumps({'info': {}, 'videos': [
        {'video_id': v, 'id': i, 'category': 9, 'url': '', 'start time': 1.0, 'end time': 11.0,
         'split': 'train' if i < 3 else 'test'} for i, v in enumerate(vids)],
        'sentences': [{'video_id': v, 'sen_id': 20 * i + j, 'caption': f'{v} caption {j}'} for i, v in enumerate(vids) for j in range(20)]}))
    (root / 'msrvtt_data' / 'MSRVTT_JSFUSION_test.csv').write_text(
        'key,vid_key,video_id,sentence\n' + ''.join(f'ret{i},msr{v[5:]},{v},a person does {v}\n' for i, v in enumerate(vids[3:])))
    (root / 'msrvtt_data' / 'MSRVTT_train.9k.csv').write_text('video_id\n' + ''.join(f'{v}\n' for v in vids[:3]))
    for v, src in zip(vids[:5], mp4): place(src, root / 'videos' / 'all' / f'{v}.mp4', audio=v != 'video7011')   # video7012: never downloaded
    out = prepare('msrvtt', root, tmp_path / 'manifests' / 'msrvtt.jsonl', progress=False)
    report = json.loads(report_path(out).read_text())
    assert report['missing'] == ['video7012'] and report['no_audio'] == ['video7011'] and report['unreadable'] == []
    assert report['protocols'][0] | {'rules': ''} == {'name': 'msrvtt-1k-A', 'split': 'test', 'queries': 3, 'candidates': 3, 'rules': ''}
    records = read_manifest(out)
    assert [(r.id, r.split, len(r.captions)) for r in records] == [('video0', 'train', 20), ('video1', 'train', 20),
                                                                   ('video2', 'train', 20), ('video7010', 'test', 1), ('video7011', 'test', 1)]
    assert records[0].video.resolve() == (root / 'videos' / 'all' / 'video0.mp4').resolve() and not probe(records[-1].video).has_audio
    table = evaluate(tiny_run, out)     # under the protocol that the report names: the missing video counts as a miss
    assert table.attrs['protocol'] == 'msrvtt-1k-A' and np.isfinite(table.loc['T->V', 'R@1'])
    assert table.loc['T->V', ['queries', 'n_total']].tolist() == [2, 3] and table.loc['V->T', 'n_total'] == 3
    from vlsa.cli import main
    assert main(['evaluate', str(tiny_run), '--set', f'data.manifest={out}', '--set', f'data.cache_dir={tmp_path / "cache"}']) == 0
    assert 'protocol msrvtt-1k-A: R@K over its official 3 captions and 3 clips' in capsys.readouterr().out
    with pytest.raises(DatasetError, match='1 clips missing, 0 unreadable, 1 without audio'):
        prepare('msrvtt', root, tmp_path / 'strict.jsonl', strict=True, progress=False)


def test_lsmdc_from_its_files_to_a_score(clips, tiny_run, tmp_path):
    _, _, mp4 = clips
    root = tmp_path / 'lsmdc'
    ids = {'train': '1006_Slumdog_Millionaire_01.25.49.077-01.25.54.718', 'val': '3011_BLIND_DATING_01.11.23.496-01.11.25.853',
           'test': ['3011_BLIND_DATING_01.12.00.000-01.12.02.000', '3011_BLIND_DATING_01.12.10.000-01.12.12.000']}
    line = lambda c, s: f'{c}\t01.25.49.077\t01.25.54.718\t01.25.49.000\t01.25.55.000\t{s}\n'
    root.mkdir()
    (root / 'LSMDC16_annos_training.csv').write_text(line(ids['train'], 'SOMEONE runs.') + line(ids['train'], 'He looks "back".'))
    (root / 'LSMDC16_annos_val.csv').write_text(line(ids['val'], 'A door opens.'))
    (root / 'LSMDC16_challenge_1000_publictect.csv').write_text(''.join(line(c, f'SOMEONE smiles {i}.') for i, c in enumerate(ids['test'])))
    (root / 'avi' / 'BLIND_DATING').mkdir(parents=True)
    (root / 'avi' / 'BLIND_DATING' / f"{ids['test'][1]}.avi").write_bytes(b'')   # a failed download: an empty file
    for c, src in zip([ids['train'], ids['val'], ids['test'][0]], mp4): place(src, root / 'avi' / c[5:-26] / f'{c}.avi')
    out = prepare('lsmdc', root, tmp_path / 'lsmdc.jsonl', progress=False)
    report = json.loads(report_path(out).read_text())
    assert [u['id'] for u in report['unreadable']] == [ids['test'][1]] and 'empty file' in report['unreadable'][0]['cause']
    assert report['written'] == {'test': 1, 'train': 1, 'val': 1} and report['protocols'][0]['candidates'] == 2
    assert read_manifest(out)[0].captions == ['SOMEONE runs.', 'He looks "back".']
    assert evaluate(tiny_run, out).loc['T->V', 'queries'] == 1


def test_youcook2_steps_are_windows_of_their_video(clips, tiny_run, tmp_path):
    _, _, mp4 = clips
    root = tmp_path / 'youcook2'
    root.mkdir()
    (root / 'youcookii_annotations_trainval.json').write_text(json.dumps({'database': {
        'GLd3aX16zBg': {'duration': 4.0, 'subset': 'training', 'recipe_type': '113', 'video_url': '',
                        'annotations': [{'id': 0, 'segment': [0, 2], 'sentence': 'spread margarine on the bread'}]},
        '9GX8f5EwwE4': {'duration': 4.0, 'subset': 'validation', 'recipe_type': '212', 'video_url': '',
                        'annotations': [{'id': 0, 'segment': [0, 2], 'sentence': 'cut the onion'},
                                        {'id': 1, 'segment': [2, 4], 'sentence': 'dice the onion'}]}}}))
    place(mp4[0], root / 'raw_videos' / 'training' / '113' / 'GLd3aX16zBg.mp4')
    place(mp4[1], root / 'raw_videos' / 'validation' / '212' / '9GX8f5EwwE4.webm')   # the layout and suffixes vary
    out = prepare('youcook2', root, tmp_path / 'youcook2.jsonl', progress=False)
    steps = [r for r in read_manifest(out) if r.split == 'test']
    assert [(r.id, r.span) for r in steps] == [('9GX8f5EwwE4_000', (0.0, 2.0)), ('9GX8f5EwwE4_001', (2.0, 4.0))]
    cfg = get_config('tiny').model
    for r in steps:   # each step's frames come from its own 2 s, not from the step after it (the window is 4 s long)
        frames = decode_window(r.video, cfg, span=r.span)[0]
        direct = read_clip(r.video, cfg.video.num_frames, cfg.audio.sample_rate, r.span[0], 2.0, allow_no_audio=True)
        assert np.array_equal(frames, direct.frames), r.id
    tail = decode_window(steps[1].video, cfg, span=(3.5, 9.0))[0]                  # past the file's end: cut at the end
    assert np.array_equal(tail, read_clip(steps[1].video, cfg.video.num_frames, cfg.audio.sample_rate, 3.5,
                                          probe(steps[1].video).duration - 3.5, allow_no_audio=True).frames)
    with pytest.raises(MediaError, match='past the end of the file'): decode_window(steps[1].video, cfg, span=(5.0, 9.0))
    assert evaluate(tiny_run, out).loc['T->V', 'queries'] == 2


def test_howto100m_segments_pretrain(clips, tmp_path):
    _, manifest, mp4 = clips
    root = tmp_path / 'howto100m'
    root.mkdir()
    vids = ['nVbIUDjzWY4', 'aJ2S0kW1v5Q', 'notInAudioSet']
    (root / 'caption.json').write_text(json.dumps({v: {'start': [0.0, 2.0], 'end': [2.0, 4.0],
                                                       'text': [f'{v} first words', 'then we tighten the chain']} for v in vids}))
    (root / 'balanced_train_segments.csv').write_text(
        '# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2, num_segs=2, num_unique_labels=1, num_positive_labels=2\n'
        '# YTID, start_seconds, end_seconds, positive_labels\n'
        + ''.join(f'{v}, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n' for v in vids[:2]))
    for v, src in zip(vids, mp4): place(src, root / 'videos' / f'{v}.mp4')
    out = prepare('howto100m', root, tmp_path / 'howto100m.jsonl', progress=False)
    records = read_manifest(out)
    assert [(r.id, r.span, r.transcript) for r in records][:2] == [('aJ2S0kW1v5Q_0000', (0.0, 2.0), 'aJ2S0kW1v5Q first words'),
                                                                   ('aJ2S0kW1v5Q_0001', (2.0, 4.0), 'then we tighten the chain')]
    assert len(records) == 4 and {r.split for r in records} == {'pretrain'}
    # a pre-training run scores itself on a captioned val split: here SyncBench's, added with absolute paths
    val = [dict(json.loads(l), video=str(manifest.parent / json.loads(l)['video'])) for l in manifest.read_text().splitlines()
           if json.loads(l)['split'] == 'val']
    with open(out, 'a') as f: f.writelines(json.dumps(r) + '\n' for r in val)
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={out}', f'data.cache_dir={tmp_path / "cache"}', 'pretrain.batch_size=4',
                                                'pretrain.steps=2', 'pretrain.warmup_steps=1', 'pretrain.log_every=1'])
    run = pretrain(cfg, name='howto', out=tmp_path / 'runs', progress=False)
    rows = [json.loads(l) for l in (run / 'log.jsonl').read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r['loss']) for r in rows)


def sound_of(src:Path, dst:Path) -> Path:
    "The sound of a clip alone, as a WAV file (as AudioCaps downloaders and SoundDescs ship them)."
    from vlsa.media import read_audio
    dst.parent.mkdir(parents=True, exist_ok=True)
    return write_media(dst, None, audio=read_audio(src, 22_050)[0], sample_rate=22_050, audio_codec='pcm_s16le')


def finetune_on(manifest, init, out, **stage):
    "A two-step fine-tuning of `init` on `manifest` (batches of 2): the sound-only path trains."
    from vlsa.train import finetune
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={manifest}', f'data.cache_dir={Path(manifest).parent / "cache"}',
                                                'finetune.batch_size=2', 'finetune.steps=2', 'finetune.warmup_steps=1',
                                                'finetune.log_every=1', 'finetune.eval_every=0'])
    return finetune(cfg, init_from=init, name='ft', out=out, progress=False)


def test_audiocaps_is_sound_only_from_its_files_to_a_score(clips, tiny_run, tmp_path, capsys):
    _, _, mp4 = clips
    root = tmp_path / 'audiocaps'
    rows = {'train': [(1, 'r1nicOVtvkQ', 130, 'A woman talks nearby as water pours'), (2, 'UDGBjjwyaqE', 20, 'Clanging and clanking')],
            'val': [(10 + i, 'rqfQRErjfk8', 170, f'A crowd cheers {i}') for i in range(5)],
            'test': [(20 + i, y, 30, f'{y} sound {i}') for y in ('--0w1YA1Hm4', 'AZ3wZX9-_lU', 'neverFetched') for i in range(5)]}
    (root / 'dataset').mkdir(parents=True)
    for split, rs in rows.items():
        (root / 'dataset' / f'{split}.csv').write_text('audiocap_id,youtube_id,start_time,caption\n' + ''.join(f'{a},{y},{s},{c}\n' for a, y, s, c in rs))
    names = ['Yr1nicOVtvkQ.wav', 'UDGBjjwyaqE_20.wav', 'rqfQRErjfk8.wav', '--0w1YA1Hm4.wav', 'YAZ3wZX9-_lU_30.wav']
    for name, src in zip(names, mp4): sound_of(src, root / 'audio' / name)   # neverFetched: a row whose clip is missing
    out = prepare('audiocaps', root, tmp_path / 'manifests' / 'audiocaps.jsonl', progress=False)
    report = json.loads(report_path(out).read_text())
    assert report['missing'] == ['neverFetched'] and report['unreadable'] == [] and report['written'] == {'test': 2, 'train': 2, 'val': 1}
    records = read_manifest(out)
    assert all(r.video is None and r.audio.suffix == '.wav' for r in records) and len(records[-1].captions) == 5
    table = evaluate(tiny_run, out)   # text and audio only, under the protocol: 15 captions and 3 clips, one of them missing
    assert table.attrs['protocol'] == 'audiocaps-test' and list(table.index) == ['T->A', 'A->T']
    assert table.loc['T->A', ['queries', 'n_total']].tolist() == [10, 15] and table.loc['A->T', ['queries', 'n_total']].tolist() == [2, 3]
    from vlsa.benchmark import BenchmarkRun, benchmark_table, finetune_seed, zero_shot   # the benchmark's path: fine-tune, score, table
    B = BenchmarkRun('audiocaps', '', str(out), str(tiny_run), str(tmp_path / 'runs'), str(tmp_path / 'results'), str(tmp_path / 'cache'),
                     settings={'data.num_workers': 0},
                     finetune_settings={'batch_size': 2, 'steps': 2, 'warmup_steps': 1, 'log_every': 1, 'eval_every': 1})
    run = finetune_seed(B, 0, progress=False)
    logged = [json.loads(l) for l in (run / 'log.jsonl').read_text().splitlines()]
    assert all(r['ft_text_video_nce'] == 0 and r['ft_text_audio_nce'] > 0 for r in logged)   # sound only: text-audio trains
    assert [k for k in json.loads((run / 'metrics.jsonl').read_text().splitlines()[0]) if k.endswith('R@1')] == ['T->A R@1', 'A->T R@1']
    scored = pd.DataFrame(json.loads((run / 'eval-test.json').read_text())['retrieval']).T
    text = benchmark_table(B, [scored], zero_shot(B)).read_text()
    assert text.startswith('# Table 4: AudioCaps, protocol audiocaps-test (R@K, %)') and '| VLSA | not stated | T->A | 42.5 |' in text
    assert '| chance (random ranking) | – | T->A | 33.3 |' in text      # 3 clips under the protocol, one of them missing
    from vlsa.cli import main
    assert main(['evaluate', str(run)]) == 0 and 'protocol audiocaps-test' in capsys.readouterr().out


def test_sounddescs_reads_its_pickles_safely_and_scores_sound_only(clips, tiny_run, tmp_path):
    import pickle
    from collections import defaultdict
    _, _, mp4 = clips
    root = tmp_path / 'sounddescs'
    ids = {'train': ['nhu05094136', '07016013'], 'val': ['07062167'], 'test': ['nhu05030045', '07051146']}
    (root / 'pkls').mkdir(parents=True)
    (root / 'pkls' / 'descriptions.pkl').write_bytes(pickle.dumps(defaultdict(str, {i.upper(): f'recording {i}: birds and a bell'
                                                                                  for s in ids.values() for i in s})))
    for split, names in ids.items(): (root / f'{split}_list.txt').write_text('\n'.join(names) + '\n')
    for i, src in zip([i for s in ids.values() for i in s], mp4): sound_of(src, root / 'audio' / f'{i.upper()}.wav')
    out = prepare('sounddescs', root, tmp_path / 'sounddescs.jsonl', progress=False)
    assert json.loads(report_path(out).read_text())['written'] == {'test': 2, 'train': 2, 'val': 1}
    table = evaluate(tiny_run, out)
    assert table.attrs['protocol'] == 'sounddescs-test' and table.loc['T->A', 'n_total'] == 2 and 'T->V' not in table.index
    assert finetune_on(out, tiny_run, tmp_path / 'runs').joinpath('checkpoints', 'final').is_dir()
    class Hostile:   # a descriptions file that would run a command when unpickled
        def __reduce__(self): return (shutil.rmtree, (str(root),))
    (root / 'pkls' / 'descriptions.pkl').write_bytes(pickle.dumps({'07051146': Hostile()}))
    with pytest.raises(DatasetError, match='refused to load shutil.rmtree'): prepare('sounddescs', root, tmp_path / 'x.jsonl', progress=False)
    assert root.is_dir()


def test_pretraining_refuses_clips_that_are_only_sound(clips, tmp_path):
    from vlsa.data import DataError
    _, manifest, mp4 = clips
    sound = sound_of(mp4[0], tmp_path / 'a.wav')
    lines = [json.loads(l) for l in manifest.read_text().splitlines()]
    lines = [dict(l, video=str(manifest.parent / l['video'])) for l in lines]
    lines[0] = {k: v for k, v in lines[0].items() if k != 'video'} | {'audio': str(sound)}
    (tmp_path / 'm.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
    cfg = override(get_config('tiny'), SMALL + [f'data.manifest={tmp_path / "m.jsonl"}', f'data.cache_dir={tmp_path / "cache"}', 'pretrain.batch_size=4',
                                                'pretrain.steps=1'])
    with pytest.raises(DataError, match="clips of split 'pretrain' are only sound"): pretrain(cfg, name='p', out=tmp_path / 'runs', progress=False)
    assert not (tmp_path / 'runs' / 'p').exists()
