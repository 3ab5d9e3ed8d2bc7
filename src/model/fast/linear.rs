//! `y = x·Wᵀ + b` (+ GELU, or + a residual) on the `gemm` crate, reading the
//! weight packed in panels when the caller has them (the encoder's inference
//! and gradient passes, [`super::PackedWeights`]), else in place in torch
//! layout (`[out, in]`, read as a column-major `Wᵀ`; fine-tuning, whose
//! weights change every step).
//!
//! Threads: below [`PAR_FLOPS`] the call stays on the calling thread (waking
//! the pool costs more than it saves). Above it the output is cut into tiles,
//! each one single-threaded `gemm` plus its epilogue while the tile is still
//! in cache: few rows (one short text) are cut by columns so the cores share
//! the weight instead of both streaming all of it, many rows (perturbation
//! batches) by rows.

use super::rows;
use crate::model::config::Activation;
use gemm::Parallelism;

/// Multiply-adds ×2 below which a matmul runs on one thread.
pub(super) const PAR_FLOPS: usize = 1 << 20;

/// Row count up to which a tile is computed column-major (see [`linear`]).
const SMALL_M: usize = 64;

/// Rows per tile at least, when cutting by rows (packing `W` is paid per tile).
const MIN_TILE_ROWS: usize = 64;

/// A weight `[n, k]` (torch layout) and optional bias `[n]`, read in place
/// unless a copy is given.
#[derive(Clone, Copy)]
pub(super) struct Lin<'a> {
    pub w: &'a [f32],
    pub b: Option<&'a [f32]>,
    pub n: usize,
    pub k: usize,
    /// `Wᵀ` stored `[k, n]` row-major (a dense stack's weights, see
    /// [`dense`]): when present, [`linear`] reads it instead of `w`.
    pub wt: Option<&'a [f32]>,
    /// `Wᵀ` in panels of [`PANEL`] output columns ([`super::pack_panels`]):
    /// when present, [`linear`] reads it before anything else.
    pub panels: Option<&'a [f32]>,
    /// `W` in panels of [`PANEL`] input columns: when present,
    /// [`linear_back`] reads it instead of `w`.
    pub back_panels: Option<&'a [f32]>,
}

/// Output columns per packed weight panel: the rows of gemm's widest f32
/// micro-kernel with AVX-512 (4 registers of 16 lanes), a multiple of
/// AVX2's 8 lanes too.
pub(crate) const PANEL: usize = 64;

/// What happens to a tile after the matmul (bias is always added).
#[derive(Clone, Copy)]
pub(super) enum Epilogue<'a> {
    Bias,
    /// Bias, then the activation.
    Act(Activation),
    /// Bias plus a residual `[m, n]` (row stride `n`).
    Residual(&'a [f32]),
    /// Bias, a copy into `[m, n]` (row stride `n`; what a backward pass needs
    /// of the activation's input), then the activation: both inside the
    /// tiles, instead of a serial copy and activation after the matmul.
    ActKeep(Activation, Keep<'a>),
}

/// A buffer the tiles of one [`linear`] call write disjoint parts of,
/// borrowed mutably for as long as the epilogue lives.
#[derive(Clone, Copy)]
pub(super) struct Keep<'a> {
    out: Out,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> Keep<'a> {
    pub(super) fn new(buf: &'a mut [f32]) -> Self {
        Self { out: Out(buf.as_mut_ptr()), len: buf.len(), _borrow: std::marker::PhantomData }
    }
}

/// A raw output pointer shared by tiles that write disjoint parts.
#[derive(Clone, Copy)]
pub(super) struct Out(pub *mut f32);
// SAFETY: every user writes disjoint elements and joins before the buffer is read.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `i` elements on (a method, so closures capture the whole `Out`).
    ///
    /// # Safety
    /// `i` must stay inside the buffer.
    pub(super) unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller keeps `i` in bounds.
        unsafe { self.0.add(i) }
    }
}

