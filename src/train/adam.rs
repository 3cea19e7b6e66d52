//! The optimiser: Adam with bias correction, its moments kept as tensors so that a
//! checkpoint carries them; on the CPU each update is the in-place kernel of
//! [`crate::ops::adam`].

use crate::error::{Error, Result};
use crate::ops::adam::{adam_in_place, AdamStep};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

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
    pub(super) weight_decay: f64,
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

    /// Steps taken (what the bias correction counts).
    pub fn steps(&self) -> usize {
        self.step
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
        let fused = AdamStep {
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
            if adam_in_place(var.as_tensor(), &self.m[i], &self.v[i], grad, fused)? {
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
    pub(super) fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            out.insert(format!("param.{name}"), var.as_tensor().clone());
            out.insert(format!("adam_m.{name}"), self.m[i].clone());
            out.insert(format!("adam_v.{name}"), self.v[i].clone());
        }
        out
    }

    pub(super) fn restore_moments(
        &mut self,
        saved: &HashMap<String, Tensor>,
        step: usize,
        origin: &Path,
    ) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("adam_m", &mut self.m[i]), ("adam_v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                match saved.get(&key) {
                    // A copy of its own: the moments are updated in place.
                    Some(t) if t.shape() == var.as_tensor().shape() => *slot = t.copy()?,
                    _ => {
                        return Err(Error::checkpoint(
                            origin,
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
