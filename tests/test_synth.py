"""SyncBench: real files, synchronized events, narration, captions, test pairs, determinism."""
import json, re, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from vlsa.media import read_clip
from vlsa.speech import SPEECH_RATE, narrate, words_of
from vlsa.synth import COLORS, FPS, MOTIONS, SECONDS, VISUAL, AUDIBLE, generate, plan

COUNTS = {'pretrain': 3, 'train': 3, 'val': 2, 'test': 16}


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp('syncbench')
    manifest = generate(root / 'a', counts=COUNTS, seed=7, workers=1, desync=True, progress=False)
    records = [json.loads(l) for l in manifest.read_text().splitlines()]
    return root, manifest, records


def test_clips_decode_to_the_stated_frames_and_duration(bench):
    root, manifest, records = bench
    assert [sum(r['split'] == s for r in records) for s in COUNTS] == list(COUNTS.values())
    for r in records[:4]:
        clip = read_clip(manifest.parent / r['video'], num_frames=int(FPS * SECONDS), sample_rate=r['meta']['audio_rate'])
        assert clip.frames.shape == (64, 112, 112, 3)
        np.testing.assert_allclose(clip.frame_times, np.arange(64) / FPS, atol=1e-3)     # every frame, 16 fps
        assert abs(clip.duration - SECONDS) < 1e-3 and abs(len(clip.audio) / clip.sample_rate - SECONDS) < 0.01
        assert r['meta']['audio_rate'] in (22_050, 44_100)


def onsets(audio, sr, hop=0.005):
    "Times where the short-time energy jumps: the level of the next 10 ms against the 25 ms before."
    n = int(hop * sr)
    e = np.array([np.sum(audio[i:i + n] ** 2) for i in range(0, len(audio) - n, n)]) + 1e-9
    out = []
    for k in range(6, len(e) - 2):
        if e[k:k + 2].mean() > 4 * e[k - 6:k - 1].mean() and e[k:k + 2].mean() > 1e-4 * n:
            if not out or k * hop - out[-1] > 0.05: out.append(k * hop)
    return np.array(out)


def test_sound_onsets_match_the_event_times_within_25_ms(bench):
    root, manifest, records = bench
    misses, total = [], 0
    for r in records:
        sr = r['meta']['audio_rate']
        clip = read_clip(manifest.parent / r['video'], num_frames=2, sample_rate=sr)
        found = onsets(clip.audio, sr)
        for o in r['meta']['objects']:
            for t in o['events']:
                total += 1
                if not len(found) or np.abs(found - t).min() > 0.025: misses.append((r['id'], o['sound'], t))
    assert len(misses) <= 0.05 * total, f'{len(misses)} of {total} events have no onset within 25 ms: {misses[:5]}'


def object_mask(frame, color, tol=60):
    return (np.abs(frame.astype(int) - np.array(COLORS[color])).max(-1) < tol)


def test_visual_events_happen_in_the_frames_at_those_times(bench):
    "Impacts: the object is at its lowest (floor) or outermost (wall) position of the clip; pops: it appears then."
    root, manifest, records = bench
    checked = 0
    for r in records:
        clip = read_clip(manifest.parent / r['video'], num_frames=64, sample_rate=11_025)
        for o in r['meta']['objects']:
            masks = [object_mask(f, o['color']) for f in clip.frames]
            seen = [np.nonzero(m) for m in masks]
            bottom = max((ys.max() for ys, xs in seen if len(ys) > 20), default=0)
            left = min((xs.min() for ys, xs in seen if len(ys) > 20), default=0)
            right = max((xs.max() for ys, xs in seen if len(ys) > 20), default=0)
            for t in o['events']:
                f = int(round(t * FPS))
                ys, xs = seen[f]
                assert len(ys) > 20, f"{r['id']}: the {o['color']} {o['shape']} is not visible at its event {t} s"
                if o['motion'] in ('bounce_floor', 'fall_stop'):
                    assert ys.max() >= bottom - 1 and bottom >= 112 - 12, f"{r['id']}: not on the floor at {t} s"
                    if f >= 2: assert seen[f - 2][0].max() < ys.max(), f"{r['id']}: already down before {t} s"
                elif o['motion'] in ('bounce_walls', 'slide_stop'):
                    assert xs.min() <= left + 1 or xs.max() >= right - 1, f"{r['id']}: not at a wall at {t} s"
                    assert left <= 10 or right >= 112 - 10
                else:   # pops in: visible now, not one frame before
                    assert masks[f - 1].sum() < 10, f"{r['id']}: visible before {t} s"
                checked += 1
    assert checked >= 20


