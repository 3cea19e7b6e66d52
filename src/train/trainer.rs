//! One training run as it goes: [`Trainer`] sets the run up (checkpoint or start, pixels,
//! model and optimiser, the probe of the starting model), runs its epochs step by step, writes
//! the checkpoint after each, and reports at the end. The order of its operations and random
//! draws is what makes a run, and a resumed run, reproduce bit for bit: keep it.

use super::adam::Adam;
use super::checkpoint;
use super::probe::{Probe, ProbeScore};
use super::run::{
    adversarial_grads, inference_encoder, load_pixels, model_vars, resolve_start, standard_normal,
    starting_point, too_few, Kept, Losses, ProbeReport, TrainReport, PROBE_EVERY_STEPS,
};
use super::settings::{RunSettings, TrainOptions};
use crate::data::{occlude, LoadStats, Loaded, PixelSet};
use crate::error::{Error, Result};
use crate::model::{
    is_buffer, objective, Dim, DimBatch, ModelConfig, PriorKind, SeededInit, TrainingRecord,
    PRIOR_PREFIX,
};
use crate::progress::OnEvent;
use candle_core::{Device, Tensor, Var};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Trains a model and writes it to `opts.out` (see the module doc for the files).
pub fn train(opts: &TrainOptions, device: &Device, on_event: OnEvent<'_>) -> Result<TrainReport> {
    let mut trainer = Trainer::set_up(opts, device, on_event)?;
    while trainer.has_epochs_left() {
        trainer.run_epoch()?;
    }
    trainer.finish()
}

/// Where a run begins: the checkpoint of `--resume`, or a fresh start.
struct Beginning {
    config: ModelConfig,
    /// Where the encoder started ("scratch", "default", a path), if known.
    start_name: Option<String>,
    /// The start's encoder tensors (none when resuming: the checkpoint holds them).
    start_tensors: HashMap<String, Tensor>,
    run: RunSettings,
    /// The checkpoint's tensors (parameters and Adam's moments); empty for a fresh run.
    saved: HashMap<String, Tensor>,
    epochs_done: usize,
    steps: usize,
    adam_step: usize,
    seconds_before: f64,
    kept_score: Option<f64>,
}

impl Beginning {
    /// Reads the checkpoint (on `--resume`) or resolves the start, and settles the run's
    /// config and settings.
    fn of(opts: &TrainOptions, device: &Device) -> Result<Beginning> {
        let out = &opts.out;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let resumed = if opts.resume {
            Some(checkpoint::read(out, device)?)
        } else {
            None
        };
        let (config, start_name, start_tensors) = match &resumed {
            Some((state, _)) => {
                let start = state.config.training.as_ref().and_then(|t| t.start.clone());
                // What is searched is not part of training: the invocation's choice holds.
                let config = ModelConfig {
                    embedding: opts.config.embedding,
                    ..state.config.clone()
                };
                (config, start, HashMap::new())
            }
            None => {
                let start = resolve_start(opts)?;
                let (config, tensors) = starting_point(opts, &start, device)?;
                (config, Some(start.name()), tensors)
            }
        };
        config
            .validate()
            .map_err(|e| Error::Usage(format!("model config: {e}")))?;
        if let Some(projection) = &opts.config.projection {
            projection
                .validate(config.encoder_embedding_dim())
                .map_err(|e| Error::Usage(format!("--projection: {e}")))?;
        }
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
        let (saved, epochs_done, steps, adam_step, seconds_before, kept_score) = match resumed {
            Some((state, tensors)) => (
                tensors,
                state.epochs_done,
                state.steps,
                state.adam_step,
                state.seconds,
                state.best_probe,
            ),
            None => (HashMap::new(), 0, 0, 0, 0.0, None),
        };
        Ok(Beginning {
            config,
            start_name,
            start_tensors,
            run,
            saved,
            epochs_done,
            steps,
            adam_step,
            seconds_before,
            kept_score,
        })
    }
}

/// The pixels a run trains on; fewer readable images than a batch is an error, and a run
/// that cannot start leaves no cache of its own behind.
fn pixels_for_run(
    opts: &TrainOptions,
    config: &ModelConfig,
    batch: usize,
    on_event: OnEvent<'_>,
) -> Result<Loaded> {
    let cache = opts.cache_file();
    let cache_was_there = cache.as_ref().is_some_and(|c| c.exists());
    let loaded = load_pixels(opts, config, batch, on_event)?;
    let count = loaded.pixels.len();
    if count < batch {
        drop(loaded);
        if let Some(cache) = cache.filter(|_| !cache_was_there) {
            let _ = std::fs::remove_file(cache);
        }
        return Err(too_few(count, "readable images", batch));
    }
    Ok(loaded)
}

