//! The data-parallel side of the CLI: the `--devices`/`--nodes` flags as a
//! [`Parallel`] plan, a follower node's `train`, and `treadc coordinator`.

use std::path::PathBuf;
use std::time::Duration;

use tread_runtime::parallel::{Cluster, Parallel};
use tread_runtime::run::Placement;
use tread_runtime::run_folder::RunSettings;

use crate::args::{CoordinatorArgs, ParallelArgs};
use crate::failure::{cli_error, from_run, Failure};

/// The peers the flags ask for (checked against the batch later, where it is known).
pub(crate) fn plan(a: &ParallelArgs) -> Result<Parallel, Failure> {
    let cluster = match (a.nodes, a.node_rank, &a.coordinator, &a.node_address) {
        (None, ..) => None,
        (Some(nodes), Some(rank), Some(coordinator), Some(address)) => Some(Cluster {
            nodes,
            rank,
            coordinator: coordinator.clone(),
            address: address.clone(),
        }),
        // clap's `requires_all` makes this unreachable; kept as a diagnostic, not a panic.
        (Some(_), ..) => {
            return Err(cli_error(
                "--nodes",
                "--node-rank, --coordinator and --node-address with it",
                "some of them missing".into(),
            ))
        }
    };
    let plan = Parallel {
        devices: a.devices,
        cluster,
        timeout: Duration::from_secs(a.peer_timeout),
        micro_batches: a.micro_batches,
    };
    plan.check_flags().map_err(Failure::Diag)?;
    Ok(plan)
}

/// `train` on a node other than 0: the same MODEL and flags as node 0, no run folder.
pub(crate) fn follow(
    at: &Placement<'_>,
    model: Option<PathBuf>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    batch: Option<usize>,
    settings: RunSettings,
) -> Result<(), Failure> {
    if let Some(p) = out.or(resume) {
        return Err(cli_error(
            "--out/--resume",
            "no run folder on nodes other than 0 (node 0 writes the run, and sends a resumed \
             run's state to the others)",
            p.display().to_string(),
        ));
    }
    let Some(model) = model else {
        return Err(cli_error(
            "MODEL",
            "the model file node 0 trains",
            "nothing".into(),
        ));
    };
    let text = tread_runtime::start::read_model(&model).map_err(Failure::Diag)?;
    let file = model.display().to_string();
    let compiled = tread_runtime::model::compile_model(&text, &file, &settings.routes)
        .map_err(Failure::Diag)?;
    let batch = batch.unwrap_or(compiled.model.training.batch as usize);
    let settings = RunSettings {
        model_file: file,
        batch,
        ..settings
    };
    tread_runtime::run::follow(at, settings, text).map_err(from_run)
}

/// `treadc coordinator`.
pub(crate) fn run_coordinator(a: CoordinatorArgs) -> Result<(), Failure> {
    if a.port == 0 {
        return Err(cli_error("--port", "a port in 1..65535", "0".into()));
    }
    eprintln!(
        "coordinator listening on port {} (nodes join with --coordinator HOST:{}); Ctrl-C stops it",
        a.port, a.port
    );
    tread_runtime::lower::collective::run_coordinator(a.port).map_err(Failure::Other)
}
