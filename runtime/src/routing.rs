//! Drawing the kept token indices of a route (tread.md §1), on the host so that every backend
//! and every device sees the same indices for the same seed.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Supplies the kept indices of a route for one forward call.
pub trait RouteSource {
    /// Kept indices, row-major `[batch, keep]`, each row a subset of `0..tokens`.
    fn indices(
        &mut self,
        route: usize,
        batch: usize,
        tokens: usize,
        keep: usize,
        sorted: bool,
    ) -> Vec<i64>;
}

/// The TREAD draw: per sample, `tokens` iid uniforms, argsort, first `keep`; a fresh draw on
/// every call and every route; sorted when the region holds an order-sensitive op.
pub struct RandomRoutes<'a> {
    /// The run's random stream.
    pub rng: &'a mut ChaCha8Rng,
}

impl RouteSource for RandomRoutes<'_> {
    fn indices(
        &mut self,
        _route: usize,
        batch: usize,
        tokens: usize,
        keep: usize,
        sorted: bool,
    ) -> Vec<i64> {
        let mut out = Vec::with_capacity(batch * keep);
        for _ in 0..batch {
            out.extend(draw_row(self.rng, tokens, keep, sorted));
        }
        out
    }
}

/// The TREAD draw with one stream per sample: row `i` of every call draws from `rngs[i]`, so a
/// sample's routes do not depend on the batch it is computed in (data-parallel shards draw what
/// the whole batch would). Otherwise as [`RandomRoutes`].
pub struct PerSampleRoutes<'a> {
    /// One stream per sample of the batch, in batch order.
    pub rngs: &'a mut [ChaCha8Rng],
}

impl RouteSource for PerSampleRoutes<'_> {
    fn indices(
        &mut self,
        _route: usize,
        batch: usize,
        tokens: usize,
        keep: usize,
        sorted: bool,
    ) -> Vec<i64> {
        debug_assert_eq!(batch, self.rngs.len(), "one stream per sample");
        let mut out = Vec::with_capacity(batch * keep);
        for rng in self.rngs.iter_mut().take(batch) {
            out.extend(draw_row(rng, tokens, keep, sorted));
        }
        out
    }
}

/// One sample's kept indices: `tokens` iid uniforms, argsort, the first `keep`.
fn draw_row(rng: &mut ChaCha8Rng, tokens: usize, keep: usize, sorted: bool) -> Vec<i64> {
    let mut keys: Vec<(f32, usize)> = (0..tokens).map(|i| (rng.random::<f32>(), i)).collect();
    keys.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut row: Vec<i64> = keys[..keep].iter().map(|&(_, i)| i as i64).collect();
    if sorted {
        row.sort_unstable();
    }
    row
}

/// Fails loudly if a graph with routes is run where routing must not happen (evaluation).
pub struct NoRoutes;

impl RouteSource for NoRoutes {
    fn indices(
        &mut self,
        route: usize,
        batch: usize,
        tokens: usize,
        _keep: usize,
        _sorted: bool,
    ) -> Vec<i64> {
        // Keep everything, in order: the identity route. Only reached if a routed graph is
        // evaluated with routing off, which the callers prevent by stripping routes first.
        debug_assert!(false, "route {route} evaluated without a route source");
        (0..batch).flat_map(|_| 0..tokens as i64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn each_sample_gets_its_own_subset_and_each_call_draws_anew() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut src = RandomRoutes { rng: &mut rng };
        let a = src.indices(0, 4, 256, 128, false);
        let b = src.indices(0, 4, 256, 128, false);
        assert_eq!(a.len(), 4 * 128);
        assert_ne!(a, b, "a fresh draw on every call");
        let rows: Vec<&[i64]> = a.chunks(128).collect();
        assert_ne!(rows[0], rows[1], "samples differ");
        for r in rows {
            let mut s = r.to_vec();
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), 128, "no repeats");
            assert!(s.iter().all(|&i| (0..256).contains(&i)));
        }
    }

    /// A sample's rows depend on its own stream only: drawing two samples together or each
    /// alone gives the same rows, call after call (what data-parallel shards rely on).
    #[test]
    fn per_sample_rows_do_not_depend_on_the_batch() {
        let streams = || -> Vec<ChaCha8Rng> {
            (0..2)
                .map(|k| {
                    let mut r = ChaCha8Rng::seed_from_u64(7);
                    r.set_word_pos(k << 40);
                    r
                })
                .collect()
        };
        let mut both = streams();
        let mut together = PerSampleRoutes { rngs: &mut both };
        let t1 = together.indices(0, 2, 64, 16, false);
        let t2 = together.indices(1, 2, 64, 16, true);
        let mut alone = streams();
        for (k, rng) in alone.iter_mut().enumerate() {
            let mut one = PerSampleRoutes {
                rngs: std::slice::from_mut(rng),
            };
            assert_eq!(one.indices(0, 1, 64, 16, false), t1[k * 16..(k + 1) * 16]);
            assert_eq!(one.indices(1, 1, 64, 16, true), t2[k * 16..(k + 1) * 16]);
        }
        assert_ne!(t1[..16], t1[16..], "two samples, two draws");
    }

    #[test]
    fn sorted_rows_are_increasing() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let idx = RandomRoutes { rng: &mut rng }.indices(0, 3, 64, 40, true);
        for r in idx.chunks(40) {
            assert!(r.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
