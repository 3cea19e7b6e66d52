//! Winograd minimal filtering F(m×m, r×r): the CPU path of the encoder's larger convolutions.
//!
//! A 3×3 stride-1 convolution is F(4×4, 3×3): each 4×4 tile of outputs comes from a 6×6 tile
//! of inputs with 36 multiplies per (input, output) channel pair instead of 144. A 4×4
//! stride-2 convolution is the same thing one level up: over 2×2 blocks of pixels (4·C
//! channels a block) it is a 2×2 stride-1 convolution, and F(4×4, 2×2) needs 25 multiplies
//! instead of 64. Outputs that are not whole 4×4 tiles use 2×2 tiles (F(2×2, r×r)). The
//! multiplies are α² independent matmuls (α = m + r − 1 transformed positions a side), so they
//! still run on gemm at its full rate; the transforms around them are additions over whole
//! channel rows. With im2col + gemm the matmuls are about 70% of a training step
//! (docs/BENCHMARKS.md), and these two window shapes carry 97% of the encoder's multiplies.
//!
//! A group of images goes through three parallel phases: the input transforms (by image), one
//! matmul per transformed position over all the group's tiles (by position), the output
//! transforms (by image). The gradients are the exact adjoints of the same linear maps: the input
//! gradient and the weight gradient each cost the same α² matmuls as the forward. Nothing here
//! is a graph node: [`super::conv`](mod@super::conv)'s op calls [`forward`] and [`backward`]
//! when [`Plan::new`] accepts its window and shape, and its own im2col path otherwise.

mod scratch;
#[cfg(test)]
mod tests;
mod transform;

use super::elementwise::{leaky_relu_in_place, Activation};
use super::matmul::{matmul, MatRef};
use super::window::Window;
use rayon::prelude::*;
use scratch::{buffer, recycle, Scratch};
use transform::{transform_rows, transpose, Matrix, Rows, RowsRef};

/// Below this many channels in a transformed position (C, or 4·C for stride 2) the matmuls
/// are too thin to pay for the transforms; the first layer (3 channels) stays on im2col.
const MIN_CHANNELS: usize = 64;

/// The three transforms of F(m×m, r×r), row-major: input `Bᵀ` (α×α), kernel `G` (α×r),
/// output `Aᵀ` (m×α), with α = m + r − 1.
struct Transforms {
    m: usize,
    alpha: usize,
    bt: Vec<f32>,
    g: Vec<f32>,
    at: Vec<f32>,
}

/// Interpolation points, in the order they are used: small magnitudes keep the transforms'
/// rounding error small (F(4, 3) at 0, ±1, ±2 and ∞ is the usual choice).
const POINTS: [f64; 6] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5];

impl Transforms {
    /// Cook–Toom at α − 1 finite points and ∞: `G` and `Aᵀ` evaluate the kernel and the
    /// output polynomial at the points, `Bᵀ` is the transposed inverse of the evaluation
    /// (Vandermonde) matrix of degree α − 1. Correlation is the transpose of polynomial
    /// multiplication, which is why the input gets the inverse.
    fn new(m: usize, r: usize) -> Transforms {
        let alpha = m + r - 1;
        assert!(alpha <= POINTS.len() + 1, "F({m}, {r}) needs more points");
        // Row k evaluates a polynomial of `n` coefficients at point k (the last: at ∞, its
        // leading coefficient).
        let eval = |k: usize, i: usize, n: usize| -> f64 {
            if k == alpha - 1 {
                f64::from(u8::from(i == n - 1))
            } else {
                POINTS[k].powi(i as i32)
            }
        };
        let mut vandermonde = vec![0f64; alpha * alpha];
        for k in 0..alpha {
            for i in 0..alpha {
                vandermonde[k * alpha + i] = eval(k, i, alpha);
            }
        }
        let inverse = invert(&vandermonde, alpha);
        let bt = (0..alpha * alpha)
            .map(|at| inverse[(at % alpha) * alpha + at / alpha] as f32)
            .collect();
        let g = (0..alpha * r)
            .map(|at| eval(at / r, at % r, r) as f32)
            .collect();
        let at = (0..m * alpha)
            .map(|at| eval(at % alpha, at / alpha, m) as f32)
            .collect();
        Transforms {
            m,
            alpha,
            bt,
            g,
            at,
        }
    }
}

