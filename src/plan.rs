//! `treadc plan`: the compiler's ranked single routes within a budget of the dense training
//! cost, FLOPs by default; with `--measure`, step times measured by the bench machinery.

use tread_compiler::plan::{plan, Proposal};
use tread_runtime::bench::BenchMode;

use crate::args::PlanArgs;
use crate::backend::backend;
use crate::failure::{cli_error, from_run, Failure};

/// How far past the budget (in dense FLOPs) candidates are still measured: a route's measured
/// saving can exceed its FLOPs saving (attention's cost grows with the square of the tokens).
const MEASURE_SLACK: f64 = 0.1;

/// Runs `treadc plan`.
pub(crate) fn run_plan(args: PlanArgs) -> Result<(), Failure> {
    let file = args.model.display().to_string();
    let text = tread_runtime::start::read_model(&args.model).map_err(Failure::Diag)?;
    let model = tread_compiler::parse::parse_model(&text, &file).map_err(Failure::Diag)?;
    if !args.measure {
        let proposals = plan(&model, args.budget, args.top).map_err(Failure::Diag)?;
        let rows: Vec<_> = proposals.into_iter().map(|p| (p, None)).collect();
        return print(&args, &model.graph.name, model.graph.depth(), &rows, None);
    }
    if !(args.budget > 0.0 && args.budget <= 1.0) {
        return Err(cli_error(
            "--budget",
            "a fraction of the dense step time in (0, 1]",
            args.budget.to_string(),
        ));
    }
    let kind = backend(args.backend)?;
    let flops_budget = (args.budget + MEASURE_SLACK).min(1.0);
    let candidates = plan(&model, flops_budget, 2 * args.top).map_err(Failure::Diag)?;
    let mut batch = args.batch;
    let mut rows = Vec::new();
    let mut closest: Option<(f64, String)> = None;
    for p in candidates {
        let compiled =
            tread_runtime::model::compile_model(&text, &file, std::slice::from_ref(&p.route))
                .map_err(Failure::Diag)?;
        let b = *batch.get_or_insert(compiled.model.training.batch as usize);
        if !args.json {
            eprintln!("measuring --route {} at batch {b} …", p.route);
        }
        let r = tread_runtime::bench::bench(
            kind,
            &compiled,
            b,
            args.steps,
            1,
            (BenchMode::Both, false),
            None,
        )
        .map_err(from_run)?;
        if closest.as_ref().is_none_or(|(c, _)| r.ratio < *c) {
            closest = Some((r.ratio, p.route.clone()));
        }
        if r.ratio <= args.budget && rows.len() < args.top {
            rows.push((p, Some(r.ratio)));
        }
    }
    if rows.is_empty() {
        let found = closest.map_or("no routable span".into(), |(r, route)| {
            format!("the fastest, --route {route}, measured {r:.3} of the dense step")
        });
        return Err(cli_error(
            "--budget",
            &format!(
                "a budget some route's measured step meets (routes within {flops_budget:.2} of \
                 the dense FLOPs were measured)"
            ),
            found,
        ));
    }
    let how = format!(
        "measured on {} at batch {}, {} timed steps each, dense and routed interleaved",
        args.backend.name(),
        batch.unwrap_or_default(),
        args.steps
    );
    print(
        &args,
        &model.graph.name,
        model.graph.depth(),
        &rows,
        Some(&how),
    )
}

/// Prints the proposals, with their measured step ratios where `how` says how they were taken.
fn print(
    args: &PlanArgs,
    name: &str,
    depth: usize,
    rows: &[(Proposal, Option<f64>)],
    how: Option<&str>,
) -> Result<(), Failure> {
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, measured)| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let (Some(m), Some(o)) = (measured, v.as_object_mut()) {
                    o.insert("measured_ratio".into(), (*m).into());
                }
                v
            })
            .collect();
        let json = serde_json::to_string_pretty(&list)
            .map_err(|e| Failure::Other(format!("cannot encode the plan: {e}")))?;
        println!("{json}");
        return Ok(());
    }
    let cost = if how.is_some() {
        "training step time"
    } else {
        "training FLOPs"
    };
    println!(
        "{name} ({}): {depth} blocks; single routes within {} of the dense {cost}, best first{}",
        args.model.display(),
        args.budget,
        how.map_or(String::new(), |h| format!(" ({h})"))
    );
    for (i, (p, measured)) in rows.iter().enumerate() {
        let cost = match measured {
            Some(m) => format!("step {m:.3} of dense (FLOPs {:.3})", p.flops_ratio),
            None => format!(
                "FLOPs {:.3} of dense (saves {:.0}%)",
                p.flops_ratio,
                100.0 * (1.0 - p.flops_ratio)
            ),
        };
        println!("{:>3}. --route {:<10} {cost}: {}", i + 1, p.route, p.why);
    }
    Ok(())
}
