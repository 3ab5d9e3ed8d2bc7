#!/usr/bin/env python3
"""Reference numbers for the decomposition family (value norms, ALTI), written from the
papers' formulas, for the Rust parity test (tests/decomposition.rs).

    ~/.cache/pyref/bin/python scripts/reference/decomposition.py [--fixtures tests/fixtures]

For each tiny fixture classifier it reruns the cases of its expected.json (same input ids)
through transformers (float32, eager attention) and computes, in float64 from the
hidden states, attention probabilities and module weights:

Value norms (Kobayashi et al. 2020, "Attention is not only a weight"):
    f_h(x) = (x W_V + b_V)_h W_O^h
    N^l_ij = || sum_h alpha^{l,h}_ij f_h(x_j) ||_2
    value_norm = N^{L}_{0,:}  (the [CLS] row of the last layer)

ALTI (Ferrando et al. 2022, "Measuring the Mixing of Contextual Information in the
Transformer"):
    pre_i   = sum_j sum_h alpha_ij^h f_h(x_j) + b_O + x_i         (checked against the hooked
                                                                   input of the layer norm)
    sigma_i = sqrt(Var(pre_i) + eps)                               (biased variance, as LN does)
    L(z)    = (z - mean(z)) * gamma
    T_i(x_j)= L(sum_h alpha_ij^h f_h(x_j) + [i=j] x_j) / sigma_i
    y_i     = LN(pre_i)                                            (the block's real output)
    c_ij    = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1) / sum_k (same)
    alti    = row 0 of C^L ... C^1

GlobEnc (Modarressi et al. 2022, "GlobEnc: Quantifying Global Token Attribution by
Incorporating the Whole Encoder Layer in Transformers"): the ALTI vectors T_i(x_j) are carried
through the second residual and layer norm, the feed-forward network being left out of the
decomposition (its output only enters sigma2):
    pre2_i  = FFN(y_i) + y_i                                       (checked against the hook)
    sigma2_i= sqrt(Var(pre2_i) + eps2)
    N_ij    = || (T_i(x_j) - mean(T_i(x_j))) * gamma2 / sigma2_i ||_2
    G_ij    = N_ij / sum_k N_ik,    globenc = row 0 of G^L ... G^1

(The authors' code divides by torch.std(pre + eps), an unbiased std with eps added to the
states; the paper's formula and this reference use the layer norm's own sigma.)

Output: tests/fixtures/<model>/decomposition.json with, per case, input_ids, token_type_ids,
value_norm_matrices [L][n][n], value_norm [n], alti_layers [L][n][n], alti [n],
globenc_layers [L][n][n], globenc [n].
"""

import argparse
import json
import os

import torch
import transformers

MODELS = ["tiny-bert", "tiny-distilbert", "tiny-roberta"]
SIG_DIGITS = 8


def blocks(model):
    """(value linear, output linear, post-attention layer norm, output layer norm) per layer."""
    base = model.base_model
    if model.config.model_type == "distilbert":
        return [
            (l.attention.v_lin, l.attention.out_lin, l.sa_layer_norm, l.output_layer_norm)
            for l in base.transformer.layer
        ]
    return [
        (l.attention.self.value, l.attention.output.dense, l.attention.output.LayerNorm, l.output.LayerNorm)
        for l in base.encoder.layer
    ]


