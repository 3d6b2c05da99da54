"""Benchmark: decoding + features (clips per second) at the tiny and base settings with 0 and 2 loader workers,
decord against PyAV on the same files, and reads per second from the clip cache. Writes results/bench/data.json.

The clips are generated here (SyncBench-like: 4 s, 112 px, 16 fps, H.264 + AAC at 22,050 Hz) so that the
benchmark needs nothing but the package."""
import argparse, json, sys, tempfile, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_report


def make_clips(root: Path, n: int) -> Path:
    from vlsa.media import write_media
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        frames = np.zeros((64, 112, 112, 3), np.uint8)
        for t in range(64):                                   # a square moving across a coloured background
            frames[t, :, :, i % 3] = 40 + 5 * (i % 30)
            x = (3 * t + 7 * i) % 92
            frames[t, 40:60, x:x + 20] = 255
        audio = (0.1 * rng.standard_normal(4 * 22_050)).astype(np.float32)
        write_media(root / f'c{i}.mp4', frames, 16, audio, 22_050)
        lines.append(json.dumps({'id': f'c{i}', 'video': f'c{i}.mp4', 'captions': [f'clip {i}'], 'split': 'test'}))
    (root / 'manifest.jsonl').write_text('\n'.join(lines) + '\n')
    return root / 'manifest.jsonl'


def loader_rate(manifest, preset, workers, cache=None):
    from vlsa.config import get_config
    from vlsa.data import VLSADataset, make_loader
    ds = VLSADataset(manifest, get_config(preset), train=True, cache=cache)
    loader = make_loader(ds, batch_size=8, num_workers=workers)
    for _ in loader: pass                                   # warm-up pass: worker start-up, caches of the OS
    t0 = time.perf_counter()
    n = sum(b['size'] for b in loader)
    return n / (time.perf_counter() - t0)


def decoder_seconds(manifest, decoders, audio_decoders):
    from vlsa.data import read_manifest
    from vlsa.media import read_clip
    recs = read_manifest(manifest)
    read_clip(recs[0].video, decoders=decoders, audio_decoders=audio_decoders)
    t0 = time.perf_counter()
    for r in recs: read_clip(r.video, 8, decoders=decoders, audio_decoders=audio_decoders)
    return (time.perf_counter() - t0) / len(recs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clips', type=int, default=48)
    p.add_argument('--out', default=str(ROOT / 'results' / 'bench' / 'data.json'))
    args = p.parse_args()
    from vlsa.config import get_config
    from vlsa.data import ClipCache
    with tempfile.TemporaryDirectory() as d:
        manifest = make_clips(Path(d), args.clips)
        rates = {}
        for preset in ('tiny', 'base'):
            for workers in (0, 2):
                rates[f'{preset}_workers{workers}'] = r = loader_rate(manifest, preset, workers)
                print(f'decode + features, {preset:4} settings, {workers} workers: {r:6.1f} clips/s', flush=True)
        dec = {'decord_video_s': decoder_seconds(manifest, ('decord',), ('pyav',)),
               'pyav_video_s': decoder_seconds(manifest, ('pyav',), ('pyav',)),
               'decord_audio_s': decoder_seconds(manifest, ('decord',), ('decord',))}
        dec['pyav_over_decord_video'] = dec['pyav_video_s'] / dec['decord_video_s']
        print(f"read_clip, seconds per clip: decord frames {dec['decord_video_s']:.4f}, PyAV frames {dec['pyav_video_s']:.4f} "
              f"(PyAV / decord = {dec['pyav_over_decord_video']:.2f}); with decord audio too {dec['decord_audio_s']:.4f}")
        cache_stats = {}
        for preset in ('tiny', 'base'):
            t0 = time.perf_counter()
            cache = ClipCache(manifest, get_config(preset), Path(d) / 'cache', num_workers=2, progress=False)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(3):
                for clip_id in cache.index['ids']: cache.get(clip_id)
            reads = 3 * len(cache) / (time.perf_counter() - t0)
            items = loader_rate(manifest, preset, 0, cache)
            cache_stats[preset] = {'build_seconds': build, 'raw_reads_per_s': reads, 'dataset_items_per_s_from_cache': items,
                                   'speedup_over_decoding_0_workers': items / rates[f'{preset}_workers0']}
            print(f'cache, {preset:4}: built in {build:.1f} s; {reads:8.0f} raw reads/s; {items:6.1f} dataset items/s '
                  f'({items / rates[f"{preset}_workers0"]:.1f}x decoding)', flush=True)
    write_report(args.out, {'benchmark': 'decode + features throughput, decoders, clip cache',
                            'clips': f'{args.clips} generated clips: 4 s, 112 px, 16 fps, H.264 + AAC 22,050 Hz; training items (random window and crop)',
                            'clips_per_second': rates, 'decoders': dec, 'cache': cache_stats})

if __name__ == '__main__':
    main()
