//! CPU kernels, free of model types: the fused convolution and dense layer (patch gather +
//! gemm, Winograd F(4×4)/F(2×2) for the 3×3 and strided 4×4 windows), the fused batch
//! normalisation + leaky ReLU, the element-wise activation ops, global average pooling, and
//! Adam's in-place update.
//! Each op runs as one candle custom op on the CPU and falls back to candle's generic ops on
//! other devices, so the CUDA backend keeps working. The model (`crate::model`) builds its
//! layers on these; nothing here knows about layers, parameters, training or the index.
//!
//! - `window`: the geometry of a convolution window;
//! - `elementwise`: the leaky ReLU and its gradient, the generic-op reference of a dense
//!   layer, and the storage helpers of the fused ops;
//! - `matmul`: a bounds-checked front to gemm;
//! - `winograd`: the Winograd transforms and their grouped phases;
//! - `conv` / `dense`: the fused convolution and its 1×1 case on rows;
//! - `batchnorm`: batch normalisation + leaky ReLU, forward and analytic backward;
//! - `pool`: global average pooling over a map's positions;
//! - `adam`: the optimiser's update as in-place passes.

pub(crate) mod adam;
mod batchnorm;
mod conv;
mod dense;
mod elementwise;
mod matmul;
mod pool;
mod window;
mod winograd;

pub use batchnorm::{batch_norm_act, batch_norm_reference, BN_EPS, BN_MOMENTUM};
pub use conv::{conv, conv_reference, im2col_reference};
pub use dense::dense;
pub use elementwise::{dense_reference, leaky_relu, leaky_relu_reference, Activation, LEAKY_SLOPE};
pub use pool::mean_positions;
pub use window::Window;

#[cfg(test)]
pub(crate) mod test_util;
