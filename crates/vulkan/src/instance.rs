//! The Vulkan loader and instance, and what each physical device is ([`DeviceInfo`]).

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;

use crate::error::{VkContext, VulkanError};

/// The loaded Vulkan library and one instance of it.
pub struct Vulkan {
    /// Keeps the loader library loaded while the instance lives.
    _entry: ash::Entry,
    pub(crate) instance: ash::Instance,
}

/// A memory heap of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heap {
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is the device's own memory (VRAM on a discrete GPU).
    pub device_local: bool,
}

/// [`DeviceInfo::kind`] of a device that computes on the CPU (lavapipe, SwiftShader).
pub const KIND_CPU: &str = "CPU (software)";

/// What a physical device is, as `sparetire devices` shows it.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Its index (`--device vulkan:N`).
    pub index: usize,
    /// The device name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA GeForce RTX 4090`).
    pub name: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub kind: &'static str,
    /// The driver's name and version string (Vulkan 1.2 devices), else its version number.
    pub driver: String,
    /// The Vulkan version the device supports (`1.3.230`).
    pub api_version: String,
    /// Its memory heaps.
    pub heaps: Vec<Heap>,
    /// Threads of a subgroup (warp/wavefront) as the device reports it.
    pub subgroup_size: u32,
    /// The largest storage buffer a shader may bind, in bytes.
    pub max_storage_buffer_range: u64,
}

impl DeviceInfo {
    /// Bytes of the device-local heaps (all heaps if none is marked so).
    pub fn device_memory(&self) -> u64 {
        let local: u64 = self
            .heaps
            .iter()
            .filter(|h| h.device_local)
            .map(|h| h.size)
            .sum();
        if local > 0 {
            local
        } else {
            self.heaps.iter().map(|h| h.size).sum()
        }
    }
}

fn version(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

fn c_text(raw: &[std::ffi::c_char]) -> String {
    // SAFETY: Vulkan fills these fixed arrays with NUL-terminated strings; the
    // slice bounds the read, and a missing NUL is caught by from_bytes_until_nul.
    let bytes = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len()) };
    CStr::from_bytes_until_nul(bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Vulkan {
    /// Opens the loader (the system's `libvulkan.so.1`, or the file
    /// `SPARETIRE_VULKAN_LOADER` names) and creates an instance (Vulkan 1.1, no
    /// layers or extensions).
    pub fn new() -> Result<Arc<Vulkan>, VulkanError> {
        let entry = match std::env::var_os("SPARETIRE_VULKAN_LOADER") {
            // SAFETY: loading a Vulkan loader runs its initialisers; the user
            // named this file as one.
            Some(path) => unsafe { ash::Entry::load_from(path) },
            // SAFETY: as above, for the system's loader.
            None => unsafe { ash::Entry::load() },
        }
        .map_err(|e| VulkanError::NoLoader(e.to_string()))?;
        // SAFETY: a valid entry; the call has no preconditions.
        let api = match unsafe { entry.try_enumerate_instance_version() } {
            Ok(Some(v)) => v,
            _ => vk::API_VERSION_1_0,
        };
        if api < vk::API_VERSION_1_1 {
            return Err(VulkanError::Unsupported(format!(
                "the Vulkan loader supports only {}; 1.1 is needed",
                version(api)
            )));
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"sparetire")
            .engine_name(c"sparetire")
            .api_version(vk::API_VERSION_1_2.min(api));
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: `info` and what it points to live across the call.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => VulkanError::NoDevice,
            e => VulkanError::call("vkCreateInstance", e),
        })?;
        Ok(Arc::new(Vulkan {
            _entry: entry,
            instance,
        }))
    }

    /// The physical devices, in the loader's order.
    pub(crate) fn physical_devices(&self) -> Result<Vec<vk::PhysicalDevice>, VulkanError> {
        // SAFETY: a live instance.
        unsafe { self.instance.enumerate_physical_devices() }.vk("vkEnumeratePhysicalDevices")
    }

    /// What device `pd` (number `index`) is.
    pub(crate) fn describe(&self, index: usize, pd: vk::PhysicalDevice) -> DeviceInfo {
        let inst = &self.instance;
        // SAFETY: `pd` came from this instance.
        let props = unsafe { inst.get_physical_device_properties(pd) };
        let mut subgroup = vk::PhysicalDeviceSubgroupProperties::default();
        let mut driver = vk::PhysicalDeviceDriverProperties::default();
        let has_driver_props = props.api_version >= vk::API_VERSION_1_2;
        {
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut subgroup);
            if has_driver_props {
                props2 = props2.push_next(&mut driver);
            }
            // SAFETY: `pd` came from this instance; the chained structs are
            // core in the device's version (driver properties only from 1.2).
            unsafe { inst.get_physical_device_properties2(pd, &mut props2) };
        }
        // SAFETY: `pd` came from this instance.
        let mem = unsafe { inst.get_physical_device_memory_properties(pd) };
        let heaps = mem.memory_heaps[..mem.memory_heap_count as usize]
            .iter()
            .map(|h| Heap {
                size: h.size,
                device_local: h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
            })
            .collect();
        let driver = if has_driver_props {
            let name = c_text(&driver.driver_name);
            let info = c_text(&driver.driver_info);
            if info.is_empty() {
                name
            } else {
                format!("{name} ({info})")
            }
        } else {
            format!("version {:#x}", props.driver_version)
        };
        DeviceInfo {
            index,
            name: c_text(&props.device_name),
            kind: match props.device_type {
                vk::PhysicalDeviceType::DISCRETE_GPU => "discrete GPU",
                vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated GPU",
                vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual GPU",
                vk::PhysicalDeviceType::CPU => KIND_CPU,
                _ => "other",
            },
            driver,
            api_version: version(props.api_version),
            heaps,
            subgroup_size: subgroup.subgroup_size,
            max_storage_buffer_range: u64::from(props.limits.max_storage_buffer_range),
        }
    }
}

impl Drop for Vulkan {
    fn drop(&mut self) {
        // SAFETY: every device made from this instance holds an Arc to it, so
        // none is left when the last reference goes.
        unsafe { self.instance.destroy_instance(None) };
    }
}

/// Every Vulkan device this machine has, as `sparetire devices` lists them.
pub fn devices() -> Result<Vec<DeviceInfo>, VulkanError> {
    let vk = Vulkan::new()?;
    let pds = vk.physical_devices()?;
    Ok(pds
        .into_iter()
        .enumerate()
        .map(|(i, pd)| vk.describe(i, pd))
        .collect())
}

/// The device `--device vulkan` picks without an index: the first discrete
/// GPU, else the first integrated one, else the first device.
pub fn default_device(list: &[DeviceInfo]) -> Option<usize> {
    let first = |kind: &str| list.iter().find(|d| d.kind == kind).map(|d| d.index);
    first("discrete GPU")
        .or_else(|| first("integrated GPU"))
        .or_else(|| list.first().map(|d| d.index))
}
