#!/usr/bin/env python3
"""Run a real Hugging Face model folder with transformers and dump, or compare against the Rust
output, the attentions and probabilities.

    # dump (same schema as `expnet explain --attentions --format json`, one JSON object per line)
    ~/.cache/pyref/bin/python scripts/reference/check_model.py /work/base-model "some text" ...

    # compare with the Rust output (JSON lines); texts default to the "text" fields of FILE
    expnet explain --attentions --format json ... > rust.jsonl
    ~/.cache/pyref/bin/python scripts/reference/check_model.py /work/base-model --compare rust.jsonl

Each line: {"text": str, "tokens": [str], "attentions": [layer][head][query][key],
            "prediction": {"label": str, "probabilities": {label: p}} or null (bare encoder)}.
In the Rust file, "tokens" may also be objects with a "text" field, and "attentions" may be the
flat {"layers","heads","len","data"} form. Exit status 1 if any difference exceeds --tol or the
tokens differ.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_load  # noqa: E402


def run(model, tok, text):
    enc = tok.encode(text)
    with torch.no_grad():
        out = model(**hf_load.model_inputs(model, enc), output_attentions=True)
    attn = torch.stack([a[0] for a in out.attentions]).numpy()
    names = hf_load.labels(model)
    prediction = None
    if names is not None:
        probs = torch.softmax(out.logits[0], dim=-1).tolist()
        prediction = {
            "label": names[int(np.argmax(probs))],
            "probabilities": dict(zip(names, probs)),
        }
    return {"text": text, "tokens": enc.tokens, "attentions": attn, "prediction": prediction}


def attentions_array(value):
    """Nested [l][h][q][k] lists or the flat {"layers","heads","len","data"} object → ndarray."""
    if isinstance(value, dict):
        shape = (value["layers"], value["heads"], value["len"], value["len"])
        return np.asarray(value["data"], dtype=np.float64).reshape(shape)
    return np.asarray(value, dtype=np.float64)


def token_texts(tokens):
    return [t["text"] if isinstance(t, dict) else t for t in tokens]


def compare(ref, other, tol):
    """Prints one line of differences; returns True when within tolerance."""
    ok = True
    notes = []
    if token_texts(other.get("tokens", [])) != ref["tokens"]:
        ok = False
        notes.append(f"tokens differ: python {ref['tokens']} rust {token_texts(other.get('tokens', []))}")
    a_ref = ref["attentions"]
    if other.get("attentions") is None:
        attn_diff = float("nan")
        ok = False
        notes.append("no attentions in Rust output (run with --attentions)")
    else:
        a_other = attentions_array(other["attentions"])
        if a_other.shape != a_ref.shape:
            attn_diff = float("nan")
            ok = False
            notes.append(f"attention shape {a_other.shape} vs {a_ref.shape}")
        else:
            attn_diff = float(np.abs(a_other - a_ref).max())
            ok &= attn_diff <= tol
    prob_diff = float("nan")
    p_ref, p_other = ref["prediction"], other.get("prediction")
    if (p_ref is None) != (p_other is None):
        ok = False
        notes.append(f"prediction present in {'python' if p_ref else 'rust'} only")
    elif p_ref is not None:
        pr, po = p_ref["probabilities"], p_other.get("probabilities", {})
        if set(pr) != set(po):
            ok = False
            notes.append(f"labels differ: {sorted(pr)} vs {sorted(po)}")
        else:
            prob_diff = max(abs(pr[k] - po[k]) for k in pr)
            ok &= prob_diff <= tol
    short = ref["text"] if len(ref["text"]) <= 40 else ref["text"][:37] + "..."
    print(f"{'ok ' if ok else 'BAD'}  attn {attn_diff:.2e}  prob {prob_diff:.2e}  "
          f"len {len(ref['tokens']):4d}  {short!r}")
    for n in notes:
        print(f"     {n}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("texts", nargs="*")
    ap.add_argument("--compare", metavar="FILE", help="JSON lines written by the Rust explain command")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed (1e-4)")
    args = ap.parse_args()

    torch.set_num_threads(2)
    model = hf_load.load_model(args.model_dir)
    tok = hf_load.load_tokenizer(args.model_dir, model.config)

    if not args.compare:
        if not args.texts:
            ap.error("give at least one TEXT (or --compare FILE)")
        for text in args.texts:
            r = run(model, tok, text)
            r["attentions"] = r["attentions"].tolist()
            print(json.dumps(r, ensure_ascii=False))
        return

    with open(args.compare, encoding="utf-8") as f:
        others = [json.loads(line) for line in f if line.strip()]
    texts = args.texts or [o.get("text") for o in others]
    if any(t is None for t in texts):
        ap.error("the Rust file has no \"text\" fields: pass the TEXTs in the same order")
    if len(texts) != len(others):
        ap.error(f"{len(texts)} texts but {len(others)} lines in {args.compare}")
    by_text = {o["text"]: o for o in others if "text" in o}
    all_ok = True
    for i, text in enumerate(texts):
        other = by_text.get(text, others[i])
        all_ok &= compare(run(model, tok, text), other, args.tol)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
