//! Gradient checks of every fused op: against central finite differences (in
//! f64 on the op's own forward) and against the unfused candle path.

use super::{gelu::gelu_erf, linear::linear_input_grad, norm::layer_norm, softmax::softmax_last_dim};
use candle_core::{D, Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn random(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0) * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
}

/// Gradient of `Σ f(x) ⊙ r` w.r.t. `x`, by backprop.
fn backprop(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, r: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let var = Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor());
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    (values(&y), values(grads.get(var.as_tensor()).expect("gradient reached the input")))
}

/// The same gradient by central differences on a few coordinates.
fn check_finite_differences(name: &str, f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, r: &Tensor, h: f32, tol: f32) {
    let (_, grad) = backprop(f, x, r);
    let base = values(x);
    let rv: Vec<f64> = values(r).iter().map(|&v| v as f64).collect();
    let loss = |v: &[f32]| -> f64 {
        let t = Tensor::from_vec(v.to_vec(), x.shape(), &Device::Cpu).unwrap();
        values(&f(&t)).iter().zip(&rv).map(|(&a, b)| a as f64 * b).sum()
    };
    let scale = grad.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    for i in (0..base.len()).step_by((base.len() / 24).max(1)) {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[i] += h;
        minus[i] -= h;
        let fd = ((loss(&plus) - loss(&minus)) / (2.0 * h as f64)) as f32;
        let d = (fd - grad[i]).abs() / scale;
        assert!(d < tol, "{name}: coordinate {i}: backprop {} vs finite differences {fd} (rel {d:e})", grad[i]);
    }
}

/// Forward values and input gradients of the fused and the unfused op agree.
fn check_against_unfused(name: &str, fused: &dyn Fn(&Tensor) -> Tensor, plain: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, tol: f32) {
    let r = random(fused(x).dims(), 1.0, 99);
    let (y1, g1) = backprop(fused, x, &r);
    let (y2, g2) = backprop(plain, x, &r);
    let dy = max_rel_diff(&y1, &y2);
    let dg = max_rel_diff(&g1, &g2);
    assert!(dy < tol, "{name}: forward differs from the unfused path by {dy:e}");
    assert!(dg < tol, "{name}: gradient differs from the unfused path by {dg:e}");
}

#[test]
fn softmax_gradients() {
    let x = random(&[2, 3, 5, 7], 3.0, 1);
    let r = random(x.dims(), 1.0, 2);
    let fused = |t: &Tensor| softmax_last_dim(t).unwrap();
    let plain = |t: &Tensor| candle_nn::ops::softmax(t, D::Minus1).unwrap();
    check_finite_differences("softmax", &fused, &x, &r, 1e-2, 2e-3);
    check_against_unfused("softmax", &fused, &plain, &x, 1e-5);
    let scaled = |t: &Tensor| super::softmax::scaled_softmax_last_dim(t, 0.125).unwrap();
    let plain_scaled = |t: &Tensor| candle_nn::ops::softmax(&(t * 0.125).unwrap(), D::Minus1).unwrap();
    check_finite_differences("scaled softmax", &scaled, &x, &r, 1e-2, 2e-3);
    check_against_unfused("scaled softmax", &scaled, &plain_scaled, &x, 1e-5);
    // Rows with -1e9 entries (padding) keep finite values that sum to one.
    let masked = Tensor::new(&[[0.5f32, -1e9, 1.0, -1e9]], &Device::Cpu).unwrap();
    let y = values(&softmax_last_dim(&masked).unwrap());
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6 && y[1] < 1e-30, "{y:?}");
}

#[test]
fn gelu_gradients() {
    // Large enough to take the multi-threaded path, spread over the range that matters.
    let x = random(&[3, 50, 500], 6.0, 3);
    let r = random(x.dims(), 1.0, 4);
    let fused = |t: &Tensor| gelu_erf(t).unwrap();
    let plain = |t: &Tensor| t.gelu_erf().unwrap();
    check_finite_differences("gelu", &fused, &x, &r, 1e-2, 2e-3);
    check_against_unfused("gelu", &fused, &plain, &x, 1e-6);
    let y = values(&gelu_erf(&Tensor::new(&[-30f32, -3.0, 0.0, 1.0, 30.0], &Device::Cpu).unwrap()).unwrap());
    let want = [0.0, -0.004_049_694, 0.0, 0.841_344_7, 30.0];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "gelu {y:?} vs {want:?}");
    }
}

