#!/usr/bin/env python3
"""Build the tiny random test models under tests/fixtures/ and their reference numbers.

Deterministic (fixed seeds, CPU, float32) and rerunnable:

    ~/.cache/pyref/bin/python scripts/reference/make_fixtures.py [--out tests/fixtures]

For every model folder it writes config.json, model.safetensors, tokenizer.json,
tokenizer_config.json (so transformers' AutoTokenizer can load it too) and expected.json
(schema in tests/fixtures/README.md). The Rust numerics are checked against expected.json.
Python is only used here, never when the product runs.
"""

import argparse
import json
import os
import shutil
import sys

import captum
import numpy as np
import tokenizers
import torch
import transformers
from captum.attr import InputXGradient, LayerIntegratedGradients, Saliency
from captum.attr._utils.approximation_methods import approximation_parameters
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)
from transformers.models.albert import modeling_albert
from transformers.models.bert import modeling_bert
from transformers.models.deberta_v2 import modeling_deberta_v2
from transformers.models.distilbert import modeling_distilbert
from transformers.models.electra import modeling_electra
from transformers.models.modernbert import modeling_modernbert
from transformers.models.roberta import modeling_roberta
from transformers.models.xlm_roberta import modeling_xlm_roberta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rules  # noqa: E402
import tiny_tokenizers as tt  # noqa: E402

IG_STEPS = 20
IG_METHODS = ["gausslegendre", "riemann_trapezoid"]
SIG_DIGITS = 8

# ---------------------------------------------------------------- model specifications

BERT_SIZES = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
)

SPECS = [
    dict(
        name="tiny-bert",
        seed=1002,
        tokenizer="bert",
        make=lambda vocab: BertForSequenceClassification(
            BertConfig(
                vocab_size=vocab,
                max_position_embeddings=64,
                hidden_act="gelu",
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                pad_token_id=0,
                **BERT_SIZES,
            )
        ),
        cases=[
            ("The film was wonderful and the actors were great.", None),
            ("Unbelievably, the screenplay felt overwrought.", None),
            ("Wait... is it café-quality? Nope!! 🙂", None),
            ("Was the ending good?", "Not really, it dragged."),
        ],
    ),
    dict(
        name="tiny-distilbert",
        seed=2002,
        tokenizer="bert",
        make=lambda vocab: DistilBertForSequenceClassification(
            DistilBertConfig(
                vocab_size=vocab,
                max_position_embeddings=64,
                dim=32,
                n_layers=2,
                n_heads=4,
                hidden_dim=64,
                activation="gelu",
                num_labels=3,
                id2label={0: "negative", 1: "neutral", 2: "positive"},
                label2id={"negative": 0, "neutral": 1, "positive": 2},
                pad_token_id=0,
            )
        ),
        cases=[
            ("A clever, funny story with a brilliant cast.", None),
            ("The cinematography was overwrought and dull.", None),
            ("Honestly?! I hated it... truly awful 🙂", None),
            ("Not bad at all.", None),
        ],
    ),
    dict(
        name="tiny-roberta",
        seed=3003,
        tokenizer="roberta",
        make=lambda vocab: RobertaForSequenceClassification(
            RobertaConfig(
                vocab_size=vocab,
                # RoBERTa numbers positions from padding_idx + 1 = 2, so 64 tokens need 66 rows.
                max_position_embeddings=66,
                hidden_act="gelu_new",
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
                type_vocab_size=1,
                layer_norm_eps=1e-5,
                **BERT_SIZES,
            )
        ),
        cases=[
            ("The film was wonderful.", None),
            ("Unbelievably, the plot felt weak.", None),
            ("Great music, great story!", None),
            ("Fun 🙂 but too long...", None),
        ],
    ),
    dict(
        name="tiny-bert-encoder",
        seed=4004,
        tokenizer="bert",
        make=lambda vocab: BertModel(
            BertConfig(
                vocab_size=vocab,
                max_position_embeddings=64,
                hidden_act="relu",
                pad_token_id=0,
                **BERT_SIZES,
            )
        ),
        cases=[
            ("The movie was boring and slow.", None),
            ("Surprisingly clever, perhaps brilliant!", None),
            ("Is it good?", "Yes, really good."),
        ],
    ),
]

