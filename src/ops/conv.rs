//! Convolution as a patch gather + matmul on channels-last (NHWC) activations.
//!
//! candle's own conv2d backward goes through conv_transpose2d, which on the CPU ran at a
//! fraction of its forward speed (3–5× the forward's time). Here a convolution is a patch
//! gather followed by a matmul on gemm, so forward and both gradients run at matmul speed.
//! On the CPU the whole layer (gather, matmul from the bias rows, activation) is one custom op,
//! [`conv`], run in tasks of several images, each with its own single-threaded gemm; its
//! backward is one more op that re-gathers the patches and returns all three gradients.
//! The patch matrix is never a graph node, so candle's backprop never zero-fills or adds a
//! patch-sized gradient, and it is not kept from forward to backward. Channels-last keeps
//! every patch row contiguous and makes the output the next layer's input without a
//! transpose. On devices other than the CPU the same layer is built from candle's own ops
//! ([`conv_reference`], [`im2col_reference`]), so the CUDA backend keeps working.

use super::elementwise::{
    contiguous_f32, dense_reference, leaky_relu_grad, leaky_relu_in_place, Activation,
};
use super::matmul::{matmul, MatRef};
use super::window::Window;
use super::winograd;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;

/// `act(conv(x) + bias)` for `x` `(B, H, W, C)` and `weight` `(O, K·K·C)` in the patch order
/// of [`im2col_reference`]: `(B, H', W', O)`. With [`Window::POINT`], `x` may also be rows `(N, K)`:
/// a dense layer, output `(N, O)`. On the CPU one custom op ([`ConvOp`]) whose patch matrix
/// lives only inside its forward and backward; elsewhere the same from candle's ops.
pub fn conv(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    window: Window,
    act: Activation,
) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && [x, weight, bias].iter().all(|t| t.dtype() == DType::F32)
        && weight.rank() == 2
        && bias.rank() == 1;
    if fused {
        x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            ConvOp { window, act },
        )
    } else {
        conv_reference(x, weight, bias, window, act)
    }
}

/// The convolution from candle's ops: the gather [`im2col_reference`], a matmul, the bias
/// and the activation. Runs on every backend; the tests compare [`conv`] against it.
pub fn conv_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    window: Window,
    act: Activation,
) -> Result<Tensor> {
    if x.rank() == 2 && window == Window::POINT {
        return dense_reference(x, weight, bias, act);
    }
    let (b, h, w, _) = x.dims4()?;
    let (oh, ow) = (window.output_size(h), window.output_size(w));
    let cols = im2col_reference(x, window)?;
    dense_reference(&cols, weight, bias, act)?.reshape((b, oh, ow, weight.dim(0)?))
}