/// The inverse of an invertible `n×n` matrix, by Gauss–Jordan elimination with partial
/// pivoting.
fn invert(a: &[f64], n: usize) -> Vec<f64> {
    let mut a = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n)
        .map(|at| f64::from(u8::from(at / n == at % n)))
        .collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
            .unwrap_or(col);
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
            inv.swap(col * n + j, pivot * n + j);
        }
        let scale = 1.0 / a[col * n + col];
        for j in 0..n {
            a[col * n + j] *= scale;
            inv[col * n + j] *= scale;
        }
        for row in (0..n).filter(|&row| row != col) {
            let factor = a[row * n + col];
            for j in 0..n {
                a[row * n + j] -= factor * a[col * n + j];
                inv[row * n + j] -= factor * inv[col * n + j];
            }
        }
    }
    inv
}

/// How one convolution maps onto F(m×m, r×r). A "virtual" pixel `(p, q)` is the `s×s` block
/// of source pixels `(s·p + dy − pad, s·q + dx − pad)`, its channels ordered `(dy, dx, c)`;
/// the convolution is then an r×r stride-1 window over virtual pixels, `r = K / s`.
pub(crate) struct Plan {
    t: Transforms,
    r: usize,
    stride: usize,
    padding: usize,
    /// Most floats of transformed input a group of images holds ([`GROUP_FLOATS`]).
    group_floats: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

impl Plan {
    /// The plan for `window` over `(h, w, c)` images, or `None` when the window is not 3×3
    /// stride 1 or 4×4 stride 2, the output is not whole 2×2 tiles, or there are too few
    /// channels.
    pub fn new(window: Window, (h, w, c): (usize, usize, usize)) -> Option<Plan> {
        // (taps of the virtual window, source pixels per virtual pixel and side)
        let (r, stride) = match (window.kernel, window.stride) {
            (3, 1) => (3, 1),
            (4, 2) => (2, 2),
            _ => return None,
        };
        if h + 2 * window.padding < window.kernel || w + 2 * window.padding < window.kernel {
            return None;
        }
        let (oh, ow) = (window.output_size(h), window.output_size(w));
        if oh == 0 || ow == 0 || stride * stride * c < MIN_CHANNELS {
            return None;
        }
        // Larger tiles need fewer multiplies: F(4, r) when the output is whole 4×4 tiles.
        let m = [4, 2].into_iter().find(|m| oh % m == 0 && ow % m == 0)?;
        Some(Plan {
            t: Transforms::new(m, r),
            r,
            stride,
            padding: window.padding,
            group_floats: GROUP_FLOATS,
            h,
            w,
            c,
            oh,
            ow,
        })
    }

    fn alpha2(&self) -> usize {
        self.t.alpha * self.t.alpha
    }

    /// Channels of a virtual pixel.
    fn cv(&self) -> usize {
        self.stride * self.stride * self.c
    }

    fn tiles_per_image(&self) -> usize {
        (self.oh / self.t.m) * (self.ow / self.t.m)
    }

    /// Floats of transformed input per image, the size that bounds a group.
    fn floats_per_image(&self) -> usize {
        self.tiles_per_image() * self.alpha2() * self.cv()
    }

    /// Calls `f(tile, image, ty, tx)` for every tile of `n` images, tile-major within images.
    fn for_each_tile(&self, n: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        let mut tile = 0;
        for image in 0..n {
            for ty in 0..self.oh / self.t.m {
                for tx in 0..self.ow / self.t.m {
                    f(tile, image, ty, tx);
                    tile += 1;
                }
            }
        }
    }

    /// Rows and columns of virtual pixels the tiles read: from the top-left padding to the
    /// last tile's far edge (source rows past it are unused).
    fn virtual_size(&self) -> (usize, usize) {
        let (m, alpha) = (self.t.m, self.t.alpha);
        (self.oh - m + alpha, self.ow - m + alpha)
    }

    /// Offset in the virtual image of the first pixel of the α×α tile at `(ty, tx)`.
    fn virtual_tile_origin(&self, ty: usize, tx: usize) -> usize {
        let m = self.t.m;
        (m * ty * self.virtual_size().1 + m * tx) * self.cv()
    }