def test_captions_counts_agree_with_the_events(bench):
    words = {'once': 1, 'twice': 2, 'two times': 2, 'three times': 3, 'one': 1, 'two': 2, 'three': 3}
    pattern = re.compile(r'\b(' + '|'.join(sorted(words, key=len, reverse=True)) + r')\b')
    root, manifest, records = bench
    for r in records:
        counts = {len(o['events']) for o in r['meta']['objects']}
        assert len(r['captions']) >= 5 and len(set(r['captions'])) == len(r['captions'])
        for c in r['captions']:
            said = {words[w] for w in pattern.findall(c)}
            if len(r['meta']['objects']) == 1: assert said <= counts, (c, counts)
            else: assert said <= counts, (c, counts)


def test_captions_name_sounds_only_in_some_and_sights_only_in_others(bench):
    from vlsa.synth import SOUND_WORDS, SHAPE_WORDS
    sound_words = {w for ws in SOUND_WORDS.values() for w in ws}
    shape_words = {w for ws in SHAPE_WORDS.values() for w in ws}
    root, manifest, records = bench
    for r in records:
        kinds = set()
        for c in r['captions']:
            heard, seen = any(w in c for w in sound_words), any(re.search(rf'\b{w}\b', c) for w in shape_words)
            kinds.add('both' if heard and seen else 'heard' if heard else 'seen')
        assert kinds == {'both', 'heard', 'seen'}, r['captions']


def speech_segments(audio, sr, gap=0.075):
    "Runs of speech separated by at least `gap` seconds of silence."
    n = int(0.005 * sr)
    active = np.array([np.abs(audio[i:i + n]).max() > 0.01 for i in range(0, len(audio) - n, n)])
    segments, quiet, inside = 0, 0, False
    for a in active:
        if a:
            if not inside: segments += 1
            inside, quiet = True, 0
        else:
            quiet += 1
            if quiet * 0.005 >= gap: inside = False
    return segments


def test_transcript_is_what_the_narration_says(bench):
    root, manifest, records = bench
    from vlsa.synth import with_narration
    specs = {s.id: with_narration(s) for s in plan(COUNTS, seed=7)}
    for r in records[:10]:
        s = specs[r['id']]
        spoken = narrate(s.sentences, np.random.default_rng(s.seed + 3), s.voice, s.speech_rate, s.speech_pitch)
        assert r['meta']['transcript'] == spoken.transcript
        assert speech_segments(spoken.audio, SPEECH_RATE) == len(words_of(spoken.transcript)) == len(spoken.words)
        assert len(r['meta']['narration']['words']) == len(words_of(r['meta']['transcript']))
        # and that speech is in the clip's audio, where the manifest says
        clip = read_clip(manifest.parent / r['video'], num_frames=2, sample_rate=r['meta']['audio_rate'])
        a, b = r['meta']['narration']['start'], r['meta']['narration']['end']
        assert 0 <= a < b <= SECONDS + 1e-6


def test_val_and_test_splits_come_in_one_attribute_apart_pairs(bench):
    root, manifest, records = bench
    for split in ('val', 'test'):   # val is drawn like test, so that a setting chosen on it carries over
        clips = {r['id']: r for r in records if r['split'] == split}
        kinds, paired = [], 0
        for r in clips.values():
            other = clips.get(r['meta'].get('sibling'))
            if other is None: continue
            diffs = [k for a, b in zip(r['meta']['objects'], other['meta']['objects']) for k in VISUAL + AUDIBLE if a[k] != b[k]]
            assert diffs == [r['meta']['differs']], (r['id'], diffs)
            assert [o['events'] for o in r['meta']['objects']] == [o['events'] for o in other['meta']['objects']]
            paired += 1; kinds.append(diffs[0])
        assert paired == len(clips) == COUNTS[split], split
        if split == 'test': assert any(k in AUDIBLE for k in kinds) and any(k in VISUAL for k in kinds)
    assert not any(r['meta'].get('sibling') for r in records if r['split'] in ('pretrain', 'train'))


def test_same_seed_same_manifest_and_media_in_parallel_too(bench, tmp_path):
    root, manifest, records = bench
    again = generate(tmp_path / 'b', counts=COUNTS, seed=7, workers=2, desync=True, progress=False)
    assert again.read_bytes() == manifest.read_bytes()
    files = sorted(p.relative_to(manifest.parent) for p in manifest.parent.rglob('*.mp4'))
    assert len(files) == len(records) + COUNTS['test']                      # every clip and every desynchronized copy
    differ = [str(f) for f in files if (manifest.parent / f).read_bytes() != (again.parent / f).read_bytes()]
    assert not differ, f'same seed, different files: {differ}'              # byte for byte, not just decoded alike
    other = generate(tmp_path / 'c', counts={'test': 2}, seed=8, workers=1, progress=False)
    assert other.read_text() != manifest.read_text()


