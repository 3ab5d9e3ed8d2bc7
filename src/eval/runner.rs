//! Running methods over a rationale data set: word-level plausibility (F1@k,
//! AUROC, AUPRC against the binarised human rationale), faithfulness
//! (comprehensiveness / sufficiency) and speed, with bootstrap intervals.
//! Shared by `expnet eval` and the results script.

use super::{DEFAULT_FRACTIONS, bootstrap_mean_ci, comprehensiveness_sufficiency, plausibility};
use crate::data::align::{Pool, example_piece_map, fill_missing, piece_to_word_scores};
use crate::data::{Dataset, Example};
use crate::explain::{Attribution, ExplainInput, Progress};
use crate::model::{Encoding, Model};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Options of one evaluation run.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub limit: Option<usize>,
    /// Human rationale fraction at or above which a word counts as gold.
    pub threshold: f32,
    pub pool: Pool,
    /// Compute comprehensiveness and sufficiency (extra forward passes).
    pub faithfulness: bool,
    pub bootstrap: usize,
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { limit: None, threshold: 0.5, pool: Pool::Max, faithfulness: true, bootstrap: 1000, seed: 0 }
    }
}

/// Mean with a 95% bootstrap interval.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// One method's results.
#[derive(Clone, Debug, Serialize)]
pub struct MethodSummary {
    pub method: String,
    pub token_f1: Estimate,
    pub precision: Estimate,
    pub recall: Estimate,
    pub auroc: Estimate,
    pub auprc: Estimate,
    pub comprehensiveness: Option<Estimate>,
    pub sufficiency: Option<Estimate>,
    pub ms_per_example: f64,
    pub examples_per_sec: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub data: String,
    pub examples: usize,
    /// Examples whose gold rationale is empty (left out of plausibility).
    pub skipped_empty_gold: usize,
    pub accuracy: Option<f64>,
    /// Expected F1@k of a uniformly random ranking of words: mean k / n.
    pub chance_f1: f64,
    pub methods: Vec<MethodSummary>,
}

#[derive(Default)]
struct Acc {
    f1: Vec<f64>,
    p: Vec<f64>,
    r: Vec<f64>,
    auroc: Vec<f64>,
    auprc: Vec<f64>,
    comp: Vec<f64>,
    suff: Vec<f64>,
    secs: f64,
}

fn estimate(v: &[f64], iters: usize, seed: u64) -> Estimate {
    let (mean, lo, hi) = bootstrap_mean_ci(v, iters, seed);
    Estimate { mean, lo, hi, n: v.len() }
}

fn encode(model: &Model, ex: &Example) -> anyhow::Result<Encoding> {
    match ex.text_pair() {
        Some(p) => model.encode_pair(&ex.text(), &p),
        None => model.encode(&ex.text()),
    }
}

/// A "method" that scores pieces uniformly at random, pooled like the others,
/// so the word-pooling bias has a measured baseline.
struct RandomScores(u64);

impl Attribution for RandomScores {
    fn name(&self) -> &'static str {
        "random"
    }
    fn family(&self) -> crate::explain::Family {
        crate::explain::Family::Attention
    }
    fn needs_classifier(&self) -> bool {
        false
    }
    fn explain(&self, input: &ExplainInput, _: &Progress) -> anyhow::Result<crate::explain::Explanation> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.0 ^ input.encoding.ids.iter().map(|&v| v as u64).sum::<u64>());
        let scores = input.encoding.tokens.iter().map(|t| if t.special { 0.0 } else { rng.r#gen::<f32>() }).collect();
        Ok(crate::explain::Explanation { scores, forward_passes: 0, notes: vec![] })
    }
}

/// Adds the random baseline to a method list.
pub fn with_random_baseline(mut methods: Vec<Arc<dyn Attribution>>, seed: u64) -> Vec<Arc<dyn Attribution>> {
    methods.push(Arc::new(RandomScores(seed)));
    methods
}

