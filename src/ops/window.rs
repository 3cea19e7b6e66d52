//! The geometry of a square convolution window, shared by every convolution kernel.

/// Geometry of a square convolution window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// The 1×1 window: every pixel is its own patch.
    pub const POINT: Window = Window {
        kernel: 1,
        stride: 1,
        padding: 0,
    };

    pub fn output_size(&self, input: usize) -> usize {
        (input + 2 * self.padding - self.kernel) / self.stride + 1
    }
}