SPECS += [
    dict(
        name="tiny-electra",
        seed=5005,
        tokenizer="bert",
        # embedding_size 16 < hidden 32: exercises embeddings_project. hidden_act gelu_new while
        # ElectraClassificationHead always uses erf GELU, so the two are told apart.
        make=lambda vocab: ElectraForSequenceClassification(
            ElectraConfig(
                vocab_size=vocab,
                embedding_size=16,
                max_position_embeddings=64,
                hidden_act="gelu_new",
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                pad_token_id=0,
                **BERT_SIZES,
            )
        ),
        cases=[
            ("The acting was brilliant, the story clever.", None),
            ("Unbelievably dull and far too long.", None),
            ("Wait... café-quality? Nope!! 🙂", None),
            ("Was the music good?", "Yes, truly wonderful."),
        ],
    ),
    dict(
        name="tiny-albert",
        seed=6006,
        tokenizer="albert",
        # One shared layer group applied 3 times; embeddings of width 16 mapped up to 32.
        make=lambda vocab: AlbertForSequenceClassification(
            AlbertConfig(
                vocab_size=vocab,
                embedding_size=16,
                hidden_size=32,
                num_hidden_layers=3,
                num_hidden_groups=1,
                inner_group_num=1,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=64,
                hidden_act="gelu_new",
                num_labels=3,
                id2label={0: "negative", 1: "neutral", 2: "positive"},
                label2id={"negative": 0, "neutral": 1, "positive": 2},
                pad_token_id=0,
                bos_token_id=2,
                eos_token_id=3,
            )
        ),
        cases=[
            ("The film was great.", None),
            ("Unbelievably overwrought!", None),
            ("Café? Fun 🙂", None),
            ("Good?", "Not really."),
        ],
    ),
    dict(
        name="tiny-xlm-roberta",
        seed=7007,
        tokenizer="xlmr",
        # RoBERTa architecture with a SentencePiece-style Unigram tokenizer.json.
        make=lambda vocab: XLMRobertaForSequenceClassification(
            XLMRobertaConfig(
                vocab_size=vocab,
                max_position_embeddings=66,
                hidden_act="gelu",
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
                type_vocab_size=1,
                layer_norm_eps=1e-5,
                **BERT_SIZES,
            )
        ),
        cases=[
            ("The film was wonderful.", None),
            ("Unbelievably weak.", None),
            ("Café?  Fun 🙂 too long", None),
            ("Was it good?", "Not really."),
        ],
    ),
]

DEBERTA_SIZES = dict(
    vocab_size=None,  # filled from the tokenizer
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_act="gelu",
    pooler_hidden_act="gelu",
    pooler_hidden_size=32,
    pooler_dropout=0.0,
    layer_norm_eps=1e-7,
    pad_token_id=0,
    num_labels=2,
    id2label={0: "negative", 1: "positive"},
    label2id={"negative": 0, "positive": 1},
)

SPECS += [
    dict(
        name="tiny-deberta-v3",
        seed=8008,
        tokenizer="deberta",
        # DeBERTa-v3 layout: relative attention only (no absolute positions), log buckets
        # (8 buckets, max distance 16, so the test sentences reach the log range and the clamp),
        # keys shared between content and position, LayerNorm on the relative embeddings,
        # no token types.
        make=lambda vocab: DebertaV2ForSequenceClassification(
            DebertaV2Config(
                **{**DEBERTA_SIZES, "vocab_size": vocab},
                relative_attention=True,
                position_buckets=8,
                max_relative_positions=16,
                pos_att_type=["p2c", "c2p"],
                position_biased_input=False,
                share_att_key=True,
                norm_rel_ebd="layer_norm",
                type_vocab_size=0,
            )
        ),
        cases=[
            ("The film was wonderful.", None),
            ("Unbelievably overwrought!", None),
            ("Café? Fun 🙂", None),
            ("Good?", "Not really."),
        ],
    ),
    dict(
        name="tiny-deberta-v2",
        seed=9009,
        tokenizer="deberta",
        # DeBERTa-v2 layout: absolute positions added to the input, separate position
        # projections (pos_key_proj / pos_query_proj), pos_att_type as the old "c2p|p2c"
        # string, no buckets (span = max_position_embeddings), narrower embeddings projected
        # by embed_proj, token types.
        make=lambda vocab: DebertaV2ForSequenceClassification(
            DebertaV2Config(
                **{**DEBERTA_SIZES, "vocab_size": vocab, "hidden_act": "gelu_new"},
                embedding_size=16,
                relative_attention=True,
                position_buckets=-1,
                max_relative_positions=-1,
                pos_att_type="c2p|p2c",
                position_biased_input=True,
                share_att_key=False,
                norm_rel_ebd="none",
                type_vocab_size=2,
            )
        ),
        cases=[
            ("The movie was boring and slow.", None),
            ("Surprisingly clever!", None),
            ("Is it good?", "Yes, really good."),
        ],
    ),
]

