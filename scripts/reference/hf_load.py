"""Loading a Hugging Face model folder the way the Rust side does: float32, eager attention,
tokenizer.json if present (else vocab.txt as an uncased WordPiece), no padding, truncation to
what the position embeddings allow. Shared by check_model.py and bench_python.py."""

import json
import os

import tokenizers
import torch
import transformers


def load_model(folder: str):
    """The model class named in config.json's `architectures` (AutoModel if absent/unknown)."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    cfg = transformers.AutoConfig.from_pretrained(folder)
    arch = (cfg.architectures or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModel
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    return model


def max_tokens(config) -> int:
    """Longest input the position embeddings allow (RoBERTa starts at padding_idx + 1)."""
    n = getattr(config, "max_position_embeddings", 512)
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        n -= (config.pad_token_id or 1) + 1
    return n


def load_tokenizer(folder: str, config) -> tokenizers.Tokenizer:
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        tok = tokenizers.Tokenizer.from_file(path)
    else:
        vocab = os.path.join(folder, "vocab.txt")
        if not os.path.exists(vocab):
            raise SystemExit(f"{folder}: neither tokenizer.json nor vocab.txt found")
        lower = True
        tc = os.path.join(folder, "tokenizer_config.json")
        if os.path.exists(tc):
            lower = json.load(open(tc)).get("do_lower_case", True)
        tok = tokenizers.BertWordPieceTokenizer(vocab, lowercase=lower)._tokenizer
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens(config))
    return tok


def uses_token_types(model) -> bool:
    emb = getattr(getattr(model, "base_model", model), "embeddings", None)
    return emb is not None and hasattr(emb, "token_type_embeddings")


def model_inputs(model, enc) -> dict:
    """Batch-of-one tensors for a tokenizers Encoding."""
    kw = {
        "input_ids": torch.tensor([enc.ids]),
        "attention_mask": torch.ones(1, len(enc.ids), dtype=torch.long),
    }
    if uses_token_types(model):
        kw["token_type_ids"] = torch.tensor([enc.type_ids])
    return kw


def labels(model):
    """Label names in id order, or None for a bare encoder (no classification head)."""
    if not hasattr(model, "classifier"):
        return None
    cfg = model.config
    return [cfg.id2label[i] for i in range(cfg.num_labels)]
