//! `treadc devices`: what this binary can run on — its backends, the CPU, CUDA (driver,
//! NVRTC, GPUs) or why CUDA is not usable, and the adapters wgpu sees. The probes themselves
//! are `tread_runtime::devices` and `tread_runtime::wgpu_adapters`.

use tread_runtime::devices::{cpu, cuda};
use tread_runtime::wgpu_adapters::{adapters, require_adapter};

use crate::args::DevicesArgs;
use crate::failure::Failure;

/// Prints the report; never fails on a missing GPU (that is a finding, not an error).
pub fn run_devices(args: DevicesArgs) -> Result<(), Failure> {
    let mut backends = vec!["flex", "ndarray"];
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    let (c, g, w) = (cpu(), cuda(), adapters());
    if args.json {
        let gpus: Vec<_> = g
            .gpus
            .iter()
            .map(|d| serde_json::json!({"index": d.index, "name": d.name, "memory_mib": d.memory_mib}))
            .collect();
        let v = serde_json::json!({
            "backends": backends,
            "cpu": {"cores": c.cores, "simd": c.simd},
            "cuda": {
                "in_build": cfg!(feature = "cuda"),
                "usable": g.usable(),
                "driver": g.driver_library,
                "driver_version": g.driver_version.map(|(a, b)| format!("{a}.{b}")),
                "nvrtc": g.nvrtc.as_ref().map(|(n, (a, b))| format!("{n} {a}.{b}")),
                "gpus": gpus,
                "problem": g.problem,
            },
            "wgpu": {
                "in_build": cfg!(feature = "wgpu"),
                "adapters": w.iter().map(|a| serde_json::json!({
                    "name": a.name, "api": a.api, "kind": a.kind, "driver": a.driver,
                })).collect::<Vec<_>>(),
            },
        });
        println!("{v}");
        return Ok(());
    }
    println!("backends: {} (default flex)", backends.join(", "));
    for (name, built) in [
        ("cuda", cfg!(feature = "cuda")),
        ("wgpu", cfg!(feature = "wgpu")),
    ] {
        if !built {
            println!("  {name}: not in this build (cargo build --release --features {name})");
        }
    }
    println!(
        "cpu: {} cores, SIMD {} (the GEMM and the fused kernels dispatch to it)",
        c.cores, c.simd
    );
    match (&g.driver_library, g.driver_version) {
        (Some(lib), Some((a, b))) => println!("cuda driver: {lib}, CUDA {a}.{b}"),
        (Some(lib), None) => println!("cuda driver: {lib}"),
        _ => {}
    }
    if let Some((n, (a, b))) = &g.nvrtc {
        println!("nvrtc: {n} {a}.{b}");
    }
    for d in &g.gpus {
        println!("gpu {}: {}, {} MiB", d.index, d.name, d.memory_mib);
    }
    match &g.problem {
        None => println!("cuda: usable"),
        Some(p) => println!("cuda: not usable: {p}"),
    }
    if cfg!(feature = "wgpu") {
        for (i, a) in w.iter().enumerate() {
            println!(
                "wgpu adapter {i}: {} ({}, {}; {})",
                a.name, a.api, a.kind, a.driver
            );
        }
        match require_adapter() {
            Ok(a) => println!(
                "wgpu: usable, --backend wgpu runs on {} ({})",
                a.name, a.api
            ),
            Err(p) => println!("wgpu: not usable: {p}"),
        }
    }
    Ok(())
}
