//! Training: decode the folder once into preprocessed pixels (kept in a memory-mapped pixel
//! cache, so later runs and `--resume` decode nothing), then run the DIM objective with
//! Adam for some epochs, writing an atomic checkpoint (weights + optimiser state) and the
//! exported model at the end of each epoch so that `--resume` continues exactly.

use crate::data::{self, occlude, Augment, Failure, LoadStats, Loaded};
use crate::model::batchnorm::is_buffer;
use crate::model::{
    objective, safetensors_bytes, save_model, write_atomic, Dim, DimBatch, ModelConfig, PriorKind,
    SeededInit, TrainingRecord, PRIOR_PREFIX,
};
use crate::progress::Verbosity;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod fused;

pub const CHECKPOINT_WEIGHTS: &str = "checkpoint.safetensors";
pub const CHECKPOINT_STATE: &str = "checkpoint.json";

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub roots: Vec<PathBuf>,
    pub out: PathBuf,
    pub epochs: usize,
    /// Images per step. `None`: [`DEFAULT_BATCH`], or on `resume` the run's own (a resumed
    /// run cannot change it: its step count and schedule are counted in batches).
    pub batch: Option<usize>,
    /// Peak learning rate. `None`: [`DEFAULT_LR`], or on `resume` the run's own.
    pub lr: Option<f64>,
    /// `None`: [`DEFAULT_SCHEDULE`], or on `resume` the run's own.
    pub schedule: Option<LrSchedule>,
    /// Seeds the initial weights and each epoch's data order and augmentations. `None`:
    /// [`DEFAULT_SEED`], or on `resume` the run's own, so that the resumed epochs draw what an
    /// uninterrupted run would have.
    pub seed: Option<u64>,
    pub resume: bool,
    /// Use at most this many images, evenly spaced through the sorted paths.
    pub limit: Option<usize>,
    pub augment: Augment,
    /// Views of each image per step: 1, or 2 to pair the code of one augmented view with
    /// the features of another.
    pub views: usize,
    /// Architecture and objective; ignored on `--resume`, which keeps the checkpoint's.
    pub config: ModelConfig,
    /// The pixel cache file ([`data::CACHE_FILE`] in some folder); `None` decodes into memory.
    pub cache: Option<PathBuf>,
    pub verbosity: Verbosity,
}

pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_LR: f64 = 1e-3;
pub const DEFAULT_SCHEDULE: LrSchedule = LrSchedule::Cosine;
pub const DEFAULT_SEED: u64 = 0;

/// How the run trains: the options given, the rest from the run being resumed or the
/// defaults. A resumed run always keeps its batch, views and augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RunSettings {
    batch: usize,
    lr: f64,
    schedule: LrSchedule,
    seed: u64,
    views: usize,
    augment: Augment,
}

impl RunSettings {
    fn resolve(opts: &TrainOptions, resumed: Option<&TrainingRecord>) -> Result<Self> {
        let Some(record) = resumed else {
            return Ok(RunSettings {
                batch: opts.batch.unwrap_or(DEFAULT_BATCH),
                lr: opts.lr.unwrap_or(DEFAULT_LR),
                schedule: opts.schedule.unwrap_or(DEFAULT_SCHEDULE),
                seed: opts.seed.unwrap_or(DEFAULT_SEED),
                views: opts.views.max(1),
                augment: opts.augment,
            });
        };
        if let Some(batch) = opts.batch.filter(|&b| b != record.batch) {
            return Err(Error::Usage(format!(
                "--batch {batch}: the run in {} trains with batch {}, and --resume cannot change it",
                opts.out.display(),
                record.batch
            )));
        }
        Ok(RunSettings {
            batch: record.batch,
            lr: opts.lr.unwrap_or(record.lr),
            schedule: opts
                .schedule
                .unwrap_or_else(|| LrSchedule::from_record(&record.schedule)),
            seed: opts.seed.unwrap_or(record.seed),
            views: record.views,
            augment: record.augment,
        })
    }
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// Half a cosine from `--lr` down to 0 over all steps of all epochs.
    Cosine,
}

impl LrSchedule {
    /// The schedule a model's training record names (models from before schedules were
    /// recorded trained at a constant rate).
    fn from_record(name: &str) -> Self {
        if name == LrSchedule::Cosine.name() {
            LrSchedule::Cosine
        } else {
            LrSchedule::Constant
        }
    }

