//! The loss terms: mutual-information estimators over positive and shuffled pairs, the
//! KL-to-N(0, I) prior, and the shuffle that builds negative pairs.

use super::config::Estimator;
use candle_core::{Result, Tensor};
use rand::Rng;

/// softplus(x) = log(1 + eˣ), in the form that neither overflows nor loses precision:
/// relu(x) + log(1 + e^−|x|). candle has no softplus op.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
}

/// The loss (to minimise) that estimates mutual information from scores of positive pairs
/// and negative pairs, each of any shape.
pub fn mi_loss(estimator: Estimator, positive: &Tensor, negative: &Tensor) -> Result<Tensor> {
    match estimator {
        Estimator::Jsd => {
            softplus(&positive.neg()?)?.mean_all()? + softplus(negative)?.mean_all()?
        }
        Estimator::Dv => {
            let n = negative.elem_count() as f64;
            let log_mean_exp = negative
                .flatten_all()?
                .log_sum_exp(0)?
                .affine(1.0, -n.ln())?;
            log_mean_exp - positive.mean_all()?
        }
        Estimator::Infonce => {
            candle_core::bail!("InfoNCE needs every pair scored (the dot critic)")
        }
    }
}

/// The same estimators over a full score matrix `(R, Q, P)` (R codes, Q feature rows, P
/// positions), with 0/1 masks `(R, Q, 1)` marking positive and negative pairs; pairs in
/// neither mask are ignored. InfoNCE: for each code and position, the cross-entropy of
/// picking its positive among the positive and negative feature rows.
pub fn matrix_mi_loss(
    estimator: Estimator,
    scores: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
) -> Result<Tensor> {
    let positions = scores.dim(2)? as f64;
    let count = |mask: &Tensor| -> Result<f64> {
        Ok(mask.sum_all()?.to_scalar::<f32>()? as f64 * positions)
    };
    // Adding this to a score removes the pair from a log-sum-exp.
    let exclude = |mask: &Tensor| mask.affine(1.0, -1.0)? * 1e4;
    match estimator {
        Estimator::Jsd => {
            let pos = softplus(&scores.neg()?)?
                .broadcast_mul(positive)?
                .sum_all()?;
            let neg = softplus(scores)?.broadcast_mul(negative)?.sum_all()?;
            (pos / count(positive)?)? + (neg / count(negative)?)?
        }
        Estimator::Dv => {
            let pos_mean = (scores.broadcast_mul(positive)?.sum_all()? / count(positive)?)?;
            let log_mean_exp = scores
                .broadcast_add(&exclude(negative)?)?
                .flatten_all()?
                .log_sum_exp(0)?
                .affine(1.0, -count(negative)?.ln())?;
            log_mean_exp - pos_mean
        }
        Estimator::Infonce => {
            let allowed = (positive + negative)?;
            let log_partition = scores.broadcast_add(&exclude(&allowed)?)?.log_sum_exp(1)?;
            let pos = scores.broadcast_mul(positive)?.sum(1)?;
            (log_partition - pos)?.mean_all()
        }
    }
}

/// KL(N(mean, exp(logvar)) ‖ N(0, I)), summed over dimensions and averaged over the batch.
pub fn kl_to_standard_normal(mean: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let batch = mean.dim(0)? as f64;
    let per_element = ((mean.sqr()? + logvar.exp()?)? - logvar)?.affine(1.0, -1.0)?;
    per_element.sum_all()?.affine(0.5 / batch, 0.0)
}

