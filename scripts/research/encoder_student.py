"""Prototype: a distilled student made of the classifier's own top K encoder
layers (copied, fine-tuned) and a token head, reading the hidden state after
layer L-K of the one forward pass (K = L: a full second encoder, as in Yang et
al., ACL 2023). A measurement for docs/RESULTS.md ("Distilled ExpNet"), not
part of the product: does a student with far more capacity than the per-token
MLP of `expnet distill` get closer to the 0.8 Spearman goal?

Same protocol as `expnet distill`: per-text standardised rank targets of the
occlusion teacher on the non-special pieces, squared error; 15% of the
training texts held out for validation; the first 300 SST-2 test sentences
as test (reported per epoch; pick the epoch by validation).

Usage (pyref venv of the developers' guide):
  ~/.cache/pyref/bin/python scripts/research/encoder_student.py CACHE.teacher.jsonl --layers K \
      [--texts FILE] [--epochs 6] [--lr 5e-5] [--model assets/models/minilm-sst2] [--sst-dir ../shared/data/sst]
CACHE: an `expnet distill --teacher occlusion` cache holding the training
texts and the test sentences; --texts: one training text per line (default:
the first 2,300 binary SST-2 train sentences).
"""
import argparse, copy, json, os, random, re, sys, time
import numpy as np, torch, torch.nn as nn
from scipy.stats import spearmanr
from transformers import AutoTokenizer, AutoModelForSequenceClassification

sys.path.insert(0, os.path.dirname(__file__))
from occlusion_variants import sst_sentences  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cache')
    ap.add_argument('--layers', type=int, required=True)
    ap.add_argument('--texts')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--lr', type=float, default=5e-5)
    ap.add_argument('--model', default='assets/models/minilm-sst2')
    ap.add_argument('--sst-dir', default='../shared/data/sst')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    K = args.layers
    train_txt = [l.rstrip('\n') for l in open(args.texts)] if args.texts else sst_sentences(f'{args.sst_dir}/train.txt', 2300)
    test_txt = set(sst_sentences(f'{args.sst_dir}/test.txt', 300))
    cache = {}
    for line in open(args.cache):
        r = json.loads(line)
        if 'text' in r:
            cache[r['text']] = r
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=torch.float32, attn_implementation='eager').eval()
    L = model.config.num_hidden_layers
    assert 1 <= K <= L, f'--layers must be 1..{L}'

    def item(t):
        r = cache[t]
        enc = tok(t, return_tensors='pt')
        assert enc['input_ids'].shape[1] == len(r['scores']), f'tokenisation differs from the cache: {t!r}'
        return enc, np.array(r['scores'], dtype=np.float32), r['target']

    tr = [item(t) for t in train_txt if t in cache and t not in test_txt]
    te = [item(t) for t in cache if t in test_txt]
    nv = int(0.15 * len(tr))
    va, tr = tr[-nv:], tr[:-nv]
    print(f'{len(tr)} train, {len(va)} validation, {len(te)} test texts', flush=True)

    @torch.no_grad()
    def base(enc):  # the frozen part: the hidden state after layer L-K of the one forward pass
        return model(**enc, output_hidden_states=True).hidden_states[L - K]

    prep = lambda ds: [(base(e), s, t) for e, s, t in ds]
    trp, vap, tep = prep(tr), prep(va), prep(te)

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([copy.deepcopy(model.bert.encoder.layer[L - K + i]) for i in range(K)])
            H = model.config.hidden_size
            self.head = nn.Sequential(nn.Linear(H, 128), nn.GELU(), nn.Linear(128, model.config.num_labels))

        def forward(self, h, target):
            for layer in self.layers:
                o = layer(h)
                h = o[0] if isinstance(o, tuple) else o
            return self.head(h)[0, :, target]

    st = Student().train()

    def zrank(s):
        r = np.argsort(np.argsort(s[1:-1])).astype(np.float32)
        return torch.tensor((r - r.mean()) / (r.std() + 1e-6))

    opt = torch.optim.AdamW(st.parameters(), lr=args.lr, weight_decay=0.01)

    @torch.no_grad()
    def fidelity(ds):
        st.eval()
        rs = []
        for h, s, t in ds:
            w = s[1:-1]
            if len(w) >= 2 and np.std(w) > 0:
                rs.append(spearmanr(st(h, t)[1:-1].numpy(), w).correlation)
        st.train()
        rs = np.array(rs)
        rs = rs[~np.isnan(rs)]
        rng = np.random.default_rng(0)
        boot = [rng.choice(rs, len(rs)).mean() for _ in range(1000)]
        return rs.mean(), np.percentile(boot, 2.5), np.percentile(boot, 97.5)

    for ep in range(args.epochs):
        random.shuffle(trp)
        t0, total = time.time(), 0.0
        for i, (h, s, t) in enumerate(trp):
            loss = ((st(h, t)[1:-1] - zrank(s)) ** 2).mean()
            loss.backward()
            total += loss.item()
            if i % 16 == 15:
                opt.step()
                opt.zero_grad()
        v, te_ = fidelity(vap), fidelity(tep)
        print(f'K={K} epoch {ep}: loss {total / len(trp):.3f}, val {v[0]:.3f}, test {te_[0]:.3f} [{te_[1]:.3f}, {te_[2]:.3f}] ({time.time() - t0:.0f} s)', flush=True)


if __name__ == '__main__':
    main()
