//! Property tests: random route specs on the presets. Valid specs verify and strip back to the
//! dense graph; any spec, valid or not, never panics.

mod common;

use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use tread_compiler::emit::to_text;
use tread_compiler::parse::{parse_model, Model};
use tread_compiler::passes::{apply_routes, strip_routes};
use tread_compiler::route_spec::{parse_flag, resolve};

fn models() -> &'static Vec<(Model, String)> {
    static M: OnceLock<Vec<(Model, String)>> = OnceLock::new();
    M.get_or_init(|| {
        [
            "dit-s2.json",
            "uvit-s2.json",
            "gated-conv-s2.json",
            "mnist-dit.json",
        ]
        .iter()
        .map(|f| {
            let p = root().join("models").join(f);
            let m = parse_model(&std::fs::read_to_string(&p).unwrap(), f).unwrap();
            let dense = to_text(&m.graph);
            (m, dense)
        })
        .collect()
    })
}

/// A strictly increasing list of (rate, start, end) within `depth`.
fn valid_routes(depth: usize) -> impl Strategy<Value = Vec<(f64, usize, usize)>> {
    proptest::collection::vec((0.0f64..0.95, 0usize..depth, 0usize..depth), 1..4).prop_map(
        move |raw| {
            let mut out: Vec<(f64, usize, usize)> = vec![];
            let mut next = 0;
            for (rate, a, b) in raw {
                let (s, e) = (a.min(b).max(next), a.max(b).max(next));
                if s < depth && e < depth {
                    out.push((rate, s, e));
                    next = e + 1;
                }
            }
            if out.is_empty() {
                out.push((0.5, 0, 0));
            }
            out
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_routes_verify_and_strip_to_dense(
        (which, routes) in (0usize..4).prop_flat_map(|w| (Just(w), valid_routes(models()[w].0.graph.depth())))
    ) {
        let (m, dense_text) = &models()[which];
        let depth = m.graph.depth();
        let flags: Vec<String> = routes.iter().map(|(r, s, e)| format!("{r}:{s}-{e}")).collect();
        let given: Vec<_> = flags.iter().enumerate().map(|(i, f)| parse_flag(f, i).unwrap()).collect();
        let resolved = resolve(&given, depth, None, "m").unwrap();
        match apply_routes(&m.graph, &resolved) {
            Ok(routed) => {
                prop_assert_eq!(routed.routes.len(), resolved.len());
                for r in &routed.routes {
                    prop_assert_eq!(r.keep, r.tokens - (r.tokens as f64 * r.rate).floor() as u64);
                }
                let stripped = strip_routes(&routed).unwrap();
                prop_assert_eq!(&to_text(&stripped), dense_text);
            }
            // Only "empty route" (a tiny rate routes no token) may refuse a well-formed spec.
            Err(d) => prop_assert!(d.message.contains("empty route"), "{} for {:?}", d, flags),
        }
    }

    #[test]
    fn arbitrary_route_text_never_panics(text in "\\PC{0,16}", which in 0usize..4) {
        let (m, _) = &models()[which];
        if let Ok(g) = parse_flag(&text, 0) {
            if let Ok(r) = resolve(&[g], m.graph.depth(), None, "m") {
                let _ = apply_routes(&m.graph, &r);
            }
        }
    }

    #[test]
    fn arbitrary_numeric_specs_never_panic(
        rate in prop_oneof![any::<f64>(), -1.0f64..2.0],
        start in 0usize..40,
        end in 0usize..40,
        which in 0usize..4,
    ) {
        let (m, _) = &models()[which];
        let g = parse_flag(&format!("{rate}:{start}-{end}"), 0);
        if let Ok(g) = g {
            if let Ok(r) = resolve(&[g], m.graph.depth(), None, "m") {
                prop_assert!(r[0].rate >= 0.0 && r[0].rate < 1.0 && r[0].end < m.graph.depth());
                let _ = apply_routes(&m.graph, &r);
            }
        }
    }
}

#[test]
fn truncations_of_a_model_file_never_panic() {
    let text = std::fs::read_to_string(root().join("tests/models/tiny.json")).unwrap();
    for cut in (0..text.len()).step_by(7) {
        if text.is_char_boundary(cut) {
            assert!(parse_model(&text[..cut], "tiny.json").is_err());
        }
    }
}
