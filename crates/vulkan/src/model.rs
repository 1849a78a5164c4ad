//! [`VulkanModel`]: a `llama`/`gemma3` decoder whose layers run on a Vulkan
//! device (all of them, or the first `--gpu-layers` with the rest on the CPU),
//! behind `sparetire_models::Model` so the runtime, server and CLI use it
//! unchanged.
//!
//! Sequences keep their CPU-side `KvCache` for bookkeeping only (block table,
//! tokens, published prefixes; its pool stores nothing when every layer is on
//! the device): the keys and values live in a device pool of the same blocks,
//! so prefix reuse and the server's shared pool work as on the CPU.

use std::sync::{Arc, Mutex, Weak};

use sparetire_formats::gguf::GgufFile;
use sparetire_models::kv_cache::{KvCache, KvPool, BLOCK_SIZE};
use sparetire_models::{
    arch, HParams, KvTypes, Logits, Model, ModelError, Seq, State, WeightBytes,
};
use sparetire_quant::ThreadPool;

use crate::device::Gpu;
use crate::error::VulkanError;
use crate::net::{KvLayers, Net, Scratch, Step};
use crate::vk_ops::VkOps;

/// The device's half of a sequence: the device pool its blocks live in.
struct SeqDevice {
    kv: Arc<KvLayers<VkOps>>,
}

/// A device pool and the CPU pool whose block ids it mirrors.
type PoolEntry = (Weak<KvPool>, Arc<KvLayers<VkOps>>);

/// What forward calls use one at a time.
struct Inner {
    ops: VkOps,
    scratch: Option<Scratch<VkOps>>,
}

/// A decoder running on a Vulkan device.
pub struct VulkanModel {
    hp: HParams,
    gpu: Arc<Gpu>,
    net: Net<VkOps>,
    inner: Mutex<Inner>,
    /// The CPU model: runs the layers past the device's and the head when
    /// the model is split, and answers what the device half does not.
    cpu: Box<dyn Model>,
    /// Device pools by the CPU pool whose block ids they mirror.
    pools: Mutex<Vec<PoolEntry>>,
    weight_bytes: u64,
}

/// Why a model could not be put on the device, with the CPU model handed back
/// (so a caller can fall back to it).
pub struct LoadError {
    /// What went wrong.
    pub error: VulkanError,
    /// The CPU model that was passed in.
    pub cpu: Box<dyn Model>,
}

impl std::fmt::Debug for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadError({:?})", self.error)
    }
}

/// The device caches f16 rows only.
fn f16_only(kv: KvTypes) -> Result<(), ModelError> {
    if kv.is_f16() {
        Ok(())
    } else {
        Err(ModelError::Device(format!(
            "the Vulkan backend caches keys and values as f16, not {}/{} (use --cache-type-k/-v f16, or --device cpu)",
            kv.k, kv.v
        )))
    }
}

fn dev(e: VulkanError) -> ModelError {
    ModelError::Device(e.to_string())
}

impl VulkanModel {
    /// Uploads the model in `file` to `gpu`: every layer, or the first
    /// `gpu_layers`, the rest then running on `cpu` (the same file's CPU
    /// model, which must stay alive with it).
    pub fn load(
        file: Arc<GgufFile>,
        gpu: Arc<Gpu>,
        gpu_layers: Option<usize>,
        cpu: Box<dyn Model>,
    ) -> Result<VulkanModel, LoadError> {
        match Self::upload(file, &gpu, gpu_layers) {
            Ok((net, ops, weight_bytes)) => Ok(VulkanModel {
                hp: cpu.hparams().clone(),
                gpu,
                net,
                inner: Mutex::new(Inner { ops, scratch: None }),
                cpu,
                pools: Mutex::new(Vec::new()),
                weight_bytes,
            }),
            Err(error) => Err(LoadError { error, cpu }),
        }
    }

    fn upload(
        file: Arc<GgufFile>,
        gpu: &Arc<Gpu>,
        gpu_layers: Option<usize>,
    ) -> Result<(Net<VkOps>, VkOps, u64), VulkanError> {
        let name = file
            .get_str("general.architecture")
            .unwrap_or("")
            .to_owned();
        let decoder = match name.as_str() {
            "llama" => arch::llama::load(file),
            "gemma3" => arch::gemma3::load(file),
            _ => {
                return Err(VulkanError::Unsupported(format!(
                    "architecture {name:?} (the Vulkan backend runs llama and gemma3; use --device cpu)"
                )))
            }
        }
        .map_err(|e| VulkanError::Invalid(e.to_string()))?;
        let parts = decoder.parts();
        let n_layer = parts.hp.n_layer;
        let n_gpu = gpu_layers.unwrap_or(n_layer).min(n_layer);
        let mut ops = VkOps::new(gpu)?;
        let before = gpu.allocated();
        let net = Net::upload(&mut ops, &parts, n_gpu, n_gpu == n_layer)?;
        Ok((net, ops, gpu.allocated() - before))
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Layers on the device.
    pub fn gpu_layers(&self) -> usize {
        self.net.n_layers()
    }

    /// Bytes of weights uploaded to the device.
    pub fn weight_memory(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of device memory held now (weights, KV caches, activations).
    pub fn device_memory(&self) -> u64 {
        self.gpu.allocated()
    }

    fn all_on_device(&self) -> bool {
        self.net.has_head()
    }

    /// The device pool mirroring `pool` (made on first use).
    fn device_pool(&self, pool: &Arc<KvPool>) -> Result<Arc<KvLayers<VkOps>>, ModelError> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, kv)) = pools
            .iter()
            .find(|(w, _)| w.upgrade().is_some_and(|p| Arc::ptr_eq(&p, pool)))
        {
            return Ok(kv.clone());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let kv = Arc::new(self.net.kv(&mut inner.ops, pool.n_blocks()).map_err(dev)?);
        pools.push((Arc::downgrade(pool), kv.clone()));
        Ok(kv)
    }

