//! Where the model runs: `--device cpu|vulkan[:N]|auto` and `--gpu-layers N`,
//! shared by run, chat, bench, perplexity and serve; and `sparetire devices`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::Model;
use sparetire_runtime::Engine;
use sparetire_vulkan::{Gpu, VulkanModel};

/// Device flags.
#[derive(Args, Clone, Debug, Default)]
pub struct DeviceArgs {
    /// Where to compute: cpu, vulkan (the first discrete GPU, else the first device), vulkan:N
    /// (see `sparetire devices`), or auto (vulkan if a device works, else cpu)
    #[arg(long = "device", value_name = "cpu|vulkan[:N]|auto", value_parser = parse_device, default_value = "cpu")]
    pub device: Device,
    /// With a Vulkan device: run only the first N layers on it and the rest on the CPU (for
    /// models that do not fit; default: all)
    #[arg(long = "gpu-layers", value_name = "N")]
    pub gpu_layers: Option<usize>,
}

/// A `--device` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// A Vulkan device (`None`: the default one).
    Vulkan(Option<usize>),
    /// Vulkan if it works, else the CPU.
    Auto,
}

fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "vulkan" => Ok(Device::Vulkan(None)),
        "auto" => Ok(Device::Auto),
        _ => match s.strip_prefix("vulkan:") {
            Some(n) => n
                .parse()
                .map(|i| Device::Vulkan(Some(i)))
                .map_err(|_| format!("{s:?}: expected vulkan:N with N a device number")),
            None => Err(format!("{s:?}: expected cpu, vulkan, vulkan:N or auto")),
        },
    }
}

/// The device the model was placed on, for reports (bench's JSON, memory at exit).
static PLACED: OnceLock<Arc<Gpu>> = OnceLock::new();

/// The Vulkan device the model runs on, if any: its name and the device
/// memory this process holds (now, and at most).
pub fn report() -> Option<(String, u64, u64)> {
    PLACED.get().map(|g| {
        (
            format!("vulkan:{} {}", g.info().index, g.info().name),
            g.allocated(),
            g.peak(),
        )
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Moves `engine`'s model (loaded from `path`) to the device `a` asks for.
pub fn place(engine: Engine, path: &Path, a: &DeviceArgs) -> Result<Engine> {
    let index = match a.device {
        Device::Cpu => {
            if a.gpu_layers.is_some() {
                return Err(crate::usage("--gpu-layers needs --device vulkan or auto"));
            }
            return Ok(engine);
        }
        Device::Vulkan(i) => i,
        Device::Auto => None,
    };
    if !engine.kv_types().is_f16() {
        let why = "the Vulkan backend caches keys and values as f16 only";
        if a.device == Device::Auto {
            eprintln!("sparetire: --device auto: {why}; running on the CPU");
            return Ok(engine);
        }
        return Err(crate::usage(format!(
            "{why}: use --cache-type-k/-v f16 with --device vulkan"
        )));
    }
    if a.gpu_layers == Some(0) {
        eprintln!("sparetire: --gpu-layers 0: every layer runs on the CPU");
        return Ok(engine);
    }
    let opened = Gpu::open(index).and_then(|gpu| {
        let file = Arc::new(GgufFile::open(path).map_err(|e| {
            sparetire_vulkan::VulkanError::Invalid(format!("reopening {}: {e}", path.display()))
        })?);
        Ok((gpu, file))
    });
    let (gpu, file) = match (opened, a.device) {
        (Ok(x), _) => x,
        (Err(e), Device::Auto) => {
            eprintln!(
                "sparetire: --device auto: no usable Vulkan device ({e}); running on the CPU"
            );
            return Ok(engine);
        }
        (Err(e), _) => return Err(anyhow::Error::new(e).context("opening the Vulkan device")),
    };
    let info = gpu.info().clone();
    let gpu_layers = a.gpu_layers;
    let mut failure = None;
    let placed = engine.map_model(|cpu| {
        // A model the device cannot run stays on the CPU only for `auto`.
        let n_layer = cpu.hparams().n_layer;
        match VulkanModel::load(file, gpu.clone(), gpu_layers, cpu) {
            Ok(m) => {
                eprintln!(
                    "sparetire: vulkan:{} {} ({}): {}/{n_layer} layers on the device, weights {:.1} MiB, device memory {:.1} MiB",
                    info.index,
                    info.name,
                    info.driver,
                    m.gpu_layers(),
                    mib(m.weight_memory()),
                    mib(m.device_memory())
                );
                Box::new(m) as Box<dyn Model>
            }
            Err(e) => {
                failure = Some(e.error);
                e.cpu
            }
        }
    });
    match failure {
        None => {
            let _ = PLACED.set(gpu);
            Ok(placed)
        }
        Some(e) if a.device == Device::Auto => {
            eprintln!("sparetire: --device auto: the Vulkan device cannot run this model ({e}); running on the CPU");
            Ok(placed)
        }
        Some(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("loading the model onto vulkan:{}", info.index)))
        }
    }
}

/// Prints device memory at the end of a run, when the model was on a device.
pub fn print_memory() {
    if let Some((name, now, peak)) = report() {
        eprintln!(
            "sparetire: {name}: device memory {:.1} MiB held, {:.1} MiB at most",
            mib(now),
            mib(peak)
        );
    }
}

/// `devices` flags.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire devices`: the Vulkan devices this machine has.
pub fn devices(a: DevicesArgs) -> Result<()> {
    let list = sparetire_vulkan::devices().context("listing Vulkan devices")?;
    let default = sparetire_vulkan::default_device(&list);
    if a.json {
        let rows: Vec<_> = list
            .iter()
            .map(|d| {
                json!({
                    "device": format!("vulkan:{}", d.index),
                    "name": d.name,
                    "type": d.kind,
                    "driver": d.driver,
                    "api_version": d.api_version,
                    "memory_bytes": d.device_memory(),
                    "heaps": d.heaps.iter().map(|h| json!({"size": h.size, "device_local": h.device_local})).collect::<Vec<_>>(),
                    "subgroup_size": d.subgroup_size,
                    "max_buffer_bytes": d.max_storage_buffer_range,
                    "default": Some(d.index) == default,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if list.is_empty() {
        println!("no Vulkan devices (the loader found no driver; mesa-vulkan-drivers provides a software one)");
        return Ok(());
    }
    for d in &list {
        let heaps: Vec<String> = d
            .heaps
            .iter()
            .map(|h| {
                format!(
                    "{:.0} MiB{}",
                    mib(h.size),
                    if h.device_local { " (device)" } else { "" }
                )
            })
            .collect();
        println!(
            "vulkan:{}{}  {} [{}]\n    driver {}, Vulkan {}\n    memory: {}\n    subgroup size {}, largest buffer {:.0} MiB",
            d.index,
            if Some(d.index) == default { "*" } else { "" },
            d.name,
            d.kind,
            d.driver,
            d.api_version,
            heaps.join(", "),
            d.subgroup_size,
            mib(d.max_storage_buffer_range)
        );
    }
    println!("\n* what --device vulkan picks");
    Ok(())
}
