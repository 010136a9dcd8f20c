//! The conformance kit on the count, positive, proportion, simplex and heavy-tailed
//! families and their closed-form KLs (the same `KlDivergence` impls that
//! `registered_kl`, and so `Elbo`, uses).

use latent::conformance::families::{
    BetaFamily, BinomialFamily, BuiltinKl, DirichletFamily, ExponentialFamily, GammaFamily,
    LogNormalFamily, MultivariateNormalFamily, NegativeBinomialFamily, PoissonFamily,
    StandardNormalFamily, StudentTFamily, ZinbFamily,
};
use latent::conformance::{check_family, check_kl, check_kl_additivity, Config};

#[test]
fn count_families_conform() {
    let c = Config::default();
    check_family::<1, _>(&PoissonFamily, &c).unwrap();
    check_family::<3, _>(&PoissonFamily, &c).unwrap();
    check_family::<1, _>(&BinomialFamily { total_count: 16 }, &c).unwrap();
    check_family::<2, _>(&BinomialFamily { total_count: 5 }, &c).unwrap();
    check_family::<1, _>(&NegativeBinomialFamily, &c).unwrap();
    check_family::<2, _>(&NegativeBinomialFamily, &c).unwrap();
    check_family::<1, _>(&ZinbFamily, &c).unwrap();
    check_family::<2, _>(&ZinbFamily, &c).unwrap();
}

#[test]
fn positive_and_proportion_families_conform() {
    let c = Config::default();
    check_family::<1, _>(&ExponentialFamily, &c).unwrap();
    check_family::<2, _>(&ExponentialFamily, &c).unwrap();
    check_family::<1, _>(&GammaFamily, &c).unwrap();
    check_family::<2, _>(&GammaFamily, &c).unwrap();
    check_family::<1, _>(&BetaFamily, &c).unwrap();
    check_family::<2, _>(&BetaFamily, &c).unwrap();
    let long = Config {
        quadrature_intervals: 200_000,
        ..c
    };
    check_family::<1, _>(&LogNormalFamily, &long).unwrap();
    check_family::<2, _>(&LogNormalFamily, &c).unwrap();
    check_family::<2, _>(&DirichletFamily, &c).unwrap();
    check_family::<3, _>(&DirichletFamily, &c).unwrap();
    check_family::<4, _>(&DirichletFamily, &c).unwrap();
}

#[test]
fn student_t_conforms() {
    let c = Config::default();
    check_family::<1, _>(&StudentTFamily, &c).unwrap();
    check_family::<2, _>(&StudentTFamily, &c).unwrap();
}

#[test]
fn their_closed_form_kls_conform() {
    let c = Config::default();
    let pairs = (
        BuiltinKl {
            q: PoissonFamily,
            p: PoissonFamily,
        },
        BuiltinKl {
            q: ExponentialFamily,
            p: ExponentialFamily,
        },
        BuiltinKl {
            q: GammaFamily,
            p: GammaFamily,
        },
        BuiltinKl {
            q: BetaFamily,
            p: BetaFamily,
        },
    );
    check_kl::<2, _>(&pairs.0, &c).unwrap();
    check_kl::<2, _>(&pairs.1, &c).unwrap();
    check_kl::<2, _>(&pairs.2, &c).unwrap();
    check_kl::<2, _>(&pairs.3, &c).unwrap();
    check_kl_additivity::<3, _>(&pairs.0, &c).unwrap();
    check_kl_additivity::<3, _>(&pairs.2, &c).unwrap();
    check_kl_additivity::<3, _>(&pairs.3, &c).unwrap();
    let log_normal = BuiltinKl {
        q: LogNormalFamily,
        p: LogNormalFamily,
    };
    check_kl::<2, _>(&log_normal, &c).unwrap();
    check_kl_additivity::<3, _>(&log_normal, &c).unwrap();
    check_kl::<3, _>(
        &BuiltinKl {
            q: DirichletFamily,
            p: DirichletFamily,
        },
        &c,
    )
    .unwrap();
}

#[test]
fn multivariate_normal_and_its_kls_conform() {
    let c = Config::default();
    check_family::<1, _>(&MultivariateNormalFamily, &c).unwrap();
    check_family::<2, _>(&MultivariateNormalFamily, &c).unwrap();
    check_family::<3, _>(&MultivariateNormalFamily, &c).unwrap();
    let mvn = MultivariateNormalFamily;
    check_kl::<3, _>(&BuiltinKl { q: mvn, p: mvn }, &c).unwrap();
    check_kl::<3, _>(
        &BuiltinKl {
            q: mvn,
            p: StandardNormalFamily,
        },
        &c,
    )
    .unwrap();
}
