//! Shared plumbing of the perturbation family (occlusion, LIME, KernelSHAP):
//! the black-box predictor type, batched evaluation with cancellation, and the
//! small dense linear-algebra the surrogate fits need.
//!
//! The algorithms only see keep-masks and probabilities, so they are tested
//! here with synthetic predictors; the model side (replacing tokens by
//! `[MASK]`, batching through the encoder) lives with the model.

use anyhow::{Context, bail, ensure};

use super::Progress;

/// Keep-masks over all tokens (`true` = keep, `false` = masked) → the target
/// class probability for each mask, in order.
pub type Predict<'a> = dyn FnMut(&[Vec<bool>]) -> anyhow::Result<Vec<f32>> + 'a;

/// Positions of the tokens a method may mask (special tokens are never masked).
pub fn maskable_indices(maskable: &[bool]) -> Vec<usize> {
    maskable.iter().enumerate().filter_map(|(i, &m)| m.then_some(i)).collect()
}

/// Turns a coalition over the maskable features (`present[k]` for the k-th
/// maskable token) into a keep-mask over all tokens; special tokens stay kept.
pub(crate) fn expand_mask(len: usize, features: &[usize], present: &[bool]) -> Vec<bool> {
    let mut mask = vec![true; len];
    for (&pos, &keep) in features.iter().zip(present) {
        mask[pos] = keep;
    }
    mask
}

/// Tokens per `predict` call beyond which a batch is split when the run can
/// be cancelled: one encoder call is the unit of cancellation, so it must stay
/// short even for long inputs. With the hand-written inference encoder 384
/// tokens take about 60–80 ms on two cores (cancel latencies 5–62 ms
/// measured), and batches of 3× the old 128 lift occlusion/LIME/KernelSHAP at
/// 32–128 tokens by 1.1–1.3×.
pub const MASK_BATCH_TOKENS: usize = 384;

/// The same cap for runs nobody can cancel ([`Progress::none`]): larger
/// batches use the matmul kernels better.
pub const MASK_BATCH_TOKENS_UNCANCELLABLE: usize = 2048;

/// Runs `predict` over `masks` in chunks of at most `batch` masks and
/// [`MASK_BATCH_TOKENS`] tokens ([`MASK_BATCH_TOKENS_UNCANCELLABLE`] when the
/// run cannot be cancelled), calling `progress.checkpoint` before each chunk
/// so a cancel stops within one (short) batch.
///
/// `done`/`total` place this call inside a longer run for the gauge. Fails with
/// a clear message when the predictor returns the wrong number of values or a
/// non-finite one, since a silent NaN would poison every regression after it.
pub(crate) fn evaluate(
    masks: &[Vec<bool>],
    predict: &mut Predict,
    progress: &Progress,
    batch: usize,
    done: usize,
    total: usize,
) -> anyhow::Result<Vec<f64>> {
    ensure!(batch > 0, "batch size must be at least 1 (got 0); use e.g. 32");
    let tokens = masks.first().map_or(1, |m| m.len().max(1));
    let budget = if progress.is_cancellable() { MASK_BATCH_TOKENS } else { MASK_BATCH_TOKENS_UNCANCELLABLE };
    let batch = batch.min((budget / tokens).max(1));
    let total = total.max(1);
    let mut out = Vec::with_capacity(masks.len());
    for chunk in masks.chunks(batch) {
        progress.checkpoint((done + out.len()) as f32 / total as f32)?;
        let probs = predict(chunk).context("masked prediction failed")?;
        ensure!(
            probs.len() == chunk.len(),
            "predictor returned {} probabilities for {} masks; it must return one per mask",
            probs.len(),
            chunk.len()
        );
        for p in probs {
            if !p.is_finite() {
                bail!("predictor returned a non-finite probability ({p}); check the model output");
            }
            out.push(p as f64);
        }
    }
    Ok(out)
}

