//! The Winograd path against the im2col reference convolution: values and gradients.

use super::*;
use crate::ops::conv::{conv, conv_reference};
use crate::ops::test_util::{max_diff, probe_gradients, random};
use candle_core::{Tensor, Var};
use rand::SeedableRng;

/// Both window shapes, both tile sizes, both activations, paddings 0 and 1, sizes whose
/// last source row is unused, and 1–3 images: the Winograd path's values and three gradients equal the
/// im2col convolution built from candle's ops.
#[test]
fn winograd_conv_matches_the_reference() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let cases = [
        // (kernel, stride, padding, batch, h, w, c, o); 4×4 output tiles where the
        // output is whole 4×4 tiles, else 2×2.
        (3, 1, 1, 2, 4, 6, 64, 7),
        (3, 1, 1, 3, 8, 4, 66, 6),
        (3, 1, 0, 2, 6, 10, 64, 5),
        (3, 1, 0, 3, 6, 4, 70, 5),
        (4, 2, 1, 2, 8, 8, 16, 9),
        (4, 2, 1, 1, 9, 5, 17, 4),
        (4, 2, 0, 3, 10, 6, 16, 3),
    ];
    for (i, &(kernel, stride, padding, b, h, w, c, o)) in cases.iter().enumerate() {
        let window = Window {
            kernel,
            stride,
            padding,
        };
        assert!(
            Plan::new(window, (h, w, c)).is_some(),
            "{window:?} {h}×{w}×{c}"
        );
        let act = if i % 2 == 0 {
            Activation::LeakyRelu
        } else {
            Activation::Identity
        };
        let x = Var::from_tensor(&random(&[b, h, w, c], &mut rng)).expect("x");
        let row = kernel * kernel * c;
        let weight = Var::from_tensor(&(random(&[o, row], &mut rng) * 0.1).expect("w")).expect("w");
        let bias = Var::from_tensor(&random(&[o], &mut rng)).expect("b");
        let args = (x.as_tensor(), weight.as_tensor(), bias.as_tensor());
        let ours = conv(args.0, args.1, args.2, window, act).expect("conv");
        let theirs = conv_reference(args.0, args.1, args.2, window, act).expect("reference");
        assert_eq!(ours.dims(), theirs.dims(), "{window:?}");
        let scale = theirs.abs().and_then(|t| t.max_all()).expect("max");
        let scale = scale.to_scalar::<f32>().expect("max").max(1.0);
        assert!(max_diff(&ours, &theirs) < 1e-5 * scale, "{window:?}");

        for (a, b) in probe_gradients(&ours, &theirs, &[&x, &weight, &bias], &mut rng) {
            assert!(!a.track_op(), "gradient still tracks its graph");
            let scale = b.abs().and_then(|t| t.max_all()).expect("max");
            let scale = scale.to_scalar::<f32>().expect("max").max(1.0);
            let diff = max_diff(&a, &b);
            assert!(diff < 1e-5 * scale, "{window:?}: {diff} of {scale}");
        }
    }
}

/// A batch split into groups (here of one image) gives the same values and gradients as
/// one group: the weight gradient accumulates over groups.
#[test]
fn groups_give_the_same_result() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let window = Window {
        kernel: 4,
        stride: 2,
        padding: 1,
    };
    let (b, h, w, c, o) = (5, 8, 8, 16, 6);
    let whole = Plan::new(window, (h, w, c)).expect("plan");
    let mut split = Plan::new(window, (h, w, c)).expect("plan");
    split.group_floats = split.floats_per_image();
    assert_eq!(
        (whole.images_per_group() >= b, split.images_per_group()),
        (true, 1)
    );
    let values = |shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng| {
        random(shape, rng)
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values")
    };
    let x = values(&[b, h, w, c], &mut rng);
    let weight = values(&[o, 16 * c], &mut rng);
    let bias = values(&[o], &mut rng);
    let g = values(&[b, 4, 4, o], &mut rng);
    let run = |plan: &Plan| {
        let mut out = vec![0f32; b * 4 * 4 * o];
        forward(plan, &x, &weight, &bias, Activation::LeakyRelu, &mut out);
        (out, backward(plan, &x, &weight, &g, o, true))
    };
    let (out1, (gx1, gw1, gb1)) = run(&whole);
    let (out2, (gx2, gw2, gb2)) = run(&split);
    let close = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4)
    };
    assert!(
        close(&out1, &out2) && close(&gx1, &gx2),
        "values or input gradients"
    );
    assert!(
        close(&gw1, &gw2) && close(&gb1, &gb2),
        "weight or bias gradients"
    );
}

/// An input that is not a variable gets no gradient, and the weight gradient is unchanged.
#[test]
fn constant_input_still_gives_weight_gradients() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let window = Window {
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let x: Tensor = random(&[2, 4, 4, 64], &mut rng);
    let weight = Var::from_tensor(&random(&[8, 9 * 64], &mut rng)).expect("w");
    let bias = Var::from_tensor(&random(&[8], &mut rng)).expect("b");
    let ours = conv(&x, &weight, &bias, window, Activation::LeakyRelu).expect("conv");
    let theirs =
        conv_reference(&x, &weight, &bias, window, Activation::LeakyRelu).expect("reference");
    for (a, b) in probe_gradients(&ours, &theirs, &[&weight, &bias], &mut rng) {
        assert!(max_diff(&a, &b) < 1e-3, "{}", max_diff(&a, &b));
    }
}

/// Outputs of whole 4×4 tiles get F(4, r), other even outputs F(2, r); shapes the
/// transforms do not fit fall back to im2col: odd outputs, other windows, too few channels.
#[test]
fn plan_only_takes_whole_tiles_of_enough_channels() {
    let w3 = Window {
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let w4 = Window {
        kernel: 4,
        stride: 2,
        padding: 1,
    };
    let tile = |window, dims| Plan::new(window, dims).map(|plan| plan.t.m);
    assert_eq!(tile(w3, (4, 4, 256)), Some(4));
    assert_eq!(tile(w4, (16, 16, 64)), Some(4));
    assert_eq!(tile(w3, (6, 6, 64)), Some(2));
    assert_eq!(tile(w4, (12, 12, 64)), Some(2));
    assert!(Plan::new(w3, (5, 4, 256)).is_none());
    assert!(Plan::new(w4, (32, 32, 3)).is_none());
    assert!(Plan::new(Window::POINT, (4, 4, 256)).is_none());
    assert!(Plan::new(w4, (6, 6, 64)).is_none());
}
