//! A training run: `train` loads the pixels, builds the model from its start (scratch, the
//! bundled model, a model folder) or restores it from the checkpoint, runs the epochs (views,
//! augmentation, occlusion, the DIM objective, Adam at the scheduled rate) until the epoch
//! limit or the time budget, stops on a non-finite loss, checkpoints after every epoch, and
//! keeps in `--out` the model the label-free probe likes best (or the last, with `--keep
//! last`). This file owns the run's entry point and report, the loading of its pixels, where
//! it starts, and which epoch `--out` keeps; the loop itself, and `train`, are in `trainer`.

use super::probe::ProbeScore;
use super::settings::{Keep, Start, TrainOptions, DEFAULT_SEED};
use crate::data::{self, Failure, LoadStats, Loaded};
use crate::error::{Error, Result};
use crate::model::{
    default_config, load_parameters, Encoder, Model, ModelConfig, ModelSource, SeededInit,
};
use crate::progress::{Event, OnEvent};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a training run did, for the CLI's summary.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub images: usize,
    pub skipped: usize,
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Decoding (or reading the pixel cache) before the first step.
    pub load: LoadStats,
    /// Training images/s of each epoch run, load excluded.
    pub epoch_images_per_second: Vec<f64>,
    pub last_losses: Losses,
    pub model: PathBuf,
    /// Where the encoder started ("scratch", "default", a path), if known.
    pub start: Option<String>,
    /// Whether `--minutes` ended the run.
    pub out_of_time: bool,
    pub probe: ProbeReport,
    /// The search projection fitted at the end of the run; `None` when none was asked for
    /// or the run wrote no model.
    pub projection: Option<ProjectionReport>,
}

/// What the end of a run did about the search projection.
#[derive(Debug, Clone, Copy)]
pub struct ProjectionReport {
    /// Components asked for.
    pub dim: usize,
    /// Length of the embedding the projection reads.
    pub embedding_dim: usize,
    /// Images it was fitted on (all of them when `fitted` is false).
    pub images: usize,
    /// False when the run had fewer than [`super::projection::min_fit_images`] of `dim`
    /// images: the model then searches its embedding unprojected.
    pub fitted: bool,
}

/// The label-free probe ([`super::probe`]) before training, after the last epoch, and of the
/// model kept in `--out` (the best probe of the run; `None` when a resumed run never beat
/// the model it had kept).
#[derive(Debug, Clone, Copy)]
pub struct ProbeReport {
    pub before: ProbeScore,
    pub last: ProbeScore,
    pub kept: Option<ProbeScore>,
    /// The epoch whose model `--out` holds.
    pub kept_epoch: Option<usize>,
}

/// One step's loss terms (before weighting) and the weighted total.
#[derive(Debug, Clone, Copy, Default)]
pub struct Losses {
    pub global: f32,
    pub local: f32,
    pub prior: f32,
    pub total: f32,
}

/// The preprocessed pixels of every image under the roots, through the pixel cache. Fewer
/// files than `batch` is an error before anything is decoded or written.
pub(super) fn load_pixels(
    opts: &TrainOptions,
    config: &ModelConfig,
    batch: usize,
    on_event: OnEvent<'_>,
) -> Result<Loaded> {
    let scan = data::scan(&opts.roots)?;
    for (path, reason) in &scan.unreadable {
        on_event(Event::Skipped { path, reason });
    }
    let mut files = scan.files;
    if let Some(limit) = opts.limit.filter(|&l| l < files.len()) {
        // Evenly spaced through the sorted paths, so a limit samples every folder.
        let n = files.len();
        files = (0..limit).map(|i| files[i * n / limit].clone()).collect();
    }
    if files.is_empty() {
        return Err(Error::NoImages {
            path: opts.roots.first().cloned().unwrap_or_default(),
        });
    }
    if files.len() < batch {
        return Err(too_few(files.len(), "image files", batch));
    }
    let bar = opts.verbosity.bar(files.len() as u64, "decode");
    let mut loaded = data::load_pixels(
        &files,
        &config.preprocess,
        opts.cache_file().as_deref(),
        &mut |event| match event {
            data::Event::Done(n) => bar.inc(n as u64),
            data::Event::Skipped(failure) => opts.verbosity.report(
                &bar,
                on_event,
                Event::Skipped {
                    path: &failure.path,
                    reason: &failure.reason,
                },
            ),
            data::Event::Warning(line) => {
                opts.verbosity.report(&bar, on_event, Event::Warning(&line))
            }
        },
    )?;
    bar.finish_and_clear();
    let unreadable = scan
        .unreadable
        .into_iter()
        .map(|(path, reason)| Failure { path, reason });
    loaded.failures.splice(0..0, unreadable);
    Ok(loaded)
}

