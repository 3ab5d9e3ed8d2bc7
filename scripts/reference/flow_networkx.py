#!/usr/bin/env python3
"""Attention flow (Abnar & Zuidema 2020) with networkx, as an independent check of
expnet's Dinic implementation (src/explain/flow.rs).

    ~/.cache/pyref/bin/python scripts/reference/flow_networkx.py MODEL_DIR "TEXT" > ref.json
    expnet explain --model MODEL_DIR "TEXT" --methods flow   # compare explanations.flow.scores with ref "norm"

Graph as in the authors' attention_graph_util.py: per layer the head-mean attention
averaged with the identity (0.5 A + 0.5 I), rows renormalised; edges from (l+1, i) down
to (l, j) with that capacity; score of token j = max-flow from the top [CLS] node to
(0, j), normalised to sum 1 ("norm"; "raw" keeps the flows).
"""
import sys, json, numpy as np, torch, networkx as nx
from transformers import AutoTokenizer, AutoModelForSequenceClassification
d = sys.argv[1]; text = sys.argv[2]
tok = AutoTokenizer.from_pretrained(d); m = AutoModelForSequenceClassification.from_pretrained(d, attn_implementation="eager").eval()
enc = tok(text, return_tensors="pt")
with torch.no_grad(): out = m(**enc, output_attentions=True)
att = np.stack([a[0].mean(0).numpy() for a in out.attentions])  # L x n x n
L, n, _ = att.shape
res = att * 0.5 + 0.5 * np.eye(n)[None]
res = res / res.sum(-1, keepdims=True)
# Abnar & Zuidema attention_graph_util: nodes per layer, edges from layer l+1 token i to layer l token j, capacity res[l][i][j]
G = nx.DiGraph()
for l in range(L):
    for i in range(n):
        for j in range(n):
            G.add_edge((l + 1, i), (l, j), capacity=float(res[l][i][j]))
flows = [nx.maximum_flow_value(G, (L, 0), (0, j)) for j in range(n)]
flows = np.array(flows); print(json.dumps({"tokens": tok.convert_ids_to_tokens(enc["input_ids"][0]), "raw": flows.tolist(), "norm": (flows / flows.sum()).tolist()}))
