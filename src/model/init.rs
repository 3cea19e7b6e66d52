//! Reproducible initialisation: candle's CPU device cannot be seeded, so new parameters are
//! drawn from our own seeded RNG, following the same init hints candle-nn's layers give.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::sync::Mutex;

/// Creates each parameter on first request from a seeded RNG and keeps it as a trainable
/// [`Var`]; a parameter given in `existing` (a checkpoint) is used as it is.
pub struct SeededInit {
    rng: Mutex<ChaCha8Rng>,
    existing: HashMap<String, Tensor>,
    vars: Mutex<Vec<(String, Var)>>,
}

impl SeededInit {
    pub fn new(seed: u64, existing: HashMap<String, Tensor>) -> Self {
        SeededInit {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            existing,
            vars: Mutex::new(Vec::new()),
        }
    }

    /// A var builder whose parameters are recorded here.
    pub fn var_builder(self: &std::sync::Arc<Self>, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(SharedInit(self.clone())),
            DType::F32,
            device.clone(),
        )
    }

    /// The parameters created so far, in creation order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.vars.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn draw(&self, shape: &Shape, init: Init, device: &Device) -> Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("initialiser lock poisoned".into()))?;
        let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (lo + (up - lo) * rand::Rng::random::<f64>(rng)) as f32)
                .collect()
        };
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    (mean + std * z) as f32
                })
                .collect()
        };
        let values = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        };
        Tensor::from_vec(values, shape, device)
    }
}

struct SharedInit(std::sync::Arc<SeededInit>);

impl SimpleBackend for SharedInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let init = &self.0;
        let tensor = match init.existing.get(name) {
            Some(t) if t.shape() == &s => t.to_device(dev)?.to_dtype(dtype)?,
            Some(t) => {
                return Err(candle_core::Error::Msg(format!(
                    "parameter {name} has shape {:?} in the checkpoint, the model expects {:?}",
                    t.shape(),
                    s
                )))
            }
            None => init.draw(&s, h, dev)?.to_dtype(dtype)?,
        };
        let var = Var::from_tensor(&tensor)?;
        init.vars
            .lock()
            .map_err(|_| candle_core::Error::Msg("initialiser lock poisoned".into()))?
            .push((name.to_string(), var.clone()));
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "parameter {name} requested without a shape"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.existing.contains_key(name)
    }
}
