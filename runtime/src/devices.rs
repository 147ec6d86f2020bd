//! What this machine can run treadc on: the CPU (cores, the SIMD level the GEMM and the fused
//! kernels dispatch to) and NVIDIA GPUs through the CUDA driver. The one module that calls the
//! CUDA driver API and NVRTC directly.
//!
//! Why a probe of our own: burn-cuda (cubecl, cudarc) loads the driver lazily and, when it is
//! missing or unusable, panics on a device thread (exit 101, two backtraces, a list of 34
//! library names). treadc instead loads `libcuda` with `dlopen` before any burn-cuda call, asks
//! it for its version and devices, checks that NVRTC (which cubecl compiles kernels with) loads,
//! and turns any failure into one message with what was looked for, what was found and what to
//! do. The libraries stay loaded (no `dlclose`); cubecl finds them again by the same names.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

/// Environment variable naming the CUDA driver library to load instead of the usual names
/// (a path or a file name; also how the tests point the probe at a library that is not there).
pub const DRIVER_ENV: &str = "TREADC_CUDA_DRIVER";
/// Environment variable naming the NVRTC library to load instead of the usual names.
pub const NVRTC_ENV: &str = "TREADC_NVRTC";

const DRIVER_NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
const NVRTC_NAMES: [&str; 5] = [
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11.2",
    "libnvrtc.so.11",
];

/// The CPU as treadc uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Hardware threads available to this process (rayon's default thread count).
    pub cores: usize,
    /// The widest SIMD level the GEMM (gemm crate) and the fused kernels (pulp) dispatch to.
    pub simd: &'static str,
}

/// This process's CPU.
pub fn cpu() -> Cpu {
    Cpu {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        simd: simd_level(),
    }
}

fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

/// One visible GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Device ordinal (what `cuda:N` would name).
    pub index: usize,
    /// The driver's device name.
    pub name: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
}

/// What the CUDA probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cuda {
    /// The driver library that loaded, if any.
    pub driver_library: Option<String>,
    /// The driver's CUDA version, e.g. `(12, 8)`.
    pub driver_version: Option<(i32, i32)>,
    /// The NVRTC library that loaded and its version, if any.
    pub nvrtc: Option<(String, (i32, i32))>,
    /// The GPUs the driver reports.
    pub gpus: Vec<Gpu>,
    /// Why CUDA is not usable (`None`: it is).
    pub problem: Option<String>,
}

impl Cuda {
    /// True when burn-cuda can be started: driver, NVRTC and at least one GPU.
    pub fn usable(&self) -> bool {
        self.problem.is_none()
    }
}

/// A library handle from `dlopen` (kept open for the process's life).
struct Library(*mut c_void);

impl Library {
    fn open(name: &str) -> Option<Library> {
        let c = CString::new(name).ok()?;
        // SAFETY: a NUL-terminated name; dlopen has no other precondition.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        (!h.is_null()).then_some(Library(h))
    }

    /// The first of `names` that loads.
    fn first(names: &[String]) -> Option<(String, Library)> {
        names
            .iter()
            .find_map(|n| Library::open(n).map(|l| (n.clone(), l)))
    }

