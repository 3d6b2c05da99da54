"""vlsa.data across modules: manifests with bad lines, the skip policy while training, the cache, loaders."""
import json, logging, os

import numpy as np
import pytest
import torch

from vlsa.config import get_config
from vlsa.data import (ClipCache, DataError, ManifestError, VLSADataset, make_loader, read_manifest,
                       spectrogram_stats)
from vlsa.media import write_media

CFG = get_config('tiny')


def make_clips(root, n=20, bad=(), seconds=4.0):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        name = f'clip{i:02d}.mp4'
        if i in bad:
            (root / name).write_text('this is not a video\n')
        else:
            frames = np.zeros((int(16 * seconds), 72, 96, 3), np.uint8)
            frames[:, :, :, i % 3] = 30 + 10 * i
            frames[:, 10 + i:30 + i, 20:40] = 255
            write_media(root / name, frames, 16, 0.1 * rng.standard_normal(int(22_050 * seconds)).astype(np.float32), 22_050)
        lines.append({'id': f'c{i:02d}', 'video': name, 'captions': [f'clip {i}', f'number {i}'], 'split': 'train',
                      'meta': {'transcript': f'here is clip {i}'}})
    (root / 'manifest.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
    return root / 'manifest.jsonl'


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp('clips')
    return make_clips(root, bad=(7,))


@pytest.mark.parametrize('line, message', [
    ('{"id": "x", "video": "x.mp4", "captions": ["a"], "split": "test"', 'not valid JSON'),
    ('{"id": "x", "video": "x.mp4", "captions": ["a"]}', "missing field 'split'"),
    ('{"id": "x", "video": "x.mp4", "captions": ["a"], "split": "test", "vidoe": "y"}', "unknown field 'vidoe'"),
    ('{"id": "x", "video": "x.mp4", "captions": ["a", ""], "split": "test"}', "field 'captions' item 1 is empty"),
    ('{"id": "x", "video": 3, "captions": ["a"], "split": "test"}', "field 'video' must be str, got int"),
    ('{"id": "a", "video": "x.mp4", "captions": ["a"], "split": "test"}', "duplicate id 'a' (first on line 1)"),
    ('["a", "list"]', 'expected a JSON object, got list'),
    ('{"id": "x", "video": "x.mp4", "captions": [], "split": "test", "meta": {"transcript": 42}}',
     "field 'meta.transcript' must be str, got int"),
])
def test_a_bad_manifest_line_is_named(tmp_path, line, message):
    good = '{"id": "a", "video": "a.mp4", "captions": ["a bell"], "split": "test"}'
    path = tmp_path / 'm.jsonl'
    path.write_text(f'{good}\n\n{line}\n')
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    assert f'm.jsonl:3: {message}' in str(e.value)


def test_a_manifest_that_is_not_utf8_is_named_with_its_line_and_a_byte_order_mark_is_allowed(tmp_path):
    good = '{"id": "a", "video": "a.mp4", "captions": ["a bell"], "split": "test"}'
    path = tmp_path / 'm.jsonl'
    path.write_bytes(f'{good}\n'.encode() + '{"id": "b", "video": "b.mp4", "captions": ["caf\u00e9"], "split": "test"}\n'.encode('latin-1'))
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f'{path}:2: not UTF-8 text (byte 0xe9)')
    path.write_bytes(b'\xef\xbb\xbf' + f'{good}\n'.encode())
    assert [r.id for r in read_manifest(path)] == ['a']


def test_one_bad_file_in_twenty_trains_under_skip_and_is_reported(clips, caplog):
    from vlsa.model import VLSA
    from vlsa.objectives import Pretraining
    ds = VLSADataset(clips, CFG, train=True, text='transcript', on_error='skip')
    loader = make_loader(ds, batch_size=5, max_bad_fraction=0.1)
    model = Pretraining(VLSA(CFG))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    with caplog.at_level(logging.WARNING, logger='vlsa.data'):
        for batch in loader:
            out = model(batch, torch.Generator().manual_seed(0))
            opt.zero_grad(); out['loss'].backward(); opt.step()
            losses.append(out['loss'].item())
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert [b.id for b in loader.bad] == ['c07'] and loader.seen == 20
    assert 'clip07.mp4' in caplog.text and 'not a readable media file' in caplog.text
    assert loader.report().startswith('1 of 20 clips skipped')


def test_raise_policy_names_the_clip_and_file(clips):
    ds = VLSADataset(clips, CFG, on_error='raise')
    with pytest.raises(DataError) as e:
        ds[7]
    assert "clip 'c07' (manifest line 8)" in str(e.value) and 'clip07.mp4' in str(e.value)


def test_too_many_bad_items_stop_the_loader(tmp_path):
    manifest = make_clips(tmp_path, n=20, bad=(1, 2, 3, 4, 5), seconds=1.0)
    loader = make_loader(VLSADataset(manifest, CFG, on_error='skip'), batch_size=10, max_bad_fraction=0.1)
    with pytest.raises(DataError, match='5 of 20 clips are bad'):
        list(loader)


