//! [`Buffer`]: a Vulkan buffer with memory of its own, in device memory or
//! mapped host memory.

use std::sync::Arc;

use ash::vk;

use crate::device::{Gpu, Place};
use crate::error::{VkContext, VulkanError};

/// A storage buffer and its memory; freed when dropped.
pub struct Buffer {
    gpu: Arc<Gpu>,
    pub(crate) buf: vk::Buffer,
    mem: vk::DeviceMemory,
    mem_size: u64,
    /// Bytes usable.
    pub(crate) size: u64,
    place: Place,
    /// The mapping of host memory.
    mapped: Option<std::ptr::NonNull<u8>>,
}

// SAFETY: the handles are plain identifiers that Vulkan lets any thread use;
// the mapped pointer is only written through `&mut self` or read while no GPU
// work on the buffer is pending (the recorders wait for their fences).
unsafe impl Send for Buffer {}
// SAFETY: as above; shared references only read the handles.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// A buffer of `size` bytes (at least 4) in `place`, named `what` in errors.
    pub(crate) fn new(
        gpu: &Arc<Gpu>,
        size: u64,
        place: Place,
        what: &str,
    ) -> Result<Buffer, VulkanError> {
        let size = size.max(4).next_multiple_of(4);
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST;
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let d = &gpu.device;
        // SAFETY: a live device and a valid create info.
        let buf = unsafe { d.create_buffer(&info, None) }.vk("vkCreateBuffer")?;
        // SAFETY: `buf` is live.
        let req = unsafe { d.get_buffer_memory_requirements(buf) };
        let mem = match gpu.alloc(req, place, what) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: `buf` has no memory bound and is not used.
                unsafe { d.destroy_buffer(buf, None) };
                return Err(e);
            }
        };
        let mut b = Buffer {
            gpu: gpu.clone(),
            buf,
            mem,
            mem_size: req.size,
            size,
            place,
            mapped: None,
        };
        // SAFETY: fresh memory of a fitting type and size, bound once.
        unsafe { d.bind_buffer_memory(buf, mem, 0) }.vk("vkBindBufferMemory")?;
        if place == Place::Host {
            // SAFETY: host-visible memory, not yet mapped.
            let p = unsafe { d.map_memory(mem, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) }
                .vk("vkMapMemory")?;
            b.mapped = std::ptr::NonNull::new(p.cast::<u8>());
        }
        Ok(b)
    }

    /// Bytes usable.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mapped bytes of a host buffer.
    pub(crate) fn host(&mut self) -> &mut [u8] {
        match self.mapped {
            // SAFETY: the mapping covers `size` bytes for the buffer's life,
            // and `&mut self` makes this the only access from the host.
            Some(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), self.size as usize) },
            None => &mut [],
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let d = &self.gpu.device;
        // SAFETY: the owner drops a buffer only when no submitted work uses it
        // (recorders wait for their work before returning).
        unsafe {
            if self.mapped.is_some() {
                d.unmap_memory(self.mem);
            }
            d.destroy_buffer(self.buf, None);
        }
        self.gpu.free(self.mem, self.mem_size, self.place);
    }
}
