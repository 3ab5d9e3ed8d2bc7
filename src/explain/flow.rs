//! Attention flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in
//! Transformers"): treat the stacked attention maps as a flow network and
//! score each input token by the maximum flow it can receive from the top
//! `[CLS]` node. Unlike rollout (which multiplies the maps, i.e. sums over
//! paths), max-flow is limited by the narrowest layer of each route.
//!
//! Construction (as in the authors' `attention_graph_util.py`):
//! - nodes `(l, i)` for `l = 0..=L` (layer 0 = input embeddings) and token `i`;
//! - per layer the residual-averaged map `Â_l = 0.5·mean_h A_l + 0.5·I`, rows
//!   renormalised to sum 1 (the residual connection carries half the signal);
//! - an edge from `(l+1, i)` down to `(l, j)` with capacity `Â_l[i][j]`
//!   (query `i` of layer `l` attends to key `j`);
//! - score of token `j` = max-flow from source `(L, 0)` to sink `(0, j)`; the
//!   reference then divides by the sum over tokens, so the scores sum to 1
//!   (the raw sum is kept as the note `total_flow`).
//!
//! Cost: one exact max-flow (Dinic, f64) per token on `(L+1)·n` nodes and
//! about `(L−1)·n² + 2n` useful edges, i.e. `n` times Dinic's `O(V²E)` worst
//! case. Measured (dev profile, random peaky 12-head attention, one core):
//! n=32/L=6 ≈ 2 ms, n=128/L=6 ≈ 0.3 s, n=128/L=12 ≈ 1 s, n=256/L=12 ≈ 13 s
//! (≈ n³ growth), hence marked slow: instant for a sentence, unpleasant for a
//! full 512-token input. A single max-flow stays well under 100 ms at n=256,
//! so checking the cancel token per token and per phase keeps cancel prompt.

use anyhow::ensure;

use super::{Attribution, Cancelled, ExplainInput, Explanation, Family, Progress};
use crate::model::Attentions;

/// Attention flow as an [`Attribution`] ("flow"); needs only the attentions.
pub struct AttentionFlow;

impl Attribution for AttentionFlow {
    fn name(&self) -> &'static str {
        "flow"
    }
    fn family(&self) -> Family {
        Family::Attention
    }
    fn is_slow(&self) -> bool {
        true
    }
    /// Slow, but on the attentions alone (single-threaded max-flow).
    fn runs_model(&self) -> bool {
        false
    }
    fn needs_classifier(&self) -> bool {
        false
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
        let raw = attention_flow_raw(&input.forward.attentions, progress)?;
        let total: f64 = raw.iter().sum();
        Ok(Explanation {
            scores: normalise(&raw),
            forward_passes: 0,
            notes: vec![("total_flow".into(), total)],
        })
    }
}

/// Flow scores per token, normalised to sum 1 (the authors' convention).
pub fn attention_flow(att: &Attentions, progress: &Progress) -> anyhow::Result<Vec<f32>> {
    Ok(normalise(&attention_flow_raw(att, progress)?))
}

fn normalise(raw: &[f64]) -> Vec<f32> {
    let total: f64 = raw.iter().sum();
    raw.iter().map(|v| if total > 0.0 { (v / total) as f32 } else { 0.0 }).collect()
}

