//! The `treadc.*` metadata keys of an exported file, defined once: the writer
//! ([`crate::export`]) stores them and `treadc run` (the runtime's deployment sampler) reads
//! them back, so a renamed key cannot drift between the two.

use tread_compiler::ir::InputRole;

/// The prefix every treadc key carries in `metadata_props`.
pub const PREFIX: &str = "treadc.";
/// `edm` or `flow`: which sampler the file needs.
pub const OBJECTIVE: &str = "objective";
/// `edm` when EDM's preconditioning is inside the graph, else `none`.
pub const PRECOND: &str = "precond";
/// EDM's σ_data the preconditioning assumes.
pub const SIGMA_DATA: &str = "sigma_data";
/// The class count of a class-conditional model (its null label).
pub const CLASSES: &str = "classes";
/// Which weights were exported (`ema at step 4000`, `init seed 0`).
pub const WEIGHTS: &str = "weights";
/// The checkpoint the weights came from.
pub const CHECKPOINT: &str = "checkpoint";
/// The model file the run was trained from.
pub const MODEL_FILE: &str = "model_file";

/// The text encoder a text-conditioned model reads (`bundled-digits`): `treadc run --prompt`
/// rebuilds it from this name and the context input's shape.
pub const TEXT_ENCODER: &str = "text_encoder";
/// That encoder's vocabulary, space-separated in id order (id 0 the padding).
pub const VOCABULARY: &str = "vocabulary";

/// The key naming the graph input that carries `role` (`input.image`, `input.label`, ...).
pub fn input(role: InputRole) -> String {
    format!("input.{}", role.name())
}

/// The full key as stored in the file (`treadc.objective`).
pub fn full(key: &str) -> String {
    format!("{PREFIX}{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_role_name() {
        assert_eq!(full(OBJECTIVE), "treadc.objective");
        assert_eq!(
            full(&input(InputRole::NoiseLevel)),
            "treadc.input.noise_level"
        );
    }
}