/// The fused convolution: arguments `x` `(B, H, W, C)`, `W` `(O, K·K·C)`, `b` `(O)`, all
/// contiguous. The forward gathers the patches, multiplies from the bias rows and applies
/// the activation; the patch matrix is dropped at once. The backward gathers it again
/// (one memory-bound pass) rather than keep it alive from forward to backward, and nothing
/// in between is a graph node, so backprop never zero-fills or accumulates a patch-sized
/// gradient.
struct ConvOp {
    window: Window,
    act: Activation,
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = as_images(l1.shape(), self.window)?;
        let (o, row) = l2.shape().dims2()?;
        let kernel = self.window.kernel;
        if row != kernel * kernel * c || l3.shape().dims1()? != o {
            candle_core::bail!(
                "conv: weight {:?} and bias {:?} for {c} channels and a {kernel}×{kernel} kernel",
                l2.shape(),
                l3.shape()
            );
        }
        if h + 2 * self.window.padding < kernel || w + 2 * self.window.padding < kernel {
            candle_core::bail!("conv: {h}×{w} input is smaller than the {kernel}×{kernel} kernel");
        }
        let input = contiguous_f32(s1, l1, self.name())?;
        let weights = contiguous_f32(s2, l2, self.name())?;
        let weight = MatRef::rows(weights, o, row).t();
        let bias = contiguous_f32(s3, l3, self.name())?;
        let (oh, ow) = (self.window.output_size(h), self.window.output_size(w));
        let shape = if l1.shape().rank() == 2 {
            Shape::from((b, o))
        } else {
            Shape::from((b, oh, ow, o))
        };
        let mut out = vec![0f32; b * oh * ow * o];
        if out.is_empty() || input.is_empty() {
            return Ok((CpuStorage::F32(out), shape));
        }
        if let Some(plan) = winograd::Plan::new(self.window, (h, w, c)) {
            winograd::forward(&plan, input, weights, bias, self.act, &mut out);
            return Ok((CpuStorage::F32(out), shape));
        }
        // Tasks of several images: gather their patches, multiply from the bias rows and
        // activate, each task's gemm on its own thread (no gemm-internal barriers).
        let per_task = images_per_task(b, oh * ow * row);
        out.par_chunks_mut(per_task * oh * ow * o)
            .zip(input.par_chunks(per_task * h * w * c))
            .for_each(|(out, images)| {
                let n = images.len() / (h * w * c);
                let cols = patches(images, n * oh * ow * row, (h, w, c), self.window);
                for r in out.chunks_exact_mut(o) {
                    r.copy_from_slice(bias);
                }
                matmul(out, MatRef::rows(&cols, n * oh * ow, row), weight, true, 1);
                if self.act == Activation::LeakyRelu {
                    leaky_relu_in_place(out);
                }
            });
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (o, row) = weight.dims2()?;
        let g = match self.act {
            Activation::Identity => grad_res.contiguous()?,
            Activation::LeakyRelu => leaky_relu_grad(res, grad_res)?,
        };
        // One op computes all three gradients, packed in one vector, from tensors outside
        // the graph (detached inputs, a no_bwd op): nothing keeps this step's graph alive.
        let input_grad = x.track_op();
        let packed = x.detach().apply_op3_no_bwd(
            &weight.detach(),
            &g,
            &ConvBackward {
                window: self.window,
                input_grad,
            },
        )?;
        let nx = if input_grad { x.elem_count() } else { 0 };
        let grad_x = if input_grad {
            Some(packed.narrow(0, 0, nx)?.reshape(x.shape())?)
        } else {
            None
        };
        let grad_w = packed.narrow(0, nx, o * row)?.reshape((o, row))?;
        let grad_b = packed.narrow(0, nx + o * row, o)?;
        Ok((grad_x, Some(grad_w), Some(grad_b)))
    }
}

/// Most patch-matrix floats one task holds (16 MB): bounds the memory of large batches.
const TASK_FLOATS: usize = 1 << 22;

/// Images per task: two tasks per thread, within [`TASK_FLOATS`]. Measured at batch 64–256
/// (interleaved runs): tasks of about 1 MB of patches (to stay in L2) made training 5–10%
/// and embedding 7% slower than these larger ones, because every task packs the whole weight
/// matrix again for its gemm; one task per thread balanced the embedding worse.
fn images_per_task(batch: usize, floats_per_image: usize) -> usize {
    let by_memory = (TASK_FLOATS / floats_per_image.max(1)).max(1);
    let by_balance = batch.div_ceil(2 * rayon::current_num_threads()).max(1);
    by_memory.min(by_balance)
}

/// One task of a convolution's backward: its images, their output gradient rows, and their
/// slice of the input gradient when it is wanted.
pub(crate) type BackwardTask<'a> = (&'a [f32], &'a [f32], Option<&'a mut [f32]>);

/// Splits a backward pass into tasks of `per_task` images: `image` and `out_image` values
/// an image in the input and in the output gradient; `grad_x` is empty when no input
/// gradient is wanted.
pub(crate) fn backward_tasks<'a>(
    input: &'a [f32],
    g: &'a [f32],
    grad_x: &'a mut [f32],
    (per_task, image, out_image): (usize, usize, usize),
) -> Vec<BackwardTask<'a>> {
    let mut tasks: Vec<BackwardTask> = input
        .chunks(per_task * image)
        .zip(g.chunks(per_task * out_image))
        .map(|(x, g)| (x, g, None))
        .collect();
    if !grad_x.is_empty() {
        for (task, gx) in tasks.iter_mut().zip(grad_x.chunks_mut(per_task * image)) {
            task.2 = Some(gx);
        }
    }
    tasks
}

