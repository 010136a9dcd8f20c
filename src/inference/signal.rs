//! The moments of a learning signal over a batch, which objectives with running state
//! (NVIL's centring and scaling) observe and the trainer sums over replicas and ranks.

/// The count, sum and sum of squares of a learning signal over a batch: what
/// [`crate::Objective::objective_observed`] reports for running moments. They add across
/// data-parallel replicas and ranks.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SignalMoments {
    /// The number of values.
    pub count: f64,
    /// `Σ l`.
    pub sum: f64,
    /// `Σ l²`.
    pub sum_sq: f64,
}

impl SignalMoments {
    /// The moments of `values`.
    pub fn of(values: &[f64]) -> Self {
        Self {
            count: values.len() as f64,
            sum: values.iter().sum(),
            sum_sq: values.iter().map(|v| v * v).sum(),
        }
    }

    /// The mean and (population) variance, `(0, 0)` for no values.
    pub fn mean_variance(&self) -> (f64, f64) {
        if self.count <= 0.0 {
            return (0.0, 0.0);
        }
        let mean = self.sum / self.count;
        (mean, (self.sum_sq / self.count - mean * mean).max(0.0))
    }
}

impl std::ops::AddAssign for SignalMoments {
    fn add_assign(&mut self, o: Self) {
        self.count += o.count;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }
}
