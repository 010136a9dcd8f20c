//! The conformance kit on the count, positive and proportion families and their
//! closed-form KLs (the same `KlDivergence` impls that `registered_kl`, and so `Elbo`,
//! uses).

use latent::conformance::families::{
    BetaFamily, BinomialFamily, BuiltinKl, ExponentialFamily, GammaFamily, NegativeBinomialFamily,
    PoissonFamily,
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
}