/// The three gradients of [`ConvOp`]: arguments `x` `(B, H, W, C)`, `W` `(O, K·K·C)` and the
/// gradient `g` `(B, H', W', O)` of the pre-activation output. Result: one vector holding
/// the input gradient (`B·H·W·C` values, only when `input_grad`), the weight gradient
/// (`O·K·K·C`) and the bias gradient (`O`). Each task re-gathers the patches of its images,
/// adds `gᵀ·patches` and the column sums of `g` to its own partial sums, and scatters `g·W`
/// back onto its images.
struct ConvBackward {
    window: Window,
    input_grad: bool,
}

impl CustomOp3 for ConvBackward {
    fn name(&self) -> &'static str {
        "conv-nhwc-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let window = self.window;
        let (b, h, w, c) = as_images(l1.shape(), window)?;
        let (o, row) = l2.shape().dims2()?;
        let (b2, oh, ow, o2) = as_images(l3.shape(), window)?;
        if b2 != b
            || o2 != o
            || row != window.kernel * window.kernel * c
            || (oh, ow) != (window.output_size(h), window.output_size(w))
        {
            candle_core::bail!(
                "conv backward: x {:?}, weight {:?}, gradient {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let input = contiguous_f32(s1, l1, self.name())?;
        let weight = contiguous_f32(s2, l2, self.name())?;
        let g = contiguous_f32(s3, l3, self.name())?;
        let image = h * w * c;
        let plan = winograd::Plan::new(window, (h, w, c)).filter(|_| b > 0);
        if let Some(plan) = plan {
            let (mut packed, grad_w, grad_b) =
                winograd::backward(&plan, input, weight, g, o, self.input_grad);
            packed.extend_from_slice(&grad_w);
            packed.extend_from_slice(&grad_b);
            let n = packed.len();
            return Ok((CpuStorage::F32(packed), Shape::from(n)));
        }
        let mut grad_x = vec![0f32; if self.input_grad { b * image } else { 0 }];
        let zeros = || (vec![0f32; o * row], vec![0f32; o]);
        let (grad_w, grad_b) = if b == 0 || image == 0 || oh * ow == 0 {
            zeros()
        } else {
            let per_task = images_per_task(b, oh * ow * row);
            let sizes = (per_task, image, oh * ow * o);
            let tasks = backward_tasks(input, g, &mut grad_x, sizes);
            tasks
                .into_par_iter()
                .fold(zeros, |(mut gw, mut gb), (images, g, gx)| {
                    let rows = images.len() / image * oh * ow;
                    let cols = patches(images, rows * row, (h, w, c), window);
                    let g_rows = MatRef::rows(g, rows, o);
                    matmul(&mut gw, g_rows.t(), MatRef::rows(&cols, rows, row), true, 1);
                    for r in g.chunks_exact(o) {
                        gb.iter_mut().zip(r).for_each(|(a, v)| *a += v);
                    }
                    let weight = MatRef::rows(weight, o, row);
                    match (gx, cols) {
                        (None, _) => {}
                        // 1×1: the patch gradient is the input gradient.
                        (Some(gx), Cow::Borrowed(_)) => matmul(gx, g_rows, weight, false, 1),
                        (Some(gx), Cow::Owned(mut cols)) => {
                            // cols is free now: it receives g·W, the patch gradient.
                            matmul(&mut cols, g_rows, weight, false, 1);
                            scatter_patches(&cols, gx, (h, w, c), window);
                        }
                    }
                    (gw, gb)
                })
                .reduce(zeros, |(mut w1, mut b1), (w2, b2)| {
                    w1.iter_mut().zip(&w2).for_each(|(a, v)| *a += v);
                    b1.iter_mut().zip(&b2).for_each(|(a, v)| *a += v);
                    (w1, b1)
                })
        };
        let mut packed = grad_x;
        packed.extend_from_slice(&grad_w);
        packed.extend_from_slice(&grad_b);
        let n = packed.len();
        Ok((CpuStorage::F32(packed), Shape::from(n)))
    }
}

/// The same gather written with candle's generic ops (pad, index_select, cat): slower on the
/// CPU, but it runs on every backend and is the reference the custom op is tested against.
pub fn im2col_reference(x: &Tensor, window: Window) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let Window {
        kernel,
        stride,
        padding,
    } = window;
    let (oh, ow) = (window.output_size(h), window.output_size(w));
    let padded = x
        .pad_with_zeros(1, padding, padding)?
        .pad_with_zeros(2, padding, padding)?;
    let rows = |offset: usize, n: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..n).map(|i| (i * stride + offset) as u32).collect();
        Tensor::new(idx, x.device())
    };
    let mut patches = Vec::with_capacity(kernel * kernel);
    for ky in 0..kernel {
        let band = padded.index_select(&rows(ky, oh)?, 1)?;
        for kx in 0..kernel {
            patches.push(band.index_select(&rows(kx, ow)?, 2)?);
        }
    }
    Tensor::cat(&patches, 3)?.reshape((b * oh * ow, kernel * kernel * c))
}

