"""Benchmark: training throughput at the cpu profile's settings, this commit against a baseline commit (51ba7d1, the
code before the throughput work), measured side by side in one run on this machine's cores.

For each variant that pre-trains (Table 5: LPMM only, GAM only, both) and for fine-tuning, one training step
(forward, backward, gradient clipping, AdamW) on a fixed batch of random inputs of the cpu profile's shapes (tiny
preset, batch 64, 4 frames of 64 px, text as long as SyncBench's tokenized transcripts and captions), in the
precision each commit's `configs/cpu.yaml` asks for, and in fp32 for both. Every measurement is a fresh process
(its peak memory is its own) that imports the commit's package from a `git worktree`; measurements are interleaved
over rounds and the best round is kept (the machine is shared). Beside them: the machine's measured matrix-multiply
peak in fp32 and bf16, the model's FLOPs per clip (torch's FlopCounterMode) and the fraction of the peak a step
achieves (the CPU's MFU); and, on a small SyncBench, the time to generate the clips and to build the clip cache with
each commit's code. Writes results/bench/train.json."""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_report

BASELINE = '51ba7d1'
CASES = [('pretrain', 'lpmm'), ('pretrain', 'gam'), ('pretrain', 'both'), ('finetune', 'both')]
# what each change is measured without, on the new code, in fp32 (the closing table of the throughput issue)
ABLATIONS = {'new, AdamW loop': {'fused': False}}
BATCH = 64


# ---- one measurement, in its own process -------------------------------------------------------------------
def text_lengths(n: int = BATCH) -> dict:
    "Token counts of SyncBench's pre-training transcripts and of one training caption per clip (the real lengths)."
    from vlsa.config import get_config
    from vlsa.cost import syncbench_text_lengths
    return syncbench_text_lengths(n, get_config('tiny'))


