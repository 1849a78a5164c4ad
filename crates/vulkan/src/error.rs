//! The one error type of the Vulkan backend.

use ash::vk;

/// Why the Vulkan backend could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    /// `libvulkan.so.1` (or the platform's loader) could not be opened.
    #[error(
        "no Vulkan loader (libvulkan.so.1) found; install your GPU driver or mesa-vulkan-drivers ({0})"
    )]
    NoLoader(String),
    /// The loader works but lists no device.
    #[error("no Vulkan device found (is a driver installed? mesa-vulkan-drivers provides a software one)")]
    NoDevice,
    /// `vulkan:N` names a device that does not exist.
    #[error("no Vulkan device {index}: {count} found (see `sparetire devices`)")]
    BadIndex {
        /// The index asked for.
        index: usize,
        /// How many devices there are.
        count: usize,
    },
    /// The device ran out of memory.
    #[error("out of device memory: {what} needs {bytes} bytes more than the device can give (try --gpu-layers with fewer layers)")]
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// Its size.
        bytes: u64,
    },
    /// The device stopped working (driver reset, GPU hang).
    #[error(
        "the Vulkan device was lost (driver reset or hang); restart, or run with --device cpu"
    )]
    DeviceLost,
    /// Something the device cannot do (a missing queue, a limit too small).
    #[error("the Vulkan device cannot run this: {0}")]
    Unsupported(String),
    /// A Vulkan call failed.
    #[error("{call}: {result}")]
    Call {
        /// The call.
        call: &'static str,
        /// What it returned.
        result: vk::Result,
    },
    /// Inputs an op cannot take (sizes that do not match).
    #[error("{0}")]
    Invalid(String),
}

impl VulkanError {
    /// Maps a failed Vulkan call to the error a user should see.
    pub(crate) fn call(call: &'static str, result: vk::Result) -> VulkanError {
        match result {
            vk::Result::ERROR_DEVICE_LOST => VulkanError::DeviceLost,
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY | vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                VulkanError::OutOfMemory {
                    what: call.into(),
                    bytes: 0,
                }
            }
            _ => VulkanError::Call { call, result },
        }
    }
}

/// `result.map_err(|e| VulkanError::call(name, e))`.
pub(crate) trait VkContext<T> {
    fn vk(self, call: &'static str) -> Result<T, VulkanError>;
}

impl<T> VkContext<T> for Result<T, vk::Result> {
    fn vk(self, call: &'static str) -> Result<T, VulkanError> {
        self.map_err(|e| VulkanError::call(call, e))
    }
}