/// `(B, H, W, C)`, or `(N, K)` rows taken as `N` images of one `K`-channel pixel (the 1×1
/// window only).
fn as_images(shape: &Shape, window: Window) -> Result<(usize, usize, usize, usize)> {
    match *shape.dims() {
        [b, h, w, c] => Ok((b, h, w, c)),
        [n, k] if window == Window::POINT => Ok((n, 1, 1, k)),
        _ => candle_core::bail!("conv: {shape:?} is not (B, H, W, C) nor rows for a 1×1 window"),
    }
}

/// The patch rows of whole images (`len` values): the images themselves for the 1×1 window,
/// else a gathered copy.
fn patches<'a>(
    images: &'a [f32],
    len: usize,
    dims: (usize, usize, usize),
    window: Window,
) -> Cow<'a, [f32]> {
    if window == Window::POINT {
        Cow::Borrowed(images)
    } else {
        // Written in order, each value once: no zero fill first.
        let mut cols = Vec::with_capacity(len);
        push_patches(images, &mut cols, dims, window);
        debug_assert_eq!(cols.len(), len);
        Cow::Owned(cols)
    }
}

/// Appends the patch rows of whole `(h, w, c)` images to `cols`, in the order of
/// [`im2col_reference`], with zeros where the window falls outside an image.
fn push_patches(
    images: &[f32],
    cols: &mut Vec<f32>,
    (h, w, c): (usize, usize, usize),
    window: Window,
) {
    let Window {
        kernel,
        stride,
        padding,
    } = window;
    let (oh, ow) = (window.output_size(h), window.output_size(w));
    let inside = |o: usize, k: usize, size: usize| {
        (o * stride + k).checked_sub(padding).filter(|&i| i < size)
    };
    for image in images.chunks(h * w * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kernel {
                    for kx in 0..kernel {
                        match (inside(oy, ky, h), inside(ox, kx, w)) {
                            (Some(iy), Some(ix)) => {
                                let pixel = (iy * w + ix) * c;
                                cols.extend_from_slice(&image[pixel..pixel + c]);
                            }
                            _ => cols.resize(cols.len() + c, 0.0),
                        }
                    }
                }
            }
        }
    }
}

/// Adds the patch rows `cols` of whole images back onto them: the adjoint of
/// [`push_patches`].
fn scatter_patches(cols: &[f32], images: &mut [f32], dims: (usize, usize, usize), window: Window) {
    let (image, patches) = patch_sizes(dims, window);
    for (image, cols) in images.chunks_mut(image).zip(cols.chunks(patches)) {
        for_each_tap(window, dims, |patch, pixel| {
            for (d, s) in image[pixel..pixel + dims.2]
                .iter_mut()
                .zip(&cols[patch..patch + dims.2])
            {
                *d += s;
            }
        });
    }
}

/// Values in one image and in its patch rows (both at least 1, for chunking).
fn patch_sizes((h, w, c): (usize, usize, usize), window: Window) -> (usize, usize) {
    let rows = window.output_size(h) * window.output_size(w);
    (
        (h * w * c).max(1),
        (rows * window.kernel * window.kernel * c).max(1),
    )
}

