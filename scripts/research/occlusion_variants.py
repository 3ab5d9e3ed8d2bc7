"""How stable are occlusion's ranks under small changes of the perturbation?

The distillation goal (issue 10) asks a student for Spearman >= 0.8 with the
[MASK]-occlusion teacher. This measures how well occlusion with other
replacements agrees with that teacher on the same sentences, in transformers
(an independent implementation): re-running [MASK] occlusion (must give 1.0:
it checks the cached Rust teacher), deleting the piece, [UNK], [PAD].

Usage (outside the product; the pyref venv of the developers' guide):
  ~/.cache/pyref/bin/python scripts/research/occlusion_variants.py CACHE.teacher.jsonl \
      [--model assets/models/minilm-sst2] [--sst ../shared/data/sst/test.txt] [--limit 300]
CACHE is an `expnet distill --teacher occlusion` cache that holds the first
LIMIT SST-2 test sentences (scripts/distill.sh's --test texts).
"""
import argparse, json, re
import numpy as np, torch
from scipy.stats import spearmanr
from transformers import AutoTokenizer, AutoModelForSequenceClassification


def sst_sentences(path, n):
    """Binary SST-2 sentences as expnet's loader reads them (neutral roots dropped)."""
    out = []
    for line in open(path):
        if int(line[1]) == 2:
            continue
        out.append(' '.join(re.findall(r'\(\d ([^()]+)\)', line)).replace('\\/', '/').replace('\\*', '*'))
        if len(out) >= n:
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cache')
    ap.add_argument('--model', default='assets/models/minilm-sst2')
    ap.add_argument('--sst', default='../shared/data/sst/test.txt')
    ap.add_argument('--limit', type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=torch.float32).eval()
    cache = {}
    for line in open(args.cache):
        r = json.loads(line)
        if 'text' in r:
            cache[r['text']] = r

    @torch.no_grad()
    def probs(seqs):
        n = max(len(s) for s in seqs)
        ids = torch.tensor([s + [tok.pad_token_id] * (n - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
        return model(input_ids=ids, attention_mask=mask).logits.softmax(-1)

    res = {k: [] for k in ['mask (transformers)', 'delete', 'unk', 'pad']}
    for text in sst_sentences(args.sst, args.limit):
        if text not in cache:
            continue
        r = cache[text]
        ids, y, w = tok(text)['input_ids'], r['target'], np.array(r['scores'][1:-1])
        if len(w) < 3 or np.std(w) == 0:
            continue
        n = len(ids)
        replace = lambda t: [ids[:i] + [t] + ids[i + 1:] for i in range(1, n - 1)]
        variants = {'mask (transformers)': replace(tok.mask_token_id), 'delete': [ids[:i] + ids[i + 1:] for i in range(1, n - 1)],
                    'unk': replace(tok.unk_token_id), 'pad': replace(tok.pad_token_id)}
        p0 = probs([ids])[0, y].item()
        for k, v in variants.items():
            res[k].append(spearmanr(p0 - probs(v)[:, y].numpy(), w).correlation)
    rng = np.random.default_rng(0)
    for k, v in res.items():
        v = np.array(v)
        v = v[~np.isnan(v)]
        boot = [rng.choice(v, len(v)).mean() for _ in range(1000)]
        print(f'{k}: Spearman with the cached teacher {v.mean():.3f} [{np.percentile(boot, 2.5):.3f}, {np.percentile(boot, 97.5):.3f}] over {len(v)} sentences')


if __name__ == '__main__':
    main()