    /// The virtual image's view of the α×α tile at `(ty, tx)`, read in place.
    fn virtual_tile<'a>(&self, virt: &'a [f32], ty: usize, tx: usize) -> RowsRef<'a> {
        RowsRef {
            data: virt,
            base: self.virtual_tile_origin(ty, tx),
            row_stride: self.virtual_size().1 * self.cv(),
            col_stride: self.cv(),
        }
    }

    /// Calls `f(offset in the virtual image, offset in the source image)` for every source
    /// pixel the tiles read (C values at each): virtual pixel `(p, q)` of `virtual_size`, channels
    /// `(dy, dx, c)`, is source pixel `(s·p + dy − pad, s·q + dx − pad)`. Virtual positions in
    /// the padding have no source pixel.
    fn for_each_virtual_pixel(&self, mut f: impl FnMut(usize, usize)) {
        let (s, c, cv, pad) = (self.stride, self.c, self.cv(), self.padding);
        let (hv, wv) = self.virtual_size();
        for y in 0..self.h {
            let (p, dy) = ((y + pad) / s, (y + pad) % s);
            if p >= hv {
                break;
            }
            for x in 0..self.w {
                let (q, dx) = ((x + pad) / s, (x + pad) % s);
                if q >= wv {
                    break;
                }
                f((p * wv + q) * cv + (dy * s + dx) * c, (y * self.w + x) * c);
            }
        }
    }

    /// Writes the virtual image of one source image into `virt`. Positions in the padding are
    /// never written, so a buffer that started zeroed keeps them zero from image to image.
    fn gather_virtual(&self, image: &[f32], virt: &mut [f32]) {
        let c = self.c;
        self.for_each_virtual_pixel(|at, from| {
            virt[at..at + c].copy_from_slice(&image[from..from + c]);
        });
    }

    /// `V` in the layout (tile, position, Cv): `Bᵀ d B` of every virtual input tile `d` of
    /// `images`, written into `v`, which holds exactly their tiles. Each image is first laid
    /// out as virtual pixels with its padding (one copy of the image); the transforms then read
    /// every tile in place, where copying each overlapping tile out was 9% of an embedding.
    fn transform_input(&self, images: &[f32], v: &mut [f32]) {
        let (a2, cv) = (self.alpha2(), self.cv());
        let (hv, wv) = self.virtual_size();
        let mut virt = vec![0f32; hv * wv * cv];
        let mut tmp = Vec::new();
        let bt = Matrix {
            data: &self.t.bt,
            rows: self.t.alpha,
            cols: self.t.alpha,
        };
        let image = self.h * self.w * self.c;
        let mut last = usize::MAX;
        self.for_each_tile(images.len() / image, |tile, i, ty, tx| {
            if i != last {
                self.gather_virtual(&images[i * image..(i + 1) * image], &mut virt);
                last = i;
            }
            let d = self.virtual_tile(&virt, ty, tx);
            transform_rows(bt, d, Rows::new(v, tile * a2 * cv, cv), cv, &mut tmp);
        });
    }

    /// Adds the adjoint of [`Plan::transform_input`] onto `grad`, the input gradient of some
    /// images of a group: `dv` is the whole group's gradient of `V` in the layout (position,
    /// tile, Cv) with `tiles` tiles, and these images' tiles start at `first_tile`.
    fn transform_input_adjoint(
        &self,
        dv: &[f32],
        (first_tile, tiles): (usize, usize),
        grad: &mut [f32],
    ) {
        let (alpha, a2, cv, c) = (self.t.alpha, self.alpha2(), self.cv(), self.c);
        let per_image = self.tiles_per_image();
        let (hv, wv) = self.virtual_size();
        let b = transpose(&self.t.bt, alpha, alpha);
        let b = Matrix {
            data: &b,
            rows: alpha,
            cols: alpha,
        };
        let mut virt = vec![0f32; hv * wv * cv];
        let mut d = vec![0f32; a2 * cv];
        let mut tmp = Vec::new();
        // Per image: every tile's gradient added into the virtual image's, which then goes back
        // to the source pixels (the adjoint of `gather_virtual`).
        for (i, dst) in grad.chunks_exact_mut(self.h * self.w * c).enumerate() {
            virt.fill(0.0);
            self.for_each_tile(1, |t, _, ty, tx| {
                let tile = first_tile + i * per_image + t;
                let rows = RowsRef::grid(dv, tile * cv, tiles * cv, alpha);
                transform_rows(b, rows, Rows::new(&mut d, 0, cv), cv, &mut tmp);
                let base = self.virtual_tile_origin(ty, tx);
                for (k, d) in d.chunks_exact(cv).enumerate() {
                    let at = base + ((k / alpha) * wv + k % alpha) * cv;
                    for (g, v) in virt[at..at + cv].iter_mut().zip(d) {
                        *g += v;
                    }
                }
            });
            self.for_each_virtual_pixel(|at, to| {
                for (g, v) in dst[to..to + c].iter_mut().zip(&virt[at..at + c]) {
                    *g += v;
                }
            });
        }
    }

    /// Calls `f(offset in the virtual taps, offset in the kernel row)` for each run of C
    /// weights: a kernel row `(K·K·C)` is r² virtual taps of Cv values.
    fn for_each_tap_run(&self, mut f: impl FnMut(usize, usize)) {
        let (r, s, c) = (self.r, self.stride, self.c);
        let k = r * s;
        for u in 0..r {
            for v in 0..r {
                for dy in 0..s {
                    for dx in 0..s {
                        let tap = (u * r + v) * self.cv() + (dy * s + dx) * c;
                        f(tap, ((s * u + dy) * k + s * v + dx) * c);
                    }
                }
            }
        }
    }

    /// `U` (α² × O × Cv): `G g Gᵀ` of every kernel, one output channel at a time.
    fn transform_weight(&self, weight: &[f32], o: usize) -> Scratch {
        let (c, cv) = (self.c, self.cv());
        let g = Matrix {
            data: &self.t.g,
            rows: self.t.alpha,
            cols: self.r,
        };
        // Every row is written below.
        let mut u = buffer(self.alpha2() * o * cv);
        let mut taps = vec![0f32; self.r * self.r * cv];
        let mut tmp = Vec::new();
        for (oc, row) in weight.chunks_exact(self.r * self.r * cv).enumerate() {
            self.for_each_tap_run(|tap, at| taps[tap..tap + c].copy_from_slice(&row[at..at + c]));
            let taps = RowsRef::grid(&taps, 0, cv, self.r);
            transform_rows(g, taps, Rows::new(&mut u, oc * cv, o * cv), cv, &mut tmp);
        }
        u
    }

    /// The weight gradient `(O, K·K·C)` from the gradient of `U` (α² × O × Cv): the adjoint
    /// of [`Plan::transform_weight`].
    fn transform_weight_adjoint(&self, du: &[f32], o: usize) -> Vec<f32> {
        let (c, cv) = (self.c, self.cv());
        let gt = transpose(&self.t.g, self.t.alpha, self.r);
        let gt = Matrix {
            data: &gt,
            rows: self.r,
            cols: self.t.alpha,
        };
        let row = self.r * self.r * cv;
        let mut weight = vec![0f32; o * row];
        let mut taps = vec![0f32; row];
        let mut tmp = Vec::new();
        for (oc, dst) in weight.chunks_exact_mut(row).enumerate() {
            let du = RowsRef::grid(du, oc * cv, o * cv, self.t.alpha);
            transform_rows(gt, du, Rows::new(&mut taps, 0, cv), cv, &mut tmp);
            self.for_each_tap_run(|tap, at| dst[at..at + c].copy_from_slice(&taps[tap..tap + c]));
        }
        weight
    }

    /// Output tiles `Aᵀ M A` plus the bias and the activation, written into `out`, the
    /// `(n, oh, ow, O)` output of some images of a group: `products` is the group's `M` in
    /// the layout (position, tile, O) with `tiles` tiles, and these images' tiles start at
    /// `first_tile`.
    fn transform_output(
        &self,
        products: &[f32],
        (first_tile, tiles): (usize, usize),
        (bias, act): (&[f32], Activation),
        out: &mut [f32],
    ) {
        let o = bias.len();
        let m = self.t.m;
        let mut y = vec![0f32; m * m * o];
        let mut tmp = Vec::new();
        let at = Matrix {
            data: &self.t.at,
            rows: m,
            cols: self.t.alpha,
        };
        self.for_each_tile(out.len() / (self.oh * self.ow * o), |tile, i, ty, tx| {
            let rows = RowsRef::grid(products, (first_tile + tile) * o, tiles * o, self.t.alpha);
            transform_rows(at, rows, Rows::new(&mut y, 0, o), o, &mut tmp);
            for dy in 0..m {
                for dx in 0..m {
                    let at = ((i * self.oh + m * ty + dy) * self.ow + m * tx + dx) * o;
                    let dst = &mut out[at..at + o];
                    let src = &y[(dy * m + dx) * o..(dy * m + dx + 1) * o];
                    for ((d, s), b) in dst.iter_mut().zip(src).zip(bias) {
                        *d = s + b;
                    }
                    if act == Activation::LeakyRelu {
                        leaky_relu_in_place(dst);
                    }
                }
            }
        });
    }

    /// `dM` in the layout (tile, position, O) from the pre-activation output gradient `g`
    /// `(n, oh, ow, O)` of some images, written into `dm`, which holds exactly their tiles:
    /// the adjoint of [`Plan::transform_output`].
    fn transform_output_adjoint(&self, g: &[f32], o: usize, dm: &mut [f32]) {
        let (m, a2) = (self.t.m, self.alpha2());
        let mut y = vec![0f32; m * m * o];
        let mut tmp = Vec::new();
        let a = transpose(&self.t.at, m, self.t.alpha);
        let a = Matrix {
            data: &a,
            rows: self.t.alpha,
            cols: m,
        };
        self.for_each_tile(g.len() / (self.oh * self.ow * o), |tile, i, ty, tx| {
            for dy in 0..m {
                for dx in 0..m {
                    let at = ((i * self.oh + m * ty + dy) * self.ow + m * tx + dx) * o;
                    y[(dy * m + dx) * o..(dy * m + dx + 1) * o].copy_from_slice(&g[at..at + o]);
                }
            }
            let out = Rows::new(dm, tile * a2 * o, o);
            transform_rows(a, RowsRef::grid(&y, 0, o, m), out, o, &mut tmp);
        });
    }

    /// Images per group: the phases below hold a whole group's transformed tiles.
    fn images_per_group(&self) -> usize {
        (self.group_floats / self.floats_per_image().max(1)).max(1)
    }
}