    /// The name training records use, as on the command line.
    fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        }
    }

    /// The learning rate at `step` of `total` steps.
    pub fn at(self, lr: f64, step: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let progress = (step as f64 / total.max(1) as f64).min(1.0);
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// What a training run did, for the CLI's summary.
#[derive(Debug, Clone, Serialize)]
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
}

/// One step's loss terms (before weighting) and the weighted total.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Losses {
    pub global: f32,
    pub local: f32,
    pub prior: f32,
    pub total: f32,
}

/// Saved beside the checkpoint weights; `--resume` starts after `epochs_done`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: ModelConfig,
    epochs_done: usize,
    steps: usize,
    adam_step: usize,
    seconds: f64,
    weights_crc32: u32,
}

/// Adam with bias correction (AdamW's decoupled decay when `weight_decay > 0`). Its moment
/// estimates are plain tensors so that checkpoints can carry them.
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, lr: f64) -> candle_core::Result<Self> {
        // Separate zero tensors for m and v: the CPU update writes them in place.
        let zeros = || {
            vars.iter()
                .map(|(_, v)| v.as_tensor().zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()
        };
        Ok(Adam {
            m: zeros()?,
            v: zeros()?,
            vars,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - self.beta1.powi(t);
        let correction2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / correction1;
        let fused = fused::AdamStep {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            step_size: step_size as f32,
            correction2: correction2 as f32,
            eps: self.eps as f32,
            decay: (self.lr * self.weight_decay) as f32,
        };
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // m and v own their storages (made in `new`, copied in `restore_moments`; the
            // clones `state_tensors` hands out are serialised at once), as the in-place
            // update requires.
            if fused::adam_in_place(var.as_tensor(), &self.m[i], &self.v[i], grad, fused)? {
                continue;
            }
            self.m[i] = ((&self.m[i] * self.beta1)? + (grad * (1.0 - self.beta1))?)?;
            self.v[i] = ((&self.v[i] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&self.v[i] / correction2)?.sqrt()? + self.eps)?;
            let mut updated = (var.as_tensor() - ((&self.m[i] / denom)? * step_size)?)?;
            if self.weight_decay > 0.0 {
                updated = (updated - (var.as_tensor() * (self.lr * self.weight_decay))?)?;
            }
            var.set(&updated)?;
        }
        Ok(())
    }

    /// Parameters and moments as named tensors, for a checkpoint. They share storage with the
    /// optimiser's, which the next step updates in place: serialise them before stepping again.
    fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            out.insert(format!("param.{name}"), var.as_tensor().clone());
            out.insert(format!("adam_m.{name}"), self.m[i].clone());
            out.insert(format!("adam_v.{name}"), self.v[i].clone());
        }
        out
    }

    fn restore_moments(&mut self, saved: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("adam_m", &mut self.m[i]), ("adam_v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                match saved.get(&key) {
                    // A copy of its own: the moments are updated in place.
                    Some(t) if t.shape() == var.as_tensor().shape() => *slot = t.copy()?,
                    _ => {
                        return Err(Error::model(
                            CHECKPOINT_WEIGHTS,
                            format!("optimiser state {key} is missing or has the wrong shape"),
                        ))
                    }
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The preprocessed pixels of every image under the roots, through the pixel cache.
fn load_pixels(opts: &TrainOptions, config: &ModelConfig) -> Result<Loaded> {
    let scan = data::scan(&opts.roots)?;
    let mut files = scan.files;
    if let Some(limit) = opts.limit.filter(|&l| l < files.len()) {
        // Evenly spaced through the sorted paths, so a limit samples every folder.
        let n = files.len();
        files = (0..limit).map(|i| files[i * n / limit].clone()).collect();
    }
    let bar = opts.verbosity.bar(files.len() as u64, "decode");
    let mut loaded = data::load_pixels(
        &files,
        &config.preprocess,
        opts.cache.as_deref(),
        &mut |event| match event {
            data::Event::Done(n) => bar.inc(n as u64),
            data::Event::Skipped(failure) => opts.verbosity.warn(
                &bar,
                &format!("skipped {}: {}", failure.path.display(), failure.reason),
            ),
            data::Event::Warning(line) => opts.verbosity.warn(&bar, &line),
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

/// A `(rows, cols)` matrix of N(0, I) draws from our seeded RNG (candle's CPU device cannot be
/// seeded).
fn standard_normal(
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
fn adversarial_grads(
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

/// Trains a model and writes it to `opts.out` (see the module doc for the files).
pub fn train(opts: &TrainOptions, device: &Device) -> Result<TrainReport> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let resumed = if opts.resume {
        Some(read_checkpoint(out, device)?)
    } else {
        None
    };
    let mut config = match &resumed {
        Some((state, _)) => state.config.clone(),
        None => opts.config.clone(),
    };
    config
        .validate()
        .map_err(|e| Error::Usage(format!("model config: {e}")))?;
    let run = RunSettings::resolve(
        opts,
        resumed
            .as_ref()
            .and_then(|(state, _)| state.config.training.as_ref()),
    )?;
    if run.batch < 2 {
        return Err(Error::Usage(
            "--batch must be at least 2: negatives come from other images in the batch".into(),
        ));
    }

    let Loaded {
        pixels,
        failures,
        stats: load,
    } = load_pixels(opts, &config)?;
    let count = pixels.len();
    if count == 0 {
        return Err(Error::NoImages {
            path: opts.roots.first().cloned().unwrap_or_default(),
        });
    }
    if count < run.batch {
        return Err(Error::Usage(format!(
            "only {count} readable images: training needs at least --batch ({})",
            run.batch
        )));
    }

    let (saved, epochs_done, mut steps, adam_step, seconds_before) = match resumed {
        Some((state, tensors)) => (
            tensors,
            state.epochs_done,
            state.steps,
            state.adam_step,
            state.seconds,
        ),
        None => (HashMap::new(), 0, 0, 0, 0.0),
    };
    let params: HashMap<String, Tensor> = saved
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let init = Arc::new(SeededInit::new(run.seed, params));
    let model = Dim::new(&config, init.var_builder(device))?;
    // Running statistics of batch normalisation are buffers: the forward updates them, the
    // optimiser never sees them; they are saved with the parameters.
    let params = init
        .vars()
        .into_iter()
        .filter(|(name, _)| !is_buffer(name))
        .collect();
    let mut adam = Adam::new(params, run.lr)?;
    let prior_vars: Vec<Var> = init
        .vars()
        .into_iter()
        .filter(|(name, _)| name.starts_with(&format!("{PRIOR_PREFIX}.")))
        .map(|(_, var)| var)
        .collect();
    if epochs_done > 0 {
        adam.restore_moments(&saved, adam_step)?;
    }

    let RunSettings { views, augment, .. } = run;
    let steps_per_epoch = count / run.batch;
    let remaining_epochs = opts.epochs.saturating_sub(epochs_done);
    let bar = opts.verbosity.bar(
        (remaining_epochs * steps_per_epoch * run.batch) as u64,
        "train",
    );
    let s = config.preprocess.size as usize;
    let started = Instant::now();
    let mut last = Losses::default();
    let mut trained_images = 0usize;
    let mut epoch_images_per_second = Vec::new();
    for epoch in epochs_done..opts.epochs {
        let epoch_started = Instant::now();
        // One RNG per epoch, derived from the seed: a resumed run draws what the
        // uninterrupted run would have.
        let mut rng = ChaCha8Rng::seed_from_u64(
            run.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1)),
        );
        let mut order: Vec<usize> = (0..count).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for (step_in_epoch, chunk) in order.chunks_exact(run.batch).enumerate() {
            let rows = run.batch * views;
            let mut input = Vec::with_capacity(rows * 3 * s * s);
            for _ in 0..views {
                for &i in chunk {
                    augment.view_into(pixels.get(i), &config.preprocess, &mut rng, &mut input);
                }
            }
            let occlusion = config.objective.occlude;
            let x_code = if occlusion > 0.0 {
                let mut hidden = input.clone();
                for view in hidden.chunks_exact_mut(s * s * 3) {
                    occlude(view, s, occlusion, &mut rng);
                }
                Some(Tensor::from_vec(hidden, (rows, s, s, 3), device)?)
            } else {
                None
            };
            let x = Tensor::from_vec(input, (rows, s, s, 3), device)?;
            let eps = standard_normal((rows, config.dim), &mut rng, device)?;
            let perm = objective::derangement(run.batch, &mut rng);
            let prior_samples = match config.objective.prior {
                PriorKind::Adversarial => {
                    Some(standard_normal((rows, config.dim), &mut rng, device)?)
                }
                PriorKind::Kl | PriorKind::None => None,
            };
            let losses = model.losses(&DimBatch {
                x: &x,
                x_code: x_code.as_ref(),
                views,
                eps: &eps,
                perm: &perm,
                prior_samples: prior_samples.as_ref(),
            })?;
            let total = losses.total(&config)?;
            last = Losses {
                global: losses.global.to_scalar()?,
                local: losses.local.to_scalar()?,
                prior: losses.prior.to_scalar()?,
                total: total.to_scalar()?,
            };
            for (term, value) in [
                ("global", last.global),
                ("local", last.local),
                ("prior", last.prior),
            ] {
                if !value.is_finite() {
                    bar.abandon();
                    return Err(Error::Diverged {
                        epoch: epoch + 1,
                        step: step_in_epoch + 1,
                        term,
                        value,
                        checkpoint: out.join(CHECKPOINT_WEIGHTS),
                    });
                }
            }
            let mut grads = total.backward()?;
            if let Some(critic_loss) = &losses.prior_critic {
                adversarial_grads(&mut grads, critic_loss, &prior_vars)?;
            }
            adam.set_lr(
                run.schedule
                    .at(run.lr, steps, opts.epochs * steps_per_epoch),
            );
            adam.step(&grads)?;
            steps += 1;
            trained_images += run.batch;
            bar.inc(run.batch as u64);
            bar.set_message(format!(
                "epoch {}/{} global {:.4} local {:.4} prior {:.3}",
                epoch + 1,
                opts.epochs,
                last.global,
                last.local,
                last.prior
            ));
        }
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        config.training = Some(TrainingRecord {
            images: count,
            epochs: epoch + 1,
            batch: run.batch,
            lr: run.lr,
            schedule: run.schedule.name().to_string(),
            seed: run.seed,
            views,
            augment,
            seconds,
        });
        write_checkpoint(
            out,
            &config,
            &model_vars(&init),
            &adam,
            epoch + 1,
            steps,
            seconds,
        )?;
        epoch_images_per_second
            .push((steps_per_epoch * run.batch) as f64 / epoch_started.elapsed().as_secs_f64());
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainReport {
        images: count,
        skipped: failures.len(),
        epochs: opts.epochs,
        steps,
        seconds,
        images_per_second: trained_images as f64 / seconds.max(1e-9),
        load,
        epoch_images_per_second,
        last_losses: last,
        model: out.clone(),
    })
}

fn model_vars(init: &SeededInit) -> HashMap<String, Tensor> {
    init.vars()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().clone()))
        .collect()
}

fn write_checkpoint(
    out: &Path,
    config: &ModelConfig,
    params: &HashMap<String, Tensor>,
    adam: &Adam,
    epochs_done: usize,
    steps: usize,
    seconds: f64,
) -> Result<()> {
    let weights_path = out.join(CHECKPOINT_WEIGHTS);
    let mut state = adam.state_tensors();
    // Buffers (not in the optimiser) go with the parameters ("param." prefix), so --resume
    // loads them alike.
    for (name, tensor) in params.iter().filter(|(name, _)| is_buffer(name)) {
        state.insert(format!("param.{name}"), tensor.clone());
    }
    let bytes = safetensors_bytes(&state).map_err(|e| Error::model(&weights_path, e))?;
    let state = CheckpointState {
        config: config.clone(),
        epochs_done,
        steps,
        adam_step: adam.step,
        seconds,
        weights_crc32: crc32fast::hash(&bytes),
    };
    write_atomic(&weights_path, &bytes)?;
    let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::model(out, e.to_string()))?;
    write_atomic(&out.join(CHECKPOINT_STATE), &json)?;
    let encoder: HashMap<String, Tensor> = params
        .iter()
        .filter(|(k, _)| k.starts_with("encoder."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    save_model(out, config, &encoder)
}

fn read_checkpoint(
    out: &Path,
    device: &Device,
) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
    let state_path = out.join(CHECKPOINT_STATE);
    let json = std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: CheckpointState = serde_json::from_slice(&json)
        .map_err(|e| Error::model(&state_path, format!("unreadable checkpoint state: {e}")))?;
    state
        .config
        .validate()
        .map_err(|e| Error::model(&state_path, e))?;
    let weights_path = out.join(CHECKPOINT_WEIGHTS);
    let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    if crc32fast::hash(&bytes) != state.weights_crc32 {
        return Err(Error::model(
            &weights_path,
            "checksum does not match checkpoint.json: the checkpoint is corrupt",
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::model(&weights_path, e.to_string()))?;
    Ok((state, tensors))
}

#[cfg(test)]
mod tests {
    use super::{adversarial_grads, standard_normal, Adam, LrSchedule};
    use crate::model::{ModelConfig, PriorDiscriminator, SeededInit, PRIOR_PREFIX};
    use candle_core::{Device, Tensor, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::Arc;

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