/// Calls `f(patch_offset, pixel_offset)` for every output position and kernel tap that falls
/// inside one `(h, w, c)` image: the start of a `c`-long run in that image's patch matrix and
/// in the image. The two custom ops differ only in which way they move the run.
fn for_each_tap(window: Window, (h, w, c): (usize, usize, usize), mut f: impl FnMut(usize, usize)) {
    let Window {
        kernel,
        stride,
        padding,
    } = window;
    let (oh, ow) = (window.output_size(h), window.output_size(w));
    let row = kernel * kernel * c;
    for oy in 0..oh {
        for ox in 0..ow {
            for ky in 0..kernel {
                let Some(iy) = (oy * stride + ky).checked_sub(padding).filter(|&y| y < h) else {
                    continue;
                };
                for kx in 0..kernel {
                    let Some(ix) = (ox * stride + kx).checked_sub(padding).filter(|&x| x < w)
                    else {
                        continue;
                    };
                    f(
                        (oy * ow + ox) * row + (ky * kernel + kx) * c,
                        (iy * w + ix) * c,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, probe_gradients, random};
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    /// Random windows and odd shapes, both activations: the fused op's values and its
    /// three gradients equal the same convolution composed from candle's ops.
    #[test]
    fn fused_conv_matches_the_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        for case in 0..14 {
            let window = Window {
                kernel: rng.random_range(1..=4),
                stride: rng.random_range(1..=2),
                padding: rng.random_range(0..=1),
            };
            let act = if case % 2 == 0 {
                Activation::LeakyRelu
            } else {
                Activation::Identity
            };
            let (b, c, o) = (
                rng.random_range(1..=3),
                rng.random_range(1..=5),
                rng.random_range(1..=7),
            );
            let h = rng.random_range(window.kernel.max(2)..=9);
            let w = rng.random_range(window.kernel.max(2)..=9);
            let row = window.kernel * window.kernel * c;
            let x = Var::from_tensor(&random(&[b, h, w, c], &mut rng)).expect("x");
            let weight = Var::from_tensor(&random(&[o, row], &mut rng)).expect("w");
            let bias = Var::from_tensor(&random(&[o], &mut rng)).expect("b");
            let args = (x.as_tensor(), weight.as_tensor(), bias.as_tensor());
            let ours = conv(args.0, args.1, args.2, window, act).expect("conv");
            let theirs = conv_reference(args.0, args.1, args.2, window, act).expect("reference");
            assert_eq!(ours.dims(), theirs.dims(), "{window:?}");
            assert!(max_diff(&ours, &theirs) < 1e-5, "{window:?}");

            for (a, b) in probe_gradients(&ours, &theirs, &[&x, &weight, &bias], &mut rng) {
                assert!(!a.track_op(), "gradient still tracks its graph");
                assert!(max_diff(&a, &b) < 1e-4, "{window:?}: {}", max_diff(&a, &b));
            }
        }
    }

    /// The NHWC convolution equals candle's NCHW conv2d, values and gradients, on odd shapes.
    #[test]
    fn conv_matches_candle_conv2d() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for (cin, cout, size, kernel, stride, padding) in [
            (3, 5, 9, 4, 2, 1),
            (4, 3, 7, 3, 1, 1),
            (2, 6, 8, 4, 2, 1),
            (5, 2, 5, 1, 1, 0),
        ] {
            let window = Window {
                kernel,
                stride,
                padding,
            };
            let x = Var::from_tensor(&random(&[2, size, size, cin], &mut rng)).expect("x");
            let w = Var::from_tensor(&random(&[cout, kernel, kernel, cin], &mut rng)).expect("w");
            let bias = random(&[cout], &mut rng);
            let weight = w
                .as_tensor()
                .reshape((cout, kernel * kernel * cin))
                .expect("w");
            let ours =
                conv(x.as_tensor(), &weight, &bias, window, Activation::Identity).expect("ours");
            let theirs = x
                .as_tensor()
                .permute((0, 3, 1, 2))
                .and_then(|x| {
                    x.conv2d(&w.as_tensor().permute((0, 3, 1, 2))?, padding, stride, 1, 1)
                })
                .and_then(|y| y.broadcast_add(&bias.reshape((1, cout, 1, 1))?))
                .and_then(|y| y.permute((0, 2, 3, 1)))
                .expect("candle conv2d");
            assert!(max_diff(&ours, &theirs) < 1e-4);

            let probe = random(ours.dims(), &mut rng);
            let g1 = (ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for var in [&x, &w] {
                let (a, b) = (
                    g1.get(var.as_tensor()).expect("g"),
                    g2.get(var.as_tensor()).expect("g"),
                );
                assert!(max_diff(a, b) < 1e-3, "{}", max_diff(a, b));
            }
        }
    }
}