def test_items_are_reproducible_per_seed_epoch_and_index(clips):
    ds = VLSADataset(clips, CFG, train=True, seed=3)
    a, b = ds[0], ds[0]
    assert torch.equal(a['video'], b['video']) and a['texts'] == b['texts']
    ds.set_epoch(1)
    crops = {ds[0]['video'].sum().item() for ds.epoch in range(6)}
    assert len(crops) > 1                                       # other epochs crop elsewhere


def test_evaluation_items_carry_every_caption(clips):
    ds = VLSADataset(clips, CFG, train=False, on_error='skip')
    item = ds[0]
    assert item['texts'] == ['clip 0', 'number 0']
    assert item['video'].shape == (4, 3, 64, 64) and item['audio'].shape == (1, 64, 64)


def test_cache_matches_decoding_and_is_rebuilt_when_stale(clips, tmp_path):
    cache = ClipCache(clips, CFG, tmp_path / 'cache', on_error='skip', progress=False)
    assert list(cache.index['bad']) == ['c07'] and len(cache) == 20
    plain = VLSADataset(clips, CFG, on_error='skip')
    cached = VLSADataset(clips, CFG, on_error='skip', cache=cache)
    for i in (0, 13):
        a, b = plain[i], cached[i]
        assert (a['video'] - b['video']).abs().mean() < 0.02     # uint8 rounding of the resized frames
        torch.testing.assert_close(a['audio'], b['audio'], atol=0.02, rtol=0.002)   # float16
    assert isinstance(cached[7], type(plain[7]))                 # the bad clip is bad in both
    again = ClipCache(clips, CFG, tmp_path / 'cache', on_error='skip', progress=False)
    assert again.dir == cache.dir
    # a changed media file changes the key: the stale cache is not reused
    victim = clips.parent / 'clip03.mp4'
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    fresh = ClipCache(clips, CFG, tmp_path / 'cache', on_error='skip', progress=False)
    assert fresh.dir != cache.dir
    # and so do other feature settings
    from vlsa.config import override
    other = ClipCache(clips, override(CFG, ['model.video.num_frames=2']), tmp_path / 'cache', on_error='skip', progress=False)
    assert other.dir not in (cache.dir, fresh.dir) and other.frames.shape[1] == 2


def test_workers_give_the_same_batches(clips, tmp_path):
    cache = ClipCache(clips, CFG, tmp_path / 'cache', on_error='skip', num_workers=2, progress=False)
    ds = VLSADataset(clips, CFG, train=True, on_error='skip', cache=cache, seed=1)
    one = [b['video'] for b in make_loader(ds, batch_size=6, num_workers=0, seed=1)]
    two = [b['video'] for b in make_loader(ds, batch_size=6, num_workers=2, seed=1)]
    assert len(one) == len(two) and all(torch.equal(a, b) for a, b in zip(one, two))


def test_distributed_sampler_when_torch_distributed_is_initialized(clips, tmp_path):
    from torch.utils.data import DistributedSampler
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        loader = make_loader(VLSADataset(clips, CFG, on_error='skip'), batch_size=4)
        assert isinstance(loader.loader.sampler, DistributedSampler)
    finally:
        torch.distributed.destroy_process_group()


def test_spectrogram_stats(clips):
    ds = VLSADataset(clips, CFG, on_error='skip')
    mean, std = spectrogram_stats(ds, max_items=6)
    assert np.isfinite(mean) and std > 0
    ds.spec_stats = (mean, std)
    a = torch.stack([ds[i]['audio'] for i in (0, 1, 2)])
    assert abs(a.mean().item()) < 0.5 and 0.5 < a.std().item() < 2


def _children(pid):
    "Pids whose parent is `pid` (Linux /proc)."
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try: fields = open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()
            except OSError: continue
            if int(fields[1]) == pid: out.append(int(d))
    return out


def _alive(pid):
    try: return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_sigterm_during_the_cache_build_leaves_no_worker_and_no_temporary_folder(clips, tmp_path):
    import signal, subprocess, sys, time
    code = ('import sys; from vlsa.config import get_config; from vlsa.data import ClipCache\n'
            'ClipCache(sys.argv[1], get_config("tiny"), sys.argv[2], on_error="skip", num_workers=2, progress=False)')
    proc = subprocess.Popen([sys.executable, '-c', code, str(clips), str(tmp_path / 'cache')])
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:   # the pool's workers are up
        workers = [p for p in _children(proc.pid) if 'python' in open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')]
        time.sleep(0.05)
    assert proc.poll() is None and workers, 'the build ended before it could be interrupted'
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)], 'workers outlived the build'
    assert not list((tmp_path / 'cache').glob('.*')) and not list((tmp_path / 'cache').glob('*/index.json'))