/// Runs `f(0..count)` on the pass's team or the rayon pool when `parallel`
/// ([`super::team`]), else in order.
pub(super) fn tasks(count: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    if parallel && count > 1 {
        super::team::run_parallel(count, &f);
    } else {
        (0..count).for_each(f);
    }
}

/// Whether a job of `flops` is worth the thread pool.
pub(super) fn parallel(flops: usize) -> bool {
    flops >= PAR_FLOPS && rayon::current_num_threads() > 1 && !SERIAL.with(std::cell::Cell::get)
}

thread_local! {
    /// Set while this thread runs one of several encoder workers
    /// ([`serial`]): its kernels then stay on it.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every kernel of the hand-written encoder on the calling
/// thread (a worker of a split batch, see `Model::logits_batch`).
pub(crate) fn serial<T>(f: impl FnOnce() -> T) -> T {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// A strided f32 matrix view for [`matmul`]: base pointer, column stride, row stride.
#[derive(Clone, Copy)]
pub(super) struct View(pub *const f32, pub isize, pub isize);

/// `dst = lhs · rhs` (`m × k` times `k × n`, overwriting `dst`) on strided
/// views, on the calling thread: the one gemm call every kernel here makes.
///
/// # Safety
/// Every view must cover its whole matrix with the given strides.
pub(super) unsafe fn matmul(m: usize, n: usize, k: usize, dst: (*mut f32, isize, isize), lhs: View, rhs: View) {
    // SAFETY: passed on from the caller.
    unsafe { matmul_into(m, n, k, dst, lhs, rhs, false) }
}

/// [`matmul`], adding to `dst` instead of overwriting it when `accumulate`.
///
/// # Safety
/// As [`matmul`]; `dst` must be initialised when `accumulate`.
pub(super) unsafe fn matmul_into(m: usize, n: usize, k: usize, dst: (*mut f32, isize, isize), lhs: View, rhs: View, accumulate: bool) {
    let alpha = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the caller guarantees the views; dst = alpha·dst + lhs·rhs.
    unsafe {
        gemm::gemm(
            m, n, k, dst.0, dst.1, dst.2, accumulate, lhs.0, lhs.1, lhs.2, rhs.0, rhs.1, rhs.2, alpha, 1.0, false, false, false,
            Parallelism::None,
        )
    }
}

/// `dst[t·ds + i] (+)= Σ_d a(i, d)·rhs[t·rs + d]` for `i` in `rows.0..rows.1`
/// and `t < cols`, where `a` is a matrix in panels of [`PANEL`] rows
/// ([`super::pack_panels`]) of the given `depth`, `rows.0` a panel boundary:
/// one gemm call per panel and run of columns. A panel is already laid out
/// as gemm's AVX-512 micro-kernel reads it; runs of at most
/// [`COLUMNS_PER_CALL`] columns keep gemm from copying it anyway.
///
/// # Safety
/// `dst` must hold every element written, `panels` every panel from
/// `rows.0 / PANEL` up to the one holding `rows.1 - 1`, `rhs` `cols` columns.
unsafe fn panels_matmul(
    rows: (usize, usize),
    cols: usize,
    depth: usize,
    dst: (*mut f32, usize),
    panels: *const f32,
    rhs: (*const f32, usize),
    accumulate: bool,
) {
    let step = COLUMNS_PER_CALL;
    let mut i0 = rows.0;
    while i0 < rows.1 {
        let i1 = (i0 + PANEL).min(rows.1);
        let mut t0 = 0;
        while t0 < cols {
            let t1 = (t0 + step).min(cols);
            // SAFETY: passed on from the caller; panel `i0 / PANEL` starts at
            // `i0·depth` and has column stride `PANEL`.
            unsafe {
                matmul_into(
                    i1 - i0,
                    t1 - t0,
                    depth,
                    (dst.0.add(t0 * dst.1 + i0), dst.1 as isize, 1),
                    View(panels.add(i0 * depth), PANEL as isize, 1),
                    View(rhs.0.add(t0 * rhs.1), rhs.1 as isize, 1),
                    accumulate,
                )
            }
            t0 = t1;
        }
        i0 = i1;
    }
}

/// Columns per gemm call in [`panels_matmul`]: above 8 × its micro-kernel's
/// width (6 columns with AVX2 and with AVX-512) a single-threaded gemm 0.19
/// copies its left operand first, here an already packed panel: 5–9% of a
/// 128-token forward pass (docs/PERFORMANCE.md, session 14).
const COLUMNS_PER_CALL: usize = 48;

/// Tiles (row cuts, column cuts) for an `m × n` result of a `2·m·n·k`-flop
/// matmul: one tile below the threading threshold, else rows when there are
/// many, columns when few (the cores then share the weight). One row tile
/// per thread, not more: every tile packs the whole weight again, and with
/// up to four per thread a 1,000-text corpus run spent ~10% more CPU time
/// (`perf`: 27% of its samples in `gemm`'s packing and dispatch).
fn tiling(m: usize, flops: usize) -> (usize, usize, bool) {
    let threads = rayon::current_num_threads();
    let par = parallel(flops);
    let (rt, ct) = if !par {
        (1, 1)
    } else if m >= MIN_TILE_ROWS * threads {
        ((m / MIN_TILE_ROWS).min(threads), 1)
    } else {
        (1, threads)
    };
    (rt, ct, par)
}

/// The input gradient of [`linear`]: `dx[r, c] (+)= Σ_j dy[r, col0 + j]·W[j, c]`
/// for `r < m`, `c < lin.k`, with `dy` of row stride `dys` (a column block of a
/// wider buffer, like the fused q/k/v gradient). Weight gradients are never
/// formed: explanations only read gradients w.r.t. the inputs.
pub(super) fn linear_back(dy: &[f32], dys: usize, col0: usize, m: usize, lin: &Lin, dx: &mut [f32], accumulate: bool) {
    let (n, k) = (lin.n, lin.k);
    assert!(col0 + n <= dys && dy.len() >= m * dys && dx.len() >= m * k && lin.w.len() == n * k, "linear_back: shapes disagree");
    assert!(lin.back_panels.is_none_or(|p| p.len() == k.div_ceil(PANEL) * PANEL * n), "linear_back: packed weight shape");
    let (row_tiles, col_tiles, par) = tiling(m, 2 * m * n * k);
    let out = Out(dx.as_mut_ptr());
    let align = if lin.back_panels.is_some() { PANEL } else { 16 };
    tasks(row_tiles * col_tiles, par, |t| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let (r0, r1) = (m * rt / row_tiles, m * (rt + 1) / row_tiles);
        let cut = |c: usize| if c == col_tiles { k } else { (k * c / col_tiles) / align * align };
        let (c0, c1) = (cut(ct), cut(ct + 1));
        if r1 <= r0 || c1 <= c0 {
            return;
        }
        if let Some(panels) = lin.back_panels {
            // `dxᵀ = Wᵀ·dyᵀ`, as in [`linear`]. SAFETY: tiles cover disjoint
            // blocks of `dx`; `dy` is read transposed inside the slice
            // checked above; the panels' length is checked above.
            unsafe {
                panels_matmul(
                    (c0, c1),
                    r1 - r0,
                    n,
                    (out.at(r0 * k), k),
                    panels.as_ptr(),
                    (dy.as_ptr().add(r0 * dys + col0), dys),
                    accumulate,
                )
            };
            return;
        }
        // SAFETY: tiles cover disjoint blocks of `dx`; views stay inside the
        // slices checked above (W read row-major, `[n, k]`).
        unsafe {
            matmul_into(
                r1 - r0,
                c1 - c0,
                n,
                (out.at(r0 * k + c0), 1, k as isize),
                View(dy.as_ptr().add(r0 * dys + col0), 1, dys as isize),
                View(lin.w.as_ptr().add(c0), 1, k as isize),
                accumulate,
            )
        }
    });
}


/// The weight gradients of [`linear`] (training): `dw[j, c] = Σ_r dy[r, col0 + j]·x[r, c]`
/// (`[n, k]`, overwritten) and `db[j] = Σ_r dy[r, col0 + j]`, over `m` rows;
/// `dy` has row stride `dys` as in [`linear_back`].
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_weight_grad(dy: &[f32], dys: usize, col0: usize, m: usize, x: &[f32], n: usize, k: usize, dw: &mut [f32], db: &mut [f32]) {
    assert!(col0 + n <= dys && dy.len() >= m * dys && x.len() >= m * k && dw.len() == n * k && db.len() == n, "linear_weight_grad: shapes disagree");
    let par = parallel(2 * m * n * k);
    let tiles = if par { rayon::current_num_threads() } else { 1 };
    let out = Out(dw.as_mut_ptr());
    tasks(tiles, par, |t| {
        let (j0, j1) = (n * t / tiles, n * (t + 1) / tiles);
        if j1 <= j0 {
            return;
        }
        // SAFETY: tile t writes rows j0..j1 of `dw` alone; `dy` is read
        // transposed (column stride `dys`), `x` row-major, both in bounds.
        unsafe {
            matmul(
                j1 - j0,
                k,
                m,
                (out.at(j0 * k), 1, k as isize),
                View(dy.as_ptr().add(col0 + j0), dys as isize, 1),
                View(x.as_ptr(), 1, k as isize),
            )
        }
    });
    db.fill(0.0);
    for r in 0..m {
        db.iter_mut().zip(&dy[r * dys + col0..r * dys + col0 + n]).for_each(|(b, g)| *b += g);
    }
}

/// `act(x·Wᵀ + b)` for `m` rows of `x` (`[m, k]`), with the weight given
/// transposed only (`wt`, `[k, n]`), for small dense stacks outside the
/// encoder (a distilled ExpNet's MLP).
pub(crate) fn dense(x: &[f32], m: usize, wt: &[f32], b: &[f32], act: Option<Activation>) -> Vec<f32> {
    let n = b.len();
    let k = if n == 0 { 0 } else { wt.len() / n };
    assert!(n > 0 && wt.len() == n * k && x.len() == m * k, "dense: shapes disagree");
    // With `wt` given, `linear` never reads `w` (only checks its length).
    let lin = Lin { w: wt, b: Some(b), n, k, wt: Some(wt), panels: None, back_panels: None };
    let mut y = vec![0f32; m * n];
    linear(x, m, &lin, &mut y, n, 0, act.map_or(Epilogue::Bias, Epilogue::Act));
    y
}

/// `y[r, col0 + j] = Σ_k x[r, k]·W[j, k] + b[j]` for `r < m`, `j < lin.n`, then
/// the epilogue. `y` has row stride `ys` (several linears can fill one buffer).
pub(super) fn linear(x: &[f32], m: usize, lin: &Lin, y: &mut [f32], ys: usize, col0: usize, epi: Epilogue) {
    let (n, k) = (lin.n, lin.k);
    assert!(x.len() >= m * k && lin.w.len() == n * k && col0 + n <= ys && y.len() >= m * ys, "linear: shapes disagree");
    assert!(lin.wt.is_none_or(|t| t.len() == n * k), "linear: transposed weight shape");
    assert!(lin.panels.is_none_or(|p| p.len() == n.div_ceil(PANEL) * PANEL * k), "linear: packed weight shape");
    match epi {
        Epilogue::Residual(r) => assert!(r.len() >= m * n, "linear: residual too short"),
        Epilogue::ActKeep(_, keep) => assert!(keep.len >= m * n, "linear: kept activation input too short"),
        _ => {}
    }
    // Tiles: (row range, column range).
    let (row_tiles, col_tiles, par) = tiling(m, 2 * m * n * k);
    let out = Out(y.as_mut_ptr());
    let tile = |t: usize| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let (r0, r1) = (m * rt / row_tiles, m * (rt + 1) / row_tiles);
        // Column cuts on multiples of 16 (one AVX-512 register), or on
        // panel boundaries.
        let align = if lin.panels.is_some() { PANEL } else { 16 };
        let cut = |c: usize| if c == col_tiles { n } else { (n * c / col_tiles) / align * align };
        let (c0, c1) = (cut(ct), cut(ct + 1));
        if r1 <= r0 || c1 <= c0 {
            return;
        }
        let (mr, nc) = (r1 - r0, c1 - c0);
        // SAFETY: tiles cover disjoint (row, column) blocks of `y`; all pointers
        // stay inside the slices checked above (`wt` has `lin.w`'s length).
        unsafe {
            if let Some(panels) = lin.panels {
                // `yᵀ = W·xᵀ`: `y`'s rows are the result's columns.
                panels_matmul((c0, c1), mr, k, (out.at(r0 * ys + col0), ys), panels.as_ptr(), (x.as_ptr().add(r0 * k), k), false);
            } else if let Some(wt) = lin.wt {
                // `Wᵀ` row-major: gemm packs it with contiguous loads.
                matmul(
                    mr,
                    nc,
                    k,
                    (out.at(r0 * ys + col0 + c0), 1, ys as isize),
                    View(x.as_ptr().add(r0 * k), 1, k as isize),
                    View(wt.as_ptr().add(c0), 1, n as isize),
                );
            } else if mr <= SMALL_M {
                // Few rows: a column-major result lets gemm read `Wᵀ` in place
                // (a row-major result makes it repack, i.e. transpose, the whole
                // weight on every call: 60% of an 8-token forward). The small
                // result is transposed into `y` instead.
                let mut t = vec![0f32; mr * nc];
                matmul(
                    mr,
                    nc,
                    k,
                    (t.as_mut_ptr(), mr as isize, 1),
                    View(x.as_ptr().add(r0 * k), 1, k as isize),
                    View(lin.w.as_ptr().add(c0 * k), k as isize, 1),
                );
                for i in 0..mr {
                    let row = std::slice::from_raw_parts_mut(out.at((r0 + i) * ys + col0 + c0), nc);
                    row.iter_mut().enumerate().for_each(|(j, v)| *v = t[j * mr + i]);
                }
            } else {
                matmul(
                    mr,
                    nc,
                    k,
                    (out.at(r0 * ys + col0 + c0), 1, ys as isize),
                    View(x.as_ptr().add(r0 * k), 1, k as isize),
                    View(lin.w.as_ptr().add(c0 * k), k as isize, 1),
                );
            }
            for r in r0..r1 {
                let row = std::slice::from_raw_parts_mut(out.at(r * ys + col0 + c0), c1 - c0);
                epilogue(row, lin.b.map(|b| &b[c0..c1]), r, c0, n, epi);
            }
        }
    };
    tasks(row_tiles * col_tiles, par, tile);
}

/// Bias, activation or residual on one row piece starting at column `c0`.
fn epilogue(row: &mut [f32], bias: Option<&[f32]>, r: usize, c0: usize, n: usize, epi: Epilogue) {
    if let Some(b) = bias {
        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    }
    match epi {
        Epilogue::Bias => {}
        Epilogue::Act(a) => rows::activate(row, a),
        Epilogue::Residual(res) => {
            let res = &res[r * n + c0..r * n + c0 + row.len()];
            row.iter_mut().zip(res).for_each(|(v, x)| *v += x);
        }
        Epilogue::ActKeep(a, keep) => {
            // SAFETY: [`linear`] checked that `keep` holds `m × n` values; its
            // tiles write disjoint (row, column) blocks of it, as of `y`.
            unsafe { std::slice::from_raw_parts_mut(keep.out.at(r * n + c0), row.len()) }.copy_from_slice(row);
            rows::activate(row, a);
        }
    }
}
