//! The training loop: load the pixels, build the model from its start (scratch, the bundled
//! model, a model folder) or restore it from the checkpoint, run the epochs (views,
//! augmentation, occlusion, the DIM objective, Adam at the scheduled rate) until the epoch
//! limit or the time budget, stop on a non-finite loss, checkpoint after every epoch, and keep
//! in `--out` the model the label-free probe likes best (or the last, with `--keep last`).

use super::adam::Adam;
use super::checkpoint;
use super::probe::{Probe, ProbeScore};
use super::settings::{Keep, RunSettings, Start, TrainOptions, DEFAULT_SEED};
use crate::data::{self, occlude, Failure, LoadStats, Loaded};
use crate::error::{Error, Result};
use crate::model::{
    default_config, is_buffer, load_parameters, objective, Dim, DimBatch, Encoder, Model,
    ModelConfig, ModelSource, PriorKind, SeededInit, TrainingRecord, PRIOR_PREFIX,
};
use crate::progress::{Event, OnEvent};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
fn load_pixels(
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

fn too_few(count: usize, what: &str, batch: usize) -> Error {
    Error::Usage(format!(
        "found {count} {what}: training needs at least --batch ({batch}) images"
    ))
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
fn starting_point(
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

/// The model a run starts from, for scoring before training: the checkpoint's on `--resume`,
/// else the start's encoder (seeded random weights for scratch) at the run's input size.
pub fn start_model(opts: &TrainOptions, device: &Device) -> Result<Model> {
    if opts.resume {
        return Model::load(&ModelSource::Path(opts.out.clone()), device);
    }
    let start = resolve_start(opts)?;
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
fn inference_encoder(init: &SeededInit, config: &ModelConfig, device: &Device) -> Result<Encoder> {
    let tensors: HashMap<String, Tensor> = model_vars(init)
        .into_iter()
        .filter(|(name, _)| name.starts_with("encoder."))
        .collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, device);
    Ok(Encoder::for_inference(config, vb.pp("encoder"))?)
}

/// Which epoch's model `--out` holds, decided after each epoch as [`Keep`] says.
#[derive(Debug, Clone, Copy)]
struct Kept {
    keep: Keep,
    /// The probe score of the model in `--out`, `None` while it has none; the checkpoint
    /// records it so that a resumed run compares its epochs with it.
    score: Option<f64>,
    /// The probe score and epoch of the model this run put in `--out`, once probed.
    this_run: Option<(ProbeScore, usize)>,
}

impl Kept {
    /// Whether the model of `epoch`, just trained (`probed` holds its probe score when the
    /// probe ran), replaces the one in `--out`.
    fn after_epoch(&mut self, epoch: usize, probed: Option<ProbeScore>) -> bool {
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
const PROBE_EVERY_STEPS: usize = 200;

/// Trains a model and writes it to `opts.out` (see the module doc for the files).
pub fn train(opts: &TrainOptions, device: &Device, on_event: OnEvent<'_>) -> Result<TrainReport> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let resumed = if opts.resume {
        Some(checkpoint::read(out, device)?)
    } else {
        None
    };
    let (mut config, start_name, start_tensors) = match &resumed {
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

    let cache = opts.cache_file();
    let cache_was_there = cache.as_ref().is_some_and(|c| c.exists());
    let Loaded {
        pixels,
        failures,
        stats: load,
    } = load_pixels(opts, &config, run.batch, on_event)?;
    let count = pixels.len();
    if count < run.batch {
        // A run that cannot start leaves no cache of its own behind.
        drop(pixels);
        if let Some(cache) = cache.filter(|_| !cache_was_there) {
            let _ = std::fs::remove_file(cache);
        }
        return Err(too_few(count, "readable images", run.batch));
    }

    let (saved, epochs_done, mut steps, adam_step, seconds_before, kept_score) = match resumed {
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
    let mut params: HashMap<String, Tensor> = saved
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|k| (k.to_string(), v.clone())))
        .collect();
    params.extend(start_tensors);
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
        adam.restore_moments(&saved, adam_step, &out.join(checkpoint::CHECKPOINT_WEIGHTS))?;
    }

    let RunSettings { views, augment, .. } = run;
    let probe = Probe::new(&pixels, &config.preprocess, &augment);
    let probe_before = probe.score(&inference_encoder(&init, &config, device)?, device)?;

    let steps_per_epoch = count / run.batch;
    let epoch_limit = opts.epoch_limit(steps_per_epoch);
    let budget = opts.minutes.map(|m| m.max(0.0) * 60.0);
    // The schedule's horizon: all epochs' steps, or the time budget (whichever ends first).
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
    let s = config.preprocess.size as usize;
    let started = Instant::now();
    let mut last = Losses::default();
    let mut trained_images = 0usize;
    let mut epoch_images_per_second = Vec::new();
    let mut epochs_run = epochs_done;
    let mut probe_last = probe_before;
    let mut kept = Kept {
        keep: opts.keep,
        score: kept_score,
        this_run: None,
    };
    let mut out_of_time = false;
    let mut epoch = epochs_done;
    while epoch_limit.is_none_or(|limit| epoch < limit) && !out_of_time {
        let epoch_started = Instant::now();
        let mut epoch_steps = 0usize;
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
                        checkpoint: Some(out.join(checkpoint::CHECKPOINT_WEIGHTS))
                            .filter(|p| p.exists()),
                    });
                }
            }
            let mut grads = total.backward()?;
            if let Some(critic_loss) = &losses.prior_critic {
                adversarial_grads(&mut grads, critic_loss, &prior_vars)?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let by_steps = total_steps.map_or(0.0, |t| steps as f64 / t.max(1) as f64);
            let by_time = budget.map_or(0.0, |b| elapsed / b.max(1e-9));
            adam.set_lr(run.schedule.at_progress(run.lr, by_steps.max(by_time)));
            adam.step(&grads)?;
            steps += 1;
            epoch_steps += 1;
            trained_images += run.batch;
            match budget {
                Some(_) => bar.set_position(started.elapsed().as_secs()),
                None => bar.inc(run.batch as u64),
            }
            bar.set_message(format!(
                "epoch {}/{epochs_shown} global {:.4} local {:.4} prior {:.3}",
                epoch + 1,
                last.global,
                last.local,
                last.prior
            ));
            if budget.is_some_and(|b| started.elapsed().as_secs_f64() >= b) {
                out_of_time = true;
                break;
            }
        }
        // A partial epoch (the budget ran out) counts as done: --resume goes on with the next.
        epoch += 1;
        epochs_run = epoch;
        let seconds = seconds_before + started.elapsed().as_secs_f64();
        config.training = Some(TrainingRecord {
            images: count,
            epochs: epoch,
            batch: run.batch,
            lr: run.lr,
            schedule: run.schedule.name().to_string(),
            seed: run.seed,
            views,
            augment,
            seconds,
            start: start_name.clone(),
        });
        let last_epoch = out_of_time || epoch_limit.is_some_and(|limit| epoch >= limit);
        let crossed = steps / PROBE_EVERY_STEPS > (steps - epoch_steps) / PROBE_EVERY_STEPS;
        let probed = if last_epoch || crossed {
            probe_last = probe.score(&inference_encoder(&init, &config, device)?, device)?;
            Some(probe_last)
        } else {
            None
        };
        let export = kept.after_epoch(epoch, probed);
        checkpoint::write(
            out,
            &checkpoint::Saved {
                config: &config,
                params: &model_vars(&init),
                adam: &adam,
                epochs_done: epoch,
                steps,
                seconds,
                best_probe: kept.score,
            },
            export,
        )?;
        if epoch_steps > 0 {
            epoch_images_per_second
                .push((epoch_steps * run.batch) as f64 / epoch_started.elapsed().as_secs_f64());
        }
    }
    bar.finish_and_clear();
    // Over the model this invocation trained, or on `--resume` the one the run kept (a
    // resumed run with no epochs left only fits the projection); a fresh run given no steps
    // wrote no model.
    let has_model = epochs_run > epochs_done || opts.resume;
    if let Some(request) = opts.config.projection.as_ref().filter(|_| has_model) {
        super::projection::fit_into(out, &pixels, config.embedding, request, device)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainReport {
        images: count,
        skipped: failures.len(),
        epochs: epochs_run,
        steps,
        seconds,
        images_per_second: trained_images as f64 / seconds.max(1e-9),
        load,
        epoch_images_per_second,
        last_losses: last,
        model: out.clone(),
        start: start_name,
        out_of_time,
        probe: ProbeReport {
            before: probe_before,
            last: probe_last,
            kept: kept.this_run.map(|(score, _)| score),
            kept_epoch: kept.this_run.map(|(_, epoch)| epoch),
        },
    })
}

fn model_vars(init: &SeededInit) -> HashMap<String, Tensor> {
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
