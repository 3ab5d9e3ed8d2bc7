//! `y = x·Wᵀ` with gemm 0.19, one thread, in the layouts `src/model/fast/linear.rs`
//! could use (session 7: against torch; session 8: which operand layout packs cheapest).
use std::time::Instant;

fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    for &(m, n, k) in &[(128usize, 1152usize, 384usize), (128, 384, 384), (128, 1536, 384), (128, 384, 1536), (32, 1536, 384), (32, 384, 1536), (32, 1152, 384), (8, 1536, 384), (8, 384, 1536), (512, 1536, 384), (512, 384, 1536)] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        // Wᵀ stored row-major [k, n].
        let mut wt = vec![0f32; n * k];
        for j in 0..n {
            for kk in 0..k {
                wt[kk * n + j] = w[j * k + kk];
            }
        }
        let mut y = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        // gemm(m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta, ...)
        let a = time(|| unsafe {
            gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None)
        });
        let y_a = y.clone();
        let b = time(|| unsafe {
            gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, wt.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None)
        });
        assert!(y.iter().zip(&y_a).all(|(p, q)| (p - q).abs() <= 1e-3 * q.abs().max(1.0)));
        // yᵀ = W·xᵀ into a column-major view of y.
        let c = time(|| unsafe {
            gemm::gemm(n, m, k, y.as_mut_ptr(), n as isize, 1, false, w.as_ptr(), 1, k as isize, x.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None)
        });
        assert!(y.iter().zip(&y_a).all(|(p, q)| (p - q).abs() <= 1e-3 * q.abs().max(1.0)));
        // yᵀ = (Wᵀ)ᵀ·xᵀ with Wᵀ row-major as a column-major lhs.
        let d = time(|| unsafe {
            gemm::gemm(n, m, k, y.as_mut_ptr(), n as isize, 1, false, wt.as_ptr(), n as isize, 1, x.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None)
        });
        assert!(y.iter().zip(&y_a).all(|(p, q)| (p - q).abs() <= 1e-3 * q.abs().max(1.0)));
        // linear()'s small-M path before session 8: a column-major result, transposed after.
        let mut t = vec![0f32; m * n];
        let e = time(|| unsafe {
            gemm::gemm(m, n, k, t.as_mut_ptr(), m as isize, 1, false, x.as_ptr(), 1, k as isize, w.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
            for i in 0..m {
                for j in 0..n {
                    y[i * n + j] = t[j * m + i];
                }
            }
        });
        assert!(y.iter().zip(&y_a).all(|(p, q)| (p - q).abs() <= 1e-3 * q.abs().max(1.0)));
        let g = |s: f64| flops / s / 1e9;
        println!("{m}x{n}x{k}: W view {:.1} | Wt rhs {:.1} | yT=W.xT {:.1} | yT=Wt(col-major).xT {:.1} | col-major result + transpose {:.1} GFLOP/s", g(a), g(b), g(c), g(d), g(e));
    }
}
