//! A Vulkan compute backend: the decoder's forward pass on any GPU with a
//! Vulkan driver (or Mesa's software device, lavapipe), with no vendor SDK.
//!
//! - [`devices`] lists the Vulkan devices ([`DeviceInfo`]); [`Gpu::open`]
//!   opens one. The loader (`libvulkan.so.1`) is opened at run time, so a
//!   machine without one builds and runs the CPU path and gets
//!   [`VulkanError::NoLoader`] only when it asks for Vulkan.
//! - [`Ops`] is the small set of operations a forward pass needs (matrix
//!   products for each weight type, RMSNorm, RoPE, softmax, gated
//!   activations, element-wise ops, a paged f16 KV cache and attention over
//!   it). [`VkOps`] records them as compute dispatches; [`reference::Reference`]
//!   computes them in scalar CPU code for the parity harness.
//! - [`VulkanModel`] implements `sparetire_models::Model` over a `llama` or
//!   `gemma3` decoder: weights uploaded once, the KV cache on the device, per
//!   call only token ids in and logits out; optionally only the first layers
//!   on the device and the rest on the CPU.
//! - The shaders are GLSL in `shaders/`, compiled to the SPIR-V in
//!   `shaders/spv/` by `scripts/gen_spirv.sh` and embedded in the binary.
#![deny(missing_docs)]

mod buffer;
mod device;
mod error;
mod instance;
pub mod kernels;
mod model;
pub mod net;
pub mod ops;
mod recorder;
pub mod reference;
mod vk_ops;

pub use buffer::Buffer;
pub use device::Gpu;
pub use error::VulkanError;
pub use instance::{default_device, devices, DeviceInfo, Heap};
pub use model::{LoadError, VulkanModel};
pub use ops::Ops;
pub use vk_ops::{DeviceBuf, DeviceCache, DeviceWeight, VkOps};