/// Solves the dense `n × n` system `a · x = b` (row-major `a`) by Gaussian
/// elimination with partial pivoting, in f64. Errors on a (numerically)
/// singular matrix instead of returning garbage.
pub fn solve_linear(mut a: Vec<f64>, mut b: Vec<f64>) -> anyhow::Result<Vec<f64>> {
    let n = b.len();
    ensure!(a.len() == n * n, "matrix has {} entries, expected {n}x{n}", a.len());
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .unwrap_or(col);
        ensure!(
            a[pivot * n + col].abs() > scale * 1e-13,
            "linear system is singular (column {col}); too few distinct samples for the fit"
        );
        if pivot != col {
            for k in 0..n {
                a.swap(col * n + k, pivot * n + k);
            }
            b.swap(col, pivot);
        }
        let d = a[col * n + col];
        for row in col + 1..n {
            let f = a[row * n + col] / d;
            if f == 0.0 {
                continue;
            }
            for k in col..n {
                a[row * n + k] -= f * a[col * n + k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    Ok(x)
}

/// Weighted ridge regression `min Σ w_k (y_k − b − x_k·β)² + α‖β‖²`, with an
/// unpenalised intercept `b` when `intercept` is set (as scikit-learn's
/// `Ridge(fit_intercept=True)` that LIME uses). Returns `(β, b)`.
///
/// Solved through the normal equations: the systems here are at most a few
/// hundred unknowns and f64 keeps them accurate enough.
pub fn weighted_ridge(
    rows: &[Vec<f64>],
    y: &[f64],
    w: &[f64],
    alpha: f64,
    intercept: bool,
) -> anyhow::Result<(Vec<f64>, f64)> {
    ensure!(rows.len() == y.len() && y.len() == w.len(), "regression inputs differ in length");
    ensure!(!rows.is_empty(), "regression needs at least one sample");
    ensure!(alpha >= 0.0 && alpha.is_finite(), "ridge alpha must be finite and >= 0 (got {alpha})");
    let p = rows[0].len();
    ensure!(rows.iter().all(|r| r.len() == p), "regression rows differ in length");
    let dim = p + usize::from(intercept);
    let mut ata = vec![0.0; dim * dim];
    let mut atb = vec![0.0; dim];
    let mut z = vec![0.0; dim];
    for ((r, &yk), &wk) in rows.iter().zip(y).zip(w) {
        ensure!(wk >= 0.0 && wk.is_finite(), "sample weight must be finite and >= 0 (got {wk})");
        if wk == 0.0 {
            continue;
        }
        z[..p].copy_from_slice(r);
        if intercept {
            z[p] = 1.0;
        }
        for i in 0..dim {
            if z[i] == 0.0 {
                continue;
            }
            let wi = wk * z[i];
            atb[i] += wi * yk;
            for j in i..dim {
                ata[i * dim + j] += wi * z[j];
            }
        }
    }
    for i in 0..dim {
        for j in 0..i {
            ata[i * dim + j] = ata[j * dim + i];
        }
    }
    for i in 0..p {
        ata[i * dim + i] += alpha;
    }
    let sol = solve_linear(ata, atb)?;
    let b = if intercept { sol[p] } else { 0.0 };
    Ok((sol[..p].to_vec(), b))
}

/// Runs `f` with a predictor over the model: masked tokens are replaced by the
/// model's mask token ([MASK] / <mask>, else padding), special tokens are
/// never masked, and the target-class probability is returned per mask.
pub fn with_model_predictor<T>(
    input: &super::ExplainInput,
    f: impl FnOnce(&[bool], &mut Predict) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let maskable: Vec<bool> = input.encoding.tokens.iter().map(|t| !t.special).collect();
    let mut predict = |masks: &[Vec<bool>]| input.model.target_probabilities(input.encoding, masks, input.target);
    f(&maskable, &mut predict)
}

/// Declares the [`super::Attribution`] of a perturbation algorithm on a real
/// model: a struct holding the algorithm's config, masking through
/// [`with_model_predictor`]. One line per method instead of a copied impl.
macro_rules! perturbation_method {
    ($ty:ident, $cfg:ty, $name:literal, $algo:ident) => {
        /// The method on a real model (masking: [`super::masking::with_model_predictor`]).
        #[derive(Clone, Debug, Default)]
        pub struct $ty {
            pub config: $cfg,
        }

        impl super::Attribution for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn family(&self) -> super::Family {
                super::Family::Perturbation
            }
            fn is_slow(&self) -> bool {
                true
            }
            fn explain(&self, input: &super::ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
                super::masking::with_model_predictor(input, |maskable, predict| $algo(maskable, predict, progress, &self.config))
            }
        }
    };
}
pub(crate) use perturbation_method;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::CancelToken;

    #[test]
    fn solve_linear_needs_pivoting_and_detects_singular() {
        // Zero in the top-left corner: fails without row exchanges.
        let a = vec![0.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 0.0];
        let x_true = [1.0, -2.0, 3.0];
        let b: Vec<f64> = (0..3).map(|r| (0..3).map(|c| a[r * 3 + c] * x_true[c]).sum()).collect();
        let x = solve_linear(a, b).unwrap();
        for (got, want) in x.iter().zip(x_true) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
        let err = solve_linear(vec![1.0, 2.0, 2.0, 4.0], vec![1.0, 2.0]).unwrap_err();
        assert!(err.to_string().contains("singular"), "{err}");
    }

    #[test]
    fn weighted_least_squares_recovers_plane_and_ignores_zero_weight_outlier() {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        let mut w = Vec::new();
        for i in 0..6 {
            let (a, b) = (i as f64, (i * i % 5) as f64);
            rows.push(vec![a, b]);
            y.push(0.5 + 2.0 * a - 3.0 * b);
            w.push(1.0 + i as f64);
        }
        rows.push(vec![1.0, 1.0]);
        y.push(1000.0);
        w.push(0.0);
        let (beta, b) = weighted_ridge(&rows, &y, &w, 0.0, true).unwrap();
        assert!((beta[0] - 2.0).abs() < 1e-9 && (beta[1] + 3.0).abs() < 1e-9, "{beta:?}");
        assert!((b - 0.5).abs() < 1e-9);
        // A ridge penalty shrinks the coefficients but not the intercept's role.
        let (shrunk, _) = weighted_ridge(&rows, &y, &w, 50.0, true).unwrap();
        assert!(shrunk[0].abs() < 2.0);
    }

    #[test]
    fn evaluate_batches_validates_and_stops_on_cancel() {
        let masks: Vec<Vec<bool>> = (0..10).map(|i| vec![i % 2 == 0]).collect();
        let mut calls = 0;
        let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            calls += 1;
            Ok(m.iter().map(|k| if k[0] { 1.0 } else { 0.0 }).collect())
        };
        let out = evaluate(&masks, &mut predict, &Progress::none(), 4, 0, 10).unwrap();
        assert_eq!(out, (0..10).map(|i| (1 - i % 2) as f64).collect::<Vec<_>>());
        assert_eq!(calls, 3);

        let mut short = |_: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> { Ok(vec![0.5]) };
        let err = evaluate(&masks, &mut short, &Progress::none(), 4, 0, 10).unwrap_err();
        assert!(err.to_string().contains("one per mask"), "{err}");
        let mut nan = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> { Ok(vec![f32::NAN; m.len()]) };
        assert!(evaluate(&masks, &mut nan, &Progress::none(), 4, 0, 10).is_err());
        assert!(evaluate(&masks, &mut short, &Progress::none(), 0, 0, 10).is_err());

        let token = CancelToken::new();
        let progress = Progress::new(token.clone(), None);
        let mut batches = 0;
        let mut cancelling = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            batches += 1;
            token.cancel();
            Ok(vec![0.0; m.len()])
        };
        let err = evaluate(&masks, &mut cancelling, &progress, 4, 0, 10).unwrap_err();
        assert!(crate::explain::is_cancelled(&err));
        assert_eq!(batches, 1);

        // A predictor that itself stops with `Cancelled` is still seen as cancelled.
        let mut stopping = |_: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            Err(crate::explain::Cancelled.into())
        };
        let err = evaluate(&masks, &mut stopping, &Progress::none(), 4, 0, 10).unwrap_err();
        assert!(crate::explain::is_cancelled(&err), "{err:#}");
    }

    #[test]
    fn long_inputs_are_split_into_small_batches() {
        let masks = vec![vec![true; 100]; 25];
        let batch_sizes = |progress: &Progress| {
            let mut sizes = Vec::new();
            let mut predict = |m: &[Vec<bool>]| {
                sizes.push(m.len());
                Ok(vec![0.5f32; m.len()])
            };
            let out = evaluate(&masks, &mut predict, progress, 32, 0, 25).unwrap();
            assert_eq!(out.len(), 25);
            sizes
        };
        let cancellable = Progress::new(CancelToken::new(), None);
        assert_eq!(MASK_BATCH_TOKENS, 384, "update the expected batches below");
        assert_eq!(batch_sizes(&cancellable), [vec![3; 8], vec![1]].concat(), "384-token budget at 100 tokens per mask");
        // Nobody can cancel a `Progress::none()` run: larger batches.
        assert_eq!(MASK_BATCH_TOKENS_UNCANCELLABLE, 2048);
        assert_eq!(batch_sizes(&Progress::none()), vec![20, 5], "2,048-token budget at 100 tokens per mask");
    }
}
