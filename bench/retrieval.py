"""Benchmark: vlsa.retrieval.rank_metrics (counting, chunked) against the full-matrix argsort ranking peers use.

Each measurement runs in a fresh process, so that its peak memory (ru_maxrss) is its own: the similarity matrix is
made first, then the extra peak during ranking is what the method costs. Writes results/bench/retrieval.json.
Run with `make bench` or `python bench/retrieval.py [--sizes 1000 10000 30000]`."""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_report


def rss_kb() -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'): return int(line.split()[1])
    raise RuntimeError('no VmRSS in /proc/self/status')


def argsort_ranks(sim):
    "The peers' way: sort every row of the full matrix, then find where the correct column landed."
    import numpy as np
    order = np.argsort(-sim, axis=1)                         # (Q, C) int64: the whole ranking
    return np.where(order == np.arange(len(sim))[:, None])[1] + 1


def one(method: str, n: int, seed: int = 0) -> dict:
    import numpy as np, torch
    torch.manual_seed(seed)
    sim = torch.randn(n, n)                                   # (Q, C) float32, made in place: no temporaries
    sim.diagonal().add_(2.0)                                  # a model that is often right
    before = rss_kb()
    t0 = time.perf_counter()
    if method == 'counting':
        from vlsa.retrieval import rank_metrics
        m = rank_metrics(sim, ks=(1, 5, 10), ties='optimistic')
        r1 = m['R@1']
    else:
        ranks = argsort_ranks(sim.numpy())
        r1 = 100.0 * float(np.mean(ranks <= 1))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {'seconds': seconds, 'extra_peak_mb': max(0, peak - before) / 1024, 'R@1': r1}


def measure(method, n, repeats):
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, '--one', method, str(n)], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r['seconds'])
    return {'seconds': best['seconds'], 'extra_peak_mb': max(r['extra_peak_mb'] for r in runs), 'R@1': best['R@1'],
            'repeats': repeats}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000, 30000], help='queries = candidates')
    p.add_argument('--out', default=str(ROOT / 'results' / 'bench' / 'retrieval.json'))
    p.add_argument('--one', nargs=2, metavar=('METHOD', 'N'), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1])))); return
    results = []
    for n in args.sizes:
        repeats = 3 if n <= 10000 else 1
        ours = measure('counting', n, repeats)
        base = measure('argsort', n, repeats)
        assert abs(ours['R@1'] - base['R@1']) < 1e-9, f'the two rankings disagree at {n}: {ours} vs {base}'
        row = {'queries': n, 'candidates': n, 'counting': ours, 'argsort': base,
               'speedup': base['seconds'] / ours['seconds'],
               'memory_ratio': ours['extra_peak_mb'] / max(base['extra_peak_mb'], 1e-9)}
        results.append(row)
        print(f"{n:>6} x {n}: counting {ours['seconds']:.3f} s, {ours['extra_peak_mb']:.0f} MB | "
              f"argsort {base['seconds']:.3f} s, {base['extra_peak_mb']:.0f} MB | "
              f"{row['speedup']:.1f}x faster, {row['memory_ratio']:.3f} of the memory", flush=True)
    write_report(args.out, {
        'benchmark': 'rank_metrics (count per query, chunked) vs full-matrix numpy argsort (peers)',
        'what': 'seconds: best of repeats; extra_peak_mb: peak RSS above the RSS once the float32 similarity matrix exists',
        'targets_at_10k': {'speedup_at_least': 10, 'memory_ratio_at_most': 0.1}, 'results': results})

if __name__ == '__main__':
    main()
