"""Do caption words that the narrator never says hurt zero-shot retrieval?

Their token embeddings are never trained in pre-training, which sees only transcripts. On SyncBench's `val` split:
text-to-audio and text-to-video R@1/5/10 of the captions as written, and of the same captions with every word dropped
whose tokens never occur in a `pretrain` transcript. Writes RUN_DIR/probe_unheard_words.json; configs/README.md
quotes a run of it.

    .venv/bin/python tools/probe_unheard_words.py results/runs/gam-s0
"""
import sys, json, collections
import torch
from vlsa.experiments import load_run
from vlsa.train import stage_data, eval_loader
from vlsa.retrieval import embed_dataset, embedding_ranks, metrics_from_ranks
from vlsa.features import tokenize, get_tokenizer

if __name__ == '__main__':
    if len(sys.argv) != 2: sys.exit(__doc__)
    torch.set_num_threads(2)
    run = sys.argv[1]
    cfg, model = load_run(run)
    model.eval()
    cfg, records, cache = stage_data(cfg, 'pretrain')
    tok = get_tokenizer()
    heard = collections.Counter(t for r in records if r.split == 'pretrain' for t in tok.tokenize(r.transcript))
    val = [r for r in records if r.split == 'val']
    emb, _ = embed_dataset(model, eval_loader(cfg, records, cache, 'val'), progress=False)
    queries = [(i, c) for i, r in enumerate(val) for c in r.captions]   # every caption, with its clip's index
    clip_of = [i for i, _ in queries]
    def heard_only(c): return ' '.join(w for w in c.replace(';', ' ;').split() if all(heard[t] for t in tok.tokenize(w)))
    tokens = [t for _, c in queries for t in tok.tokenize(c)]
    print(f'{len(queries)} val captions; {sum(not heard[t] for t in tokens) / len(tokens):.1%} of their tokens never '
          'occur in a pretrain transcript')

    @torch.no_grad()
    def embed(texts):
        out = []
        for i in range(0, len(texts), 256):
            ids, m = tokenize(texts[i:i + 256], cfg.model.text)
            out.append(model.encode_text(ids, m).float())
        return torch.cat(out)

    out = {}
    for name, texts in (('captions', [c for _, c in queries]), ('unheard words dropped', [heard_only(c) for _, c in queries])):
        t = embed(texts)
        out[name] = {d: metrics_from_ranks(embedding_ranks(t, emb[m], clip_of), ks=(1, 5, 10))
                     for d, m in (('T->A', 'audio'), ('T->V', 'video'))}
        print(f'{name:24s}', '  '.join(f"{d} R@1/5/10 {v['R@1']:.1f}/{v['R@5']:.1f}/{v['R@10']:.1f}" for d, v in out[name].items()))
    print('example:', queries[3][1], '->', heard_only(queries[3][1]))
    json.dump(out, open(f'{run}/probe_unheard_words.json', 'w'), indent=1)
