"""Reference implementations of the attention-based attribution rules.

Every function takes plain torch tensors for ONE sentence (no batch dimension):
  attn      [layers, heads, n, n]   attention probabilities A (rows = queries, sum to 1)
  grad_attn [layers, heads, n, n]   dL/dA for L = logit of the target class
and returns a [n] tensor of per-token scores. Position 0 is the [CLS] / <s> token.
"""

import torch


def chefer(attn: torch.Tensor, grad_attn: torch.Tensor) -> torch.Tensor:
    """Chefer et al. 2021b ("Generic attention-model explainability"), encoder-only rules.

    R = I (n x n); for each layer l in order (bottom to top):
        Abar_l = mean over heads of clamp(grad_A_l * A_l, min=0)
        R = R + Abar_l @ R
    result = R[0] (the [CLS] row), with R[0][0] set to 0 (the token's self-relevance).
    """
    layers, _heads, n, _ = attn.shape
    rel = torch.eye(n, dtype=attn.dtype)
    for l in range(layers):
        abar = (grad_attn[l] * attn[l]).clamp(min=0).mean(dim=0)
        rel = rel + abar @ rel
    out = rel[0].clone()
    out[0] = 0.0
    return out


def grad_sam(attn: torch.Tensor, grad_attn: torch.Tensor) -> torch.Tensor:
    """Grad-SAM (Barkan et al. 2021): mean over layers and heads of A * relu(grad_A),
    then summed over the query dimension, giving one score per key token."""
    m = (attn * grad_attn.clamp(min=0)).mean(dim=(0, 1))  # [q, k]
    return m.sum(dim=0)


def rollout(attn: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) with the residual folded in.

    Per layer: Ahat_l = 0.5 * mean_h A_l + 0.5 * I, rows renormalised to sum 1.
    R = Ahat_L @ ... @ Ahat_1 (built going up: R = Ahat_l @ R, starting from I).
    result = R[0] (the [CLS] row).
    """
    layers, _heads, n, _ = attn.shape
    eye = torch.eye(n, dtype=attn.dtype)
    rel = eye.clone()
    for l in range(layers):
        a = 0.5 * attn[l].mean(dim=0) + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rel = a @ rel
    return rel[0]


def last_layer_attention(attn: torch.Tensor) -> torch.Tensor:
    """Raw attention: last layer, mean over heads, [CLS] row."""
    return attn[-1].mean(dim=0)[0]
