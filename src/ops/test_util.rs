//! Helpers shared by the kernels' and layers' tests: random tensors, differences, and
//! gradients through two computations of the same output.

use candle_core::{Device, Tensor, Var};
use rand::Rng;

/// Uniform values in [-1, 1) of the given shape, on the CPU.
pub fn random(shape: &[usize], rng: &mut impl Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

/// Largest absolute difference of two tensors of the same shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// The gradients of `vars` through `ours` and through `theirs` (two computations of the same
/// output from them), each output weighted by the same random probe: `(ours, theirs)` a var.
pub fn probe_gradients(
    ours: &Tensor,
    theirs: &Tensor,
    vars: &[&Var],
    rng: &mut impl Rng,
) -> Vec<(Tensor, Tensor)> {
    let probe = random(ours.dims(), rng);
    let grads = |out: &Tensor| {
        (out * &probe)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .expect("backward")
    };
    let (g1, g2) = (grads(ours), grads(theirs));
    vars.iter()
        .map(|v| {
            let get = |g: &candle_core::backprop::GradStore| {
                g.get(v.as_tensor()).expect("gradient").clone()
            };
            (get(&g1), get(&g2))
        })
        .collect()
}