pub(super) fn too_few(count: usize, what: &str, batch: usize) -> Error {
    Error::Usage(format!(
        "found {count} {what}: training needs at least --batch ({batch}) images"
    ))
}

/// A `(rows, cols)` matrix of N(0, I) draws from our seeded RNG (candle's CPU device cannot be
/// seeded).
pub(super) fn standard_normal(
    (rows, cols): (usize, usize),
    rng: &mut impl rand::Rng,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let noise: Vec<f32> = (0..rows * cols)
        .map(|_| StandardNormal.sample(rng))
        .collect();
    Tensor::from_vec(noise, (rows, cols), device)
}

/// The prior discriminator plays against the encoder: its variables take their gradients
/// from its own loss, not from the total, whose prior term pushes the other way.
pub(super) fn adversarial_grads(
    grads: &mut GradStore,
    critic_loss: &Tensor,
    critic_vars: &[Var],
) -> candle_core::Result<()> {
    let critic_grads = critic_loss.backward()?;
    for var in critic_vars {
        match critic_grads.get(var.as_tensor()) {
            Some(g) => grads.insert(var.as_tensor(), g.clone()),
            None => grads.remove(var.as_tensor()),
        };
    }
    Ok(())
}

/// Where the run's encoder starts: the option given, or the bundled model when the
/// options ask for its architecture, else scratch.
pub fn resolve_start(opts: &TrainOptions) -> Result<Start> {
    if let Some(start) = &opts.start {
        return Ok(start.clone());
    }
    Ok(match opts.config.weights_differ(&default_config()?) {
        None => Start::Model(ModelSource::Default),
        Some(_) => Start::Scratch,
    })
}

/// The config a fresh run trains and the encoder tensors it starts from. A model to start
/// from keeps its weights' architecture and normalisation statistics; everything else
/// (input size, objective) comes from the options.
pub(super) fn starting_point(
    opts: &TrainOptions,
    start: &Start,
    device: &Device,
) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
    let mut config = opts.config.clone();
    // Training never reads the projection: it is fitted at the end of the run.
    config.projection = None;
    let Start::Model(source) = start else {
        return Ok((config, HashMap::new()));
    };
    let (from, tensors, name) = load_parameters(source, device)?;
    if let Some(differences) = config.weights_differ(&from) {
        return Err(Error::Usage(format!(
            "--from {name}: its weights have another shape than the architecture asked for \
             ({differences}); leave the architecture options out or train --from scratch"
        )));
    }
    config.preprocess.mean = from.preprocess.mean;
    config.preprocess.std = from.preprocess.std;
    let encoder = tensors
        .into_iter()
        .filter(|(name, _)| name.starts_with("encoder."))
        .collect();
    Ok((config, encoder))
}

/// The model a run starts from, for scoring before training: the checkpoint's on `--resume`;
/// a start model as it searches (its own projection included) when the run searches the same
/// vector at the same input size; else the start's encoder (seeded random weights for
/// scratch) at the run's input size and embedding.
pub fn start_model(opts: &TrainOptions, device: &Device) -> Result<Model> {
    if opts.resume {
        return Model::load(&ModelSource::Path(opts.out.clone()), device);
    }
    let start = resolve_start(opts)?;
    if let Start::Model(source) = &start {
        let model = Model::load(source, device)?;
        if model.config.embedding == opts.config.embedding
            && model.config.preprocess.size == opts.config.preprocess.size
        {
            return Ok(model);
        }
    }
    let (config, tensors) = starting_point(opts, &start, device)?;
    let seed = opts.seed.unwrap_or(DEFAULT_SEED);
    let init = Arc::new(SeededInit::new(seed, tensors));
    let encoder = Encoder::for_inference(&config, init.var_builder(device).pp("encoder"))?;
    Ok(Model {
        config,
        encoder,
        projection: None,
        id: format!("start-{}", start.name()),
        name: format!("start ({})", start.name()),
        device: device.clone(),
    })
}

