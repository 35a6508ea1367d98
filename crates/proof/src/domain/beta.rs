//! Draws from Beta distributions, for Thompson sampling, with nothing but a uniform source.
//!
//! `Beta(a, b) = X / (X + Y)` with `X ~ Gamma(a)` and `Y ~ Gamma(b)`. Gamma draws use
//! Marsaglia and Tsang's squeeze method ("A simple method for generating gamma variables",
//! ACM TOMS 26(3), 2000) for shapes of 1 or more, and their boost for smaller shapes:
//! `Gamma(a) = Gamma(a + 1) · U^(1/a)`. Normal draws use Marsaglia's polar method. The
//! caller's `rng` is the only source of randomness, so a seeded `StdRng` makes every draw
//! reproducible.

use rand::Rng;

/// One draw from `Beta(a, b)`, in `[0, 1]`. Both shapes must be positive and finite (the
/// playbook validates its priors, and counts only add to them).
pub fn sample_beta(rng: &mut impl Rng, a: f64, b: f64) -> f64 {
    debug_assert!(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite());
    let x = sample_gamma(rng, a);
    let y = sample_gamma(rng, b);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        // Both draws underflowed, which only very small shapes do: the distribution is then
        // almost all at 0 and 1, in the proportion of its mean.
        if rng.random::<f64>() < a / (a + b) {
            1.0
        } else {
            0.0
        }
    }
}

/// One draw from `Gamma(shape, 1)`.
pub fn sample_gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = open_unit(rng).powf(1.0 / shape);
        return sample_gamma(rng, shape + 1.0) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let (x, v) = loop {
            let x = standard_normal(rng);
            let v = 1.0 + c * x;
            if v > 0.0 {
                break (x, v * v * v);
            }
        };
        let u = open_unit(rng);
        let x2 = x * x;
        // The cheap squeeze accepts about 98% of draws; the log test decides the rest.
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// One draw from the standard normal distribution.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    loop {
        let u = 2.0 * rng.random::<f64>() - 1.0;
        let v = 2.0 * rng.random::<f64>() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * s.ln() / s).sqrt();
        }
    }
}

/// A uniform draw in `(0, 1)`: logarithms and powers of it stay finite.
fn open_unit(rng: &mut impl Rng) -> f64 {
    loop {
        let u = rng.random::<f64>();
        if u > 0.0 {
            return u;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// Mean and variance of `n` draws.
    fn moments(n: usize, mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let samples: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var)
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        let mut rng = StdRng::seed_from_u64(7);
        // Uniform, skewed, U-shaped (both shapes below 1), and concentrated.
        for (a, b) in [(1.0, 1.0), (2.0, 5.0), (0.5, 0.5), (0.3, 2.0), (41.0, 61.0)] {
            let (mean, var) = moments(40_000, || {
                let x = sample_beta(&mut rng, a, b);
                assert!((0.0..=1.0).contains(&x), "Beta({a}, {b}) drew {x}");
                x
            });
            let want_mean = a / (a + b);
            let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
            assert!(
                (mean - want_mean).abs() < 0.01,
                "Beta({a}, {b}) mean {mean}, expected {want_mean}"
            );
            assert!(
                (var - want_var).abs() < 0.1 * want_var + 0.001,
                "Beta({a}, {b}) variance {var}, expected {want_var}"
            );
        }
    }

    #[test]
    fn gamma_draws_have_the_right_mean() {
        let mut rng = StdRng::seed_from_u64(11);
        for shape in [0.2, 1.0, 3.5, 20.0] {
            let (mean, var) = moments(40_000, || sample_gamma(&mut rng, shape));
            // Gamma(k, 1): mean and variance are both k.
            assert!(
                (mean - shape).abs() < 0.03 * shape + 0.01,
                "shape {shape}: mean {mean}"
            );
            assert!(
                (var - shape).abs() < 0.1 * shape + 0.01,
                "shape {shape}: variance {var}"
            );
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_numbers() {
        let draws = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..5)
                .map(|_| sample_beta(&mut rng, 3.0, 4.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
    }
}
