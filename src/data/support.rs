//! Checks that a data set's values lie in a likelihood's support before training, so
//! that a negative count or a proportion of 1.3 is reported once, naming its row and
//! column, instead of failing inside a training step.

use std::path::Path;

use super::Dataset;
pub use crate::distributions::ValueSupport;
use crate::error::{Error, Result};

/// Checks every value of a real-valued data set ([`Dataset::values`]) against
/// `support`; images (bytes) are checked as the integers 0–255 they hold.
///
/// # Errors
/// [`Error::BadValue`] naming `source`, the first offending row and column (0-based)
/// and the value, and what `likelihood` needs.
///
/// # Examples
/// ```
/// use latent::data::{check_support, Dataset, ValueSupport};
///
/// let counts = Dataset::from_rows(vec![0.0, 3.0, 7.0, -1.0], 2, None, "counts.npz".as_ref()).unwrap();
/// let err = check_support(&counts, ValueSupport::Counts, "poisson", "counts.npz".as_ref())
///     .unwrap_err();
/// assert!(err.to_string().contains("row 1, column 1"), "{err}");
/// ```
pub fn check_support(
    data: &Dataset,
    support: ValueSupport,
    likelihood: &str,
    source: &Path,
) -> Result<()> {
    let width = data.dim().max(1);
    let bad = |i: usize, v: f64| Error::BadValue {
        path: source.to_path_buf(),
        row: i / width,
        column: i % width,
        reason: format!(
            "{v} is outside the support of the {likelihood} likelihood, which needs {}",
            support.describe()
        ),
    };
    match &data.values {
        Some(values) => match values.iter().position(|&v| !support.contains(v)) {
            Some(i) => Err(bad(i, values[i])),
            None => Ok(()),
        },
        None => match data
            .images
            .iter()
            .position(|&v| !support.contains(f64::from(v)))
        {
            Some(i) => Err(bad(i, f64::from(data.images[i]))),
            None => Ok(()),
        },
    }
}