def decompose_layer(x, alpha, value, out, ln, ln2, pre_hooked, pre2_hooked):
    """x [n, D], alpha [H, n, n] (float64). Returns (value-norm, ALTI, GlobEnc matrices)."""
    heads, n, _ = alpha.shape
    d = x.shape[1]
    dh = d // heads
    wv, bv = value.weight.double(), value.bias.double()
    wo, bo = out.weight.double(), out.bias.double()
    gamma, beta, eps = ln.weight.double(), ln.bias.double(), ln.eps

    v = (x @ wv.T + bv).view(n, heads, dh).permute(1, 0, 2)  # [H, n, dh]
    f = torch.einsum("hjv,dhv->hjd", v, wo.view(d, heads, dh))  # f_h(x_j): [H, n, D]
    mixed = torch.einsum("hij,hjd->ijd", alpha, f)  # sum_h alpha_ij f_h(x_j): [n, n, D]
    value_norms = mixed.norm(dim=-1)

    pre = mixed.sum(1) + bo + x
    assert torch.allclose(pre, pre_hooked, atol=1e-4), (pre - pre_hooked).abs().max()
    sigma = torch.sqrt(pre.var(-1, unbiased=False, keepdim=True) + eps)  # [n, 1]
    y = (pre - pre.mean(-1, keepdim=True)) / sigma * gamma + beta
    with_res = mixed + torch.einsum("ij,jd->ijd", torch.eye(n, dtype=x.dtype), x)
    t = (with_res - with_res.mean(-1, keepdim=True)) * gamma / sigma.unsqueeze(-1)  # [n, n, D]
    # The pieces add up to the real output: sum_j T_i(x_j) + L(b_O)/sigma_i + beta = y_i.
    recon = t.sum(1) + (bo - bo.mean()) * gamma / sigma + beta
    assert torch.allclose(recon, y, atol=1e-6), (recon - y).abs().max()
    prox = (y.abs().sum(-1, keepdim=True) - (y.unsqueeze(1) - t).abs().sum(-1)).clamp(min=0)
    alti = prox / prox.sum(-1, keepdim=True)

    # GlobEnc: through the second residual + layer norm; sigma2 from the real pre-LN2 state.
    sigma2 = torch.sqrt(pre2_hooked.var(-1, unbiased=False, keepdim=True) + ln2.eps)
    t2 = (t - t.mean(-1, keepdim=True)) * ln2.weight.double() / sigma2.unsqueeze(-1)
    norms = t2.norm(dim=-1)
    globenc = norms / norms.sum(-1, keepdim=True)
    return value_norms, alti, globenc


def rnd(t):
    if isinstance(t, torch.Tensor):
        t = t.tolist()
    if isinstance(t, list):
        return [rnd(v) for v in t]
    return float(f"{t:.{SIG_DIGITS}g}")


def run_model(folder):
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32
    )
    model.eval()
    expected = json.load(open(os.path.join(folder, "expected.json")))
    layer_blocks = blocks(model)
    cases = []
    for case in expected["cases"]:
        ids = torch.tensor([case["input_ids"]])
        kwargs = dict(input_ids=ids, output_hidden_states=True, output_attentions=True)
        if model.config.model_type != "distilbert":
            kwargs["token_type_ids"] = torch.tensor([case["token_type_ids"]])
        hooked, hooked2 = [], []
        handles = []
        for _, _, ln, ln2 in layer_blocks:
            handles.append(ln.register_forward_hook(lambda _m, inp, _out: hooked.append(inp[0][0].double())))
            handles.append(ln2.register_forward_hook(lambda _m, inp, _out: hooked2.append(inp[0][0].double())))
        with torch.no_grad():
            out = model(**kwargs)
            vn, al, ge = [], [], []
            for l, (value, dense, ln, ln2) in enumerate(layer_blocks):
                x = out.hidden_states[l][0].double()
                alpha = out.attentions[l][0].double()
                v, a, g = decompose_layer(x, alpha, value, dense, ln, ln2, hooked[l], hooked2[l])
                vn.append(v)
                al.append(a)
                ge.append(g)
        for h in handles:
            h.remove()
        n = ids.shape[1]
        agg, agg_g = torch.eye(n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)
        for a, g in zip(al, ge):
            agg = a @ agg
            agg_g = g @ agg_g
        cases.append(
            dict(
                text=case["text"],
                text_pair=case["text_pair"],
                input_ids=case["input_ids"],
                token_type_ids=case["token_type_ids"],
                value_norm_matrices=rnd(torch.stack(vn)),
                value_norm=rnd(vn[-1][0]),
                alti_layers=rnd(torch.stack(al)),
                alti=rnd(agg[0]),
                globenc_layers=rnd(torch.stack(ge)),
                globenc=rnd(agg_g[0]),
            )
        )
    return dict(
        format="expnet-decomposition-1",
        model=os.path.basename(folder.rstrip("/")),
        versions=dict(torch=torch.__version__, transformers=transformers.__version__),
        cases=cases,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures"))
    args = ap.parse_args()
    for name in MODELS:
        folder = os.path.join(args.fixtures, name)
        data = run_model(folder)
        path = os.path.normpath(os.path.join(folder, "decomposition.json"))
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {path} ({len(data['cases'])} cases)")


if __name__ == "__main__":
    main()
