//! The count, positive and proportion families and their closed-form KLs against
//! `torch.distributions` in float64: values written by `scripts/torch_families.py`
//! (random parameters with edges), committed in `tests/data/torch_families.json`.
//! Tolerance: 1e-9 relative, 1e-12 absolute near zero.

#[path = "support/torch_reference.rs"]
mod torch_reference;

use dfdx::prelude::*;
use latent::distributions::{
    Beta, Binomial, Dirichlet, Distribution, Entropy, Exponential, Gamma, LogNormal, Mode,
    NegativeBinomial, Poisson, StudentT, Variance, ZeroInflatedNegativeBinomial,
};
use latent::kl::KlDivergence;
use torch_reference::{column, reference};

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;
type Ev = Tensor<(usize, Const<1>), f64, Dev>;

fn events(dev: &Dev, v: &[f64]) -> Ev {
    dev.tensor_from_vec(v.to_vec(), (v.len(), Const::<1>))
}

fn logs(dev: &Dev, v: &[f64]) -> Ev {
    events(dev, &v.iter().map(|x| x.ln()).collect::<Vec<_>>())
}

fn check(what: &str, ours: Vec<f64>, torch: &[f64]) {
    assert_eq!(ours.len(), torch.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
        if !b.is_finite() {
            // NaN where torch's is undefined, ±∞ where it is infinite.
            assert!(
                a.is_nan() && b.is_nan() || a == b,
                "{what}[{i}]: {a} against torch's {b}"
            );
            continue;
        }
        assert!(
            (a - b).abs() <= (1e-9 * b.abs()).max(1e-12),
            "{what}[{i}]: {a} against torch's {b}"
        );
    }
}