/// The encoder as it stands, ready to embed (normalisation folded).
pub(super) fn inference_encoder(
    init: &SeededInit,
    config: &ModelConfig,
    device: &Device,
) -> Result<Encoder> {
    let tensors: HashMap<String, Tensor> = model_vars(init)
        .into_iter()
        .filter(|(name, _)| name.starts_with("encoder."))
        .collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, device);
    Ok(Encoder::for_inference(config, vb.pp("encoder"))?)
}

/// Which epoch's model `--out` holds, decided after each epoch as [`Keep`] says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kept {
    pub(super) keep: Keep,
    /// The probe score of the model in `--out`, `None` while it has none; the checkpoint
    /// records it so that a resumed run compares its epochs with it.
    pub(super) score: Option<f64>,
    /// The probe score and epoch of the model this run put in `--out`, once probed.
    pub(super) this_run: Option<(ProbeScore, usize)>,
}

impl Kept {
    /// Whether the model of `epoch`, just trained (`probed` holds its probe score when the
    /// probe ran), replaces the one in `--out`.
    pub(super) fn after_epoch(&mut self, epoch: usize, probed: Option<ProbeScore>) -> bool {
        match self.keep {
            Keep::BestProbe => match probed {
                Some(score) if self.score.is_none_or(|best| score.survival_at_9 >= best) => {
                    self.score = Some(score.survival_at_9);
                    self.this_run = Some((score, epoch));
                    true
                }
                // Until the probe has run, the latest epoch is the model in --out.
                _ => self.score.is_none(),
            },
            Keep::Last => {
                self.score = probed.map(|score| score.survival_at_9);
                self.this_run = probed.map(|score| (score, epoch));
                true
            }
        }
    }
}

/// The probe runs at the end of an epoch that crosses a multiple of this many steps, and at
/// the end of the run. Counted in steps, not seconds, so that a resumed run probes where an
/// uninterrupted one would (besides the first run's last epoch).
pub(super) const PROBE_EVERY_STEPS: usize = 200;

