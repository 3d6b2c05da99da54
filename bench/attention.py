"""Benchmark: a training step with attention written out (`vlsa.model.written_attention`, what a CPU runs in bf16)
against torch's fused `F.scaled_dot_product_attention` (what it runs in fp32 and on a GPU, and ran everywhere before),
side by side in one process.

For the full model's pre-training (LPMM + GAM) and its fine-tuning at `configs/cpu.yaml`'s settings (batch 64, 4 and
8 frames, text as long as SyncBench's), one step (forward, backward, clipping, AdamW) on a fixed batch of random
inputs, in the profile's precision as this CPU resolves it and in fp32. The two forms alternate over rounds and each
keeps its median; beside the times, how far the two forms' losses are apart on the first step from the same weights.
Writes results/bench/attention.json."""
import argparse, copy, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from report import ROOT, write_report
from train import batch_of, text_lengths


def profile_config(stage: str):
    "The cpu profile's configuration of the full model for `stage`."
    from vlsa.report import load_profile
    return load_profile(ROOT / 'configs' / 'cpu.yaml').config('both', 0, stage)


def stepper(stage: str, precision: str, lengths):
    "Two functions on one model: `step()` trains one step; `first_loss(form)` is the loss from the starting weights."
    from vlsa import train as T
    from vlsa.config import seed_everything
    from vlsa.model import VLSA
    from vlsa.objectives import OBJECTIVES
    cfg = profile_config(stage)
    tc = getattr(cfg, stage)
    seed_everything(0, deterministic=False)
    net = OBJECTIVES[stage](VLSA(cfg))
    start = copy.deepcopy(net.state_dict())
    opt = T.make_optimizer(net, tc, torch.device('cpu'))
    batch = batch_of(cfg, lengths)
    autocast = lambda: torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16')

    def step():
        with autocast():
            terms = net(batch, torch.Generator().manual_seed(1))
            terms['loss'].backward()
        float(terms['loss'].detach())                                   # the loop logs the loss: it waits for it
        torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
        opt.step(); opt.zero_grad(set_to_none=True)

    def first_loss(form):
        "The loss of one step from the starting weights, in `form` (nothing is updated)."
        use(form); net.load_state_dict(start)
        with torch.no_grad(), autocast():
            return float(net(batch, torch.Generator().manual_seed(1))['loss'])
    return step, first_loss


def use(form: str):
    "Make every Attention take `form` ('written out', or else the fused kernel), whatever the precision."
    import vlsa.model as M
    M.writes_attention_out = lambda q: form == 'written out'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT / 'results' / 'bench' / 'attention.json'))
    p.add_argument('--rounds', type=int, default=5, help='alternating rounds per form (median kept)')
    p.add_argument('--steps', type=int, default=3, help='timed steps per round, after one untimed step')
    args = p.parse_args()
    import vlsa.model as M
    from vlsa.train import resolve_precision
    rule, forms = M.writes_attention_out, ('written out', 'fused (torch SDPA)')
    lengths = text_lengths()
    profile_precision = resolve_precision('auto', torch.device('cpu'))
    rows = []
    for stage in ('pretrain', 'finetune'):
        for precision in dict.fromkeys((profile_precision, 'fp32')):
            step, first_loss = stepper(stage, precision, lengths[stage])
            losses = {form: first_loss(form) for form in forms}
            times = {form: [] for form in forms}
            for _ in range(args.rounds):
                for form in forms:
                    use(form); step()
                    t0 = time.perf_counter()
                    for _ in range(args.steps): step()
                    times[form].append((time.perf_counter() - t0) / args.steps)
            M.writes_attention_out = rule
            med = {name: statistics.median(ts) for name, ts in times.items()}
            row = {'stage': stage, 'variant': 'both', 'precision': precision, 'batch': 64,
                   'seconds_per_step': med, 'all_rounds': times,
                   'speedup_written_over_fused': med['fused (torch SDPA)'] / med['written out'],
                   'first_step_loss': losses,
                   'first_step_loss_difference': abs(losses['written out'] - losses['fused (torch SDPA)'])}
            rows.append(row)
            print(f"{stage:8} {precision:4}: written out {med['written out']:.3f} s/step, fused {med['fused (torch SDPA)']:.3f}"
                  f" -> {row['speedup_written_over_fused']:.2f}x; first-step losses {losses['written out']:.4f} and "
                  f"{losses['fused (torch SDPA)']:.4f}", flush=True)
    write_report(args.out, {'benchmark': 'one training step with attention written out against torch\'s fused SDPA kernel',
                            'how': 'one process; the two forms alternate over rounds, the median of each kept; random '
                                   'inputs of the cpu profile\'s shapes; the first step\'s loss from the same weights',
                            'profile_precision_here': profile_precision, 'rows': rows})


if __name__ == '__main__':
    main()
