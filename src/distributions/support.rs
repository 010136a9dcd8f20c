//! Supports: where a family's events may lie.

/// The values a family (and so a likelihood) accepts: its support, checked by
/// `log_prob` and, for a whole data set, by [`crate::data::check_support`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueSupport {
    /// Any finite real (Gaussian).
    Real,
    /// Non-negative finite reals (exponential).
    NonNegative,
    /// Non-negative integers (Poisson, negative binomial, ZINB).
    Counts,
    /// Integers `0..=n` (binomial with `n` trials).
    CountsUpTo(u32),
    /// Positive finite reals (Gamma, log-normal).
    Positive,
    /// The open interval `(0, 1)` (Beta).
    UnitInterval,
}

impl ValueSupport {
    /// Whether `v` lies in the support.
    pub fn contains(&self, v: f64) -> bool {
        match *self {
            ValueSupport::Real => v.is_finite(),
            ValueSupport::NonNegative => v.is_finite() && v >= 0.0,
            ValueSupport::Counts => v.is_finite() && v >= 0.0 && v == v.floor(),
            ValueSupport::CountsUpTo(n) => v >= 0.0 && v <= f64::from(n) && v == v.floor(),
            ValueSupport::Positive => v.is_finite() && v > 0.0,
            ValueSupport::UnitInterval => v > 0.0 && v < 1.0,
        }
    }

    /// The support in words, for error messages.
    pub fn describe(&self) -> String {
        match self {
            ValueSupport::Real => "finite real numbers".into(),
            ValueSupport::NonNegative => "non-negative numbers".into(),
            ValueSupport::Counts => "non-negative integer counts".into(),
            ValueSupport::CountsUpTo(n) => format!("integer counts from 0 to {n}"),
            ValueSupport::Positive => "positive numbers".into(),
            ValueSupport::UnitInterval => "proportions strictly between 0 and 1".into(),
        }
    }
}