#[test]
fn exp_is_accurate_over_the_f32_range() {
    for i in -8700..=8800 {
        let x = i as f32 / 100.0;
        let (got, want) = (super::gelu::exp(x), x.exp());
        assert!((got - want).abs() <= want * 1e-6, "exp({x}) = {got}, want {want}");
    }
    // Out of range: clamped above; below −87 the result is 0; NaN stays NaN.
    // Exactly 0, never a tiny normal: divided by a softmax sum that becomes a
    // subnormal, which slows every later matmul of a backward pass ~9×.
    assert_eq!(super::gelu::exp(-1e9), 0.0);
    assert_eq!(super::gelu::exp(-87.5), 0.0);
    assert_eq!(super::gelu::exp(f32::NEG_INFINITY), 0.0);
    assert!(super::gelu::exp(1e9).is_finite() && super::gelu::exp(1e9) > 1e38);
    assert!(super::gelu::exp(f32::NAN).is_nan(), "NaN must not turn into a number");
}

#[test]
fn layer_norm_gradients() {
    let x = random(&[2, 6, 16], 2.0, 5);
    let r = random(x.dims(), 1.0, 6);
    let w = (random(&[16], 0.5, 7) + 1.0).unwrap();
    let b = random(&[16], 0.5, 8);
    let fused = |t: &Tensor| layer_norm(t, &w, &b, 1e-12).unwrap();
    let plain = |t: &Tensor| {
        let mean = t.mean_keepdim(D::Minus1).unwrap();
        let c = t.broadcast_sub(&mean).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let n = c.broadcast_div(&(var + 1e-12).unwrap().sqrt().unwrap()).unwrap();
        n.broadcast_mul(&w).unwrap().broadcast_add(&b).unwrap()
    };
    check_finite_differences("layer norm", &fused, &x, &r, 1e-2, 3e-3);
    check_against_unfused("layer norm", &fused, &plain, &x, 1e-5);

    // Weight and bias gradients (fine-tuning) against the unfused path.
    let (wv, bv) = (Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
    let grads = |fused: bool| {
        let y = if fused {
            layer_norm(&x, wv.as_tensor(), bv.as_tensor(), 1e-12).unwrap()
        } else {
            let mean = x.mean_keepdim(D::Minus1).unwrap();
            let c = x.broadcast_sub(&mean).unwrap();
            let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let n = c.broadcast_div(&(var + 1e-12).unwrap().sqrt().unwrap()).unwrap();
            n.broadcast_mul(wv.as_tensor()).unwrap().broadcast_add(bv.as_tensor()).unwrap()
        };
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (values(g.get(wv.as_tensor()).unwrap()), values(g.get(bv.as_tensor()).unwrap()))
    };
    let ((w1, b1), (w2, b2)) = (grads(true), grads(false));
    assert!(max_rel_diff(&w1, &w2) < 1e-5, "layer norm weight gradient differs");
    assert!(max_rel_diff(&b1, &b2) < 1e-5, "layer norm bias gradient differs");
}

#[test]
fn frozen_linear_gradients() {
    let x = random(&[2, 5, 12], 1.0, 9);
    let r = random(&[2, 5, 7], 1.0, 10);
    let layer = candle_nn::Linear::new(random(&[7, 12], 0.5, 11), Some(random(&[7], 0.5, 12)));
    let fused = |t: &Tensor| linear_input_grad(&layer, t).unwrap();
    let plain = |t: &Tensor| candle_core::Module::forward(&layer, t).unwrap();
    check_finite_differences("linear", &fused, &x, &r, 1e-2, 1e-3);
    check_against_unfused("linear", &fused, &plain, &x, 1e-6);
    // Trainable weights fall back to candle-nn so their gradients exist.
    let wv = Var::from_tensor(&random(&[7, 12], 0.5, 11)).unwrap();
    let trainable = candle_nn::Linear::new(wv.as_tensor().clone(), None);
    let y = linear_input_grad(&trainable, &x).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(wv.as_tensor()).is_some(), "trainable weight lost its gradient");
}

#[test]
fn dot_matches_a_f64_sum_at_every_length() {
    for n in [0usize, 1, 15, 16, 17, 384, 1000] {
        let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 11 % 13) as f32 - 6.0) / 5.0).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let got = super::dot(&a, &b) as f64;
        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "n = {n}: {got} vs {want}");
    }
    // Unequal lengths: the shorter one counts.
    assert_eq!(super::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
}
