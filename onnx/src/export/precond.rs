//! EDM preconditioning inside the exported graph (`--precond`), so that the file is the complete
//! denoiser D(x; σ, y) = c_skip·x + c_out·F(c_in·x, ln(σ)/4, y)
//! (formulas in [`tread_compiler::edm`]).
//! Graph inputs become `x_noisy [B, C, H, W]`, `sigma [B]` and the model's other inputs (label,
//! text) unchanged; the output `denoised`.

use std::collections::HashMap;

use super::builder::GraphBuilder;
use tread_compiler::config::Objective;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::edm::SIGMA_DATA;
use tread_compiler::ir::{Dim, Graph, InputRole, NodeId, Op, ValueType};

/// Name of the noisy-image input of a preconditioned export.
pub const X_NOISY: &str = "x_noisy";
/// Name of the noise-level input of a preconditioned export.
pub const SIGMA: &str = "sigma";
/// Name of the output of a preconditioned export.
pub const DENOISED: &str = "denoised";

/// The per-sample scalars shared by the input and output sides.
pub struct PrecondValues {
    sigma4: String,
    std: String,
    var: String,
    image: ValueType,
}

fn refuse(g: &Graph, found: String) -> Diagnostic {
    Diagnostic::new(
        Location::Item("--precond".into()),
        "cannot add EDM preconditioning",
    )
    .expected("an EDM model with image and noise_level inputs and one image-shaped output")
    .found(found)
    .in_file(g.name.clone())
}

/// Declares the inputs and computes the network's image and noise inputs from them.
pub fn inputs(
    g: &Graph,
    objective: Objective,
    b: &mut GraphBuilder,
    names: &mut HashMap<NodeId, String>,
) -> Result<PrecondValues, Diagnostic> {
    if objective != Objective::Edm {
        return Err(refuse(
            g,
            format!(
                "a `{}` model (it predicts a velocity; export it without --precond)",
                objective.name()
            ),
        ));
    }
    let by_role = |role: InputRole| {
        g.inputs
            .iter()
            .find(|(_, id)| matches!(g.node(*id).op, Op::Input { role: r } if r == role))
            .map(|(n, id)| (n.clone(), *id))
    };
    let (image, image_id) =
        by_role(InputRole::Image).ok_or_else(|| refuse(g, "no image input".into()))?;
    let (noise, noise_id) =
        by_role(InputRole::NoiseLevel).ok_or_else(|| refuse(g, "no noise_level input".into()))?;
    let image_ty = g.ty(image_id).clone();
    let batch = image_ty.shape[0].clone();
    b.input(X_NOISY, &image_ty);
    b.input(SIGMA, &ValueType::f32(vec![batch]));
    // The label and the text inputs pass as they are.
    for (name, id) in &g.inputs {
        if *id != image_id && *id != noise_id {
            b.input(name, g.ty(*id));
            names.insert(*id, name.clone());
        }
    }
    let axes = b.const_i64(&[1, 2, 3]);
    let sigma4 = b.op("Unsqueeze", &[SIGMA, &axes], "precond.sigma");
    let s2 = b.op("Mul", &[&sigma4, &sigma4], "precond.sigma_sq");
    let sd2 = b.const_f32((SIGMA_DATA * SIGMA_DATA) as f32, &[]);
    let var = b.op("Add", &[&s2, &sd2], "precond.var");
    let std = b.op("Sqrt", &[&var], "precond.std");
    let c_in = b.op("Reciprocal", &[&std], "precond.c_in");
    names.insert(image_id, b.op("Mul", &[X_NOISY, &c_in], &image));
    let ln = b.op("Log", &[SIGMA], "precond.log_sigma");
    let quarter = b.const_f32(0.25, &[]);
    names.insert(noise_id, b.op("Mul", &[&ln, &quarter], &noise));
    Ok(PrecondValues {
        sigma4,
        std,
        var,
        image: image_ty,
    })
}

/// Combines the network output `F` with the skip path into `denoised`.
pub fn outputs(
    g: &Graph,
    b: &mut GraphBuilder,
    p: &PrecondValues,
    outputs: &[(String, String, NodeId)],
) -> Result<(), Diagnostic> {
    let [(_, f, id)] = outputs else {
        return Err(refuse(g, format!("{} outputs", outputs.len())));
    };
    let fty = g.ty(*id);
    let same = fty.shape.len() == 4
        && fty.shape[1..] == p.image.shape[1..]
        && matches!(fty.shape[0], Dim::Sym(_));
    if !same {
        return Err(refuse(g, format!("output {fty} for image {}", p.image)));
    }
    let sd2 = b.const_f32((SIGMA_DATA * SIGMA_DATA) as f32, &[]);
    let c_skip = b.op("Div", &[&sd2, &p.var], "precond.c_skip");
    let sd = b.const_f32(SIGMA_DATA as f32, &[]);
    let s_sd = b.op("Mul", &[&p.sigma4, &sd], "precond.sigma_times_sd");
    let c_out = b.op("Div", &[&s_sd, &p.std], "precond.c_out");
    let skip = b.op("Mul", &[X_NOISY, &c_skip], "precond.skip");
    let scaled = b.op("Mul", &[f, &c_out], "precond.scaled_net");
    b.op("Add", &[&skip, &scaled], DENOISED);
    b.output(DENOISED, &p.image);
    Ok(())
}