pub(super) fn model_vars(init: &SeededInit) -> HashMap<String, Tensor> {
    init.vars()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{adversarial_grads, standard_normal, Kept};
    use crate::model::{ModelConfig, PriorDiscriminator, SeededInit, PRIOR_PREFIX};
    use crate::train::adam::Adam;
    use crate::train::probe::ProbeScore;
    use crate::train::settings::{Keep, LrSchedule};
    use candle_core::{Device, Tensor, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::Arc;

    fn probed(survival_at_9: f64) -> Option<ProbeScore> {
        Some(ProbeScore {
            self_top1: 0.5,
            survival_at_9,
            images: 100,
        })
    }

    /// Epochs 1-4 with the probe run after epochs 2, 3 and 4 (scores 0.6, 0.7, 0.5): what
    /// each epoch exports, and what `--out` holds at the end.
    fn keeps(keep: Keep, resumed_score: Option<f64>) -> (Vec<bool>, Kept) {
        let mut kept = Kept {
            keep,
            score: resumed_score,
            this_run: None,
        };
        let exports = [None, probed(0.6), probed(0.7), probed(0.5)]
            .into_iter()
            .enumerate()
            .map(|(i, score)| kept.after_epoch(i + 1, score))
            .collect();
        (exports, kept)
    }

    #[test]
    fn best_probe_keeps_the_best_scored_epoch() {
        let (exports, kept) = keeps(Keep::BestProbe, None);
        // Epoch 1 goes out because nothing has been scored yet; epoch 4 scored lower.
        assert_eq!(exports, [true, true, true, false]);
        assert_eq!(kept.score, Some(0.7));
        assert_eq!(kept.this_run.map(|(_, epoch)| epoch), Some(3));

        // Resumed beside a model that scored 0.8: no epoch of this run beats it.
        let (exports, kept) = keeps(Keep::BestProbe, Some(0.8));
        assert_eq!(exports, [false; 4]);
        assert_eq!(kept.score, Some(0.8));
        assert!(kept.this_run.is_none());
    }

    #[test]
    fn last_keeps_every_epoch_and_records_its_own_score() {
        let (exports, kept) = keeps(Keep::Last, Some(0.8));
        assert_eq!(exports, [true; 4]);
        // The checkpoint records the score of the model in --out, the last epoch's.
        assert_eq!(kept.score, Some(0.5));
        let (score, epoch) = kept.this_run.expect("the last epoch was probed");
        assert_eq!((score.survival_at_9, epoch), (0.5, 4));
    }

    /// The prior game with a free code vector standing in for the encoder: codes start far
    /// from N(0, I); the discriminator must learn to tell them apart and the codes must move
    /// to the prior. With the discriminator's gradients taken from the total (which rewards
    /// fooling it), neither happens.
    #[test]
    fn adversarial_prior_pulls_codes_to_the_prior() -> candle_core::Result<()> {
        let device = Device::Cpu;
        let config = ModelConfig {
            dim: 8,
            ..ModelConfig::default()
        };
        let init = Arc::new(SeededInit::new(3, Default::default()));
        let discriminator =
            PriorDiscriminator::new(&config, init.var_builder(&device).pp(PRIOR_PREFIX))?;
        let critic_vars: Vec<Var> = init.vars().into_iter().map(|(_, v)| v).collect();
        let codes =
            Var::from_tensor(&(Tensor::ones((64, 8), candle_core::DType::F32, &device)? * 3.0)?)?;
        let mut vars = init.vars();
        vars.push(("codes".into(), codes.clone()));
        let mut adam = Adam::new(vars, 3e-2)?;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mean_code = |codes: &Var| -> candle_core::Result<f32> {
            codes.as_tensor().mean_all()?.to_scalar::<f32>()
        };
        let mut first_critic_loss = None;
        let mut best_critic_loss = f32::INFINITY;
        for _ in 0..150 {
            let prior = standard_normal((64, 8), &mut rng, &device)?;
            let game = discriminator.game(codes.as_tensor(), &prior)?;
            let critic_loss = game.discriminator.to_scalar::<f32>()?;
            first_critic_loss.get_or_insert(critic_loss);
            best_critic_loss = best_critic_loss.min(critic_loss);
            let mut grads = game.encoder.backward()?;
            adversarial_grads(&mut grads, &game.discriminator, &critic_vars)?;
            adam.step(&grads)?;
        }
        let first = first_critic_loss.unwrap_or_default();
        assert!(
            best_critic_loss < 0.5 * first,
            "discriminator never separated the codes from the prior: {first} → {best_critic_loss}"
        );
        let mean = mean_code(&codes)?;
        assert!(
            mean.abs() < 1.0,
            "codes stayed away from the prior: mean {mean}"
        );
        Ok(())
    }

    /// The in-place CPU update (f32) follows candle's ops (here in f64, which the fused path
    /// does not take) over several steps, with and without weight decay, on odd sizes.
    #[test]
    fn fused_adam_matches_the_op_by_op_update() -> candle_core::Result<()> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for decay in [0.0, 0.01] {
            let shapes: [&[usize]; 3] = [&[7], &[5, 3], &[70_001]];
            let mut random = |shape: &[usize]| -> candle_core::Result<Tensor> {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
                Tensor::from_vec(v, shape, &Device::Cpu)
            };
            let start = shapes
                .iter()
                .map(|s| random(s))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let grads = (0..3)
                .map(|_| shapes.iter().map(|s| random(s)).collect())
                .collect::<candle_core::Result<Vec<Vec<_>>>>()?;
            let run = |dtype: candle_core::DType| -> candle_core::Result<Vec<Tensor>> {
                let vars = start
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Ok((format!("p{i}"), Var::from_tensor(&t.to_dtype(dtype)?)?)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let mut adam = Adam::new(vars.clone(), 0.01)?;
                adam.weight_decay = decay;
                for step in &grads {
                    // Σ var·g has gradient g with respect to each var.
                    let mut total = Tensor::zeros((), dtype, &Device::Cpu)?;
                    for ((_, var), g) in vars.iter().zip(step) {
                        total = (total + (var.as_tensor() * g.to_dtype(dtype)?)?.sum_all()?)?;
                    }
                    adam.step(&total.backward()?)?;
                }
                vars.iter()
                    .map(|(_, v)| v.as_tensor().to_dtype(candle_core::DType::F32))
                    .collect()
            };
            for (fast, slow) in run(candle_core::DType::F32)?
                .iter()
                .zip(run(candle_core::DType::F64)?)
            {
                let diff = (fast - slow)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(diff < 1e-5, "decay {decay}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn cosine_schedule_goes_from_lr_to_zero() {
        let at = |step| LrSchedule::Cosine.at(1e-3, step, 100);
        assert!((at(0) - 1e-3).abs() < 1e-12);
        assert!((at(50) - 5e-4).abs() < 1e-12);
        assert!(at(100).abs() < 1e-12);
        assert!(at(25) > at(26));
        assert_eq!(LrSchedule::Constant.at(1e-3, 77, 100), 1e-3);
    }
}
