//! The hand-written forward against the candle graph on every tiny fixture
//! model it covers, one text and a padded batch of three.
//!
//! Tolerances (absolute): attention probabilities and logits 1e-5, hidden
//! states 1e-4 (values are O(1–10); the two paths sum in different orders).

use crate::model::Model;
use crate::model::encoder::{EncoderInput, EncoderOutput, RunMode};
use candle_core::Tensor;
use std::path::Path;

fn load(name: &str) -> Model {
    Model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a).iter().zip(values(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Word embeddings, type and position ids and the mask (when padded) of a
/// batch of texts: what an [`EncoderInput`] borrows.
struct BatchTensors {
    embeds: Tensor,
    types: Tensor,
    pos: Tensor,
    mask: Option<Tensor>,
}

impl BatchTensors {
    fn of(model: &Model, texts: &[&str]) -> Self {
        let encs: Vec<_> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
        let ids: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
        let types: Vec<&[u32]> = encs.iter().map(|e| e.type_ids.as_slice()).collect();
        let (ids, types, pos, mask) = model.batch_input(&ids, &types).unwrap();
        Self { embeds: model.encoder.embed_words(&ids).unwrap(), types, pos, mask }
    }

    fn input(&self) -> EncoderInput<'_> {
        EncoderInput { word_embeds: &self.embeds, position_ids: &self.pos, type_ids: &self.types, attention_mask: self.mask.as_ref() }
    }
}

/// (fast, graph) outputs for a batch of texts (padded when lengths differ).
fn both(model: &Model, texts: &[&str]) -> (EncoderOutput, EncoderOutput, Option<Tensor>) {
    let b = BatchTensors::of(model, texts);
    assert_eq!(b.mask.is_some(), texts.len() > 1, "the batch should be padded");
    let input = b.input();
    assert!(super::eligible(&model.encoder, &input), "fast path not eligible");
    let fast = super::forward(&model.encoder, &input, true).unwrap().expect("fast path ran");
    let graph = model.encoder.forward_graph(&input, RunMode::INFERENCE).unwrap();
    let logits_only = super::forward(&model.encoder, &input, false).unwrap().expect("fast path ran").logits;
    (fast, graph, logits_only)
}

fn check(name: &str) {
    let model = load(name);
    let single: &[&str] = &["the film was wonderful"];
    let batch: &[&str] = &["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly"];
    for texts in [single, batch] {
        let (fast, graph, logits_only) = both(&model, texts);
        let what = format!("{name} ({} texts)", texts.len());
        assert_eq!(fast.hidden_states.len(), graph.hidden_states.len(), "{what}: hidden state count");
        assert_eq!(fast.attentions.len(), graph.attentions.len(), "{what}: attention count");
        for (i, (a, b)) in fast.hidden_states.iter().zip(&graph.hidden_states).enumerate() {
            let d = max_diff(a, b);
            assert!(d <= 1e-4, "{what}: hidden state {i} differs by {d:e}");
        }
        for (i, (a, b)) in fast.attentions.iter().zip(&graph.attentions).enumerate() {
            let d = max_diff(a, b);
            assert!(d <= 1e-5, "{what}: attention {i} differs by {d:e}");
        }
        match (&fast.logits, &graph.logits, &logits_only) {
            (Some(a), Some(b), Some(c)) => {
                let (d, e) = (max_diff(a, b), max_diff(c, b));
                assert!(d <= 1e-5 && e <= 1e-5, "{what}: logits differ by {d:e} (logits-only run {e:e})");
            }
            (None, None, None) => {}
            _ => panic!("{what}: one path has logits, the other not"),
        }
    }
}

/// The first-query forward (`explain` with raw attention and rollout only)
/// keeps every layer but the last as the full pass does, the first row of
/// the last, the same logits, and NaN where it skipped work.
fn check_first_query(name: &str) {
    let model = load(name);
    let b = BatchTensors::of(&model, &["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly"]);
    let input = b.input();
    let full = super::forward(&model.encoder, &input, true).unwrap().unwrap();
    let first = model.encoder.forward_first_query(&input).unwrap();
    let layers = full.attentions.len();
    assert_eq!(first.attentions.len(), layers, "{name}");
    assert_eq!(first.hidden_states.len(), full.hidden_states.len(), "{name}");
    for (l, (a, b)) in first.attentions.iter().zip(&full.attentions).enumerate() {
        assert_eq!(a.dims(), b.dims(), "{name}: attention {l}");
        let len = a.dim(3).unwrap();
        for (row, (x, y)) in values(a).chunks(len).zip(values(b).chunks(len)).enumerate() {
            if l + 1 < layers || row % len == 0 {
                let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                assert!(d <= 1e-6, "{name}: attention {l} row {row} differs by {d:e}");
            } else {
                assert!(x.iter().all(|v| v.is_nan()), "{name}: attention {l} row {row} should be NaN (skipped)");
            }
        }
    }
    for (i, (a, b)) in first.hidden_states.iter().zip(&full.hidden_states).enumerate() {
        assert_eq!(a.dims(), b.dims(), "{name}: hidden state {i}");
        let (len, width) = (a.dim(1).unwrap(), a.dim(2).unwrap());
        for (row, (x, y)) in values(a).chunks(width).zip(values(b).chunks(width)).enumerate() {
            if i + 1 < full.hidden_states.len() || row % len == 0 {
                let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                assert!(d <= 1e-4, "{name}: hidden state {i} row {row} differs by {d:e}");
            } else {
                assert!(x.iter().all(|v| v.is_nan()), "{name}: hidden state {i} row {row} should be NaN");
            }
        }
    }
    if let (Some(a), Some(b)) = (&first.logits, &full.logits) {
        let d = max_diff(a, b);
        assert!(d <= 1e-5, "{name}: logits differ by {d:e}");
    } else {
        assert!(first.logits.is_none() && full.logits.is_none(), "{name}: logits on one side only");
    }
}

#[test]
fn first_query_forward_matches_the_full_pass_where_it_is_read() {
    for name in ["tiny-bert", "tiny-bert-encoder", "tiny-roberta", "tiny-distilbert", "tiny-albert"] {
        check_first_query(name);
    }
    // Not eligible for the hand-written path: the full graph, nothing NaN.
    let model = load("tiny-deberta-v2");
    let enc = model.encode("the film was wonderful").unwrap();
    let out = model.forward_batch_first_query(&[&enc]).unwrap();
    assert!(out[0].attentions.data.iter().all(|v| v.is_finite()));
}

#[test]
fn bert_fast_forward_matches_the_graph() {
    check("tiny-bert");
    check("tiny-bert-encoder");
    check("tiny-bert-f16");
}

#[test]
fn distilbert_fast_forward_matches_the_graph() {
    check("tiny-distilbert");
}

#[test]
fn roberta_and_xlm_r_fast_forward_match_the_graph() {
    check("tiny-roberta");
    check("tiny-xlm-roberta");
}

#[test]
fn electra_fast_forward_matches_the_graph() {
    check("tiny-electra");
}

#[test]
fn albert_fast_forward_matches_the_graph() {
    check("tiny-albert");
}

/// DeBERTa's relative terms and ModernBERT's layers keep the candle graph.
#[test]
fn deberta_and_modernbert_are_not_eligible() {
    for name in ["tiny-deberta-v2", "tiny-deberta-v3", "tiny-modernbert"] {
        let model = load(name);
        let enc = model.encode("a film").unwrap();
        let (ids, types, pos, _) = model.batch_input(&[&enc.ids], &[&enc.type_ids]).unwrap();
        let embeds = model.encoder.embed_words(&ids).unwrap();
        let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: None };
        assert!(!super::eligible(&model.encoder, &input), "{name} must keep the candle graph");
    }
}