/// The model's variables from the checkpoint's parameters and the start's encoder, the
/// optimiser over the trained ones (its moments restored on a resumed run), and the prior
/// discriminator's, which take their gradients from its own loss.
fn build_model(
    beginning: &mut Beginning,
    device: &Device,
    out: &Path,
) -> Result<(Arc<SeededInit>, Dim, Adam, Vec<Var>)> {
    let mut params: HashMap<String, Tensor> = beginning
        .saved
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|k| (k.to_string(), v.clone())))
        .collect();
    params.extend(std::mem::take(&mut beginning.start_tensors));
    let init = Arc::new(SeededInit::new(beginning.run.seed, params));
    let model = Dim::new(&beginning.config, init.var_builder(device))?;
    // Running statistics of batch normalisation are buffers: the forward updates them, the
    // optimiser never sees them; they are saved with the parameters.
    let params = init
        .vars()
        .into_iter()
        .filter(|(name, _)| !is_buffer(name))
        .collect();
    let mut adam = Adam::new(params, beginning.run.lr)?;
    let prior_vars: Vec<Var> = init
        .vars()
        .into_iter()
        .filter(|(name, _)| name.starts_with(&format!("{PRIOR_PREFIX}.")))
        .map(|(_, var)| var)
        .collect();
    if beginning.epochs_done > 0 {
        adam.restore_moments(
            &beginning.saved,
            beginning.adam_step,
            &out.join(checkpoint::CHECKPOINT_WEIGHTS),
        )?;
    }
    Ok((init, model, adam, prior_vars))
}

/// The RNG of `epoch`, derived from the seed: a resumed run draws what the uninterrupted run
/// would have.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1)))
}

/// A training run in progress: what [`train`] set up, and where the epochs have got to.
pub(super) struct Trainer<'a> {
    opts: &'a TrainOptions,
    device: &'a Device,
    config: ModelConfig,
    start_name: Option<String>,
    run: RunSettings,
    pixels: PixelSet,
    skipped: usize,
    load: LoadStats,
    init: Arc<SeededInit>,
    model: Dim,
    adam: Adam,
    prior_vars: Vec<Var>,
    probe: Probe,
    probe_before: ProbeScore,
    probe_last: ProbeScore,
    kept: Kept,
    /// Epochs done before this invocation (a resumed run's).
    epochs_done: usize,
    seconds_before: f64,
    epoch_limit: Option<usize>,
    /// The `--minutes` budget in seconds.
    budget: Option<f64>,
    /// The schedule's horizon: all epochs' steps, or the time budget (whichever ends first).
    total_steps: Option<usize>,
    bar: ProgressBar,
    epochs_shown: String,
    started: Instant,
    /// The next epoch to run (0-based); every epoch before it is done.
    epoch: usize,
    epochs_run: usize,
    steps: usize,
    trained_images: usize,
    last: Losses,
    epoch_images_per_second: Vec<f64>,
    out_of_time: bool,
}

impl<'a> Trainer<'a> {
    /// Everything before the first step: the checkpoint or start, the pixels, the model and
    /// optimiser, the probe of the starting model, and the progress bar.
    pub(super) fn set_up(
        opts: &'a TrainOptions,
        device: &'a Device,
        on_event: OnEvent<'_>,
    ) -> Result<Trainer<'a>> {
        let mut beginning = Beginning::of(opts, device)?;
        let run = beginning.run;
        let Loaded {
            pixels,
            failures,
            stats: load,
        } = pixels_for_run(opts, &beginning.config, run.batch, on_event)?;
        let (init, model, adam, prior_vars) = build_model(&mut beginning, device, &opts.out)?;
        let Beginning {
            config,
            start_name,
            epochs_done,
            steps,
            seconds_before,
            kept_score,
            ..
        } = beginning;
        let probe = Probe::new(&pixels, &config.preprocess, &run.augment);
        let probe_before = probe.score(&inference_encoder(&init, &config, device)?, device)?;

