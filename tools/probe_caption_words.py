"""How much of what a caption says does the narration say? An upper reference for zero-shot text retrieval.

Zero-shot text-to-video goes through the audio tower, which learns only to match the speech it hears to the words
of the transcript. Here, with no model at all, each caption of a split looks for its own clip's transcript by
TF-IDF word overlap, against every transcript of the split: R@1/5/10, overall and by caption slot (slot 1 says only
what is seen, slot 2 only what is heard, the others both). A perfect listener that matched words would do this
well; configs/README.md quotes a run of it.

    .venv/bin/python tools/probe_caption_words.py data/syncbench/cpu/manifest.jsonl [val]
"""
import re, sys
import numpy as np
from vlsa.data import read_manifest
from vlsa.retrieval import metrics_from_ranks, similarity_ranks

if len(sys.argv) not in (2, 3): sys.exit(__doc__)
split = sys.argv[2] if len(sys.argv) == 3 else 'val'
clips = [r for r in read_manifest(sys.argv[1], split) if r.transcript]
if not clips: sys.exit(f'{sys.argv[1]}: no {split} clip has a transcript')
words = lambda t: re.findall(r'[a-z]+', t.lower())
transcripts = [words(r.transcript) for r in clips]
queries = [(words(c), i, slot) for i, r in enumerate(clips) for slot, c in enumerate(r.captions)]
vocab = {w: k for k, w in enumerate(sorted({w for t in transcripts for w in t} | {w for q, _, _ in queries for w in q}))}

def bags(texts):   # (N, V) word counts
    out = np.zeros((len(texts), len(vocab)))
    for n, t in enumerate(texts): np.add.at(out[n], [vocab[w] for w in t], 1)
    return out

T, C = bags(transcripts), bags([q for q, _, _ in queries])
idf = np.log(len(T) / (1 + (T > 0).sum(0)))                      # words in every transcript weigh nothing
unit = lambda m: m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-12)
S = unit(C * idf) @ unit(T * idf).T                              # (captions, transcripts) cosine
gt = [i for _, i, _ in queries]; slot = np.array([s for _, _, s in queries])
ranks = similarity_ranks(S, gt, ties='optimistic')              # (captions,) 1-based; a tie counts for the caption
show = lambda m: '/'.join(f'{v:.1f}' for v in list(metrics_from_ranks(ranks[m], ks=(1, 5, 10)).values())[:3])
print(f'{split}: {len(queries)} captions against {len(clips)} transcripts (chance R@5 {100 * 5 / len(clips):.1f} %)')
print(f'  every caption   R@1/5/10 {show(slot >= 0)}')
for s in range(slot.max() + 1): print(f'  caption slot {s + 1}  R@1/5/10 {show(slot == s)}')