/// Most floats of transformed input a group of images holds (32 MB).
const GROUP_FLOATS: usize = 1 << 23;

/// Images one transform task handles.
const CHUNK_IMAGES: usize = 4;

/// The products of one position `xi`: rows `(tiles × k)` of a (tile, position, k) buffer.
fn position_rows(data: &[f32], xi: usize, tiles: usize, k: usize, positions: usize) -> MatRef<'_> {
    MatRef {
        data: &data[xi * k..],
        rows: tiles,
        cols: k,
        row_stride: positions * k,
        col_stride: 1,
    }
}

/// `act(conv(x) + bias)` by F(m×m, r×r): `input` `(B, H, W, C)`, `weight` `(O, K·K·C)`,
/// `out` `(B, H', W', O)`. A group of images at a time, in three parallel phases: the input
/// transforms (by images), one matmul per transformed position for all the group's tiles
/// (by position: each kernel transform is packed once, and the matmuls are as tall as the
/// group), and the output transforms (by images).
pub(crate) fn forward(
    plan: &Plan,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let o = bias.len();
    let (a2, cv, per_image) = (plan.alpha2(), plan.cv(), plan.tiles_per_image());
    let u = plan.transform_weight(weight, o);
    let image = plan.h * plan.w * plan.c;
    let out_image = plan.oh * plan.ow * o;
    let group = plan.images_per_group();
    for (images, out) in input
        .chunks(group * image)
        .zip(out.chunks_mut(group * out_image))
    {
        let tiles = images.len() / image * per_image;
        // Both buffers are overwritten whole: by the transforms, then by the products.
        let mut v = buffer(tiles * a2 * cv);
        v.par_chunks_mut(CHUNK_IMAGES * per_image * a2 * cv)
            .zip(images.par_chunks(CHUNK_IMAGES * image))
            .for_each(|(v, images)| plan.transform_input(images, v));
        let mut m = buffer(a2 * tiles * o);
        m.par_chunks_mut(tiles * o)
            .zip(u.par_chunks(o * cv))
            .enumerate()
            .for_each(|(xi, (m, u))| {
                let v = position_rows(&v, xi, tiles, cv, a2);
                matmul(m, v, MatRef::rows(u, o, cv).t(), false, 1);
            });
        out.par_chunks_mut(CHUNK_IMAGES * out_image)
            .enumerate()
            .for_each(|(chunk, out)| {
                let first = chunk * CHUNK_IMAGES * per_image;
                plan.transform_output(&m, (first, tiles), (bias, act), out);
            });
        recycle(v);
        recycle(m);
    }
    recycle(u);
}

