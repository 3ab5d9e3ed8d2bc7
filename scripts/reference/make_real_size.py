#!/usr/bin/env python3
"""Real-size model folders without the hub: the config.json shapes of the most used classifiers
with random weights (transformers' own init), for load / forward / memory measurements.

    ~/.cache/pyref/bin/python scripts/reference/make_real_size.py OUT_DIR [NAME ...]

Each folder gets config.json, model.safetensors (float32, ~0.1-1.1 GB each) and the tokenizer.json
of the tiny fixture of the same family (its ids are valid for the real vocabulary sizes). Nothing
is downloaded; the weights are random, so only speed and memory mean anything.
"""

import os
import shutil
import sys

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures"))
BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
LABELS = dict(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})

# name: (architecture, config class, config kwargs, fixture whose tokenizer.json is copied)
MODELS = {
    "bert-base-uncased": ("BertForSequenceClassification", "BertConfig",
                          dict(vocab_size=30522, **BASE), "tiny-bert"),
    "distilbert-base-uncased": ("DistilBertForSequenceClassification", "DistilBertConfig",
                                dict(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
                                "tiny-distilbert"),
    "roberta-base": ("RobertaForSequenceClassification", "RobertaConfig",
                     dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                          layer_norm_eps=1e-5, **BASE), "tiny-roberta"),
    "xlm-roberta-base": ("XLMRobertaForSequenceClassification", "XLMRobertaConfig",
                         dict(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                              layer_norm_eps=1e-5, **BASE), "tiny-xlm-roberta"),
    "electra-base-discriminator": ("ElectraForSequenceClassification", "ElectraConfig",
                                   dict(vocab_size=30522, embedding_size=768, **BASE), "tiny-electra"),
    "albert-base-v2": ("AlbertForSequenceClassification", "AlbertConfig",
                       dict(vocab_size=30000, embedding_size=128, hidden_act="gelu_new", pad_token_id=0, **BASE),
                       "tiny-albert"),
    "deberta-v3-base": ("DebertaV2ForSequenceClassification", "DebertaV2Config",
                        dict(vocab_size=128100, relative_attention=True, position_buckets=256,
                             max_relative_positions=-1, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                             share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0,
                             layer_norm_eps=1e-7, pooler_hidden_size=768, pooler_dropout=0, **BASE),
                        "tiny-deberta-v3"),
    "modernbert-base": ("ModernBertForSequenceClassification", "ModernBertConfig",
                        dict(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
                             intermediate_size=1152, max_position_embeddings=8192, local_attention=128,
                             global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
                             pad_token_id=0, classifier_pooling="mean"), "tiny-modernbert"),
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    for name in names:
        arch, cfg_cls, kw, fixture = MODELS[name]
        folder = os.path.join(out, name)
        shutil.rmtree(folder, ignore_errors=True)
        cfg = getattr(transformers, cfg_cls)(**kw, **LABELS)
        model = getattr(transformers, arch)(cfg).eval()
        model.save_pretrained(folder, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(FIXTURES, fixture, f), folder)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n / 1e6:.1f}M parameters -> {folder}")
        del model


if __name__ == "__main__":
    main()