SPECS += [
    dict(
        name="tiny-modernbert",
        seed=10010,
        tokenizer="modernbert",
        # Layers global, local, global (global_attn_every_n_layers 2); local window 6 (|q-k| <= 3)
        # so the test sentences are longer than a window; mean pooling; no biases (defaults).
        make=lambda vocab: ModernBertForSequenceClassification(
            ModernBertConfig(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=3,
                num_attention_heads=4,
                max_position_embeddings=64,
                global_attn_every_n_layers=2,
                local_attention=6,
                global_rope_theta=160000.0,
                local_rope_theta=10000.0,
                hidden_activation="gelu",
                classifier_activation="gelu",
                classifier_pooling="mean",
                pad_token_id=0,
                bos_token_id=2,
                eos_token_id=3,
                cls_token_id=2,
                sep_token_id=3,
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
            )
        ),
        cases=[
            ("The film was wonderful.", None),
            ("Unbelievably weak plot.", None),
            ("Fun 🙂 but long", None),
            ("Good?", "Not really."),
        ],
    ),
]

# ---------------------------------------------------------------- weights


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite transformers' init (std 0.02, zero biases, identity LayerNorm) with larger random
    weights so attentions are far from uniform and logits are distinct, and so that biases and
    LayerNorm parameters are exercised. Padding rows of embeddings are zeroed as transformers'
    own init does."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            lname = name.lower()
            if "norm" in lname:
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "embeddings_project" in lname or "embedding_hidden_mapping" in lname:
                p.copy_(0.2 * noise)
            elif "embeddings" in lname:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.2 * noise)
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()


# ---------------------------------------------------------------- tokenizers


def tokenizer_config(kind: str) -> dict:
    """Minimal tokenizer_config.json so transformers' AutoTokenizer (used by the Python peer
    benchmark's shap text masker) can load the folder; the Rust side only reads tokenizer.json."""
    if kind in ("deberta", "modernbert"):
        specials = dict(
            pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]",
        )
    elif kind == "albert":
        specials = dict(
            pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]",
        )
    elif kind == "bert":
        specials = dict(
            pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]",
        )
    else:
        specials = dict(
            bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
            cls_token="<s>", sep_token="</s>", mask_token="<mask>",
        )
    return dict(tokenizer_class="PreTrainedTokenizerFast", model_max_length=64, **specials)


# ---------------------------------------------------------------- computations


