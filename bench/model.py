"""Benchmark: VLSA training steps per second with MAE-style token dropping against the same model that feeds
every token (masked ones as a mask token, SimMIM style) to the encoder, on this machine's CPU cores.

The issue's case is the tiny preset at batch 32; the base preset (the paper's shapes, where video dominates) runs
at batch 2 for a few steps beside it, because at tiny's shapes the unmasked text is a large share of the tokens.
Each run is a fresh process (so its peak memory is its own): forward, backward and AdamW step on one random batch,
warm-up steps, then timed steps. Writes results/bench/model.json."""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_report
VARIANTS = {
    'mae': [],                                              # the default: visible tokens only, everywhere
    'mae_full_global': ['model.global_visible_only=false'],  # LPMM drops tokens, GAM embeds every token
    'dense': ['model.drop_masked=false'],                    # every token through the encoder (the baseline)
}


CASES = [('tiny', 32, 15, 3, 3, ['mae', 'mae_full_global', 'dense']), ('base', 2, 2, 1, 2, ['mae', 'dense'])]  # preset, batch, steps, warm-up, rounds


def encoder_tokens(cfg) -> int:
    "Tokens per clip through the encoder in one step: the joint LPMM pass plus the three single-modality passes."
    from vlsa.masking import num_visible
    m = cfg.model
    seen = lambda dropped: (m.video.num_frames * num_visible(m.video.patches_per_frame, m.video.mask_ratio)
                            + num_visible(m.audio.num_patches, m.audio.mask_ratio)) if dropped else (
                            m.video.num_patches + m.audio.num_patches)
    joint = seen(m.drop_masked) + m.text.max_len
    single = seen(m.drop_masked and m.global_visible_only) + m.text.max_len
    return joint + single


def one(preset: str, variant: str, batch: int, steps: int, warmup: int) -> dict:
    import torch
    from vlsa.config import get_config, override, seed_everything
    from vlsa.model import VLSA
    seed_everything(0, deterministic=False)
    cfg = override(get_config(preset), VARIANTS[variant])
    m = cfg.model
    g = torch.Generator().manual_seed(0)
    data = {'video': torch.randn(batch, m.video.num_frames, 3, m.video.frame_size, m.video.frame_size, generator=g),
            'audio': torch.randn(batch, 1, m.audio.freq_bins, m.audio.time_frames, generator=g),
            'text_ids': torch.randint(m.text.first_word_id, m.text.vocab_size, (batch, m.text.max_len), generator=g),
            'text_mask': torch.ones(batch, m.text.max_len, dtype=torch.long)}
    model = VLSA(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step():
        out = model(data)
        opt.zero_grad(set_to_none=True); out['loss'].backward(); opt.step()
    for _ in range(warmup): step()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    seconds = (time.perf_counter() - t0) / steps
    return {'seconds_per_step': seconds, 'steps_per_second': 1 / seconds, 'clips_per_second': batch / seconds,
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            'encoder_tokens_per_clip': encoder_tokens(cfg)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT / 'results' / 'bench' / 'model.json'))
    p.add_argument('--presets', nargs='+', default=[c[0] for c in CASES], help='which cases to run')
    p.add_argument('--one', nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        preset, variant, batch, steps, warmup = args.one
        print(json.dumps(one(preset, variant, int(batch), int(steps), int(warmup)))); return
    cases = []
    for preset, batch, steps, warmup, rounds, variants in CASES:
        if preset not in args.presets: continue
        results = {}
        for r in range(rounds):                      # interleaved, so that a busy spell hurts every variant alike
            for name in variants:
                out = subprocess.run([sys.executable, __file__, '--one', preset, name, str(batch), str(steps), str(warmup)],
                                     capture_output=True, text=True, check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                if name not in results or got['steps_per_second'] > results[name]['steps_per_second']: results[name] = got
        for name, r in results.items():
            print(f"{preset:4} batch {batch:2} {name:16} {r['steps_per_second']:6.3f} steps/s  {r['clips_per_second']:7.2f} clips/s  "
                  f"peak {r['peak_rss_mb']:.0f} MB  encoder tokens/clip {r['encoder_tokens_per_clip']}", flush=True)
        speedup = results['mae']['steps_per_second'] / results['dense']['steps_per_second']
        print(f'{preset}: MAE-style dropping is {speedup:.2f}x faster than the dense encoder (target: at least 2.5x)')
        cases.append({'preset': preset, 'batch': batch, 'timed_steps': steps, 'rounds': rounds, 'results': results,
                      'speedup_mae_over_dense': speedup,
                      'memory_ratio_mae_over_dense': results['mae']['peak_rss_mb'] / results['dense']['peak_rss_mb']})
    write_report(args.out, {
        'benchmark': 'VLSA training step (forward, backward, AdamW), MAE token dropping vs dense encoder',
        'how': 'each variant in its own process, variants interleaved over rounds, best round kept (the machine is shared)',
        'variants': VARIANTS, 'cases': cases, 'target': 'tiny, batch 32, 75 % masking: speedup at least 2.5x',
        'peak_rss_mb': 'whole-process peak resident memory, libraries included'})

if __name__ == '__main__':
    main()