    /// The address of `symbol`, or `None`.
    fn symbol(&self, symbol: &str) -> Option<*mut c_void> {
        let c = CString::new(symbol).ok()?;
        // SAFETY: a live handle from dlopen and a NUL-terminated name.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

fn candidates(env: &str, defaults: &[&str]) -> Vec<String> {
    match std::env::var(env) {
        Ok(v) if !v.trim().is_empty() => vec![v],
        _ => defaults.iter().map(|s| s.to_string()).collect(),
    }
}

/// Probes the CUDA driver and NVRTC under their usual names (or those of [`DRIVER_ENV`] and
/// [`NVRTC_ENV`]).
pub fn cuda() -> Cuda {
    cuda_with(
        &candidates(DRIVER_ENV, &DRIVER_NAMES),
        &candidates(NVRTC_ENV, &NVRTC_NAMES),
    )
}

const WHAT_TO_DO: &str = "install the NVIDIA driver (and the CUDA toolkit's NVRTC), put their \
                          libraries on LD_LIBRARY_PATH, or use --backend flex";

/// Probes with explicit library candidates (first that loads wins).
pub fn cuda_with(driver_names: &[String], nvrtc_names: &[String]) -> Cuda {
    let mut out = Cuda {
        driver_library: None,
        driver_version: None,
        nvrtc: None,
        gpus: vec![],
        problem: None,
    };
    let Some((name, driver)) = Library::first(driver_names) else {
        out.problem = Some(format!(
            "no CUDA driver: looked for {} (LD_LIBRARY_PATH and the system library paths), \
             found none; {WHAT_TO_DO}",
            driver_names.join(", ")
        ));
        return out;
    };
    out.driver_library = Some(name.clone());
    if let Err(e) = query_driver(&driver, &mut out) {
        out.problem = Some(format!(
            "the CUDA driver {name} loaded but {e}; {WHAT_TO_DO}"
        ));
        return out;
    }
    match Library::first(nvrtc_names) {
        Some((n, lib)) => {
            let version = nvrtc_version(&lib).unwrap_or((0, 0));
            out.nvrtc = Some((n, version));
        }
        None => {
            out.problem = Some(format!(
                "the CUDA driver loads, but NVRTC (burn-cuda compiles its kernels with it) does \
                 not: looked for {}, found none; {WHAT_TO_DO}",
                nvrtc_names.join(", ")
            ));
            return out;
        }
    }
    if out.gpus.is_empty() {
        out.problem = Some(format!(
            "the CUDA driver {name} reports no GPU (is CUDA_VISIBLE_DEVICES empty?); use --backend flex"
        ));
    }
    out
}

type CuResult = c_int;

/// Reads the driver version and every device into `out`; `Err` names the call that failed.
fn query_driver(lib: &Library, out: &mut Cuda) -> Result<(), String> {
    macro_rules! sym {
        ($name:literal, $ty:ty) => {{
            let p = lib
                .symbol($name)
                .ok_or_else(|| format!("has no `{}` (not a CUDA driver?)", $name))?;
            // SAFETY: the CUDA driver API's documented signature for this symbol.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    let init = sym!("cuInit", unsafe extern "C" fn(c_uint) -> CuResult);
    let version = sym!(
        "cuDriverGetVersion",
        unsafe extern "C" fn(*mut c_int) -> CuResult
    );
    let count = sym!(
        "cuDeviceGetCount",
        unsafe extern "C" fn(*mut c_int) -> CuResult
    );
    let get = sym!(
        "cuDeviceGet",
        unsafe extern "C" fn(*mut c_int, c_int) -> CuResult
    );
    let name = sym!(
        "cuDeviceGetName",
        unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult
    );
    let mem = sym!(
        "cuDeviceTotalMem_v2",
        unsafe extern "C" fn(*mut usize, c_int) -> CuResult
    );
    let check = |what: &str, r: CuResult| {
        if r == 0 {
            Ok(())
        } else {
            Err(format!("{what} returned CUDA error {r}"))
        }
    };
    // SAFETY: each call follows the driver API (out-pointers to live locals, a name buffer of
    // the stated length); cuInit comes first.
    unsafe {
        check("cuInit", init(0))?;
        let mut v = 0;
        check("cuDriverGetVersion", version(&mut v))?;
        out.driver_version = Some((v / 1000, (v % 1000) / 10));
        let mut n = 0;
        check("cuDeviceGetCount", count(&mut n))?;
        for i in 0..n {
            let mut dev = 0;
            check("cuDeviceGet", get(&mut dev, i))?;
            let mut buf = [0 as c_char; 256];
            check("cuDeviceGetName", name(buf.as_mut_ptr(), 256, dev))?;
            let mut bytes = 0usize;
            check("cuDeviceTotalMem", mem(&mut bytes, dev))?;
            out.gpus.push(Gpu {
                index: i as usize,
                name: CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned(),
                memory_mib: (bytes / (1 << 20)) as u64,
            });
        }
    }
    Ok(())
}

fn nvrtc_version(lib: &Library) -> Option<(i32, i32)> {
    let p = lib.symbol("nvrtcVersion")?;
    // SAFETY: NVRTC's documented signature.
    let f = unsafe {
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int>(p)
    };
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-pointers to live locals.
    (unsafe { f(&mut major, &mut minor) } == 0).then_some((major, minor))
}

/// `Ok` when burn-cuda can start here, else the message to stop with (exit 1) before any
/// burn-cuda call.
pub fn require_cuda() -> Result<Cuda, String> {
    let c = cuda();
    match &c.problem {
        None => Ok(c),
        Some(p) => Err(format!("--backend cuda: {p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_is_a_problem_naming_what_was_looked_for() {
        let c = cuda_with(
            &["/nonexistent/treadc-test/libcuda.so.1".to_string()],
            &["/nonexistent/libnvrtc.so".to_string()],
        );
        assert!(!c.usable());
        let p = c.problem.unwrap_or_default();
        assert!(p.contains("/nonexistent/treadc-test/libcuda.so.1"), "{p}");
        assert!(p.contains("--backend flex"), "{p}");
        assert!(c.gpus.is_empty() && c.driver_library.is_none());
    }

    #[test]
    fn a_library_that_is_not_a_driver_is_refused_by_its_missing_symbols() {
        // libc loads everywhere and has no cuInit.
        let c = cuda_with(&["libc.so.6".to_string()], &[]);
        let p = c.problem.unwrap_or_default();
        assert!(p.contains("cuInit") && p.contains("libc.so.6"), "{p}");
    }

    #[test]
    fn the_cpu_reports_cores_and_a_simd_level() {
        let c = cpu();
        assert!(c.cores >= 1);
        assert!(["avx512", "avx2+fma", "sse2", "neon", "scalar"].contains(&c.simd));
    }
}
