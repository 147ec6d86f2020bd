//! Several runs of one arm (the same model and routes, different seeds) summarised: the mean
//! curve with its range over the runs, the x at which a curve first reaches a value, and
//! mean and spread of per-run figures. Plain arithmetic; `plot.rs` draws the results.

/// An arm's curve over x points shared by its runs: the mean and the lowest and highest run.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The x points: every run's own x inside the span all runs cover, sorted.
    pub x: Vec<f64>,
    /// Mean over the runs at each x.
    pub mean: Vec<f64>,
    /// The lowest run at each x.
    pub lo: Vec<f64>,
    /// The highest run at each x.
    pub hi: Vec<f64>,
}

/// The mean and range of `runs` (each a curve sorted by x), linearly interpolated onto the x
/// points of all runs inside the span every run covers; `None` when that span is empty.
pub fn band(runs: &[Vec<(f64, f64)>]) -> Option<Band> {
    let start = runs
        .iter()
        .map(|r| r.first().map(|p| p.0))
        .try_fold(f64::NEG_INFINITY, |a, x| x.map(|x| a.max(x)))?;
    let end = runs
        .iter()
        .map(|r| r.last().map(|p| p.0))
        .try_fold(f64::INFINITY, |a, x| x.map(|x| a.min(x)))?;
    if runs.is_empty() || start > end {
        return None;
    }
    let mut x: Vec<f64> = runs
        .iter()
        .flatten()
        .map(|p| p.0)
        .filter(|v| (start..=end).contains(v))
        .collect();
    x.sort_by(f64::total_cmp);
    x.dedup();
    let (mut mean, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for &at in &x {
        let ys: Vec<f64> = runs.iter().map(|r| interpolate(r, at)).collect();
        mean.push(ys.iter().sum::<f64>() / ys.len() as f64);
        lo.push(ys.iter().copied().fold(f64::INFINITY, f64::min));
        hi.push(ys.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }
    Some(Band { x, mean, lo, hi })
}

/// The curve's value at `at` (linear between neighbouring points; the end value outside).
fn interpolate(curve: &[(f64, f64)], at: f64) -> f64 {
    let i = curve.partition_point(|p| p.0 < at);
    match (curve.get(i.wrapping_sub(1)), curve.get(i)) {
        (_, Some(b)) if b.0 == at => b.1,
        (Some(a), Some(b)) => a.1 + (b.1 - a.1) * (at - a.0) / (b.0 - a.0),
        (Some(a), None) => a.1,
        (None, Some(b)) => b.1,
        (None, None) => f64::NAN,
    }
}

/// The first x at which the curve is at or below `target` (linear between the last point
/// above it and the first at or below); `None` if it never gets there.
pub fn first_reach(curve: &[(f64, f64)], target: f64) -> Option<f64> {
    let i = curve.iter().position(|p| p.1 <= target)?;
    if i == 0 {
        return Some(curve[0].0);
    }
    let (a, b) = (curve[i - 1], curve[i]);
    Some(a.0 + (b.0 - a.0) * (a.1 - target) / (a.1 - b.1))
}

/// Mean and sample standard deviation (0 for one value); `None` for no values.
pub fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_band_interpolates_onto_the_shared_span() {
        let a = vec![(0.0, 10.0), (2.0, 6.0), (4.0, 2.0)];
        let b = vec![(1.0, 8.0), (3.0, 8.0), (5.0, 0.0)];
        let band = band(&[a, b]).unwrap();
        // Shared span 1..=4; a at 1 is 8, at 3 is 4; b at 2 is 8, at 4 is 4.
        assert_eq!(band.x, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(band.lo, [8.0, 6.0, 4.0, 2.0]);
        assert_eq!(band.hi, [8.0, 8.0, 8.0, 4.0]);
        assert_eq!(band.mean, [8.0, 7.0, 6.0, 3.0]);
    }

    #[test]
    fn runs_that_do_not_overlap_or_are_empty_have_no_band() {
        assert!(band(&[vec![(0.0, 1.0)], vec![(2.0, 1.0)]]).is_none());
        assert!(band(&[vec![(0.0, 1.0)], vec![]]).is_none());
        assert!(band(&[]).is_none());
    }

    #[test]
    fn first_reach_interpolates_between_the_crossing_points() {
        let c = [(100.0, 90.0), (200.0, 70.0), (300.0, 50.0), (400.0, 60.0)];
        assert_eq!(first_reach(&c, 60.0), Some(250.0));
        assert_eq!(first_reach(&c, 95.0), Some(100.0));
        assert_eq!(first_reach(&c, 40.0), None);
    }

    #[test]
    fn mean_and_sample_spread() {
        let (m, sd) = mean_sd(&[2.0, 4.0, 6.0]).unwrap();
        assert_eq!((m, sd), (4.0, 2.0));
        assert_eq!(mean_sd(&[5.0]), Some((5.0, 0.0)));
        assert_eq!(mean_sd(&[]), None);
    }
}