/// Residual-averaged, row-normalised capacity matrices `Â_l` (`len × len`,
/// row-major, rows = queries), one per layer. Errors on an empty tensor or
/// on values that are not attention probabilities.
pub fn flow_capacities(att: &Attentions) -> anyhow::Result<Vec<Vec<f64>>> {
    ensure!(
        att.layers > 0 && att.heads > 0 && att.len > 0,
        "attention flow needs a non-empty attention tensor (got {} layers, {} heads, {} tokens)",
        att.layers,
        att.heads,
        att.len
    );
    ensure!(
        att.data.iter().all(|v| v.is_finite() && *v >= -1e-6),
        "attention tensor holds negative or non-finite values; flow expects softmax probabilities"
    );
    let n = att.len;
    Ok((0..att.layers)
        .map(|l| {
            let mean = att.mean_heads(l);
            let mut m: Vec<f64> = mean.iter().map(|&v| 0.5 * f64::from(v.max(0.0))).collect();
            for i in 0..n {
                m[i * n + i] += 0.5;
                let row = &mut m[i * n..(i + 1) * n];
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            m
        })
        .collect())
}

/// Raw max-flow value from the top `[CLS]` node to every input token.
///
/// Checks `progress` between tokens (reporting the fraction done) and the
/// cancel token at every Dinic phase, so a cancel stops within one phase.
pub fn attention_flow_raw(att: &Attentions, progress: &Progress) -> anyhow::Result<Vec<f64>> {
    let caps = flow_capacities(att)?;
    let (n, layers) = (att.len, att.layers);
    let node = |l: usize, i: usize| l * n + i;
    let mut g = MaxFlow::new((layers + 1) * n);
    for (l, cap) in caps.iter().enumerate() {
        // Only the source sends from the top layer; other top nodes are unreachable.
        let queries: Vec<usize> = if l + 1 == layers { vec![0] } else { (0..n).collect() };
        for i in queries {
            for j in 0..n {
                if cap[i * n + j] > 0.0 {
                    g.add_edge(node(l + 1, i), node(l, j), cap[i * n + j]);
                }
            }
        }
    }
    let cancel = progress.token().clone();
    let is_cancelled = move || cancel.is_cancelled();
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        progress.checkpoint(j as f32 / n as f32)?;
        out.push(g.max_flow(node(layers, 0), node(0, j), &is_cancelled)?);
    }
    Ok(out)
}

/// Residual capacities at or below this are treated as saturated.
const EPS: f64 = 1e-12;

/// Dinic's max-flow on f64 capacities. Built once, solved for many sinks:
/// [`MaxFlow::max_flow`] resets the residual graph first.
pub struct MaxFlow {
    adj: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<f64>,
    orig: Vec<f64>,
    level: Vec<u32>,
    next: Vec<usize>,
}

impl MaxFlow {
    pub fn new(nodes: usize) -> Self {
        Self {
            adj: vec![Vec::new(); nodes],
            to: Vec::new(),
            cap: Vec::new(),
            orig: Vec::new(),
            level: vec![0; nodes],
            next: vec![0; nodes],
        }
    }

    /// Directed edge `u → v`; its reverse residual edge has id `e ^ 1`.
    pub fn add_edge(&mut self, u: usize, v: usize, capacity: f64) {
        for (a, b, c) in [(u, v, capacity), (v, u, 0.0)] {
            self.adj[a].push(self.to.len());
            self.to.push(b);
            self.orig.push(c);
            self.cap.push(c);
        }
    }

    /// Maximum flow from `s` to `t`; fails with [`Cancelled`] when
    /// `is_cancelled` turns true (checked once per phase).
    pub fn max_flow(&mut self, s: usize, t: usize, is_cancelled: &dyn Fn() -> bool) -> anyhow::Result<f64> {
        ensure!(s < self.adj.len() && t < self.adj.len(), "max-flow node out of range");
        if s == t {
            return Ok(0.0);
        }
        self.cap.copy_from_slice(&self.orig);
        let mut flow = 0.0;
        // Each phase lengthens the shortest augmenting path, so at most |V| phases.
        for _ in 0..=self.adj.len() {
            if is_cancelled() {
                return Err(Cancelled.into());
            }
            if !self.bfs(s, t) {
                break;
            }
            self.next.iter_mut().for_each(|x| *x = 0);
            loop {
                let pushed = self.dfs(s, t, f64::INFINITY);
                if pushed <= EPS {
                    break;
                }
                flow += pushed;
            }
        }
        Ok(flow)
    }