/// A uniformly random cyclic permutation (Sattolo's algorithm): a single cycle through all
/// `n` positions, so no image is ever paired with itself when `n ≥ 2`.
pub fn derangement(n: usize, rng: &mut impl Rng) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..i);
        perm.swap(i, j);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn scalar(t: Tensor) -> f32 {
        t.to_scalar::<f32>().expect("scalar")
    }

    #[test]
    fn softplus_matches_definition_and_is_stable() {
        let x = Tensor::new(&[-100f32, -2.0, 0.0, 3.0, 100.0], &Device::Cpu).unwrap();
        let got = softplus(&x).unwrap().to_vec1::<f32>().unwrap();
        let want = [
            0.0,
            (1.0f32 + (-2.0f32).exp()).ln(),
            2f32.ln(),
            (1.0f32 + 3f32.exp()).ln(),
            100.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn jsd_terms_by_hand() {
        // positive scores 2 and 0, negative scores -1 and 1:
        // mean(softplus(-2), softplus(0)) + mean(softplus(-1), softplus(1))
        let pos = Tensor::new(&[2f32, 0.0], &Device::Cpu).unwrap();
        let neg = Tensor::new(&[-1f32, 1.0], &Device::Cpu).unwrap();
        let sp = |x: f32| (1.0 + x.exp()).ln();
        let want = (sp(-2.0) + sp(0.0)) / 2.0 + (sp(-1.0) + sp(1.0)) / 2.0;
        let got = scalar(mi_loss(Estimator::Jsd, &pos, &neg).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // A critic that separates pairs well has a lower loss than one that confuses them.
        let confused = scalar(mi_loss(Estimator::Jsd, &neg, &pos).unwrap());
        assert!(got < confused);
    }

    #[test]
    fn dv_by_hand() {
        let pos = Tensor::new(&[1f32, 3.0], &Device::Cpu).unwrap();
        let neg = Tensor::new(&[0f32, 2f32.ln()], &Device::Cpu).unwrap();
        // −(mean(pos) − log mean(exp(neg))) = −(2 − log 1.5)
        let want = -(2.0 - 1.5f32.ln());
        let got = scalar(mi_loss(Estimator::Dv, &pos, &neg).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn matrix_form_agrees_with_pairs_and_infonce_by_hand() {
        // Two codes, two feature rows, one position; positives on the diagonal.
        let scores = Tensor::new(&[[[2f32], [-1.0]], [[1.0], [0.0]]], &Device::Cpu).unwrap();
        let positive = Tensor::new(&[[[1f32], [0.0]], [[0.0], [1.0]]], &Device::Cpu).unwrap();
        let negative = Tensor::new(&[[[0f32], [1.0]], [[1.0], [0.0]]], &Device::Cpu).unwrap();
        let pos = Tensor::new(&[2f32, 0.0], &Device::Cpu).unwrap();
        let neg = Tensor::new(&[-1f32, 1.0], &Device::Cpu).unwrap();
        for estimator in [Estimator::Jsd, Estimator::Dv] {
            let matrix = scalar(matrix_mi_loss(estimator, &scores, &positive, &negative).unwrap());
            let pairs = scalar(mi_loss(estimator, &pos, &neg).unwrap());
            assert!(
                (matrix - pairs).abs() < 1e-5,
                "{estimator:?}: {matrix} vs {pairs}"
            );
        }
        // InfoNCE: row 0: log(e² + e⁻¹) − 2; row 1: log(e¹ + e⁰) − 0; averaged.
        let want = (((2f32).exp() + (-1f32).exp()).ln() - 2.0 + ((1f32).exp() + 1.0).ln()) / 2.0;
        let got =
            scalar(matrix_mi_loss(Estimator::Infonce, &scores, &positive, &negative).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // A pair in neither mask does not count.
        let only_first = Tensor::new(&[[[0f32], [1.0]], [[0.0], [0.0]]], &Device::Cpu).unwrap();
        let got =
            scalar(matrix_mi_loss(Estimator::Infonce, &scores, &positive, &only_first).unwrap());
        let want = (((2f32).exp() + (-1f32).exp()).ln() - 2.0 + 0.0) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn kl_by_hand() {
        // Row 1: mean (1, 0), var (1, e): 0.5·[(1 + 1 − 1 − 0) + (0 + e − 1 − 1)] = 0.5·(e − 1)
        // Row 2: the prior itself: 0. Batch average: 0.25·(e − 1).
        let mean = Tensor::new(&[[1f32, 0.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let logvar = Tensor::new(&[[0f32, 1.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let got = scalar(kl_to_standard_normal(&mean, &logvar).unwrap());
        let want = 0.25 * (std::f32::consts::E - 1.0);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn shuffle_is_a_derangement_and_a_permutation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in 2..70 {
            for _ in 0..20 {
                let perm = derangement(n, &mut rng);
                assert!(
                    perm.iter().enumerate().all(|(i, &p)| i as u32 != p),
                    "{perm:?}"
                );
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
            }
        }
        // Not a fixed rotation: different draws give different shuffles.
        assert_ne!(derangement(16, &mut rng), derangement(16, &mut rng));
    }
}
