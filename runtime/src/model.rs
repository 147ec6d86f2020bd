//! A model file as a run sees it: compiled with the command line's route flags, its image,
//! class and text inputs, and the training recipe they make.

use tread_compiler::compile::{compile_str, CompileOptions, Compiled};
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::{InputRole, Op};
use tread_compiler::passes::strip_routes;
use tread_compiler::route_spec::parse_flag;

use crate::data::clips::ClipShape;
use crate::lower::train::Recipe;
use crate::text::{TextDims, TextEncoder, Tokenizer};

/// Compiles model text with route flags; the single flag `none` trains dense (the file's
/// routes ignored).
pub fn compile_model(text: &str, file: &str, routes: &[String]) -> Result<Compiled, Diagnostic> {
    let mut opts = CompileOptions::default();
    if routes.iter().any(|r| r.trim() == "none") {
        if routes.len() > 1 {
            return Err(Diagnostic::new(
                Location::Item("--route".into()),
                "`--route none` cannot be combined with other routes",
            )
            .expected("either `--route none` or routes")
            .found(routes.join(", "))
            .in_file("<command line>"));
        }
        opts.dense = true;
        return compile_str(text, file, &opts);
    }
    for (i, r) in routes.iter().enumerate() {
        opts.routes.push(parse_flag(r, i)?);
    }
    compile_str(text, file, &opts)
}

/// The image input shape `[C, H, W]` (a video model's clips as `[C, F·H, W]`, see
/// [`clip_shape`]) and class count of a compiled model; a text-conditioned model counts the ten
/// digits its captions name (see [`text_encoder`]).
pub fn model_io(c: &Compiled) -> Result<([usize; 3], Option<usize>), Diagnostic> {
    let g = &c.model.graph;
    let mut shape = None;
    let mut classes = None;
    for (name, id) in &g.inputs {
        let Op::Input { role } = g.node(*id).op else {
            continue;
        };
        let refuse = |what: String, expected: &str, found: String, help: &str| {
            Diagnostic::new(Location::Item(format!("input `{name}`")), what)
                .expected(expected)
                .found(found)
                .in_file(c.model.file.clone())
                .help(help.to_string())
        };
        match role {
            InputRole::TokenIds | InputRole::Guidance => {
                return Err(refuse(
                    format!("treadc cannot feed a `{}` input yet", role.name()),
                    "a model whose inputs are image, noise_level, and label or text (context, \
                     context_mask, pooled)",
                    format!("role \"{}\"", role.name()),
                    "`treadc compile` and `treadc export` (with --check) take such models",
                ))
            }
            InputRole::Context => classes = Some(crate::text::vocab::DIGIT_WORDS.len()),
            InputRole::Image => {
                let s: Vec<usize> = g
                    .ty(*id)
                    .shape
                    .iter()
                    .map(|d| d.known().unwrap_or(0) as usize)
                    .collect();
                shape = Some(match s[..] {
                    [_, c, h, w] => [c, h, w],
                    [_, c, f, h, w] => [c, f * h, w],
                    _ => {
                        return Err(refuse(
                            "treadc cannot feed this image input".into(),
                            "an image input [B, C, H, W] or a video input [B, C, F, H, W]",
                            g.ty(*id).to_string(),
                            "`treadc compile` and `treadc export` (with --check) take any rank",
                        ))
                    }
                });
            }
            InputRole::Label => {
                classes = g.node_ids().into_iter().find_map(|n| match g.node(n).op {
                    Op::ClassEmbed { classes, .. } => Some(classes as usize),
                    _ => None,
                })
            }
            InputRole::NoiseLevel | InputRole::ContextMask | InputRole::Pooled => {}
        }
    }
    let shape = shape.ok_or_else(|| {
        Diagnostic::new(Location::File, "the model has no image input")
            .in_file(c.model.file.clone())
    })?;
    Ok((shape, classes))
}

/// The frame layout of a video model (an image input `[B, C, F, H, W]`), whose clips the
/// runtime carries as tall images `[C, F·H, W]` (see [`crate::data::clips`]); `None` for
/// image models.
pub fn clip_shape(c: &Compiled) -> Option<ClipShape> {
    let g = &c.model.graph;
    g.inputs.iter().find_map(|(_, id)| match g.node(*id).op {
        Op::Input {
            role: InputRole::Image,
        } => match &g.ty(*id).shape[..] {
            [_, _, f, h, w] => Some(ClipShape {
                frames: f.known()? as usize,
                height: h.known()? as usize,
                width: w.known()? as usize,
            }),
            _ => None,
        },
        _ => None,
    })
}

/// The text encoder of a text-conditioned model (one with a `context` input): its dims come
/// from the context `[B, L, Dc]` and pooled `[B, Dp]` inputs. Without a `vocabulary` (one
/// built from a run's captions) it is the bundled encoder, and `L` must hold every bundled
/// caption. `None` for other models.
pub fn text_encoder(
    c: &Compiled,
    vocabulary: Option<Tokenizer>,
) -> Result<Option<TextEncoder>, Diagnostic> {
    let g = &c.model.graph;
    let dims_of = |role: InputRole| {
        g.inputs.iter().find_map(|(name, id)| match g.node(*id).op {
            Op::Input { role: r } if r == role => Some((
                name.clone(),
                g.ty(*id)
                    .shape
                    .iter()
                    .map(|d| d.known().unwrap_or(0) as usize)
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        })
    };
    let Some((name, ctx)) = dims_of(InputRole::Context) else {
        return Ok(None);
    };
    let dims = TextDims {
        len: ctx[1],
        context: ctx[2],
        pooled: dims_of(InputRole::Pooled).map(|(_, p)| p[1]),
    };
    if let Some(words) = vocabulary {
        return Ok(Some(TextEncoder::with_tokenizer(words, dims)));
    }
    let enc = TextEncoder::fitting(dims).map_err(|longest| {
        Diagnostic::new(
            Location::Item(format!("input `{name}`")),
            "the text context is shorter than the bundled captions",
        )
        .expected(format!("a context of at least {longest} tokens"))
        .found(format!("{} tokens", dims.len))
        .in_file(c.model.file.clone())
    })?;
    Ok(Some(enc))
}

/// The training recipe of a compiled model (fused engine); `vocabulary` as for
/// [`text_encoder`].
pub fn recipe(
    c: &Compiled,
    batch: usize,
    seed: u64,
    vocabulary: Option<Tokenizer>,
) -> Result<Recipe, Diagnostic> {
    let (_, classes) = model_io(c)?;
    Ok(Recipe {
        routed: c.routed.clone(),
        dense: strip_routes(&c.routed)?,
        training: c.model.training.clone(),
        batch,
        seed,
        classes,
        text: text_encoder(c, vocabulary)?,
        fused: true,
        micro_batches: None,
        init: None,
    })
}

/// The routes of a compiled model as `RATE:START-END` (space-separated), or `none`.
pub fn route_text(c: &Compiled) -> String {
    if c.routed.routes.is_empty() {
        return "none".to_string();
    }
    c.routed
        .routes
        .iter()
        .map(|r| format!("{}:{}-{}", r.rate, r.start, r.end))
        .collect::<Vec<_>>()
        .join(" ")
}
