//! [`Gpu`]: one opened Vulkan device with its compute queue, memory accounting
//! and the compute pipelines (built on first use).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ash::vk;

use crate::error::{VkContext, VulkanError};
use crate::instance::{default_device, DeviceInfo, Vulkan};
use crate::kernels::{Kernel, PUSH_BYTES};

/// A compute pipeline and the layouts it was made with.
pub(crate) struct Pipeline {
    pub set_layout: vk::DescriptorSetLayout,
    pub layout: vk::PipelineLayout,
    pub pipeline: vk::Pipeline,
    module: vk::ShaderModule,
}

/// An opened Vulkan device.
pub struct Gpu {
    vk: Arc<Vulkan>,
    pub(crate) device: ash::Device,
    pub(crate) queue: Mutex<vk::Queue>,
    pub(crate) queue_family: u32,
    mem: vk::PhysicalDeviceMemoryProperties,
    info: DeviceInfo,
    allocated: AtomicU64,
    peak: AtomicU64,
    pipelines: Mutex<HashMap<Kernel, Pipeline>>,
}

/// Where a buffer's memory should live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The device's own memory (weights, activations, the KV cache).
    Device,
    /// Memory the host maps (staging for uploads and readbacks).
    Host,
}

impl Gpu {
    /// Opens device `index` (`None`: [`default_device`]).
    pub fn open(index: Option<usize>) -> Result<Arc<Gpu>, VulkanError> {
        let vk = Vulkan::new()?;
        let pds = vk.physical_devices()?;
        if pds.is_empty() {
            return Err(VulkanError::NoDevice);
        }
        let infos: Vec<DeviceInfo> = pds
            .iter()
            .enumerate()
            .map(|(i, &pd)| vk.describe(i, pd))
            .collect();
        let index = match index {
            Some(i) if i >= pds.len() => {
                return Err(VulkanError::BadIndex {
                    index: i,
                    count: pds.len(),
                })
            }
            Some(i) => i,
            None => default_device(&infos).ok_or(VulkanError::NoDevice)?,
        };
        let pd = pds[index];
        let info = infos[index].clone();
        let inst = &vk.instance;
        // SAFETY: `pd` came from this instance.
        let families = unsafe { inst.get_physical_device_queue_family_properties(pd) };
        let queue_family = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or_else(|| {
                VulkanError::Unsupported(format!("{} has no compute queue", info.name))
            })? as u32;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let create = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
        // SAFETY: `create` and what it points to live across the call.
        let device = unsafe { inst.create_device(pd, &create, None) }.vk("vkCreateDevice")?;
        // SAFETY: the family was created with one queue.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        // SAFETY: `pd` came from this instance.
        let mem = unsafe { inst.get_physical_device_memory_properties(pd) };
        Ok(Arc::new(Gpu {
            vk,
            device,
            queue: Mutex::new(queue),
            queue_family,
            mem,
            info,
            allocated: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            pipelines: Mutex::new(HashMap::new()),
        }))
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Bytes of device memory this process holds now.
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The most bytes of device memory held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The largest buffer a shader may bind.
    pub fn max_binding(&self) -> u64 {
        self.info.max_storage_buffer_range
    }

    /// A memory type index for `bits` in `place`.
    fn memory_type(&self, bits: u32, place: Place) -> Option<u32> {
        let want = match place {
            Place::Device => vk::MemoryPropertyFlags::DEVICE_LOCAL,
            Place::Host => {
                vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT
            }
        };
        let types = &self.mem.memory_types[..self.mem.memory_type_count as usize];
        let ok = |i: usize, flags: vk::MemoryPropertyFlags| {
            bits & (1 << i) != 0 && types[i].property_flags.contains(flags)
        };
        (0..types.len())
            .find(|&i| ok(i, want))
            // A device without device-local memory types (rare) still computes.
            .or_else(|| (0..types.len()).find(|&i| place == Place::Device && bits & (1 << i) != 0))
            .map(|i| i as u32)
    }

    /// Allocates `size` bytes of memory for `req` in `place`, counting device memory.
    pub(crate) fn alloc(
        &self,
        req: vk::MemoryRequirements,
        place: Place,
        what: &str,
    ) -> Result<vk::DeviceMemory, VulkanError> {
        let ty = self
            .memory_type(req.memory_type_bits, place)
            .ok_or_else(|| {
                VulkanError::Unsupported(format!("no memory type for {what} ({place:?})"))
            })?;
        let info = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(ty);
        // SAFETY: a live device and a valid allocation info.
        let mem = unsafe { self.device.allocate_memory(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                VulkanError::OutOfMemory {
                    what: what.into(),
                    bytes: req.size,
                }
            }
            e => VulkanError::call("vkAllocateMemory", e),
        })?;
        if place == Place::Device {
            let now = self.allocated.fetch_add(req.size, Ordering::Relaxed) + req.size;
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        Ok(mem)
    }

    /// Frees memory from [`Gpu::alloc`].
    pub(crate) fn free(&self, mem: vk::DeviceMemory, size: u64, place: Place) {
        // SAFETY: `mem` came from this device and nothing uses it any more
        // (its buffer was destroyed first).
        unsafe { self.device.free_memory(mem, None) };
        if place == Place::Device {
            self.allocated.fetch_sub(size, Ordering::Relaxed);
        }
    }

    /// Runs `f` with the pipeline of `k`, building it the first time.
    pub(crate) fn with_pipeline<R>(
        &self,
        k: Kernel,
        f: impl FnOnce(&Pipeline) -> R,
    ) -> Result<R, VulkanError> {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        let p = match map.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.build(k)?),
        };
        Ok(f(p))
    }

    fn build(&self, k: Kernel) -> Result<Pipeline, VulkanError> {
        let d = &self.device;
        let code = ash::util::read_spv(&mut std::io::Cursor::new(k.spirv()))
            .map_err(|e| VulkanError::Invalid(format!("SPIR-V of {k:?}: {e}")))?;
        let info = vk::ShaderModuleCreateInfo::default().code(&code);
        // SAFETY: valid SPIR-V words (read_spv checked the length and alignment).
        let module = unsafe { d.create_shader_module(&info, None) }.vk("vkCreateShaderModule")?;
        let bindings: Vec<_> = (0..k.n_buffers())
            .map(|b| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(b)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
        // SAFETY: a valid create info.
        let set_layout = unsafe { d.create_descriptor_set_layout(&info, None) }
            .vk("vkCreateDescriptorSetLayout")?;
        let ranges = [vk::PushConstantRange::default()
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
            .size(PUSH_BYTES)];
        let layouts = [set_layout];
        let info = vk::PipelineLayoutCreateInfo::default()
            .set_layouts(&layouts)
            .push_constant_ranges(&ranges);
        // SAFETY: a valid create info.
        let layout =
            unsafe { d.create_pipeline_layout(&info, None) }.vk("vkCreatePipelineLayout")?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main");
        let info = [vk::ComputePipelineCreateInfo::default()
            .stage(stage)
            .layout(layout)];
        // SAFETY: the module and layout are live; the create info is valid.
        let pipeline =
            unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &info, None) }
                .map_err(|(_, e)| VulkanError::call("vkCreateComputePipelines", e))?[0];
        Ok(Pipeline {
            set_layout,
            layout,
            pipeline,
            module,
        })
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let d = &self.device;
        // SAFETY: every buffer, recorder and pipeline user holds an Arc to this
        // Gpu, so when it drops nothing of this device is in use; waiting for
        // idle covers work still in flight.
        unsafe {
            let _ = d.device_wait_idle();
            for (_, p) in self
                .pipelines
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
            {
                d.destroy_pipeline(p.pipeline, None);
                d.destroy_pipeline_layout(p.layout, None);
                d.destroy_descriptor_set_layout(p.set_layout, None);
                d.destroy_shader_module(p.module, None);
            }
            d.destroy_device(None);
        }
        let _ = &self.vk; // the instance outlives the device
    }
}
