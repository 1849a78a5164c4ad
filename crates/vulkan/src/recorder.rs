//! [`Recorder`]: records dispatches, copies and small updates into one command
//! buffer, with a barrier after each, then submits it and waits.

use std::sync::Arc;

use ash::vk;

use crate::buffer::Buffer;
use crate::device::Gpu;
use crate::error::{VkContext, VulkanError};
use crate::kernels::Kernel;

/// Descriptor sets one pool holds.
const SETS_PER_POOL: u32 = 1024;

/// How long a submission may run before the device counts as hung.
const WAIT_NS: u64 = 600_000_000_000;

/// A command buffer being recorded, and what its dispatches allocate.
pub(crate) struct Recorder {
    gpu: Arc<Gpu>,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    desc_pools: Vec<vk::DescriptorPool>,
    /// The descriptor pool sets are taken from now.
    current: usize,
    recording: bool,
}

// SAFETY: the handles are identifiers; the recorder is used through `&mut`
// only (it lives behind the model's mutex), which is the external
// synchronisation Vulkan requires for command pools and buffers.
unsafe impl Send for Recorder {}

impl Recorder {
    pub fn new(gpu: &Arc<Gpu>) -> Result<Recorder, VulkanError> {
        let d = &gpu.device;
        let info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(gpu.queue_family)
            .flags(vk::CommandPoolCreateFlags::TRANSIENT);
        // SAFETY: a live device and a valid create info.
        let pool = unsafe { d.create_command_pool(&info, None) }.vk("vkCreateCommandPool")?;
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: a live pool.
        let cmd = unsafe { d.allocate_command_buffers(&info) }.vk("vkAllocateCommandBuffers")?[0];
        // SAFETY: a valid create info.
        let fence =
            unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }.vk("vkCreateFence")?;
        Ok(Recorder {
            gpu: gpu.clone(),
            pool,
            cmd,
            fence,
            desc_pools: Vec::new(),
            current: 0,
            recording: false,
        })
    }

    fn begin(&mut self) -> Result<(), VulkanError> {
        if !self.recording {
            let info = vk::CommandBufferBeginInfo::default()
                .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
            // SAFETY: the buffer is in the initial state (fresh or reset).
            unsafe { self.gpu.device.begin_command_buffer(self.cmd, &info) }
                .vk("vkBeginCommandBuffer")?;
            self.recording = true;
        }
        Ok(())
    }

    /// Makes every earlier write visible to every later read or write.
    fn barrier(&mut self) {
        let all = vk::AccessFlags::SHADER_READ
            | vk::AccessFlags::SHADER_WRITE
            | vk::AccessFlags::TRANSFER_READ
            | vk::AccessFlags::TRANSFER_WRITE;
        let mb = [vk::MemoryBarrier::default()
            .src_access_mask(all)
            .dst_access_mask(all)];
        let stages = vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER;
        // SAFETY: the command buffer is recording.
        unsafe {
            self.gpu.device.cmd_pipeline_barrier(
                self.cmd,
                stages,
                stages,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            )
        };
    }

    fn new_desc_pool(&self) -> Result<vk::DescriptorPool, VulkanError> {
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(SETS_PER_POOL * 5)];
        let info = vk::DescriptorPoolCreateInfo::default()
            .max_sets(SETS_PER_POOL)
            .pool_sizes(&sizes);
        // SAFETY: a valid create info.
        unsafe { self.gpu.device.create_descriptor_pool(&info, None) }.vk("vkCreateDescriptorPool")
    }

    fn descriptor_set(
        &mut self,
        layout: vk::DescriptorSetLayout,
    ) -> Result<vk::DescriptorSet, VulkanError> {
        loop {
            if self.current == self.desc_pools.len() {
                let p = self.new_desc_pool()?;
                self.desc_pools.push(p);
            }
            let layouts = [layout];
            let info = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(self.desc_pools[self.current])
                .set_layouts(&layouts);
            // SAFETY: a live pool and layout.
            match unsafe { self.gpu.device.allocate_descriptor_sets(&info) } {
                Ok(s) => return Ok(s[0]),
                Err(vk::Result::ERROR_OUT_OF_POOL_MEMORY | vk::Result::ERROR_FRAGMENTED_POOL) => {
                    self.current += 1;
                }
                Err(e) => return Err(VulkanError::call("vkAllocateDescriptorSets", e)),
            }
        }
    }

    /// Records kernel `k` over `groups` workgroups with `bufs` bound at
    /// bindings 0.. and `push` as its push constants.
    pub fn dispatch(
        &mut self,
        k: Kernel,
        bufs: &[&Buffer],
        push: &[u32],
        groups: [u32; 3],
    ) -> Result<(), VulkanError> {
        if groups.contains(&0) {
            return Ok(());
        }
        debug_assert_eq!(bufs.len() as u32, k.n_buffers());
        self.begin()?;
        let gpu = self.gpu.clone();
        let (set_layout, layout, pipeline) =
            gpu.with_pipeline(k, |p| (p.set_layout, p.layout, p.pipeline))?;
        let set = self.descriptor_set(set_layout)?;
        let infos: Vec<[vk::DescriptorBufferInfo; 1]> = bufs
            .iter()
            .map(|b| {
                [vk::DescriptorBufferInfo::default()
                    .buffer(b.buf)
                    .offset(0)
                    .range(vk::WHOLE_SIZE)]
            })
            .collect();
        let writes: Vec<_> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(info)
            })
            .collect();
        let d = &gpu.device;
        let bytes: Vec<u8> = push.iter().flat_map(|w| w.to_le_bytes()).collect();
        // SAFETY: the set, buffers, pipeline and layout are live; the command
        // buffer is recording; the push constants fit the layout's range.
        unsafe {
            d.update_descriptor_sets(&writes, &[]);
            d.cmd_bind_pipeline(self.cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(
                self.cmd,
                vk::PipelineBindPoint::COMPUTE,
                layout,
                0,
                &[set],
                &[],
            );
            d.cmd_push_constants(self.cmd, layout, vk::ShaderStageFlags::COMPUTE, 0, &bytes);
            d.cmd_dispatch(self.cmd, groups[0], groups[1], groups[2]);
        }
        self.barrier();
        Ok(())
    }

    /// Records a copy of `size` bytes from `src` at `src_off` to `dst` at `dst_off`.
    pub fn copy(
        &mut self,
        src: &Buffer,
        src_off: u64,
        dst: &Buffer,
        dst_off: u64,
        size: u64,
    ) -> Result<(), VulkanError> {
        if size == 0 {
            return Ok(());
        }
        self.begin()?;
        let region = [vk::BufferCopy::default()
            .src_offset(src_off)
            .dst_offset(dst_off)
            .size(size)];
        // SAFETY: both buffers are live and the region lies inside them
        // (callers check); the command buffer is recording.
        unsafe {
            self.gpu
                .device
                .cmd_copy_buffer(self.cmd, src.buf, dst.buf, &region)
        };
        self.barrier();
        Ok(())
    }

    /// Records writing `data` (at most 65536 bytes, a multiple of 4) into `dst` at `off`.
    pub fn update(&mut self, dst: &Buffer, off: u64, data: &[u8]) -> Result<(), VulkanError> {
        if data.is_empty() {
            return Ok(());
        }
        self.begin()?;
        // SAFETY: `dst` is live, `off + data.len()` lies inside it and both are
        // multiples of 4 (callers check); the command buffer is recording.
        unsafe {
            self.gpu
                .device
                .cmd_update_buffer(self.cmd, dst.buf, off, data)
        };
        self.barrier();
        Ok(())
    }

    /// Submits what was recorded and waits for it; then the recorder is empty again.
    pub fn submit(&mut self) -> Result<(), VulkanError> {
        if !self.recording {
            return Ok(());
        }
        let d = &self.gpu.device;
        self.recording = false;
        // SAFETY: the buffer is recording.
        unsafe { d.end_command_buffer(self.cmd) }.vk("vkEndCommandBuffer")?;
        let cmds = [self.cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        {
            let queue = self.gpu.queue.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the queue is held under its mutex (external synchronisation);
            // the fence is unsignalled.
            unsafe { d.queue_submit(*queue, &submit, self.fence) }.vk("vkQueueSubmit")?;
        }
        // SAFETY: the fence belongs to this device.
        let waited = unsafe { d.wait_for_fences(&[self.fence], true, WAIT_NS) };
        match waited {
            Ok(()) => {}
            Err(vk::Result::TIMEOUT) => return Err(VulkanError::DeviceLost),
            Err(e) => return Err(VulkanError::call("vkWaitForFences", e)),
        }
        // SAFETY: the work finished, so the fence, command pool and descriptor
        // pools are no longer in use.
        unsafe {
            d.reset_fences(&[self.fence]).vk("vkResetFences")?;
            d.reset_command_pool(self.pool, vk::CommandPoolResetFlags::empty())
                .vk("vkResetCommandPool")?;
            for &p in &self.desc_pools {
                d.reset_descriptor_pool(p, vk::DescriptorPoolResetFlags::empty())
                    .vk("vkResetDescriptorPool")?;
            }
        }
        self.current = 0;
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let d = &self.gpu.device;
        // SAFETY: submissions are waited for before `submit` returns, so
        // nothing recorded here is still running; an unsubmitted recording is
        // simply dropped with its pool.
        unsafe {
            let _ = d.device_wait_idle();
            for &p in &self.desc_pools {
                d.destroy_descriptor_pool(p, None);
            }
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
        }
    }
}
