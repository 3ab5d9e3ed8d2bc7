//! AdamW in one pass over each parameter, with the gradient-norm clip folded in.
//!
//! candle-nn's `AdamW` runs about a dozen tensor ops per parameter and step,
//! each allocating a tensor of the parameter's size (the word-embedding table
//! alone is 47 MB in MiniLM), and the clip before it two more passes: ~0.5 s
//! of every 32-sentence MiniLM step went there. Here the moments live in
//! plain vectors and one loop updates moments and weights together; the
//! numbers are candle-nn's (and PyTorch's) AdamW, checked in the tests.

use crate::model::ops::with_values;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rayon::prelude::*;

/// Hyper-parameters (PyTorch's defaults for the betas and epsilon); the
/// weight decay is per variable (see [`FusedAdamW::new`]).
#[derive(Clone, Copy, Debug)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

struct Slot {
    var: Var,
    weight_decay: f64,
    m: Vec<f32>,
    v: Vec<f32>,
    next: Vec<f32>,
}

/// AdamW over a set of variables, each with its own weight decay.
pub struct FusedAdamW {
    slots: Vec<Slot>,
    params: AdamWParams,
    step: i32,
}

/// Elements per parallel task: big enough to amortise the split.
const CHUNK: usize = 1 << 16;

impl FusedAdamW {
    /// `vars` pairs each variable with its weight decay (0 for biases and norms).
    pub fn new(vars: Vec<(Var, f64)>, params: AdamWParams) -> candle_core::Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(var, weight_decay)| {
                let n = var.as_tensor().elem_count();
                Slot { var, weight_decay, m: vec![0.0; n], v: vec![0.0; n], next: vec![0.0; n] }
            })
            .collect();
        Ok(Self { slots, params, step: 0 })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// Global L2 norm of the gradients of all variables.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut sq = 0f64;
        for slot in &self.slots {
            if let Some(g) = grads.get(slot.var.as_tensor()) {
                sq += with_values(&on_host(g)?, |g| {
                    Ok(g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sum::<f64>())
                })?;
            }
        }
        Ok(sq.sqrt())
    }

    /// One step. Gradients are first scaled so that their global norm is at
    /// most `max_grad_norm` (≤ 0: no clipping), as PyTorch's
    /// `clip_grad_norm_` does (scale `max / (norm + 1e-6)`). Returns the norm
    /// before clipping.
    pub fn step(&mut self, grads: &GradStore, max_grad_norm: f64) -> candle_core::Result<f64> {
        let norm = self.grad_norm(grads)?;
        let clip = if max_grad_norm > 0.0 && norm > max_grad_norm { (max_grad_norm / (norm + 1e-6)) as f32 } else { 1.0 };
        self.step += 1;
        let AdamWParams { lr, beta1, beta2, eps, .. } = self.params;
        let scale_m = (1.0 / (1.0 - beta1.powi(self.step))) as f32;
        let scale_v = (1.0 / (1.0 - beta2.powi(self.step))) as f32;
        let (b1, b2, eps, lr32) = (beta1 as f32, beta2 as f32, eps as f32, lr as f32);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let decay = (1.0 - lr * slot.weight_decay) as f32;
            let Slot { var, m, v, next, .. } = slot;
            with_values(&on_host(g)?, |g| {
                with_values(&on_host(var.as_tensor())?, |theta| {
                    next.par_chunks_mut(CHUNK)
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .zip(theta.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                        .for_each(|(((out, m), v), (theta, g))| {
                            for i in 0..out.len() {
                                let gi = g[i] * clip;
                                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                                let update = (m[i] * scale_m) / ((v[i] * scale_v).sqrt() + eps);
                                out[i] = theta[i] * decay - lr32 * update;
                            }
                        });
                    Ok(())
                })
            })?;
            var.set(&Tensor::from_slice(next, var.as_tensor().shape(), var.as_tensor().device())?)?;
        }
        Ok(norm)
    }
}

/// The tensor itself on the CPU; a host copy of one on a GPU. The
/// optimizer's moments live in host memory, so on a GPU (`--device cuda`)
/// every step copies gradients and weights across (slower than an optimizer
/// on the device, but the same update bit for bit).
fn on_host(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() { Ok(t.clone()) } else { t.to_device(&candle_core::Device::Cpu) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

    fn var(seed: u64, dims: &[usize]) -> Var {
        let t = Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap();
        let t = (t + seed as f64 * 0.1).unwrap();
        Var::from_tensor(&t).unwrap()
    }

    /// Same trajectory as candle-nn's AdamW (the PyTorch formula) over five
    /// steps of a quadratic loss, with and without weight decay.
    #[test]
    fn matches_candle_nn_adamw() {
        for wd in [0.0, 0.1] {
            let a = [var(1, &[70_000]), var(2, &[3, 4])];
            let b: Vec<Var> = a.iter().map(|v| Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap()).collect();
            let p = ParamsAdamW { lr: 0.01, weight_decay: wd, ..Default::default() };
            let mut reference = AdamW::new(a.to_vec(), p.clone()).unwrap();
            let ours_params = AdamWParams { lr: 0.01, beta1: p.beta1, beta2: p.beta2, eps: p.eps };
            let mut ours = FusedAdamW::new(b.iter().map(|v| (v.clone(), wd)).collect(), ours_params).unwrap();
            for _ in 0..5 {
                let loss = |vs: &[Var]| -> Tensor {
                    let mut l = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
                    for v in vs {
                        l = (l + v.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
                    }
                    l
                };
                reference.step(&loss(&a).backward().unwrap()).unwrap();
                ours.step(&loss(&b).backward().unwrap(), 0.0).unwrap();
            }
            for (x, y) in a.iter().zip(&b) {
                let d = (x.as_tensor() - y.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                // Values are O(1): 1e-5 is ~80 ulps of f32, far below what a wrong
                // formula moves (bias correction or decay off: ≥ 1e-3), and above
                // the rounding-order differences seen between runs (1.4e-6 once,
                // when candle's thread pool cut the 70,000-element ops differently).
                assert!(d < 1e-5, "weight decay {wd}: max difference {d}");
            }
        }
    }

    /// Clipping scales the gradient to the given norm, as `clip_grad_norm_` does.
    #[test]
    fn clipping_scales_to_the_norm() {
        let x = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = FusedAdamW::new(vec![(x.clone(), 0.0)], AdamWParams { lr: 0.1, ..Default::default() }).unwrap();
        // d/dx Σ x² = 2x = (6, 8): norm 10.
        let grads = x.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!((opt.grad_norm(&grads).unwrap() - 10.0).abs() < 1e-9);
        let before = opt.step(&grads, 1.0).unwrap();
        assert!((before - 10.0).abs() < 1e-9);
        // Step 1 of Adam moves each weight by ≈ lr·sign(g) whatever the scale,
        // so check the first moment instead: (1 − β1)·g·clip.
        let m = &opt.slots[0].m;
        assert!((m[0] - 0.1 * 6.0 / (10.0 + 1e-6) as f32).abs() < 1e-6, "{m:?}");
        assert!((m[1] - 0.1 * 8.0 / (10.0 + 1e-6) as f32).abs() < 1e-6, "{m:?}");
    }
}
