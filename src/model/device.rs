//! Where a model runs: `--device cpu|cuda[:N]|auto` on every command.
//!
//! The GPU backend is candle's CUDA backend, compiled in only with the `cuda`
//! cargo feature (off by default, so the default build and CI stay CPU-only).
//! Without it `cuda` fails with a one-line error and the rebuild hint, and
//! `auto` (the default) is the CPU.
//!
//! On a GPU the encoder runs candle's graph: the hand-written kernels of
//! `model::fast` and the fused custom ops are CPU code and step aside for
//! tensors elsewhere. Methods read the forward pass's outputs on the host,
//! and an ExpNet's small network stays on the CPU.

use anyhow::anyhow;
use candle_core::{Device, DeviceLocation};
use std::fmt;
use std::str::FromStr;

/// A parsed `--device` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// A CUDA GPU by ordinal (`cuda` = `cuda:0`).
    Cuda(usize),
    /// The first CUDA GPU when this build has CUDA and one answers, else the CPU.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let v = s.trim().to_ascii_lowercase();
        match v.as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match v.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| format!("\"{s}\" is not a CUDA device (hint: cuda:0, cuda:1, …)")),
                None => Err(format!("unknown device \"{s}\" (hint: cpu, cuda, cuda:N or auto)")),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

impl DeviceChoice {
    /// The candle device, or a one-line error with a hint.
    pub fn resolve(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !cuda_compiled() {
                    anyhow::bail!(
                        "--device {self}: this expnet was built without CUDA support (hint: rebuild with `cargo build --release --features cuda` where the CUDA toolkit is installed, or use --device cpu)"
                    );
                }
                open_cuda(n).map_err(|e| anyhow!("--device {self}: no usable CUDA GPU: {e} (hint: check `nvidia-smi`, or use --device cpu)"))
            }
            Self::Auto => Ok(if cuda_compiled() { open_cuda(0).unwrap_or(Device::Cpu) } else { Device::Cpu }),
        }
    }
}

/// Opens CUDA GPU `n`. cudarc panics when it cannot load the driver library
/// (a CUDA build on a machine without one), so the panic becomes an error.
fn open_cuda(n: usize) -> Result<Device, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(n));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(first_line(&e.to_string())),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .map(|s| first_line(s))
            .or_else(|| p.downcast_ref::<&str>().map(|s| first_line(s)))
            .unwrap_or_else(|| "the CUDA driver could not be loaded".into())),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// `cpu`, `cuda:0`, …: how reports and the explorer name a device.
pub fn label(d: &Device) -> String {
    match d.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_rejects_the_rest_with_a_hint() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!(" CPU ".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("gpu".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        let e = "cuda:x".parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("cuda:0"), "{e}");
        let e = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("hint: cpu, cuda, cuda:N or auto"), "{e}");
        for c in [DeviceChoice::Cpu, DeviceChoice::Cuda(2), DeviceChoice::Auto] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }

    #[test]
    fn cpu_and_auto_resolve_without_a_gpu_and_cuda_explains_itself() {
        assert!(DeviceChoice::Cpu.resolve().unwrap().is_cpu());
        assert_eq!(label(&DeviceChoice::Cpu.resolve().unwrap()), "cpu");
        if !cuda_compiled() {
            assert!(DeviceChoice::Auto.resolve().unwrap().is_cpu());
            let e = DeviceChoice::Cuda(0).resolve().unwrap_err().to_string();
            assert!(e.contains("built without CUDA") && e.contains("--features cuda") && !e.contains('\n'), "{e}");
        } else {
            // A CUDA build: `auto` gives a GPU when one answers, the CPU otherwise; never an error.
            let d = DeviceChoice::Auto.resolve().unwrap();
            assert!(d.is_cpu() || d.is_cuda());
        }
    }
}
