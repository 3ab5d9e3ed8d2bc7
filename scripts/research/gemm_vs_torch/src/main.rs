use std::time::Instant;
fn main() {
    // y[m,n] = x[m,k] * W^T, W [n,k] torch layout, single thread, as src/model/fast/linear.rs calls it
    for &(m, n, k) in &[(128usize, 1152usize, 384usize), (128, 384, 384), (128, 1536, 384), (128, 384, 1536), (32, 1536, 384), (8, 1536, 384)] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut y = vec![0f32; m * n];
        let run = |y: &mut [f32]| unsafe {
            // dst row-major: col stride 1, row stride n; lhs x row-major (cs 1, rs k); rhs W^T: element (kk, j) = w[j*k+kk] -> cs k, rs 1
            gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None)
        };
        for _ in 0..20 { run(&mut y); }
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps { run(&mut y); }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{m}x{n}x{k}: {:.3} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * n * k) as f64 / s / 1e9);
    }
}
