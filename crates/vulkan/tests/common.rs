//! What the Vulkan tests share: opening the device, and the rule for when
//! there is none.
#![allow(dead_code)] // why: each test binary uses a different subset

use std::sync::Arc;

use sparetire_vulkan::Gpu;

/// The Vulkan device the tests run on (`SPARETIRE_VULKAN_DEVICE`, else the
/// default one). No device fails the test — CI installs Mesa's software
/// device (lavapipe) — unless `SPARETIRE_SKIP_VULKAN=1` says explicitly to
/// skip, which is then printed.
pub fn gpu() -> Option<Arc<Gpu>> {
    let index = std::env::var("SPARETIRE_VULKAN_DEVICE")
        .ok()
        .and_then(|s| s.parse().ok());
    match Gpu::open(index) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("SPARETIRE_SKIP_VULKAN").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (SPARETIRE_SKIP_VULKAN=1): {e}");
            None
        }
        Err(e) => panic!(
            "no Vulkan device for the tests: {e}\n(install mesa-vulkan-drivers, or set SPARETIRE_SKIP_VULKAN=1 to skip)"
        ),
    }
}

/// Normalized mean squared error of `got` against `want`.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let (mut err, mut sig) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        err += (g as f64 - w as f64).powi(2);
        sig += (w as f64).powi(2);
    }
    if sig == 0.0 {
        err
    } else {
        err / sig
    }
}

/// A deterministic pseudo-random stream (xorshift), values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    /// The next value in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}