    fn bfs(&mut self, s: usize, t: usize) -> bool {
        const UNSEEN: u32 = u32::MAX;
        self.level.iter_mut().for_each(|l| *l = UNSEEN);
        self.level[s] = 0;
        let mut queue = std::collections::VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            for &e in &self.adj[u] {
                let v = self.to[e];
                if self.cap[e] > EPS && self.level[v] == UNSEEN {
                    self.level[v] = self.level[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        self.level[t] != UNSEEN
    }

    /// Pushes up to `limit` from `u` towards `t` along the level graph, using
    /// every admissible edge until the limit is met (multi-path blocking flow).
    fn dfs(&mut self, u: usize, t: usize, limit: f64) -> f64 {
        if u == t {
            return limit;
        }
        let mut sent = 0.0;
        while self.next[u] < self.adj[u].len() {
            let e = self.adj[u][self.next[u]];
            let v = self.to[e];
            if self.cap[e] > EPS && self.level[v] == self.level[u] + 1 && self.level[v] <= self.level[t] {
                let pushed = self.dfs(v, t, (limit - sent).min(self.cap[e]));
                if pushed > 0.0 {
                    self.cap[e] -= pushed;
                    self.cap[e ^ 1] += pushed;
                    sent += pushed;
                    if limit - sent <= EPS {
                        return sent;
                    }
                }
            }
            // This edge is saturated or leads nowhere any more.
            self.next[u] += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{CancelToken, is_cancelled};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random_attentions(rng: &mut StdRng, layers: usize, heads: usize, n: usize, peaky: f32) -> Attentions {
        let mut data = Vec::with_capacity(layers * heads * n * n);
        for _ in 0..layers * heads * n {
            let row: Vec<f32> = (0..n).map(|_| (rng.r#gen::<f32>() * peaky).exp()).collect();
            let s: f32 = row.iter().sum();
            data.extend(row.iter().map(|v| v / s));
        }
        Attentions::new(layers, heads, n, data).unwrap()
    }

    /// Min-cut by enumerating every source side: exponential, tiny graphs only.
    fn brute_force_min_cut(caps: &[Vec<f64>], n: usize, sink: usize) -> f64 {
        let layers = caps.len();
        let nodes = (layers + 1) * n;
        let (s, t) = (layers * n, sink);
        let others: Vec<usize> = (0..nodes).filter(|&v| v != s && v != t).collect();
        let mut best = f64::INFINITY;
        for bits in 0u64..(1 << others.len()) {
            let mut in_s = vec![false; nodes];
            in_s[s] = true;
            for (k, &v) in others.iter().enumerate() {
                in_s[v] = bits >> k & 1 == 1;
            }
            // Every upper node keeps its edges here: pruning is not assumed.
            let mut cut = 0.0;
            for (l, cap) in caps.iter().enumerate() {
                for i in 0..n {
                    for j in 0..n {
                        if in_s[(l + 1) * n + i] && !in_s[l * n + j] {
                            cut += cap[i * n + j];
                        }
                    }
                }
            }
            best = best.min(cut);
        }
        best
    }

    #[test]
    fn dinic_matches_brute_force_min_cut_on_tiny_graphs() {
        let mut rng = StdRng::seed_from_u64(11);
        for (layers, n) in [(1, 3), (2, 3), (3, 3), (2, 4)] {
            for _ in 0..4 {
                let att = random_attentions(&mut rng, layers, 2, n, 4.0);
                let caps = flow_capacities(&att).unwrap();
                let raw = attention_flow_raw(&att, &Progress::none()).unwrap();
                for j in 0..n {
                    let want = brute_force_min_cut(&caps, n, j);
                    assert!((raw[j] - want).abs() < 1e-9, "L={layers} n={n} token {j}: {} vs {want}", raw[j]);
                    // Bounded by what leaves the source (1) and what enters the sink.
                    let into_sink: f64 = (0..n).map(|i| caps[0][i * n + j]).sum();
                    assert!(raw[j] <= 1.0 + 1e-9 && raw[j] <= into_sink + 1e-9);
                }
            }
        }
    }

    #[test]
    fn generic_dinic_on_textbook_network() {
        // CLRS figure 26.1: max flow 23.
        let mut g = MaxFlow::new(6);
        let edges = [(0, 1, 16.0), (0, 2, 13.0), (1, 3, 12.0), (2, 1, 4.0), (2, 4, 14.0)];
        let more = [(3, 2, 9.0), (3, 5, 20.0), (4, 3, 7.0), (4, 5, 4.0)];
        for (u, v, c) in edges.into_iter().chain(more) {
            g.add_edge(u, v, c);
        }
        let flow = g.max_flow(0, 5, &|| false).unwrap();
        assert!((flow - 23.0).abs() < 1e-12);
        // Reusable: a second solve starts from a fresh residual graph.
        assert!((g.max_flow(0, 5, &|| false).unwrap() - 23.0).abs() < 1e-12);
    }

    #[test]
    fn hand_made_attention_has_known_flow() {
        // Two layers, uniform 2×2 attention: Â = [[.75,.25],[.25,.75]] in both.
        // To token 0: min(.75,.75) + min(.25,.25) = 1; to token 1: min(.75,.25) + min(.25,.75) = .5.
        // (Rollout would give .625 / .375: flow is not path-summing.)
        let uniform = vec![vec![vec![0.5f32, 0.5], vec![0.5, 0.5]]];
        let att = Attentions::from_nested(&[uniform.clone(), uniform]).unwrap();
        let raw = attention_flow_raw(&att, &Progress::none()).unwrap();
        assert!((raw[0] - 1.0).abs() < 1e-12 && (raw[1] - 0.5).abs() < 1e-12, "{raw:?}");
        let scores = attention_flow(&att, &Progress::none()).unwrap();
        assert!((scores[0] - 2.0 / 3.0).abs() < 1e-6 && (scores[1] - 1.0 / 3.0).abs() < 1e-6);

        // Mean over heads: two heads that disagree average to the uniform map above.
        let h0 = vec![vec![1.0f32, 0.0], vec![0.0, 1.0]];
        let h1 = vec![vec![0.0f32, 1.0], vec![1.0, 0.0]];
        let att = Attentions::from_nested(&[vec![h0.clone(), h1.clone()], vec![h0, h1]]).unwrap();
        let raw2 = attention_flow_raw(&att, &Progress::none()).unwrap();
        assert!((raw2[0] - 1.0).abs() < 1e-12 && (raw2[1] - 0.5).abs() < 1e-12, "{raw2:?}");
    }

    #[test]
    fn one_layer_flow_is_the_cls_row_of_the_residual_map() {
        // Pins the direction: [CLS] is the query row, tokens are keys.
        let a = vec![vec![0.2f32, 0.5, 0.3], vec![0.0, 0.0, 1.0], vec![1.0, 0.0, 0.0]];
        let att = Attentions::from_nested(&[vec![a]]).unwrap();
        let raw = attention_flow_raw(&att, &Progress::none()).unwrap();
        for (got, want) in raw.iter().zip([0.6, 0.25, 0.15]) {
            assert!((got - want).abs() < 1e-7, "{raw:?}");
        }
    }

    #[test]
    fn bad_tensors_are_errors() {
        let empty = Attentions::new(0, 1, 2, vec![]).unwrap();
        assert!(attention_flow(&empty, &Progress::none()).is_err());
        let nan = Attentions::new(1, 1, 2, vec![f32::NAN, 1.0, 0.5, 0.5]).unwrap();
        let err = attention_flow(&nan, &Progress::none()).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
    }

    #[test]
    fn cancel_returns_cancelled_promptly() {
        let mut rng = StdRng::seed_from_u64(5);
        let att = random_attentions(&mut rng, 3, 2, 12, 3.0);
        let token = CancelToken::new();
        token.cancel();
        let err = attention_flow(&att, &Progress::new(token, None)).unwrap_err();
        assert!(is_cancelled(&err));

        // Cancel from the gauge after the first token is done.
        let token = CancelToken::new();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let t2 = token.clone();
        let report = |f: f32| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if f > 0.0 {
                t2.cancel();
            }
        };
        let err = attention_flow_raw(&att, &Progress::new(token, Some(&report))).unwrap_err();
        assert!(is_cancelled(&err));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "stopped after the first token");
        // The max-flow loop itself also watches the token.
        let mut g = MaxFlow::new(2);
        g.add_edge(0, 1, 1.0);
        assert!(is_cancelled(&g.max_flow(0, 1, &|| true).unwrap_err()));
    }

    /// Rough timing for the report: `cargo test --lib flow_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn flow_timing() {
        let mut rng = StdRng::seed_from_u64(1);
        for (layers, n) in [(6, 32), (6, 128), (12, 128), (12, 256)] {
            let att = random_attentions(&mut rng, layers, 12, n, 6.0);
            let t = std::time::Instant::now();
            let s = attention_flow(&att, &Progress::none()).unwrap();
            println!("n={n} L={layers}: {:?} (sum {})", t.elapsed(), s.iter().sum::<f32>());
        }
    }
}