def batch_of(cfg, lengths: list[int]):
    "vlsa.cost.random_batch, kept here: it also runs in the baseline commit, which has no vlsa.cost."
    import torch
    m, g = cfg.model, torch.Generator().manual_seed(0)
    lengths = (list(lengths) * BATCH)[:BATCH]
    L = max(lengths)
    mask = (torch.arange(L)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(m.text.first_word_id, m.text.vocab_size, (len(lengths), L), generator=g) * mask
    return {'video': torch.randn(len(lengths), m.video.num_frames, 3, m.video.frame_size, m.video.frame_size, generator=g),
            'audio': torch.randn(len(lengths), 1, m.audio.freq_bins, m.audio.time_frames, generator=g),
            'text_ids': ids, 'text_mask': mask, 'has_audio': torch.ones(len(lengths), dtype=torch.bool)}


def profile_precision(code_root: Path, stage: str) -> str:
    "The precision the commit's configs/cpu.yaml sets for the stage."
    import yaml
    return yaml.safe_load((code_root / 'configs' / 'cpu.yaml').read_text())[f'{stage}_settings']['precision']


def one(stage: str, variant: str, precision: str, steps: int, warmup: int, lengths: list[int], fused=True) -> dict:
    "Steps per second of one training step of the package on sys.path (the commit under test)."
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from vlsa import train as T
    from vlsa.config import get_config, override, seed_everything
    from vlsa.experiments import variant_config
    from vlsa.model import VLSA
    seed_everything(0, deterministic=False)
    cpu = torch.device('cpu')
    cfg = variant_config(override(get_config('tiny'), {'pretrain.batch_size': BATCH, 'finetune.batch_size': BATCH}), variant, 0)
    tc = cfg.pretrain if stage == 'pretrain' else cfg.finetune
    # each commit's own choices: the baseline knows no 'auto' on a CPU but fp32, nor a fused optimizer
    resolved = T.resolve_precision(precision, cpu) if hasattr(T, 'resolve_precision') else \
        ('bf16' if precision == 'bf16' else 'fp32')
    model = VLSA(cfg)
    try: from vlsa.objectives import OBJECTIVES          # since the objectives left the network
    except ImportError: OBJECTIVES = {'pretrain': lambda m: m, 'finetune': T.Finetuner}
    net = OBJECTIVES[stage](model)
    if hasattr(T, 'make_optimizer') and fused: opt = T.make_optimizer(net, tc, cpu)
    else: opt = torch.optim.AdamW(T.param_groups(net, tc.weight_decay), lr=tc.lr, betas=tc.betas)
    batch, gen = batch_of(cfg, lengths), torch.Generator().manual_seed(1)
    autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=resolved == 'bf16')

    def step():
        with autocast:
            terms = net(batch, gen)
            terms['loss'].backward()
        _ = {k: float(v.detach()) for k, v in terms.items()}           # the loop logs every term
        torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
        opt.step(); opt.zero_grad(set_to_none=True)

    for _ in range(warmup): step()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    seconds = (time.perf_counter() - t0) / steps
    counter = FlopCounterMode(display=False)
    with counter: step()
    native = T.native_bf16(cpu) if hasattr(T, 'native_bf16') else None
    return {'precision': resolved, 'native_bf16': native, 'seconds_per_step': seconds, 'steps_per_second': 1 / seconds,
            'clips_per_second': BATCH / seconds, 'flops_per_clip': counter.get_total_flops() / BATCH,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def matmul_peak(n: int = 2048, seconds: float = 3.0) -> dict:
    "Best FLOP/s of an n x n matrix product in fp32 and bf16 (a smaller product where bf16 is too slow to time at n)."
    import torch
    out = {}
    for name, dtype in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
        probe = torch.randn(n // 8, n // 8, dtype=dtype)
        t0 = time.perf_counter(); probe @ probe
        slow = (time.perf_counter() - t0) * 512 > 2                     # emulated: time the product 8x smaller on a side
        size = n // 8 if slow else n
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        best, t_end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter(); a @ b
            best = max(best, 2 * size ** 3 / (time.perf_counter() - t0))
        out[name] = {'flops_per_second': best, 'size': size}
    return out


def data_times(n_pretrain: int, n_test: int, workers: int) -> dict:
    "Seconds to generate a small SyncBench (desynchronized test copies included) and to build its clip cache."
    from vlsa.config import get_config
    from vlsa.data import ClipCache, read_manifest
    from vlsa.synth import generate
    root = Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        manifest = generate(root / 'syncbench', counts={'pretrain': n_pretrain, 'test': n_test}, workers=workers,
                            desync=True, progress=False)
        t1 = time.perf_counter()
        ClipCache(read_manifest(manifest), get_config('tiny'), root / 'cache', 'raise', workers, progress=False)
        t2 = time.perf_counter()
        return {'clips': n_pretrain + 2 * n_test, 'cached_clips': n_pretrain + n_test,
                'generate_seconds': t1 - t0, 'cache_seconds': t2 - t1}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def loop_rate(manifest: str, cache_dir: str, out: str, precision: str, workers, steps: int, every: int) -> dict:
    "Clips per second of the real training loop (`vlsa.train.run`: loader, step, logging) after its first log window."
    import yaml
    from vlsa.config import get_config, override
    from vlsa.train import run
    if workers is None:   # the commit's own profile decides
        workers = yaml.safe_load(Path('configs/cpu.yaml').read_text()).get('settings', {}).get('data.num_workers', 2)
    cfg = override(get_config('tiny'), {'data.manifest': manifest, 'data.cache_dir': cache_dir, 'data.num_workers': workers,
                                        'pretrain.batch_size': BATCH, 'pretrain.steps': 10 * steps, 'pretrain.lr': 1e-3,
                                        'pretrain.warmup_steps': 2, 'pretrain.log_every': every, 'pretrain.eval_every': 0,
                                        'pretrain.ckpt_every': 0, 'pretrain.precision': precision})
    run_dir = run(cfg, 'pretrain', name='loop', out=out, stop_after=steps, progress=False)
    rows = [json.loads(l) for l in (run_dir / 'log.jsonl').read_text().splitlines()][1:]
    return {'clips_per_second': sum(r['clips_per_s'] for r in rows) / len(rows), 'data_wait': sum(r['data_wait'] for r in rows) / len(rows),
            'num_workers': workers, 'steps': steps, 'windows': len(rows)}


# ---- the run: interleaved measurements of both commits -----------------------------------------------------
@contextmanager
def baseline_tree(commit: str):
    "A `git worktree` of `commit` in a temporary folder, removed afterwards."
    where = Path(tempfile.mkdtemp()) / commit
    subprocess.run(['git', 'worktree', 'add', '--detach', '-q', str(where), commit], cwd=ROOT, check=True)
    try: yield where
    finally: subprocess.run(['git', 'worktree', 'remove', '--force', str(where)], cwd=ROOT, check=False)


def measure(code_root: Path, *args) -> dict:
    "Run `one`-style work in a fresh process that imports the package of `code_root`."
    env = {**os.environ, 'PYTHONPATH': str(code_root)}
    out = subprocess.run([sys.executable, __file__, '--one', json.dumps(args)], capture_output=True, text=True, env=env,
                         cwd=code_root)
    if out.returncode: raise RuntimeError(f'measurement {args} with {code_root} failed:\n{out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT / 'results' / 'bench' / 'train.json'))
    p.add_argument('--baseline', default=BASELINE, help=f'commit to compare against (default: {BASELINE})')
    p.add_argument('--rounds', type=int, default=2, help='interleaved rounds of the fast measurements (best kept)')
    p.add_argument('--steps', type=int, default=4, help='timed steps per measurement (after 2 warm-up steps)')
    p.add_argument('--clips', type=int, nargs=2, default=(96, 32), metavar=('PRETRAIN', 'TEST'),
                   help='SyncBench size for the generation and cache timings (default: 96 pre-training, 32 test)')
    p.add_argument('--one', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        kind, *rest = json.loads(args.one)
        print(json.dumps({'one': lambda: one(*rest), 'peak': matmul_peak, 'lengths': text_lengths,
                          'data': lambda: data_times(*rest), 'loop': lambda: loop_rate(*rest)}[kind]()))
        return
    new_root = ROOT
    with baseline_tree(args.baseline) as base_root:
        codes = {'baseline': base_root, 'new': new_root}
        peak = measure(new_root, 'peak')
        lengths = measure(new_root, 'lengths')
        print(f"matrix-multiply peak: fp32 {peak['fp32']['flops_per_second'] / 1e9:.0f} GFLOP/s, "
              f"bf16 {peak['bf16']['flops_per_second'] / 1e9:.2f} GFLOP/s", flush=True)
        results = {}

        def record(key, got):
            if key not in results or got['steps_per_second'] > results[key]['steps_per_second']: results[key] = got

        for stage, variant in CASES:                 # the profile's precision: one round (bf16 may be emulated: slow)
            for code, root in codes.items():
                prec = profile_precision(root, stage)
                got = measure(root, 'one', stage, variant, prec, 1 if code == 'baseline' else args.steps, 1,
                              lengths[stage])
                record((stage, variant, code, 'profile'), {**got, 'asked': prec})
                print(f"{stage:8} {variant:5} {code:8} profile ({prec} -> {got['precision']}): "
                      f"{got['clips_per_second']:7.1f} clips/s", flush=True)
        for r in range(args.rounds):                  # fp32 on both sides, and the ablations: interleaved rounds
            for stage, variant in CASES:
                for code, root in codes.items():
                    got = measure(root, 'one', stage, variant, 'fp32', args.steps, 2, lengths[stage])
                    record((stage, variant, code, 'fp32'), got)
                for name, flags in ABLATIONS.items():
                    if variant != 'both': continue
                    got = measure(new_root, 'one', stage, variant, 'fp32', args.steps, 2, lengths[stage], flags['fused'])
                    record((stage, variant, name, 'fp32'), got)
            print(f'round {r + 1} of {args.rounds} done', flush=True)
        loop, tmp = {}, Path(tempfile.mkdtemp())   # the real loop on 640 generated clips, each commit with its profile
        try:
            from vlsa.synth import generate
            manifest = str(generate(tmp / 'syncbench', counts={'pretrain': 640}, workers=2, progress=False))
            runs = [('baseline', 'profile', base_root, profile_precision(base_root, 'pretrain'), None, 8, 4),
                    ('baseline', 'fp32', base_root, 'fp32', None, 16, 4), ('new', 'profile', new_root, 'auto', None, 16, 4),
                    ('new', 'loader processes 2', new_root, 'auto', 2, 16, 4)]
            for code, setting, root, prec, workers, steps, every in runs:
                got = measure(root, 'loop', manifest, str(tmp / 'cache'), str(tmp / f'runs-{code}-{len(loop)}'), prec, workers,
                              steps, every)
                loop[f'{code}, {setting}'] = {'precision': prec, **got}
                print(f"loop {code:8} {setting:18}: {got['clips_per_second']:6.1f} clips/s, {got['num_workers']} loader "
                      f"processes, waiting for data {got['data_wait']:.0%} of the time", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        data = {}
        for code, root in codes.items():
            data[code] = measure(root, 'data', *args.clips, 2)
            print(f"{code:8} SyncBench {data[code]['clips']} clips: generated in {data[code]['generate_seconds']:.1f} s, "
                  f"cache built in {data[code]['cache_seconds']:.1f} s", flush=True)

    rows = []
    emulated = not any(r.get('native_bf16') for r in results.values())   # the new code knows; the baseline does not ask
    for (stage, variant, code, setting), r in sorted(results.items()):
        achieved = r['flops_per_clip'] * r['clips_per_second']
        # emulated bf16 mixes bf16 and fp32 kernels at speeds that depend on the shape: no peak applies to it
        mfu = None if r['precision'] == 'bf16' and emulated else achieved / peak[r['precision']]['flops_per_second']
        rows.append({'stage': stage, 'variant': variant, 'code': code, 'setting': setting, **r, 'achieved_flops_per_second': achieved,
                     'mfu': mfu})
        print(f"{stage:8} {variant:5} {code:16} {setting:7} {r['precision']}: {r['clips_per_second']:6.1f} clips/s, "
              f"{r['flops_per_clip'] / 1e9:.3f} GFLOP/clip, MFU {'n/a (emulated bf16)' if mfu is None else f'{mfu:.2f}'}, "
              f"peak memory {r['peak_rss_mb']:.0f} MB")
    speedups = {}
    speedups['training loop, pretrain both'] = {
        'profile settings': loop['new, profile']['clips_per_second'] / loop['baseline, profile']['clips_per_second'],
        'new profile against baseline in fp32': loop['new, profile']['clips_per_second'] / loop['baseline, fp32']['clips_per_second']}
    print('training loop, pretrain both: new / baseline = {profile settings:.2f}x at the profile\'s settings, '
          '{new profile against baseline in fp32:.2f}x against the baseline in fp32'.format(**speedups['training loop, pretrain both']))
    for stage, variant in CASES:
        get = lambda code, prec: results[(stage, variant, code, prec)]['clips_per_second']
        speedups[f'{stage} {variant}'] = {'profile settings': get('new', 'profile') / get('baseline', 'profile'),
                                          'both in fp32': get('new', 'fp32') / get('baseline', 'fp32')}
        print(f"{stage:8} {variant:5}: new / baseline = {speedups[f'{stage} {variant}']['profile settings']:.2f}x at the "
              f"profile's settings, {speedups[f'{stage} {variant}']['both in fp32']:.2f}x with both in fp32")
    write_report(args.out, {
        'benchmark': "training step (forward, backward, clipping, AdamW) at the cpu profile's settings, new code against "
                     f'{args.baseline}, and the data stages (generation, clip cache) of both',
        'how': 'every measurement its own process importing its commit from a git worktree; fp32 measurements '
               'interleaved over rounds, best kept; the profile precision measured once (emulated bf16 is slow)',
        'baseline': args.baseline, 'batch': BATCH, 'text_tokens': {k: sum(v) / len(v) for k, v in lengths.items()},
        'matmul_peak': peak, 'steps': rows, 'speedup_clips_per_second': speedups,
        'ablations': 'new code in fp32 with one change undone: ' + ', '.join(ABLATIONS),
        'loop': loop, 'loop_how': 'vlsa.train.run on 640 generated clips through the clip cache, pre-training LPMM + GAM, batch 64; '
                                  'clips/s of every log window after the first (4 steps each); an epoch is 10 steps',
        'data': data, 'target': "pre-training and fine-tuning clips/s at least 2x the baseline's at the cpu profile's settings",
        'flops': 'matrix products counted by torch.utils.flop_counter (attention products on a CPU are not counted)',
        'peak_rss_mb': 'whole-process peak resident memory, libraries included'})


if __name__ == '__main__':
    main()