#[test]
fn poisson_matches_torch() {
    let r = reference();
    let f = &r["families"]["poisson"];
    let dev = Dev::default();
    let d = || Poisson::new(logs(&dev, &column(f, "rate")));
    let x = events(&dev, &column(f, "x"));
    check(
        "Poisson log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Poisson mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Poisson variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check("Poisson mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn binomial_matches_torch() {
    let r = reference();
    let f = &r["families"]["binomial"];
    let dev = Dev::default();
    let n = f["total_count"].as_u64().unwrap() as u32;
    let d = || Binomial::new(n, events(&dev, &column(f, "logits"))).unwrap();
    let x = events(&dev, &column(f, "x"));
    check(
        "Binomial log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Binomial mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Binomial variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check("Binomial mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn negative_binomial_matches_torch() {
    let r = reference();
    let f = &r["families"]["negative_binomial"];
    let dev = Dev::default();
    let d = || {
        NegativeBinomial::new(
            logs(&dev, &column(f, "total_count")),
            events(&dev, &column(f, "logits")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "NB log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("NB mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "NB variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check("NB mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn exponential_matches_torch() {
    let r = reference();
    let f = &r["families"]["exponential"];
    let dev = Dev::default();
    let d = || Exponential::new(logs(&dev, &column(f, "rate")));
    let x = events(&dev, &column(f, "x"));
    check(
        "Exponential log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Exponential mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Exponential variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "Exponential entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
    check("Exponential mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn gamma_matches_torch() {
    let r = reference();
    let f = &r["families"]["gamma"];
    let dev = Dev::default();
    let d = || {
        Gamma::new(
            logs(&dev, &column(f, "concentration")),
            logs(&dev, &column(f, "rate")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "Gamma log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Gamma mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Gamma variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "Gamma entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
    check("Gamma mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn beta_matches_torch() {
    let r = reference();
    let f = &r["families"]["beta"];
    let dev = Dev::default();
    let d = || {
        Beta::new(
            logs(&dev, &column(f, "concentration1")),
            logs(&dev, &column(f, "concentration0")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "Beta log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Beta mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Beta variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "Beta entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
}

#[test]
fn log_normal_matches_torch() {
    let r = reference();
    let f = &r["families"]["log_normal"];
    let dev = Dev::default();
    let d = || {
        LogNormal::new(
            events(&dev, &column(f, "loc")),
            logs(&dev, &column(f, "scale")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "LogNormal log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("LogNormal mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "LogNormal variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "LogNormal entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
    check("LogNormal mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn student_t_matches_torch() {
    let r = reference();
    let f = &r["families"]["student_t"];
    let dev = Dev::default();
    let d = || {
        StudentT::new(
            logs(&dev, &column(f, "df")),
            events(&dev, &column(f, "loc")),
            logs(&dev, &column(f, "scale")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "StudentT log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("StudentT mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "StudentT variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "StudentT entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
    check("StudentT mode", d().mode().as_vec(), &column(f, "mode"));
}

#[test]
fn dirichlet_matches_torch() {
    let r = reference();
    let f = &r["families"]["dirichlet"];
    let dev = Dev::default();
    let k = f["k"].as_u64().unwrap() as usize;
    let rows = |v: Vec<f64>| dev.tensor_from_vec(v.clone(), (v.len() / k, k));
    let ln = |v: Vec<f64>| v.iter().map(|x| x.ln()).collect::<Vec<_>>();
    let d = || Dirichlet::new(rows(ln(column(f, "concentration")))).unwrap();
    let x = rows(column(f, "x"));
    check(
        "Dirichlet log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("Dirichlet mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "Dirichlet variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check(
        "Dirichlet entropy",
        d().entropy().as_vec(),
        &column(f, "entropy"),
    );
    // Where every α_k < 1 torch's mode takes the argmax of a row of NaNs (0/0), index
    // 0; latent returns the corner of the largest α_k. Other rows are compared.
    let (ours, theirs, conc) = (
        d().mode().as_vec(),
        column(f, "mode"),
        column(f, "concentration"),
    );
    let mut compared = 0;
    for ((o, t), a) in ours.chunks(k).zip(theirs.chunks(k)).zip(conc.chunks(k)) {
        if a.iter().all(|&a| a < 1.0) {
            let best = (0..k).fold(0, |b, j| if a[j] > a[b] { j } else { b });
            let corner: Vec<f64> = (0..k).map(|j| f64::from(u8::from(j == best))).collect();
            assert_eq!(o, &corner[..]);
        } else {
            check("Dirichlet mode", o.to_vec(), t);
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} rows compared");
    let f = &r["kl"]["dirichlet"];
    let q = Dirichlet::new(rows(ln(column(f, "q_concentration")))).unwrap();
    let p = Dirichlet::new(rows(ln(column(f, "p_concentration")))).unwrap();
    check(
        "KL(Dirichlet‖Dirichlet)",
        q.kl_divergence(p).unwrap().as_vec(),
        &column(f, "kl"),
    );
}

#[test]
fn zinb_matches_scvi() {
    // The reference is scVI's log_zinb_positive written out in scripts/torch_families.py
    // (without its eps inside the logarithms).
    let r = reference();
    let f = &r["families"]["zinb"];
    let dev = Dev::default();
    let d = || {
        ZeroInflatedNegativeBinomial::new(
            logs(&dev, &column(f, "mean_nb")),
            logs(&dev, &column(f, "inverse_dispersion")),
            events(&dev, &column(f, "zi_logits")),
        )
        .unwrap()
    };
    let x = events(&dev, &column(f, "x"));
    check(
        "ZINB log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check("ZINB mean", d().mean().as_vec(), &column(f, "mean"));
    check(
        "ZINB variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
}

#[test]
fn multivariate_normal_and_its_kls_match_torch() {
    use latent::distributions::{MultivariateNormal, StandardNormal};
    let r = reference();
    let f = &r["families"]["multivariate_normal"];
    let dev = Dev::default();
    let n = f["dim"].as_u64().unwrap() as usize;
    let mvn = |loc: Vec<f64>, tril: Vec<f64>| {
        MultivariateNormal::<usize, f64, Dev>::from_host(&dev, n, &loc, &tril).unwrap()
    };
    let d = || mvn(column(f, "loc"), column(f, "scale_tril"));
    let x = column(f, "x");
    let x = dev.tensor_from_vec(x.clone(), (x.len() / n, n));
    check(
        "MVN log_prob",
        d().log_prob(x).unwrap().as_vec(),
        &column(f, "log_prob"),
    );
    check(
        "MVN variance",
        d().variance().as_vec(),
        &column(f, "variance"),
    );
    check("MVN entropy", d().entropy().as_vec(), &column(f, "entropy"));
    let k = &r["kl"]["multivariate_normal"];
    let q = || mvn(column(k, "q_loc"), column(k, "q_scale_tril"));
    let p = mvn(column(k, "p_loc"), column(k, "p_scale_tril"));
    check(
        "KL(MVN‖MVN)",
        q().kl_divergence(p).unwrap().as_vec(),
        &column(k, "kl"),
    );
    let b = q().batch_size();
    let std = StandardNormal::<usize, f64, Dev>::new(b, n, &dev);
    check(
        "KL(MVN‖N(0, I))",
        q().kl_divergence(std).unwrap().as_vec(),
        &column(k, "kl_standard"),
    );
}

#[test]
fn closed_form_kls_match_torch() {
    let r = reference();
    let k = &r["kl"];
    let dev = Dev::default();
    let c = |f: &serde_json::Value, key: &str| logs(&dev, &column(f, key));
    let f = &k["poisson"];
    let kl = Poisson::new(c(f, "q_rate"))
        .kl_divergence(Poisson::new(c(f, "p_rate")))
        .unwrap();
    check("KL(Poisson‖Poisson)", kl.as_vec(), &column(f, "kl"));
    let f = &k["exponential"];
    let kl = Exponential::new(c(f, "q_rate"))
        .kl_divergence(Exponential::new(c(f, "p_rate")))
        .unwrap();
    check("KL(Exponential‖Exponential)", kl.as_vec(), &column(f, "kl"));
    let f = &k["gamma"];
    let q = Gamma::new(c(f, "q_concentration"), c(f, "q_rate")).unwrap();
    let p = Gamma::new(c(f, "p_concentration"), c(f, "p_rate")).unwrap();
    check(
        "KL(Gamma‖Gamma)",
        q.kl_divergence(p).unwrap().as_vec(),
        &column(f, "kl"),
    );
    let f = &k["beta"];
    let q = Beta::new(c(f, "q_concentration1"), c(f, "q_concentration0")).unwrap();
    let p = Beta::new(c(f, "p_concentration1"), c(f, "p_concentration0")).unwrap();
    check(
        "KL(Beta‖Beta)",
        q.kl_divergence(p).unwrap().as_vec(),
        &column(f, "kl"),
    );
}

#[test]
fn count_families_refuse_events_outside_their_support() {
    let dev = Dev::default();
    let p = Poisson::new(events(&dev, &[0.0, 0.0]));
    let err = p
        .log_prob(events(&dev, &[1.0, 2.5]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 1, column 0") && err.contains("2.5"),
        "{err}"
    );
    let b = Binomial::new(4, events(&dev, &[0.0])).unwrap();
    assert!(b.log_prob(events(&dev, &[5.0])).is_err());
    let g = Gamma::new(events(&dev, &[0.0]), events(&dev, &[0.0])).unwrap();
    assert!(g.log_prob(events(&dev, &[-1.0])).is_err());
    let be = Beta::new(events(&dev, &[0.0]), events(&dev, &[0.0])).unwrap();
    assert!(be.log_prob(events(&dev, &[1.0])).is_err());
    assert!(Binomial::new(0, events(&dev, &[0.0])).is_err());
}
