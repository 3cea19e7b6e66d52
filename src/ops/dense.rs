//! A fused dense layer, `act(x·Wᵀ + b)`.
//!
//! Written with candle's generic ops the layer is a matmul, a broadcast add and a leaky ReLU
//! (`max(x, 0.2x)`): three full passes over the output forward, and about ten backward (the
//! maximum's gradient builds equality masks and divides by their sum), each a fresh tensor
//! that backprop then adds into a zero-filled gradient. On the CPU [`dense`] is the fused
//! convolution's 1×1 case on rows ([`super::conv::conv`]): the forward multiplies from the
//! bias rows and activates in place; the backward is one pass for the activation's
//! derivative and one op for the three gradients. Every layer of the model (convolutions,
//! heads, critics) goes through it.
//!
//! On devices other than the CPU [`dense`] composes candle's own ops
//! ([`super::elementwise::dense_reference`]), so the CUDA backend keeps working; the
//! reference is also what the tests compare against.

use super::conv::conv;
use super::elementwise::{dense_reference, Activation};
use super::window::Window;
use candle_core::{DType, Result, Tensor};

/// `act(x·Wᵀ + b)` for `x` `(…, K)`, `weight` `(O, K)` and `bias` `(O)`: output `(…, O)`.
pub fn dense(x: &Tensor, weight: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && [x, weight, bias].iter().all(|t| t.dtype() == DType::F32)
        && weight.rank() == 2
        && bias.rank() == 1;
    if !fused {
        return dense_reference(x, weight, bias, act);
    }
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("dense: input must have at least one dimension");
    };
    let (weight, bias) = (weight.contiguous()?, bias.contiguous()?);
    // The dense layer is the fused convolution's 1×1 case on rows.
    if lead.len() == 1 {
        // No reshape: every reshape is a graph node whose gradient backprop zero-fills and
        // adds once more.
        return conv(x, &weight, &bias, Window::POINT, act);
    }
    let rows: usize = lead.iter().product();
    let mut shape = lead.to_vec();
    shape.push(weight.dim(0)?);
    conv(&x.reshape((rows, k))?, &weight, &bias, Window::POINT, act)?.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, probe_gradients, random};
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    /// Random shapes, odd sizes and 3-D inputs included: values and all three gradients
    /// equal the composition of candle's own ops.
    #[test]
    fn dense_and_its_gradients_match_candle_ops() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for case in 0..17 {
            let act = if case % 2 == 0 {
                Activation::LeakyRelu
            } else {
                Activation::Identity
            };
            let k = rng.random_range(1..=37);
            let o = rng.random_range(1..=29);
            // The last case has enough rows for several blocks of the column sums.
            let shape: Vec<usize> = if case == 16 {
                vec![2503, k]
            } else if case % 3 == 0 {
                vec![rng.random_range(1..=5), rng.random_range(1..=7), k]
            } else {
                vec![rng.random_range(1..=41), k]
            };
            let x = Var::from_tensor(&random(&shape, &mut rng)).expect("x");
            let w = Var::from_tensor(&random(&[o, k], &mut rng)).expect("w");
            let b = Var::from_tensor(&random(&[o], &mut rng)).expect("b");
            let ours = dense(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).expect("ours");
            let theirs =
                dense_reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).expect("ref");
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-5, "{case}");

            for (a, b) in probe_gradients(&ours, &theirs, &[&x, &w, &b], &mut rng) {
                assert!(max_diff(&a, &b) < 1e-4, "{case}: {}", max_diff(&a, &b));
            }
        }
    }

    /// A constant input (no variable behind it) gets no gradient; the parameters get detached ones.
    #[test]
    fn dense_skips_the_gradient_of_a_constant_input() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x = random(&[9, 5], &mut rng);
        let w = Var::from_tensor(&random(&[3, 5], &mut rng)).expect("w");
        let b = Var::from_tensor(&random(&[3], &mut rng)).expect("b");
        let grads = dense(&x, w.as_tensor(), b.as_tensor(), Activation::LeakyRelu)
            .and_then(|y| y.sum_all())
            .and_then(|y| y.backward())
            .expect("backward");
        assert!(grads.get(&x).is_none());
        for var in [&w, &b] {
            let grad = grads.get(var.as_tensor()).expect("parameter gradient");
            // A gradient that kept its graph would chain every step into the next through
            // the optimiser's moments.
            assert!(!grad.track_op(), "gradient still tracks its graph");
        }
    }
}