def test_desynchronized_copies_shift_the_audio(bench):
    root, manifest, records = bench
    shifted = [json.loads(l) for l in (manifest.parent / 'desync.jsonl').read_text().splitlines()]
    assert len(shifted) == COUNTS['test']
    for d in shifted[:3]:
        orig = next(r for r in records if r['id'] == d['id'])
        shift = d['meta']['audio_shift']
        assert 0.5 <= shift <= 1.5
        a = read_clip(manifest.parent / orig['video'], num_frames=2).audio
        b = read_clip(manifest.parent / d['video'], num_frames=2).audio
        lags = np.arange(-2 * 11_025, 2 * 11_025, 8)
        best = lags[np.argmax([np.dot(np.roll(a, l), b) for l in lags])] / 11_025
        assert abs(best - shift) < 0.03


def test_cli_help():
    from pathlib import Path
    out = subprocess.run([str(Path(sys.executable).parent / 'vlsa'), 'synth', '--help'], capture_output=True, text=True)
    assert out.returncode == 0 and '--profile' in out.stdout and '--desync' in out.stdout


def test_manifest_records_the_version_the_rule_and_the_size(bench):
    from vlsa.synth import MATERIALS, SIZES, VERSION, rule
    root, manifest, records = bench
    assert VERSION == 2 and json.loads((manifest.parent / 'syncbench.json').read_text())['version'] == VERSION
    for r in records:
        assert r['meta']['version'] == VERSION and r['meta']['linked'] is True
        for o in r['meta']['objects']:
            assert o['size'] in SIZES and o['material'] == MATERIALS[o['color']]
            assert o['follows_rule'] == ((o['sound'], o['pitch']) == rule(o['color'], o['size']))


def test_sound_follows_sight_except_for_one_object_in_five():
    from vlsa.synth import EXCEPTIONS, clip_record, reveals
    specs = plan({'pretrain': 4000}, seed=3)
    first = np.mean([s.objects[0].follows_rule for s in specs])   # a second object is redrawn if it sounds like the first
    assert abs(first - (1 - EXCEPTIONS)) < 0.02, first
    assert all(s.objects[0].sound != s.objects[1].sound for s in specs if len(s.objects) == 2)
    control = plan({'pretrain': 4000}, seed=3, linked=False)
    assert abs(np.mean([s.objects[0].follows_rule for s in control]) - 1 / 8) < 0.02   # chance: 4 sounds x 2 pitches
    seen = lambda specs: reveals([{**clip_record(s, '', {}, []), 'meta': {**clip_record(s, '', {}, [])['meta'], 'transcript': ''}}
                                  for s in specs])
    linked, unlinked = seen(specs), seen(control)
    assert linked['sound']['video'] > 0.4 and linked['pitch']['video'] > 0.3   # the picture tells much of the sound
    assert unlinked['sound']['video'] < 0.01 and unlinked['pitch']['video'] < 0.01   # and in the control, nothing


def test_impacts_ring_out_and_appearances_swell_and_rise():
    from vlsa.synth import SOUNDS, note
    sr, rng = 22_050, np.random.default_rng(0)
    def pitch_track(y):   # the strongest frequency in the first and the last 80 ms of the held part
        seg = lambda a, b: np.abs(np.fft.rfft(y[int(a * sr):int(b * sr)] * np.hanning(int((b - a) * sr))))
        f = np.fft.rfftfreq(int(0.08 * sr), 1 / sr)
        return f[seg(0.02, 0.1).argmax()], f[seg(0.2, 0.28).argmax()]
    for s in SOUNDS:
        hit, appear = note(s, 'low', sr, rng), note(s, 'low', sr, rng, appear=True)
        rms = lambda y, a, b: np.sqrt(np.mean(y[int(a * sr):int(b * sr)] ** 2))
        assert rms(hit, 0.2, 0.28) < 0.5 * rms(hit, 0.0, 0.08), s            # a strike decays
        assert rms(appear, 0.2, 0.28) > 0.5 * rms(appear, 0.0, 0.08), s      # an appearance holds
        assert np.abs(hit[:int(0.002 * sr)]).max() > 2 * np.abs(appear[:int(0.002 * sr)]).max(), s   # and swells in
    lo, hi = pitch_track(note('knock', 'low', sr, rng, appear=True))
    assert hi > 1.3 * lo, (lo, hi)                                              # rising by about a fifth