/// The three gradients of [`forward`] from the pre-activation output gradient `g`: the input
/// gradient (when `input_grad`, else empty), the weight gradient `(O, K·K·C)` and the bias
/// gradient `(O)`. The same phases as the forward: per image `V` and `dM`; per position
/// `dU = dMᵀ·V` (no partial sums to reduce) and `dV = dM·U`; per image the input gradient.
pub(crate) fn backward(
    plan: &Plan,
    input: &[f32],
    weight: &[f32],
    g: &[f32],
    o: usize,
    input_grad: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (a2, cv, per_image) = (plan.alpha2(), plan.cv(), plan.tiles_per_image());
    let u = plan.transform_weight(weight, o);
    let image = plan.h * plan.w * plan.c;
    let out_image = plan.oh * plan.ow * o;
    let group = plan.images_per_group();
    let mut grad_x = vec![0f32; if input_grad { input.len() } else { 0 }];
    // Overwritten by the first group's products, then accumulated.
    let mut du = buffer(a2 * o * cv);
    for (index, (images, g)) in input
        .chunks(group * image)
        .zip(g.chunks(group * out_image))
        .enumerate()
    {
        let tiles = images.len() / image * per_image;
        let mut v = buffer(tiles * a2 * cv);
        let mut dm = buffer(tiles * a2 * o);
        v.par_chunks_mut(CHUNK_IMAGES * per_image * a2 * cv)
            .zip(dm.par_chunks_mut(CHUNK_IMAGES * per_image * a2 * o))
            .zip(images.par_chunks(CHUNK_IMAGES * image))
            .zip(g.par_chunks(CHUNK_IMAGES * out_image))
            .for_each(|(((v, dm), images), g)| {
                plan.transform_input(images, v);
                plan.transform_output_adjoint(g, o, dm);
            });
        du.par_chunks_mut(o * cv).enumerate().for_each(|(xi, du)| {
            let dm = position_rows(&dm, xi, tiles, o, a2).t();
            matmul(du, dm, position_rows(&v, xi, tiles, cv, a2), index > 0, 1);
        });
        if input_grad {
            // V is no longer needed: its buffer receives dV, in the layout (position, tile, Cv).
            let mut dv = v;
            dv.par_chunks_mut(tiles * cv)
                .zip(u.par_chunks(o * cv))
                .enumerate()
                .for_each(|(xi, (dv, u))| {
                    let dm = position_rows(&dm, xi, tiles, o, a2);
                    matmul(dv, dm, MatRef::rows(u, o, cv), false, 1);
                });
            let first = index * group * image;
            grad_x[first..first + images.len()]
                .par_chunks_mut(CHUNK_IMAGES * image)
                .enumerate()
                .for_each(|(chunk, gx)| {
                    let first = chunk * CHUNK_IMAGES * per_image;
                    plan.transform_input_adjoint(&dv, (first, tiles), gx);
                });
            recycle(dv);
        } else {
            recycle(v);
        }
        recycle(dm);
    }
    let grad_w = plan.transform_weight_adjoint(&du, o);
    let grad_b = g.par_chunks(CHUNK_IMAGES * out_image).fold(
        || vec![0f32; o],
        |mut sums, g| {
            for row in g.chunks_exact(o) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sums
        },
    );
    let grad_b = grad_b.reduce(
        || vec![0f32; o],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        },
    );
    recycle(u);
    recycle(du);
    (grad_x, grad_w, grad_b)
}