def rounded(x):
    """Nested lists of floats rounded to SIG_DIGITS significant digits (keeps JSON small)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().double().tolist()
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.{SIG_DIGITS}g}")
    return x


class AttentionProbe:
    """Swaps a zero tensor D (requires_grad) into the eager attention so that the tensor used
    in A @ V is A + D; D.grad is then dL/dA independently of what transformers returns as
    `attentions`. Used to check that `retain_grad()` on the returned attentions is right."""

    MODULES = [modeling_bert, modeling_roberta, modeling_distilbert, modeling_electra,
               modeling_albert, modeling_xlm_roberta, modeling_modernbert]

    def __init__(self, model=None):
        self.model = model
        self.deltas = []
        self.probs = []
        self._saved = {}

    def __enter__(self):
        probe = self

        def forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
            if scaling is None:
                scaling = query.size(-1) ** -0.5
            scores = torch.matmul(query, key.transpose(2, 3)) * scaling
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = torch.softmax(scores, dim=-1)
            delta = torch.zeros_like(probs, requires_grad=True)
            probe.deltas.append(delta)
            used = probs + delta
            probe.probs.append(used)
            out = torch.matmul(used, value).transpose(1, 2).contiguous()
            return out, used

        for mod in self.MODULES:
            self._saved[mod] = mod.eager_attention_forward
            mod.eager_attention_forward = forward
        # DeBERTa has no eager_attention_forward: its probabilities pass through the attention
        # dropout (identity in eval) right before A @ V, so the probe replaces that module.
        self._dropouts = []
        if self.model is not None:
            for m in self.model.modules():
                if isinstance(m, modeling_deberta_v2.DisentangledSelfAttention):
                    self._dropouts.append((m, m.dropout))
                    m.dropout = _ProbeDropout(probe)
        return self

    def __exit__(self, *exc):
        for mod, fn in self._saved.items():
            mod.eager_attention_forward = fn
        for m, d in self._dropouts:
            m.dropout = d


class _ProbeDropout(torch.nn.Module):
    def __init__(self, probe):
        super().__init__()
        self.probe = probe

    def forward(self, probs):
        delta = torch.zeros_like(probs, requires_grad=True)
        self.probe.deltas.append(delta)
        used = probs + delta
        self.probe.probs.append(used)
        return used


def model_kwargs(model, enc) -> dict:
    """Keyword arguments besides ids/embeddings: attention mask and token type ids (if used)."""
    kw = {"attention_mask": torch.ones(1, len(enc.ids), dtype=torch.long)}
    if uses_token_types(model):
        kw["token_type_ids"] = torch.tensor([enc.type_ids], dtype=torch.long)
    return kw


def uses_token_types(model) -> bool:
    mt = getattr(model.config, "model_type", "")
    if mt == "deberta-v2":
        return model.config.type_vocab_size > 0
    return mt in ("bert", "roberta", "xlm-roberta", "electra", "albert")


def is_classifier(model) -> bool:
    # ModernBERT names its head `head` + `classifier`; all others have `classifier`.
    return hasattr(model, "classifier")


def gradient_run(model, emb, kw, target):
    """Forward from inputs_embeds, backprop the target logit; returns
    (grad wrt inputs_embeds [n,h], attentions [L,H,n,n], grad wrt attentions [L,H,n,n])."""
    emb = emb.detach().clone().requires_grad_(True)
    out = model(inputs_embeds=emb, output_attentions=True, **kw)
    attns = list(out.attentions)
    for a in attns:
        a.retain_grad()
    out.logits[0, target].backward()
    grads = torch.stack([a.grad[0] for a in attns])
    return emb.grad[0], torch.stack([a[0] for a in attns]).detach(), grads


def check_attention_grads(model, emb, kw, target, attn, grad_attn):
    """Assert that the returned attentions and their retained gradients match the probe."""
    with AttentionProbe(model) as probe:
        out = model(inputs_embeds=emb.detach().clone(), output_attentions=True, **kw)
        out.logits[0, target].backward()
    p_attn = torch.stack([p[0] for p in probe.probs]).detach()
    p_grad = torch.stack([d.grad[0] for d in probe.deltas])
    assert torch.allclose(p_attn, attn, atol=1e-6), "returned attentions differ from those used"
    assert torch.allclose(p_grad, grad_attn, atol=1e-6, rtol=1e-5), "attention grads differ"
    # and the recorded tensors are the ones the probe returned (identity, not a copy)
    assert all(a is p for a, p in zip(out.attentions, probe.probs))


def integrated_gradients(model, enc, kw, target, baseline_ids, method):
    """captum LayerIntegratedGradients on the word-embedding layer (n_steps=IG_STEPS).

    captum interpolates the OUTPUT of the word-embedding layer between the baseline ids'
    embeddings and the input's (position / token-type embeddings are added afterwards and
    not interpolated), runs the model with the ORIGINAL input ids plus a hook replacing the
    layer output, and returns (x - x') * sum_i w_i * dF/dx(x' + a_i (x - x')) per element,
    with (a_i, w_i) from approximation_parameters(method). We sum that over hidden.

    Returns (attributions [n], captum's delta, delta with fixed positions, baseline logit).
    captum's delta = sum(attr) - (F(ids) - F(baseline_ids)), where F(baseline_ids) is a plain
    forward of the baseline ids; for RoBERTa that changes the position ids (pad tokens get
    position padding_idx and later tokens shift), so we also report the gap against the path's
    true start point F(inputs_embeds = baseline embeddings, positions as for the input).
    """
    ids = torch.tensor([enc.ids])
    base = torch.tensor([baseline_ids])
    names = list(kw.keys())

    def forward(input_ids, *extra):
        return model(input_ids=input_ids, **dict(zip(names, extra))).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    attr, delta = lig.attribute(
        ids,
        baselines=base,
        additional_forward_args=tuple(kw[k] for k in names),
        target=target,
        n_steps=IG_STEPS,
        method=method,
        return_convergence_delta=True,
    )
    attr = attr[0].sum(dim=-1).detach()
    with torch.no_grad():
        f_x = model(input_ids=ids, **kw).logits[0, target]
        emb = model.get_input_embeddings()
        f_start = model(inputs_embeds=emb(base), **kw).logits[0, target]
    delta_fixed = attr.sum() - (f_x - f_start)

    # Independent re-computation of the same quadrature on inputs_embeds (sanity check).
    step_sizes, alphas = approximation_parameters(method)
    with torch.no_grad():
        x_e, b_e = emb(ids), emb(base)
    total = torch.zeros_like(x_e)
    for a, w in zip(alphas(IG_STEPS), step_sizes(IG_STEPS)):
        point = (b_e + a * (x_e - b_e)).requires_grad_(True)
        model(inputs_embeds=point, **kw).logits[0, target].backward()
        total += w * point.grad
    manual = ((x_e - b_e) * total)[0].sum(dim=-1)
    assert torch.allclose(manual, attr, atol=1e-5, rtol=1e-4), (manual, attr)
    return attr, float(delta[0]), float(delta_fixed), float(f_start)


def compute_case(model, tok, text, pair):
    enc = tok.encode(text, pair) if pair is not None else tok.encode(text)
    n = len(enc.ids)
    ids = torch.tensor([enc.ids])
    kw = model_kwargs(model, enc)
    emb_layer = model.get_input_embeddings()

    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True, output_hidden_states=True, **kw)
        word_emb = emb_layer(ids)
    attn = torch.stack([a[0] for a in out.attentions])  # [L, H, n, n]
    hidden = torch.stack([h[0] for h in out.hidden_states])  # [L+1, n, hidden]

    case = dict(
        text=text,
        text_pair=pair,
        tokens=enc.tokens,
        input_ids=enc.ids,
        token_type_ids=enc.type_ids if uses_token_types(model) else None,
        special_tokens_mask=enc.special_tokens_mask,
        offsets=[list(o) for o in enc.offsets],
        sequence_ids=enc.sequence_ids,
        word_ids=enc.word_ids,
    )

    attributions = dict(rollout=rules.rollout(attn), attention=rules.last_layer_attention(attn))
    if is_classifier(model):
        logits = out.logits[0]
        target = int(logits.argmax())
        grad_emb, attn_g, grad_attn = gradient_run(model, word_emb, kw, target)
        assert torch.allclose(attn_g, attn, atol=1e-6), "inputs_embeds path differs from ids path"
        check_attention_grads(model, word_emb, kw, target, attn, grad_attn)

        def embeds_forward(e, *extra):
            return model(inputs_embeds=e, **dict(zip(kw.keys(), extra))).logits

        extra = tuple(kw.values())
        # captum Saliency returns |grad| by default (abs=True); abs=False gives the raw gradient.
        # The score is the L2 norm over hidden of the raw gradient (same as of |grad|).
        sal = Saliency(embeds_forward).attribute(
            word_emb.clone().requires_grad_(True), target=target, abs=False, additional_forward_args=extra
        )[0]
        assert torch.allclose(sal, grad_emb, atol=1e-6)
        ixg = InputXGradient(embeds_forward).attribute(
            word_emb.clone().requires_grad_(True), target=target, additional_forward_args=extra
        )[0]
        baseline_ids = [i if s else tok_pad_id(tok) for i, s in zip(enc.ids, enc.special_tokens_mask)]
        ig = {}
        for method in IG_METHODS:
            a, delta, delta_fixed, f_start = integrated_gradients(
                model, enc, kw, target, baseline_ids, method
            )
            ig[method] = dict(
                attributions=a, delta=delta, delta_fixed_positions=delta_fixed,
                baseline_logit=f_start,
            )
        attributions.update(
            saliency=sal.norm(dim=-1),
            grad_x_input=ixg.sum(dim=-1),
            integrated_gradients=ig,
            ig_baseline_ids=baseline_ids,
            chefer=rules.chefer(attn, grad_attn),
            grad_sam=rules.grad_sam(attn, grad_attn),
        )
        case.update(
            logits=logits,
            probabilities=torch.softmax(logits, dim=-1),
            predicted_index=target,
            grad_inputs_embeds=grad_emb,
            grad_attentions=grad_attn,
        )
    else:
        for k in ("saliency", "grad_x_input", "integrated_gradients", "ig_baseline_ids",
                  "chefer", "grad_sam"):
            attributions[k] = None
        case.update(logits=None, probabilities=None, predicted_index=None,
                    grad_inputs_embeds=None, grad_attentions=None)
    case.update(
        attentions=attn,
        hidden_states=hidden,
        word_embeddings=word_emb[0],
        attributions=attributions,
    )
    assert n == attn.shape[-1]
    return case


def tok_pad_id(tok) -> int:
    for name in ("[PAD]", "<pad>"):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    raise ValueError("tokenizer has no [PAD]/<pad> token")


def ig_parameters() -> dict:
    out = {}
    for m in IG_METHODS:
        steps, alphas = approximation_parameters(m)
        out[m] = dict(alphas=alphas(IG_STEPS), step_sizes=steps(IG_STEPS))
    return out


def expected_for(folder: str, name: str, cases) -> dict:
    """Reload the saved folder (as the Rust side would: float32, eager attention) and compute."""
    cfg = transformers.AutoConfig.from_pretrained(folder)
    arch = cfg.architectures[0]
    cls = getattr(transformers, arch)
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    tok = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    labels = None
    if is_classifier(model):
        labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
    return dict(
        format=1,
        model=name,
        model_type=cfg.model_type,
        architecture=arch,
        num_layers=getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", None)),
        num_heads=getattr(cfg, "num_attention_heads", getattr(cfg, "n_heads", None)),
        hidden_size=getattr(cfg, "hidden_size", getattr(cfg, "dim", None)),
        labels=labels,
        target="logit of the predicted class (argmax of logits), before softmax",
        ig=dict(
            n_steps=IG_STEPS,
            layer="word embeddings (output of the embedding lookup, before position/type "
            "embeddings and LayerNorm)",
            baseline="[PAD]/<pad> id for non-special tokens, the original id for special tokens",
            methods=ig_parameters(),
        ),
        versions=dict(
            torch=torch.__version__, transformers=transformers.__version__,
            captum=captum.__version__, tokenizers=tokenizers.__version__,
        ),
        cases=[compute_case(model, tok, t, p) for t, p in cases],
    )


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rounded(obj), f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def build(out_dir: str, only=None) -> None:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    bert_vocab = tt.bert_vocab()
    toks = {
        "bert": tt.bert_tokenizer(bert_vocab),
        "roberta": tt.roberta_tokenizer(),
        "xlmr": tt.unigram_tokenizer("xlmr"),
        "albert": tt.unigram_tokenizer("albert"),
        "deberta": tt.unigram_tokenizer("deberta"),
        "modernbert": tt.bpe_cls_tokenizer(),
    }
    os.makedirs(out_dir, exist_ok=True)

    for spec in SPECS:
        if only and spec["name"] not in only:
            continue
        folder = os.path.join(out_dir, spec["name"])
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        tok = toks[spec["tokenizer"]]
        torch.manual_seed(spec["seed"])
        model = spec["make"](tok.get_vocab_size())
        randomize(model, spec["seed"])
        model.eval()
        model.save_pretrained(folder, safe_serialization=True)
        tok.save(os.path.join(folder, "tokenizer.json"))
        write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config(spec["tokenizer"]))
        if spec["name"] == "tiny-bert-encoder":
            with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(bert_vocab) + "\n")
        write_json(os.path.join(folder, "expected.json"),
                   expected_for(folder, spec["name"], spec["cases"]))
        print(f"wrote {folder}")

        if spec["name"] == "tiny-bert":
            # float16 copy: same weights rounded to f16; expected.json computed in f32 from them.
            f16 = os.path.join(out_dir, "tiny-bert-f16")
            shutil.rmtree(f16, ignore_errors=True)
            model.half().save_pretrained(f16, safe_serialization=True)
            for fname in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(folder, fname), f16)
            write_json(os.path.join(f16, "expected.json"),
                       expected_for(f16, "tiny-bert-f16", spec["cases"]))
            print(f"wrote {f16}")
            # vocab.txt fallback: tiny-bert without tokenizer.json (its expected.json applies).
            vo = os.path.join(out_dir, "tiny-bert-vocab-only")
            shutil.rmtree(vo, ignore_errors=True)
            os.makedirs(vo)
            for fname in ("config.json", "model.safetensors"):
                shutil.copy(os.path.join(folder, fname), vo)
            with open(os.path.join(vo, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(bert_vocab) + "\n")
            print(f"wrote {vo}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "..", "tests", "fixtures"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=default_out, help="fixtures folder (default: tests/fixtures)")
    ap.add_argument("--only", nargs="*", help="fixture names to rebuild (default: all)")
    args = ap.parse_args()
    np.random.seed(0)
    build(args.out, args.only)


if __name__ == "__main__":
    main()
