//! How well unsupervised cluster assignments recover known classes: the accuracy with
//! each cluster mapped to its majority class, and the normalized mutual information.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The counts `n[(cluster, class)]` of a contingency table, with its margins.
struct Contingency {
    joint: HashMap<(usize, usize), f64>,
    clusters: HashMap<usize, f64>,
    classes: HashMap<usize, f64>,
    n: f64,
}

fn contingency(assignments: &[usize], classes: &[usize]) -> Result<Contingency> {
    if assignments.len() != classes.len() || assignments.is_empty() {
        return Err(Error::shape(
            "cluster metrics (assignments, classes)",
            &[classes.len()],
            &[assignments.len()],
        ));
    }
    let mut t = Contingency {
        joint: HashMap::new(),
        clusters: HashMap::new(),
        classes: HashMap::new(),
        n: assignments.len() as f64,
    };
    for (&a, &c) in assignments.iter().zip(classes) {
        *t.joint.entry((a, c)).or_default() += 1.0;
        *t.clusters.entry(a).or_default() += 1.0;
        *t.classes.entry(c).or_default() += 1.0;
    }
    Ok(t)
}

/// The unsupervised cluster accuracy: each cluster is mapped to the class most of its
/// members have, and the accuracy of that labelling is returned, in `[0, 1]` (the
/// "majority" mapping of e.g. Makhzani et al. 2016, §5; several clusters may map to one
/// class). Ties go to the smaller class index.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the slices differ in length or are empty.
///
/// # Examples
/// ```
/// use latent::eval::clusters::cluster_accuracy;
/// // Cluster 0 is mostly class 5 (2 of 3), cluster 1 entirely class 1.
/// let acc = cluster_accuracy(&[0, 0, 0, 1, 1], &[5, 5, 2, 1, 1])?;
/// assert!((acc - 0.8).abs() < 1e-12);
/// # Ok::<(), latent::Error>(())
/// ```
pub fn cluster_accuracy(assignments: &[usize], classes: &[usize]) -> Result<f64> {
    let t = contingency(assignments, classes)?;
    let mut best: HashMap<usize, (f64, usize)> = HashMap::new();
    for (&(a, c), &n) in &t.joint {
        let e = best.entry(a).or_insert((0.0, usize::MAX));
        if n > e.0 || (n == e.0 && c < e.1) {
            *e = (n, c);
        }
    }
    Ok(best.values().map(|(n, _)| n).sum::<f64>() / t.n)
}

/// The normalized mutual information `I(U; V) / ((H(U) + H(V)) / 2)` between the
/// clusters `U` and the classes `V` (natural logarithms; the arithmetic normalization,
/// scikit-learn's default for `normalized_mutual_info_score`), in `[0, 1]`. 1 when both
/// labellings are a single group (as scikit-learn).
///
/// # Errors
/// [`Error::ShapeMismatch`] if the slices differ in length or are empty.
///
/// # Examples
/// ```
/// use latent::eval::clusters::normalized_mutual_information;
/// // scikit-learn 1.9.1: normalized_mutual_info_score(
/// //     [5,5,1,1,2,2,2,5,1,0,1,2], [0,0,1,1,1,2,2,0,3,3,1,2]) = 0.7436268334103218
/// let nmi = normalized_mutual_information(
///     &[0, 0, 1, 1, 1, 2, 2, 0, 3, 3, 1, 2],
///     &[5, 5, 1, 1, 2, 2, 2, 5, 1, 0, 1, 2],
/// )?;
/// assert!((nmi - 0.7436268334103218).abs() < 1e-12);
/// # Ok::<(), latent::Error>(())
/// ```
pub fn normalized_mutual_information(assignments: &[usize], classes: &[usize]) -> Result<f64> {
    let t = contingency(assignments, classes)?;
    let entropy =
        |m: &HashMap<usize, f64>| -> f64 { m.values().map(|&c| -(c / t.n) * (c / t.n).ln()).sum() };
    let (hu, hv) = (entropy(&t.clusters), entropy(&t.classes));
    if hu == 0.0 && hv == 0.0 {
        return Ok(1.0);
    }
    let mi: f64 = t
        .joint
        .iter()
        .map(|(&(a, c), &n)| {
            let (na, nc) = (t.clusters[&a], t.classes[&c]);
            (n / t.n) * (n * t.n / (na * nc)).ln()
        })
        .sum();
    let denom = (hu + hv) / 2.0;
    Ok(if denom > 0.0 {
        (mi / denom).clamp(0.0, 1.0)
    } else {
        0.0
    })
}