/// Larger sizes than the fixtures: several tiles and threads in every matmul
/// (few rows: cut by columns; many: by rows), with the weight in place, as a
/// plain `Wᵀ` and in packed panels (200 outputs: the last panel partial),
/// with a residual and with the activation that keeps its input; compared
/// with a plain triple loop.
#[test]
fn tiled_linear_matches_a_plain_loop() {
    use super::linear::{Epilogue, Lin, linear};
    use crate::model::config::Activation;
    let (n, k) = (200, 96);
    let val = |i: usize, s: f32| (i as f32 * 0.37 + s).sin() * 0.5;
    let w: Vec<f32> = (0..n * k).map(|i| val(i, 0.7)).collect();
    let b: Vec<f32> = (0..n).map(|i| val(i, 1.3)).collect();
    let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
    let cache = super::PackedWeights::default();
    let panels = cache.get(&w, n, k, false);
    for m in [5, 40, 300] {
        let x: Vec<f32> = (0..m * k).map(|i| val(i, 0.1)).collect();
        let res: Vec<f32> = (0..m * n).map(|i| val(i, 2.1)).collect();
        let plain = Lin { w: &w, b: Some(&b), n, k, wt: None, panels: None, back_panels: None };
        for (name, lin) in [
            ("in place", plain),
            ("transposed", Lin { wt: Some(&wt), ..plain }),
            ("panels", Lin { panels: Some(panels.as_slice()), ..plain }),
        ] {
            let ys = n + 8;
            let mut y = vec![f32::NAN; m * ys];
            linear(&x, m, &lin, &mut y, ys, 8, Epilogue::Residual(&res));
            for r in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|c| x[r * k + c] * w[j * k + c]).sum::<f32>() + b[j] + res[r * n + j];
                    let got = y[r * ys + 8 + j];
                    assert!((got - want).abs() < 1e-4, "{name}, {m} rows, ({r}, {j}): {got} vs {want}");
                }
                assert!(y[r * ys..r * ys + 8].iter().all(|v| v.is_nan()), "{name}: columns before col0 were written");
            }
            // Activation inside the tiles, keeping its input.
            let mut pre = vec![f32::NAN; m * n];
            let mut act = vec![f32::NAN; m * n];
            linear(&x, m, &lin, &mut act, n, 0, Epilogue::ActKeep(Activation::Gelu, super::linear::Keep::new(&mut pre)));
            for r in 0..m {
                let mut want: Vec<f32> = (0..n).map(|j| (0..k).map(|c| x[r * k + c] * w[j * k + c]).sum::<f32>() + b[j]).collect();
                for (j, (got, want)) in pre[r * n..(r + 1) * n].iter().zip(&want).enumerate() {
                    assert!((got - want).abs() < 1e-4, "{name}, {m} rows, kept ({r}, {j}): {got} vs {want}");
                }
                super::rows::activate(&mut want, Activation::Gelu);
                for (j, (got, want)) in act[r * n..(r + 1) * n].iter().zip(&want).enumerate() {
                    assert!((got - want).abs() < 1e-4, "{name}, {m} rows, activated ({r}, {j}): {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn packed_weights_are_laid_out_in_panels_and_cached_until_cleared() {
    use super::linear::PANEL;
    let (n, k) = (PANEL + 6, 3); // a full panel and a partial one
    let mut w: Vec<f32> = (0..n * k).map(|i| i as f32 + 1.0).collect();
    let cache = super::PackedWeights::default();
    let fwd = cache.get(&w, n, k, false);
    assert_eq!(fwd.len(), 2 * PANEL * k);
    for j in 0..2 * PANEL {
        for c in 0..k {
            let want = if j < n { w[j * k + c] } else { 0.0 };
            assert_eq!(fwd[((j / PANEL) * k + c) * PANEL + j % PANEL], want, "forward ({j}, {c})");
        }
    }
    // The input gradient's panels run over W's columns: one partial panel here.
    let back = cache.get(&w, n, k, true);
    assert_eq!(back.len(), PANEL * n);
    for c in 0..PANEL {
        for j in 0..n {
            let want = if c < k { w[j * k + c] } else { 0.0 };
            assert_eq!(back[j * PANEL + c], want, "backward ({c}, {j})");
        }
    }
    w[0] = 99.0; // changed in place, as a fine-tuning step does
    assert_eq!(cache.get(&w, n, k, false)[0], 1.0, "the copy is kept until cleared");
    assert_eq!(cache.get(&w, n, k, true)[0], 1.0);
    cache.clear();
    assert_eq!(cache.get(&w, n, k, false)[0], 99.0);
    assert_eq!(cache.get(&w, n, k, true)[0], 99.0);
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Largest difference relative to the reference's largest magnitude.
fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = max_abs(want).max(1e-6);
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

/// The hand-written backward against candle's autograd on the graph: chosen
/// logits, embedding gradients, attentions and attention gradients, for one
/// text and a padded batch with different targets. Tolerance: 1e-4 of the
/// largest magnitude (the paths sum in different orders).
fn check_gradients(name: &str) {
    let model = load(name);
    let single: &[&str] = &["the film was wonderful"];
    let batch: &[&str] = &["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly"];
    for texts in [single, batch] {
        let what = format!("{name} ({} texts)", texts.len());
        let b = BatchTensors::of(&model, texts);
        let input = b.input();
        let targets: Vec<usize> = (0..texts.len()).map(|i| (i + 1) % model.labels().len()).collect();
        let fast = model.encoder.gradients_fast(&input, &targets, true).unwrap().expect("fast backward ran");
        let (chosen, g_emb, attentions, attn_grads) = model.gradients_graph(&input, &targets).unwrap();
        let fast_chosen: Vec<f32> = targets.iter().zip(&fast.logits).map(|(&t, l)| l[t]).collect();
        let d = rel_diff(&fast_chosen, &chosen);
        assert!(d <= 1e-5, "{what}: chosen logits differ by {d:e}");
        let d = rel_diff(&fast.embed_grads, &values(&g_emb));
        assert!(d <= 1e-4, "{what}: embedding gradients differ by {d:e} of their scale");
        assert!(max_abs(&fast.embed_grads) > 0.0, "{what}: zero embedding gradients");
        assert_eq!(fast.attention_grads.len(), attn_grads.len(), "{what}: layer count");
        for (l, ((a, b), (pa, pb))) in fast.attention_grads.iter().zip(&attn_grads).zip(fast.attentions.iter().zip(&attentions)).enumerate() {
            let d = rel_diff(&values(a), &values(b));
            assert!(d <= 1e-4, "{what}: attention gradients of layer {l} differ by {d:e} of their scale");
            let d = max_diff(pa, pb);
            assert!(d <= 1e-5, "{what}: attentions of layer {l} differ by {d:e}");
        }
        // Without attention outputs (integrated gradients) the last layer runs
        // for the first token only; the gradients stay the same.
        let lean = model.encoder.gradients_fast(&input, &targets, false).unwrap().expect("fast backward ran");
        assert!(lean.attention_grads.is_empty() && lean.attentions.is_empty(), "{what}: attention kept when not asked");
        let d = rel_diff(&lean.embed_grads, &values(&g_emb));
        assert!(d <= 1e-4, "{what}: first-token-only embedding gradients differ by {d:e} of their scale");
        let lean_chosen: Vec<f32> = targets.iter().zip(&lean.logits).map(|(&t, l)| l[t]).collect();
        let d = rel_diff(&lean_chosen, &chosen);
        assert!(d <= 1e-5, "{what}: first-token-only logits differ by {d:e}");
    }
}

#[test]
fn bert_and_distilbert_fast_backward_match_autograd() {
    check_gradients("tiny-bert");
    check_gradients("tiny-bert-f16");
    check_gradients("tiny-distilbert");
}

#[test]
fn roberta_electra_albert_fast_backward_match_autograd() {
    check_gradients("tiny-roberta");
    check_gradients("tiny-xlm-roberta");
    check_gradients("tiny-electra");
    check_gradients("tiny-albert");
}

/// The embedded MiniLM classifier (384 wide, 12 heads, 6 layers) on a padded
/// batch of ~40 tokens: large enough that every kernel takes its threaded
/// path (tiles, parallel heads, chunked norms), which the tiny fixtures never do.
#[test]
fn real_size_fast_backward_matches_autograd() {
    let model = Model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/minilm-sst2")).unwrap();
    let long = "an unbelievably dull , overlong and self-satisfied film whose few good moments , a fine score and two \
                committed performances , cannot rescue a script that never decides what it wants to say";
    let pieces = model.encode(long).unwrap().len();
    assert!(pieces >= 36, "the long text should have ~40 pieces, has {pieces}");
    let b = BatchTensors::of(&model, &[long, "a quietly wonderful film"]);
    let input = b.input();
    let targets = [0, 1];
    let (chosen, g_emb, _, attn_grads) = model.gradients_graph(&input, &targets).unwrap();
    for with_attention in [true, false] {
        let fast = model.encoder.gradients_fast(&input, &targets, with_attention).unwrap().expect("fast backward ran");
        let fast_chosen: Vec<f32> = targets.iter().zip(&fast.logits).map(|(&t, l)| l[t]).collect();
        assert!(rel_diff(&fast_chosen, &chosen) <= 1e-5, "logits {fast_chosen:?} vs {chosen:?}");
        let d = rel_diff(&fast.embed_grads, &values(&g_emb));
        assert!(d <= 1e-4, "embedding gradients differ by {d:e} of their scale (attention: {with_attention})");
        for (l, (a, b)) in fast.attention_grads.iter().zip(&attn_grads).enumerate() {
            let d = rel_diff(&values(a), &values(b));
            assert!(d <= 1e-4, "attention gradients of layer {l} differ by {d:e} of their scale");
        }
    }
}

#[test]
fn bare_encoders_have_no_fast_gradients() {
    let model = load("tiny-bert-encoder");
    let enc = model.encode("a film").unwrap();
    let (ids, types, pos, _) = model.batch_input(&[&enc.ids], &[&enc.type_ids]).unwrap();
    let embeds = model.encoder.embed_words(&ids).unwrap();
    let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: None };
    assert!(model.encoder.gradients_fast(&input, &[0], true).unwrap().is_none());
}

/// `linear_back` with tiles, threads, a strided column block and accumulation,
/// with the weight in place and in panels, against a plain loop (rows past
/// the given count stay untouched).
#[test]
fn tiled_linear_backward_matches_a_plain_loop() {
    use super::linear::{Lin, linear_back};
    let (m, n, k) = (300, 96, 200);
    let val = |i: usize, s: f32| (i as f32 * 0.37 + s).sin() * 0.5;
    let (dys, col0) = (n + 24, 16);
    let dy: Vec<f32> = (0..m * dys).map(|i| val(i, 0.1)).collect();
    let w: Vec<f32> = (0..n * k).map(|i| val(i, 0.7)).collect();
    let panels = super::PackedWeights::default().get(&w, n, k, true);
    let plain = Lin { w: &w, b: None, n, k, wt: None, panels: None, back_panels: None };
    let start: Vec<f32> = (0..m * k).map(|i| val(i, 2.1)).collect();
    // In place and from panels (200 input columns: the last panel partial);
    // few rows (cut by columns) and many (cut by rows).
    for (name, lin) in [("in place", plain), ("panels", Lin { back_panels: Some(panels.as_slice()), ..plain })] {
        for rows in [7, m] {
            for accumulate in [false, true] {
                let mut dx = start.clone();
                linear_back(&dy, dys, col0, rows, &lin, &mut dx, accumulate);
                for r in 0..m {
                    for c in 0..k {
                        let mut want: f32 = if r < rows { (0..n).map(|j| dy[r * dys + col0 + j] * w[j * k + c]).sum() } else { 0.0 };
                        if accumulate || r >= rows {
                            want += start[r * k + c];
                        }
                        let got = dx[r * k + c];
                        assert!((got - want).abs() < 1e-4, "{name}, {rows} rows, ({r}, {c}) accumulate={accumulate}: {got} vs {want}");
                    }
                }
            }
        }
    }
}

/// Layer norm and activation backwards against central finite differences
/// (in f64 sums of the f32 forward, step 1e-2 on O(1) inputs).
#[test]
fn row_backwards_match_finite_differences() {
    use super::rows::{activate, activate_back, layer_norm, layer_norm_back};
    use crate::model::config::Activation;
    let n = 16;
    let x: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.91).sin() * 2.0).collect();
    let w: Vec<f32> = (0..n).map(|i| 0.5 + (i as f32 * 0.3).cos()).collect();
    let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.2).sin()).collect();
    let g: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 1.7).cos()).collect();
    // Loss = Σ g·f(x); its derivative by x is the backward of g.
    let loss = |f: &dyn Fn(&mut [f32]), x: &[f32]| {
        let mut y = x.to_vec();
        f(&mut y);
        y.iter().zip(&g).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()
    };
    let numeric = |f: &dyn Fn(&mut [f32]), i: usize| {
        let h = 1e-2f32;
        let (mut p, mut m) = (x.clone(), x.clone());
        p[i] += h;
        m[i] -= h;
        ((loss(f, &p) - loss(f, &m)) / (2.0 * h as f64)) as f32
    };
    let norm = |v: &mut [f32]| layer_norm(v, &w, &b, 1e-5);
    let mut dx = vec![0f32; 2 * n];
    layer_norm_back(&x, &w, 1e-5, &g, &mut dx);
    for i in 0..2 * n {
        let want = numeric(&norm, i);
        assert!((dx[i] - want).abs() < 2e-3, "layer norm, {i}: {} vs {want}", dx[i]);
    }
    for a in [Activation::Gelu, Activation::GeluTanh, Activation::Relu] {
        let act = |v: &mut [f32]| activate(v, a);
        let mut dg = g.clone();
        activate_back(&x, &mut dg, a);
        for i in 0..2 * n {
            if a == Activation::Relu && x[i].abs() < 0.05 {
                continue; // the kink
            }
            let want = numeric(&act, i);
            assert!((dg[i] - want).abs() < 2e-3, "{a:?}, {i}: {} vs {want}", dg[i]);
        }
    }
}

/// A logits batch split over two workers (the default with two threads)
/// gives each row the logits it gets alone.
#[test]
fn split_logits_batches_match_rows_alone() {
    let model = load("tiny-bert");
    let texts = ["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly", "fine", "a film"];
    let encs: Vec<_> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let ids: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
    let types: Vec<&[u32]> = encs.iter().map(|e| e.type_ids.as_slice()).collect();
    let together = model.logits_batch(&ids, &types).unwrap();
    assert_eq!(together.len(), texts.len());
    for (i, row) in together.iter().enumerate() {
        let alone = &model.logits_batch(&ids[i..=i], &types[i..=i]).unwrap()[0];
        let d = row.iter().zip(alone).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(d <= 1e-5, "row {i}: logits differ by {d:e} in the batch");
    }
}