/// Evaluates `methods` on the examples of `data` that have a rationale.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    methods: &[Arc<dyn Attribution>],
    opts: &EvalOptions,
    on_progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<EvalReport> {
    let examples: Vec<&Example> = data.examples.iter().filter(|e| e.rationale.is_some()).take(opts.limit.unwrap_or(usize::MAX)).collect();
    anyhow::ensure!(!examples.is_empty(), "{} has no examples with a human rationale in this split", data.name);
    let mut accs: Vec<Acc> = methods.iter().map(|_| Acc::default()).collect();
    let (mut correct, mut skipped, mut chance) = (0usize, 0usize, Vec::new());
    for (i, ex) in examples.iter().enumerate() {
        on_progress(i, examples.len());
        let enc = encode(model, ex)?;
        let fwd = model.forward(&enc)?;
        let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
        if let Some(p) = &fwd.prediction {
            correct += (p.index == ex.label) as usize;
        }
        let gold = ex.binary_rationale(opts.threshold).expect("filtered above");
        let map = example_piece_map(ex, &enc.tokens);
        let empty_gold = !gold.iter().any(|&g| g);
        if empty_gold {
            skipped += 1;
        } else {
            chance.push(gold.iter().filter(|&&g| g).count() as f64 / gold.len() as f64);
        }
        let maskable: Vec<bool> = enc.tokens.iter().map(|t| !t.special).collect();
        let full_prob = fwd.prediction.as_ref().map(|p| p.probabilities[target]);
        let input = ExplainInput::new(model, &enc, &fwd, target).for_methods(methods);
        for (m, acc) in methods.iter().zip(accs.iter_mut()) {
            let t0 = Instant::now();
            let e = m.explain(&input, &Progress::none())?;
            // A shared backward pass counts for every method that read it.
            acc.secs += (t0.elapsed() + input.take_reused_cost()).as_secs_f64();
            if !empty_gold {
                let words = piece_to_word_scores(&e.scores, &map, gold.len(), opts.pool);
                let words = fill_missing(&words, f32::NEG_INFINITY);
                let pl = plausibility(&words, &gold);
                if let Some(prf) = pl.token_f1 {
                    acc.f1.push(prf.f1);
                    acc.p.push(prf.precision);
                    acc.r.push(prf.recall);
                }
                acc.auroc.extend(pl.auroc);
                acc.auprc.extend(pl.auprc);
            }
            if let (true, Some(full)) = (opts.faithfulness, full_prob) {
                let mut predict = |masks: &[Vec<bool>]| model.target_probabilities(&enc, masks, target);
                let (c, s) = comprehensiveness_sufficiency(&e.scores, &maskable, full, &DEFAULT_FRACTIONS, &mut predict)?;
                acc.comp.push(c);
                acc.suff.push(s);
            }
        }
    }
    on_progress(examples.len(), examples.len());
    let n = examples.len();
    let b = opts.bootstrap;
    let methods = methods
        .iter()
        .zip(&accs)
        .map(|(m, a)| MethodSummary {
            method: m.name().to_owned(),
            token_f1: estimate(&a.f1, b, opts.seed),
            precision: estimate(&a.p, b, opts.seed),
            recall: estimate(&a.r, b, opts.seed),
            auroc: estimate(&a.auroc, b, opts.seed),
            auprc: estimate(&a.auprc, b, opts.seed),
            comprehensiveness: (!a.comp.is_empty()).then(|| estimate(&a.comp, b, opts.seed)),
            sufficiency: (!a.suff.is_empty()).then(|| estimate(&a.suff, b, opts.seed)),
            ms_per_example: a.secs * 1e3 / n as f64,
            examples_per_sec: n as f64 / a.secs.max(1e-12),
        })
        .collect();
    Ok(EvalReport {
        data: data.name.clone(),
        examples: n,
        skipped_empty_gold: skipped,
        accuracy: model.is_classifier().then(|| correct as f64 / n as f64),
        chance_f1: chance.iter().sum::<f64>() / chance.len().max(1) as f64,
        methods,
    })
}

/// Renders a report as a Markdown (or plain) table.
pub fn render_table(r: &EvalReport, markdown: bool) -> String {
    let mut s = String::new();
    let acc = r.accuracy.map_or("n/a".to_string(), |a| format!("{:.3}", a));
    s.push_str(&format!(
        "data {} — {} examples ({} with empty gold skipped for plausibility), model accuracy {}, chance F1@k {:.3}\n\n",
        r.data, r.examples, r.skipped_empty_gold, acc, r.chance_f1
    ));
    let header = ["method", "F1@k", "P@k", "R@k", "AUROC", "AUPRC", "comp.", "suff.", "ms/ex"];
    let fmt_ci = |e: &Estimate| format!("{:.3} [{:.3},{:.3}]", e.mean, e.lo, e.hi);
    let rows: Vec<Vec<String>> = r
        .methods
        .iter()
        .map(|m| {
            vec![
                m.method.clone(),
                fmt_ci(&m.token_f1),
                format!("{:.3}", m.precision.mean),
                format!("{:.3}", m.recall.mean),
                format!("{:.3}", m.auroc.mean),
                fmt_ci(&m.auprc),
                m.comprehensiveness.map_or("-".into(), |e| format!("{:.3}", e.mean)),
                m.sufficiency.map_or("-".into(), |e| format!("{:.3}", e.mean)),
                format!("{:.1}", m.ms_per_example),
            ]
        })
        .collect();
    if markdown {
        s.push_str(&format!("| {} |\n", header.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for row in rows {
            s.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    } else {
        let widths: Vec<usize> =
            (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap()).collect();
        let line = |cells: Vec<String>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
        s.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
        s.push('\n');
        for row in rows {
            s.push_str(&line(row));
            s.push('\n');
        }
    }
    s
}