        let steps_per_epoch = pixels.len() / run.batch;
        let epoch_limit = opts.epoch_limit(steps_per_epoch);
        let budget = opts.minutes.map(|m| m.max(0.0) * 60.0);
        let total_steps = epoch_limit.map(|e| e * steps_per_epoch);
        let bar = match budget {
            Some(seconds) => opts.verbosity.seconds_bar(seconds.ceil() as u64, "train"),
            None => opts.verbosity.bar(
                (epoch_limit.unwrap_or(0).saturating_sub(epochs_done) * steps_per_epoch * run.batch)
                    as u64,
                "train",
            ),
        };
        let epochs_shown = epoch_limit.map_or("-".to_string(), |e| e.to_string());
        Ok(Trainer {
            opts,
            device,
            config,
            start_name,
            run,
            pixels,
            skipped: failures.len(),
            load,
            init,
            model,
            adam,
            prior_vars,
            probe,
            probe_before,
            probe_last: probe_before,
            kept: Kept {
                keep: opts.keep,
                score: kept_score,
                this_run: None,
            },
            epochs_done,
            seconds_before,
            epoch_limit,
            budget,
            total_steps,
            bar,
            epochs_shown,
            started: Instant::now(),
            epoch: epochs_done,
            epochs_run: epochs_done,
            steps,
            trained_images: 0,
            last: Losses::default(),
            epoch_images_per_second: Vec::new(),
            out_of_time: false,
        })
    }

    /// Whether another epoch runs: the epoch limit is not reached and time is left.
    pub(super) fn has_epochs_left(&self) -> bool {
        self.epoch_limit.is_none_or(|limit| self.epoch < limit) && !self.out_of_time
    }

    /// One epoch: the batches of a shuffled order, stopping early when the budget runs out;
    /// then its checkpoint.
    pub(super) fn run_epoch(&mut self) -> Result<()> {
        let epoch_started = Instant::now();
        let mut epoch_steps = 0usize;
        let mut rng = epoch_rng(self.run.seed, self.epoch);
        let mut order: Vec<usize> = (0..self.pixels.len()).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for (step_in_epoch, chunk) in order.chunks_exact(self.run.batch).enumerate() {
            self.step(chunk, step_in_epoch, &mut rng)?;
            epoch_steps += 1;
            if self
                .budget
                .is_some_and(|b| self.started.elapsed().as_secs_f64() >= b)
            {
                self.out_of_time = true;
                break;
            }
        }
        self.end_epoch(epoch_steps, epoch_started)
    }

    /// The views of the batch `chunk` (every image's first view, then every image's second,
    /// ...), and the same views occluded for the encoder's code when the objective asks.
    fn views(&self, chunk: &[usize], rng: &mut ChaCha8Rng) -> Result<(Tensor, Option<Tensor>)> {
        let s = self.config.preprocess.size as usize;
        let rows = self.run.batch * self.run.views;
        let mut input = Vec::with_capacity(rows * 3 * s * s);
        for _ in 0..self.run.views {
            for &i in chunk {
                self.run.augment.view_into(
                    self.pixels.get(i),
                    &self.config.preprocess,
                    rng,
                    &mut input,
                );
            }
        }
        let occlusion = self.config.objective.occlude;
        let x_code = if occlusion > 0.0 {
            let mut hidden = input.clone();
            for view in hidden.chunks_exact_mut(s * s * 3) {
                occlude(view, s, occlusion, rng);
            }
            Some(Tensor::from_vec(hidden, (rows, s, s, 3), self.device)?)
        } else {
            None
        };
        let x = Tensor::from_vec(input, (rows, s, s, 3), self.device)?;
        Ok((x, x_code))
    }

    /// One optimiser step on the batch `chunk`: its views and noise, the DIM losses (a
    /// non-finite term ends the run), the gradients, and Adam at the scheduled rate.
    fn step(&mut self, chunk: &[usize], step_in_epoch: usize, rng: &mut ChaCha8Rng) -> Result<()> {
        let (x, x_code) = self.views(chunk, rng)?;
        let rows = self.run.batch * self.run.views;
        let eps = standard_normal((rows, self.config.dim), rng, self.device)?;
        let perm = objective::derangement(self.run.batch, rng);
        let prior_samples = match self.config.objective.prior {
            PriorKind::Adversarial => {
                Some(standard_normal((rows, self.config.dim), rng, self.device)?)
            }
            PriorKind::Kl | PriorKind::None => None,
        };
        let losses = self.model.losses(&DimBatch {
            x: &x,
            x_code: x_code.as_ref(),
            views: self.run.views,
            eps: &eps,
            perm: &perm,
            prior_samples: prior_samples.as_ref(),
        })?;
        let total = losses.total(&self.config)?;
        self.last = Losses {
            global: losses.global.to_scalar()?,
            local: losses.local.to_scalar()?,
            prior: losses.prior.to_scalar()?,
            total: total.to_scalar()?,
        };
        self.check_finite(step_in_epoch)?;
        let mut grads = total.backward()?;
        if let Some(critic_loss) = &losses.prior_critic {
            adversarial_grads(&mut grads, critic_loss, &self.prior_vars)?;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let by_steps = self
            .total_steps
            .map_or(0.0, |t| self.steps as f64 / t.max(1) as f64);
        let by_time = self.budget.map_or(0.0, |b| elapsed / b.max(1e-9));
        self.adam.set_lr(
            self.run
                .schedule
                .at_progress(self.run.lr, by_steps.max(by_time)),
        );
        self.adam.step(&grads)?;
        self.steps += 1;
        self.trained_images += self.run.batch;
        self.show_progress();
        Ok(())
    }

    /// Ends the run with [`Error::Diverged`] when a loss term of the last step is not finite.
    fn check_finite(&self, step_in_epoch: usize) -> Result<()> {
        for (term, value) in [
            ("global", self.last.global),
            ("local", self.last.local),
            ("prior", self.last.prior),
        ] {
            if !value.is_finite() {
                self.bar.abandon();
                return Err(Error::Diverged {
                    epoch: self.epoch + 1,
                    step: step_in_epoch + 1,
                    term,
                    value,
                    checkpoint: Some(self.opts.out.join(checkpoint::CHECKPOINT_WEIGHTS))
                        .filter(|p| p.exists()),
                });
            }
        }
        Ok(())
    }

    /// Moves the progress bar on by a step and shows the last losses.
    fn show_progress(&self) {
        match self.budget {
            Some(_) => self.bar.set_position(self.started.elapsed().as_secs()),
            None => self.bar.inc(self.run.batch as u64),
        }
        self.bar.set_message(format!(
            "epoch {}/{} global {:.4} local {:.4} prior {:.3}",
            self.epoch + 1,
            self.epochs_shown,
            self.last.global,
            self.last.local,
            self.last.prior
        ));
    }

    /// After an epoch of `epoch_steps` steps: record the training so far, probe when due,
    /// decide which model `--out` keeps, and write the checkpoint.
    fn end_epoch(&mut self, epoch_steps: usize, epoch_started: Instant) -> Result<()> {
        // A partial epoch (the budget ran out) counts as done: --resume goes on with the next.
        self.epoch += 1;
        self.epochs_run = self.epoch;
        let epoch = self.epoch;
        let seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        self.config.training = Some(TrainingRecord {
            images: self.pixels.len(),
            epochs: epoch,
            batch: self.run.batch,
            lr: self.run.lr,
            schedule: self.run.schedule.name().to_string(),
            seed: self.run.seed,
            views: self.run.views,
            augment: self.run.augment,
            seconds,
            start: self.start_name.clone(),
        });
        let last_epoch = self.out_of_time || self.epoch_limit.is_some_and(|limit| epoch >= limit);
        let crossed =
            self.steps / PROBE_EVERY_STEPS > (self.steps - epoch_steps) / PROBE_EVERY_STEPS;
        let probed = if last_epoch || crossed {
            self.probe_last = self.probe.score(
                &inference_encoder(&self.init, &self.config, self.device)?,
                self.device,
            )?;
            Some(self.probe_last)
        } else {
            None
        };
        let export = self.kept.after_epoch(epoch, probed);
        checkpoint::write(
            &self.opts.out,
            &checkpoint::Saved {
                config: &self.config,
                params: &model_vars(&self.init),
                adam: &self.adam,
                epochs_done: epoch,
                steps: self.steps,
                seconds,
                best_probe: self.kept.score,
            },
            export,
        )?;
        if epoch_steps > 0 {
            self.epoch_images_per_second.push(
                (epoch_steps * self.run.batch) as f64 / epoch_started.elapsed().as_secs_f64(),
            );
        }
        Ok(())
    }

    /// After the last epoch: fit the search projection when asked, and report.
    pub(super) fn finish(self) -> Result<TrainReport> {
        self.bar.finish_and_clear();
        // Over the model this invocation trained, or on `--resume` the one the run kept (a
        // resumed run with no epochs left only fits the projection); a fresh run given no steps
        // wrote no model.
        let has_model = self.epochs_run > self.epochs_done || self.opts.resume;
        let projection = match self.opts.config.projection.as_ref().filter(|_| has_model) {
            Some(request) => Some(super::projection::fit_into(
                &self.opts.out,
                &self.pixels,
                self.config.embedding,
                request,
                self.device,
            )?),
            None => None,
        };
        let seconds = self.started.elapsed().as_secs_f64();
        Ok(TrainReport {
            images: self.pixels.len(),
            skipped: self.skipped,
            epochs: self.epochs_run,
            steps: self.steps,
            seconds,
            images_per_second: self.trained_images as f64 / seconds.max(1e-9),
            load: self.load,
            epoch_images_per_second: self.epoch_images_per_second,
            last_losses: self.last,
            model: self.opts.out.clone(),
            start: self.start_name,
            out_of_time: self.out_of_time,
            probe: ProbeReport {
                before: self.probe_before,
                last: self.probe_last,
                kept: self.kept.this_run.map(|(score, _)| score),
                kept_epoch: self.kept.this_run.map(|(_, epoch)| epoch),
            },
            projection,
        })
    }
}