    fn with_device(&self, mut st: State) -> Result<State, ModelError> {
        let kv = self.device_pool(st.kv.pool())?;
        st.backend = Some(Box::new(SeqDevice { kv }));
        Ok(st)
    }
}

impl Model for VulkanModel {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn new_state(&self, n_ctx: usize, kv: KvTypes) -> Result<State, ModelError> {
        f16_only(kv)?;
        let st = if self.all_on_device() {
            // Bookkeeping only: a pool of no layers stores nothing.
            let pool = KvPool::new(0, self.hp.kv_dim(), n_ctx.div_ceil(BLOCK_SIZE))?;
            State::new(KvCache::in_pool(pool, n_ctx))
        } else {
            self.cpu.new_state(n_ctx, kv)?
        };
        self.with_device(st)
    }

    fn new_state_in(&self, pool: Arc<KvPool>, n_ctx: usize) -> Result<State, ModelError> {
        f16_only(pool.types())?;
        let st = if self.all_on_device() {
            State::new(KvCache::in_pool(pool, n_ctx))
        } else {
            self.cpu.new_state_in(pool, n_ctx)?
        };
        self.with_device(st)
    }

    fn forward(
        &self,
        pool: &ThreadPool,
        st: &mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<(), ModelError> {
        sparetire_models::check_batch(&self.hp, st, tokens)?;
        let kv = match st
            .backend
            .as_ref()
            .and_then(|b| b.downcast_ref::<SeqDevice>())
        {
            Some(d) => d.kv.clone(),
            None => {
                return Err(ModelError::Invalid(
                    "this sequence state was not made by the Vulkan model".into(),
                ))
            }
        };
        let n = tokens.len();
        let pos0 = st.n_past;
        let before: Vec<u32> = st.kv.blocks().to_vec();
        st.kv.prepare(pos0 + n)?;
        let table: Vec<u32> = st.kv.blocks().to_vec();
        if table.iter().any(|&b| b as usize >= kv.n_blocks()) {
            return Err(ModelError::Invalid(
                "the sequence's blocks lie outside its device pool".into(),
            ));
        }
        // A shared block about to be written was replaced by a copy: copy its rows too.
        let copies: Vec<(u32, u32)> = before
            .iter()
            .zip(&table)
            .filter(|(a, b)| a != b)
            .map(|(&a, &b)| (a, b))
            .collect();
        let first_logit = match logits {
            Logits::All => 0,
            Logits::Last => n - 1,
            Logits::None => n,
        };
        let out = {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let inner = &mut *guard;
            if inner.scratch.as_ref().is_none_or(|s| s.cap() < n) {
                let cap = n.max(inner.scratch.as_ref().map_or(0, |s| s.cap()));
                inner.scratch = None;
                inner.scratch = Some(self.net.scratch(&mut inner.ops, cap).map_err(dev)?);
            }
            let Some(scratch) = inner.scratch.as_ref() else {
                return Err(ModelError::Invalid("no scratch".into()));
            };
            let step = Step {
                tokens,
                pos0,
                table: &table,
                copies: &copies,
                first_logit,
            };
            self.net
                .forward(&mut inner.ops, scratch, &kv, &step)
                .map_err(dev)?
        };
        if self.all_on_device() {
            st.n_past += n;
            st.kv.commit(tokens);
            if logits != Logits::None {
                st.set_logits(&out);
            }
            return Ok(());
        }
        let layers = self.net.n_layers()..self.hp.n_layer;
        let mut seqs = [Seq {
            state: st,
            tokens,
            logits,
        }];
        self.cpu
            .forward_stage(pool, &mut seqs, layers, Some(&out), None)
    }

    fn forward_batch(&self, pool: &ThreadPool, seqs: &mut [Seq<'_>]) -> Result<(), ModelError> {
        for s in seqs.iter_mut() {
            self.forward(pool, s.state, s.tokens, s.logits)?;
        }
        Ok(())
    }

    fn weight_bytes(&self) -> Option<WeightBytes> {
        self.cpu.weight_bytes()
    }

    fn tied_output(&self) -> bool {
        self.cpu.tied_output()
    }
}
