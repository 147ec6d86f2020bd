//! The GPUs wgpu sees (Vulkan, Metal, DX12, GL): the one module that calls the wgpu crate
//! directly. burn-wgpu picks an adapter itself (Vulkan, or Metal on macOS) and panics on a
//! device thread when there is none; treadc asks wgpu first, so `--backend wgpu` on a machine
//! without one is one message.

/// One adapter as wgpu reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// The driver's name for the device (lavapipe: "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// The graphics API wgpu reaches it through (Vulkan, Metal, Dx12, Gl).
    pub api: String,
    /// Discrete, integrated, virtual or CPU (a software rasteriser such as lavapipe).
    pub kind: String,
    /// The driver and its version, as the driver reports them.
    pub driver: String,
}

/// The adapters wgpu finds on this machine; empty in a build without the `wgpu` feature.
pub fn adapters() -> Vec<Adapter> {
    #[cfg(feature = "wgpu")]
    {
        let instance = wgpu::Instance::default();
        futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .map(|a| {
                let i = a.get_info();
                Adapter {
                    name: i.name,
                    api: format!("{:?}", i.backend),
                    kind: format!("{:?}", i.device_type),
                    driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                }
            })
            .collect()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Vec::new()
    }
}

/// The graphics API burn-wgpu runs on here (cubecl's automatic choice): Metal on macOS,
/// Vulkan elsewhere.
pub const BURN_API: &str = if cfg!(target_os = "macos") {
    "Metal"
} else {
    "Vulkan"
};

/// The adapter burn-wgpu will most likely pick (of [`BURN_API`]; a discrete GPU first, a CPU
/// rasteriser last), or why `--backend wgpu` cannot start here.
pub fn require_adapter() -> Result<Adapter, String> {
    if !cfg!(feature = "wgpu") {
        return Err(
            "--backend wgpu: this build has no wgpu backend (cargo build --release \
             --features wgpu)"
                .into(),
        );
    }
    let all = adapters();
    let rank = |a: &Adapter| match a.kind.as_str() {
        "DiscreteGpu" => 0,
        "IntegratedGpu" => 1,
        "VirtualGpu" => 2,
        "Cpu" => 3,
        _ => 4,
    };
    let others: Vec<String> = all
        .iter()
        .filter(|a| a.api != BURN_API)
        .map(|a| format!("{} ({})", a.name, a.api))
        .collect();
    all.into_iter()
        .filter(|a| a.api == BURN_API)
        .min_by_key(rank)
        .ok_or_else(|| {
            format!(
                "--backend wgpu: wgpu finds no {BURN_API} adapter, which burn-wgpu needs here \
                 (found: {}); on Linux without a GPU, Mesa's lavapipe is one (Debian: apt \
                 install mesa-vulkan-drivers); --backend flex runs on the CPU",
                if others.is_empty() {
                    "none".to_string()
                } else {
                    others.join(", ")
                }
            )
        })
}
