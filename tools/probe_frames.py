"""Does a pre-trained model match speech to text by the sentence frame (template, filler) or by the content words?

On SyncBench's `val` split: text-to-audio and text-to-video R@1/5/10 of each clip's own transcript, of the same words
put in another of the narrator's frames ('Here is a X.' -> 'Look at the X.'), of the transcript with only its filler
swapped, and of the captions. Writes RUN_DIR/probe_frames.json; configs/README.md quotes a run of it.

    .venv/bin/python tools/probe_frames.py results/runs/gam-s0
"""
import re, sys, json
import numpy as np, torch
from vlsa.experiments import load_run
from vlsa.train import stage_data, eval_loader
from vlsa.retrieval import embed_dataset, embedding_ranks, metrics_from_ranks, retrieval_table
from vlsa.features import tokenize
from vlsa import synth as S

torch.set_num_threads(2)
if len(sys.argv) != 2: sys.exit(__doc__)
run = sys.argv[1]
cfg, model = load_run(run)
model.eval()
cfg, records, cache = stage_data(cfg, 'pretrain')
val = [r for r in records if r.split == 'val']
emb, caps_of = embed_dataset(model, eval_loader(cfg, records, cache, 'val'), progress=False)

SOUNDV = '|'.join(S.SOUND_VERBS.values())
FRAMES = [   # one frame -> another that says the same words
    (r'^Here is a (.+)\.$', r'Look at the \1.'), (r'^Look at the (.+)\.$', r'Here is a \1.'),
    (r'^Hear that (.+)\?$', r'That is a \1.'), (r'^That is a (.+)\.$', r'It makes a \1.'), (r'^It makes a (.+)\.$', r'Hear that \1?'),
    (r'^The (.+) makes a (.+)\.$', r'Look at the \1. It makes a \2.'),
    (rf'^A (.+) ({SOUNDV})\.$', r'Here is a \1. It \2.'),
]
def sentences(t): return re.findall(r'[^.?]+[.?]', t)
def reframe(t, filler_only=False):
    out = []
    for s in sentences(t):
        s = s.strip()
        if s in S.FILLER: out.append(S.FILLER[(S.FILLER.index(s) + 1) % len(S.FILLER)]); continue
        if not filler_only:
            for a, b in FRAMES:
                if re.match(a, s): s = re.sub(a, b, s); break
        out.append(s)
    return ' '.join(out)

@torch.no_grad()
def embed(texts):
    out = []
    for i in range(0, len(texts), 256):
        ids, m = tokenize(texts[i:i + 256], cfg.model.text)
        out.append(model.encode_text(ids, m).float())
    return torch.cat(out)

def r_at(q, cand, gt=None):
    return metrics_from_ranks(embedding_ranks(q, cand, gt), ks=(1, 5, 10))

own = [r.transcript for r in val]
rows = {'own transcript': own, 'other frame, same words': [reframe(t) for t in own],
        'filler swapped only': [reframe(t, True) for t in own]}
changed = np.array([a != b for a, b in zip(own, rows['other frame, same words'])])
print(f'{len(val)} val clips; the other frame changes {changed.mean():.0%} of the transcripts')
out = {}
for name, texts in rows.items():
    t = embed(texts)
    out[name] = {'T->A': r_at(t, emb['audio']), 'T->V': r_at(t, emb['video']),
                 'T->A changed only': r_at(t[changed], emb['audio'], np.nonzero(changed)[0].tolist())}
captions = retrieval_table(emb, caps_of, ('T->A', 'T->V'), ks=(1, 5, 10))   # the evaluation's own caption ranking
out['captions'] = {d: captions.loc[d].to_dict() for d in ('T->A', 'T->V')}
for k, v in out.items():
    print(f'{k:28s}', '  '.join(f"{d} R@1/5/10 {m['R@1']:.1f}/{m['R@5']:.1f}/{m['R@10']:.1f}" for d, m in v.items()))
print('examples:')
for a, b in list(zip(own, rows['other frame, same words']))[:6]: print(' ', a, '->', b)
json.dump(out, open(f'{run}/probe_frames.json', 'w'), indent=1)
