use candle_core::{Device, Tensor, Var, Module};
use candle_nn::{Conv2dConfig, Conv2d};
use std::time::Instant;
fn t<F: FnMut() -> candle_core::Result<()>>(name: &str, mut f: F) -> candle_core::Result<()> {
    f()?; let n = 3; let s = Instant::now(); for _ in 0..n { f()?; }
    println!("{name:40} {:8.1} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64); Ok(())
}
fn main() -> candle_core::Result<()> {
    imgsearch::device::tune_allocator();
    let dev = Device::Cpu;
    let b = 64;
    for (cin, cout, h, k, s, p) in [(3usize, 64usize, 32usize, 4usize, 2usize, 1usize), (64, 128, 16, 4, 2, 1), (128, 256, 8, 4, 2, 1), (256, 256, 4, 3, 1, 1)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, cin, h, h), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (cout, cin, k, k), &dev)?)?;
        let conv = Conv2d::new(w.as_tensor().clone(), None, Conv2dConfig { padding: p, stride: s, ..Default::default() });
        t(&format!("fwd {cin}->{cout} @{h} k{k}s{s}"), || { conv.forward(x.as_tensor())?; Ok(()) })?;
        t(&format!("fwd+bwd {cin}->{cout} @{h} k{k}s{s}"), || { let y = conv.forward(x.as_tensor())?; y.sum_all()?.backward()?; Ok(()) })?;
    }
    Ok(())
}