def test_narration_names_objects_actions_and_sounds_with_filler_and_slips():
    from vlsa.synth import FILLER, named, with_narration
    specs = [with_narration(s) for s in plan({'val': 300}, seed=1)]
    said = [named(' '.join(s.sentences)) for s in specs]
    share = lambda key: np.mean([bool(n[key]) for n in said])
    assert share('shape') > 0.3 and share('sound') > 0.3 and share('color') > 0.2 and share('motion') > 0.05
    assert any(set(s.sentences) <= set(FILLER) for s in specs)                  # sometimes only filler
    one = [(s.objects[0], n) for s, n in zip(specs, said) if len(s.objects) == 1 and n['color']]
    wrong = np.mean([n['color'] != o.color for o, n in one])
    assert 0 < wrong < 0.15, wrong                                              # a slip now and then


def test_the_data_card_table_is_what_the_generator_gives():
    "The card's table of what each modality reveals is computed, and current (tools/render_data_card.py rewrites it)."
    from pathlib import Path
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'render_data_card.py'
    out = subprocess.run([sys.executable, str(tool), '--check'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize('args, says', [(['--size', '7'], '--size must be an even number'),
                                        (['--size', '0'], '--size must be an even number'),
                                        (['--test', '-3'], '--test must be 0 or more')])
def test_cli_refuses_bad_sizes_and_counts_with_one_line(tmp_path, args, says):
    from pathlib import Path
    out = subprocess.run([str(Path(sys.executable).parent / 'vlsa'), 'synth', '--out', str(tmp_path / 'x'), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and says in out.stderr and 'Traceback' not in out.stderr, out.stderr
    assert not (tmp_path / 'x').exists()                                    # refused before anything was written


def test_cli_refuses_to_write_over_a_data_set_unless_asked(tmp_path):
    from pathlib import Path
    cmd = [str(Path(sys.executable).parent / 'vlsa'), 'synth', '--out', str(tmp_path), '--workers', '1',
           *[a for s in ('pretrain', 'train', 'val') for a in (f'--{s}', '0')]]
    assert subprocess.run(cmd + ['--test', '4'], capture_output=True, timeout=300).returncode == 0
    again = subprocess.run(cmd + ['--test', '2'], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and '--overwrite' in again.stderr and 'Traceback' not in again.stderr
    assert len(list((tmp_path / 'clips' / 'test').glob('*.mp4'))) == 4     # untouched
    assert subprocess.run(cmd + ['--test', '2', '--overwrite'], capture_output=True, timeout=300).returncode == 0
    assert sorted(p.name for p in (tmp_path / 'clips' / 'test').glob('*.mp4')) == ['test-00000.mp4', 'test-00001.mp4']


def test_cli_varied_narrator_records_itself_and_keeps_the_scenes(bench, tmp_path):
    from pathlib import Path
    root, manifest, records = bench
    cmd = [str(Path(sys.executable).parent / 'vlsa'), 'synth', '--out', str(tmp_path), '--workers', '1', '--seed', '7',
           '--narrator', 'varied', *[a for s, n in COUNTS.items() for a in (f'--{s}', str(n))]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and 'varied narrator' in out.stdout, out.stderr
    assert json.loads((tmp_path / 'syncbench.json').read_text())['narrator'] == 'varied'
    varied = [json.loads(l) for l in (tmp_path / 'manifest.jsonl').read_text().splitlines()]
    assert all(r['meta']['narrator'] == 'varied' for r in varied) and not any('narrator' in r['meta'] for r in records)
    assert [r['meta']['objects'] for r in varied] == [r['meta']['objects'] for r in records]   # the same scenes
    assert [r['captions'] for r in varied] == [r['captions'] for r in records]                 # and captions
    bad = subprocess.run(cmd[:-2 * len(COUNTS)] + ['--narrator', 'chatty'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and 'invalid choice' in bad.stderr


def test_caption_words_probe_ranks_by_word_overlap(bench, tmp_path):
    "tools/probe_caption_words.py: a transcript that is a clip's own caption is found first; the real ones are scored."
    root, manifest, records = bench
    tool = [sys.executable, str(Path(__file__).parents[1] / 'tools' / 'probe_caption_words.py')]
    out = subprocess.run([*tool, str(manifest), 'test'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{6 * COUNTS['test']} captions against {COUNTS['test']} transcripts" in out.stdout
    echoed = tmp_path / 'manifest.jsonl'   # every transcript says exactly the clip's visual-only caption
    lines = [{**r, 'video': str(manifest.parent / r['video']), 'meta': {**r['meta'], 'transcript': r['captions'][0]}} for r in records]
    echoed.write_text(''.join(json.dumps(r) + '\n' for r in lines))
    out = subprocess.run([*tool, str(echoed), 'test'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r'caption slot 1  R@1/5/10 100\.0/100\.0/100\.0', out.stdout), out.stdout
