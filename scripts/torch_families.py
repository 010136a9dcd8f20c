"""Reference values from torch.distributions (float64) for tests/torch_families.rs.

Run from the repository root:  python3 scripts/torch_families.py
It writes tests/data/torch_families.json: lgamma/digamma on a wide grid (trigamma from mpmath),
and for each new family (Poisson, Binomial, NegativeBinomial, Exponential, Gamma, Beta,
LogNormal, StudentT, Dirichlet, MultivariateNormal, and scVI's zero-inflated negative
binomial)
random parameters (edges included) with log_prob, mean, variance, entropy and mode,
and the closed-form KLs torch registers for Poisson, Exponential, Gamma, Beta, LogNormal,
Dirichlet and MultivariateNormal pairs.
"""
import json
import math

import torch
import torch.distributions as td

torch.manual_seed(20261205)
D = torch.float64


def t(v):
    return torch.tensor(v, dtype=D)


def finite_or_name(v):
    """JSON has no NaN or infinities: those are written as the strings Rust parses."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def f(x):
    return [finite_or_name(v) for v in x.reshape(-1)]


out = {"torch": torch.__version__}

# Special functions: small, near the zeros of lgamma (1, 2) and digamma (1.46...),
# moderate, large, and negative non-integers.
grid = [1e-300, 1e-100, 1e-20, 1e-8, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999999,
        1.0, 1.000001, 1.01, 1.1, 1.25, 1.4616321449683623, 1.5, 1.75, 1.9, 1.999999, 2.0,
        2.000001, 2.1, 2.5, 3.0, 3.5, 4.75, 7.0, 9.99, 10.0, 14.9, 15.0, 15.1, 20.5, 33.3,
        100.0, 171.5, 1e3, 12345.678, 1e6, 1e10, 1e15, 1e20, 1e100, 1e300,
        -0.5, -1.5, -2.25, -10.3, -100.7]
grid += [float(v) for v in torch.empty(60, dtype=D).uniform_(-6.0, 6.0).exp()]
g = t(grid)
out["lgamma"] = {"x": grid, "y": f(torch.lgamma(g))}
dg = [v for v in grid if v < 1e16]  # digamma's float64 range of interest
out["digamma"] = {"x": dg, "y": f(torch.digamma(t(dg)))}
tg = [v for v in grid if 1e-150 < abs(v) < 1e16]
# torch.polygamma(1, x) goes through its Hurwitz zeta and is good to about 1e-9
# relative only; the trigamma reference is mpmath's at 30 digits (torch's kept beside).
import mpmath  # noqa: E402  (a dependency of torch's sympy)

mpmath.mp.dps = 30
out["trigamma"] = {"x": tg, "y": [float(mpmath.psi(1, v)) for v in tg],
                   "torch": f(torch.polygamma(1, t(tg)))}


def positive(n, lo, hi):
    return torch.empty(n, dtype=D).uniform_(math.log(lo), math.log(hi)).exp()


n = 40
fam = {}

rate = positive(n, 1e-3, 1e3)
x = torch.poisson(rate).clamp(max=1e6)
x[:3] = t([0.0, 1.0, 250.0])
d = td.Poisson(rate)
fam["poisson"] = {"rate": f(rate), "x": f(x), "log_prob": f(d.log_prob(x)),
                  "mean": f(d.mean), "variance": f(d.variance), "mode": f(d.mode)}

total = 16
logits = torch.empty(n, dtype=D).uniform_(-8.0, 8.0)
d = td.Binomial(total_count=total, logits=logits)
x = d.sample()
x[:2] = t([0.0, 16.0])
fam["binomial"] = {"total_count": total, "logits": f(logits), "x": f(x),
                   "log_prob": f(d.log_prob(x)), "mean": f(d.mean),
                   "variance": f(d.variance), "mode": f(d.mode)}

r = positive(n, 1e-2, 1e2)
logits = torch.empty(n, dtype=D).uniform_(-5.0, 5.0)
d = td.NegativeBinomial(total_count=r, logits=logits)
x = d.sample()
x[:2] = t([0.0, 1000.0])
fam["negative_binomial"] = {"total_count": f(r), "logits": f(logits), "x": f(x),
                            "log_prob": f(d.log_prob(x)), "mean": f(d.mean),
                            "variance": f(d.variance), "mode": f(d.mode)}

rate = positive(n, 1e-3, 1e3)
d = td.Exponential(rate)
x = d.sample().clamp(min=1e-300)
fam["exponential"] = {"rate": f(rate), "x": f(x), "log_prob": f(d.log_prob(x)),
                      "mean": f(d.mean), "variance": f(d.variance), "entropy": f(d.entropy()),
                      "mode": f(d.mode)}

a = positive(n, 1e-2, 1e3)
a[:3] = t([0.01, 1.0, 1000.0])
rate = positive(n, 1e-2, 1e2)
d = td.Gamma(a, rate)
x = d.sample().clamp(min=1e-300)
fam["gamma"] = {"concentration": f(a), "rate": f(rate), "x": f(x),
                "log_prob": f(d.log_prob(x)), "mean": f(d.mean), "variance": f(d.variance),
                "entropy": f(d.entropy()), "mode": f(d.mode)}

a = positive(n, 1e-2, 1e2)
b = positive(n, 1e-2, 1e2)
a[:2] = t([1.0, 0.05])
b[:2] = t([1.0, 50.0])
d = td.Beta(a, b)
x = d.sample().clamp(1e-12, 1 - 1e-12)
fam["beta"] = {"concentration1": f(a), "concentration0": f(b), "x": f(x),
               "log_prob": f(d.log_prob(x)), "mean": f(d.mean), "variance": f(d.variance),
               "entropy": f(d.entropy())}

loc = torch.empty(n, dtype=D).uniform_(-2.0, 2.0)
scale = positive(n, 0.05, 3.0)
d = td.LogNormal(loc, scale)
x = d.sample()
fam["log_normal"] = {"loc": f(loc), "scale": f(scale), "x": f(x),
                     "log_prob": f(d.log_prob(x)), "mean": f(d.mean),
                     "variance": f(d.variance), "entropy": f(d.entropy()), "mode": f(d.mode)}

df = positive(n, 0.3, 100.0)
df[:3] = t([0.5, 1.5, 2.5])  # mean NaN, variance inf, finite
loc = torch.empty(n, dtype=D).uniform_(-2.0, 2.0)
scale = positive(n, 0.1, 5.0)
d = td.StudentT(df, loc, scale)
x = d.sample()
fam["student_t"] = {"df": f(df), "loc": f(loc), "scale": f(scale), "x": f(x),
                    "log_prob": f(d.log_prob(x)), "mean": f(d.mean),
                    "variance": f(d.variance), "entropy": f(d.entropy()), "mode": f(d.mode)}

K = 4
conc = positive(n * K, 0.05, 50.0).reshape(n, K)
conc[0] = t([2.0, 3.0, 4.0, 5.0])
conc[1] = t([0.5, 0.7, 0.2, 0.9])  # mode: the corner of the largest
conc[2] = t([0.5, 3.0, 1.5, 0.9])
d = td.Dirichlet(conc)
x = d.sample().clamp(min=1e-300)
x = x / x.sum(-1, keepdim=True)
fam["dirichlet"] = {"k": K, "concentration": f(conc), "x": f(x), "log_prob": f(d.log_prob(x)),
                    "mean": f(d.mean), "variance": f(d.variance), "entropy": f(d.entropy()),
                    "mode": f(d.mode)}


def log_zinb_positive(x, mu, theta, pi, eps=1e-8, log_eps=1e-8):
    """scVI's ZINB log-likelihood, written out from scvi-tools
    (scvi/distributions/_negative_binomial.py, log_zinb_positive; Lopez et al. 2018).
    pi is the logit of the dropout probability. scVI uses one eps for the zero masks
    and inside the logarithms; here the two are separate so the logs can be exact."""
    softplus = torch.nn.functional.softplus
    eps, mask_eps = log_eps, eps
    softplus_pi = softplus(-pi)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = softplus(pi_theta_log) - softplus_pi
    mul_case_zero = torch.mul((x < mask_eps).type(D), case_zero)
    case_non_zero = (-softplus_pi + pi_theta_log
                     + x * (torch.log(mu + eps) - log_theta_mu_eps)
                     + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    mul_case_non_zero = torch.mul((x > mask_eps).type(D), case_non_zero)
    return mul_case_zero + mul_case_non_zero


mu = positive(n, 0.01, 100.0)
theta = positive(n, 0.05, 50.0)
pi = torch.empty(n, dtype=D).uniform_(-4.0, 4.0)
nb = td.NegativeBinomial(total_count=theta, logits=mu.log() - theta.log()).sample()
x = torch.where(torch.rand(n, dtype=D) < torch.sigmoid(pi), torch.zeros_like(nb), nb)
x[:2] = t([0.0, 7.0])
# log_eps = 0: latent's parameters are on the log scale and need no guard inside the logs.
fam["zinb"] = {"mean_nb": f(mu), "inverse_dispersion": f(theta), "zi_logits": f(pi), "x": f(x),
               "log_prob": f(log_zinb_positive(x, mu, theta, pi, log_eps=0.0)),
               "mean": f(torch.sigmoid(-pi) * mu),
               "variance": f(torch.sigmoid(-pi) * mu * (1 + mu / theta + torch.sigmoid(pi) * mu))}


def random_tril(count, dim):
    """Lower-triangular factors with positive diagonals (some badly conditioned)."""
    low = torch.randn(count, dim, dim, dtype=D).tril(-1)
    diag = positive(count * dim, 0.05, 5.0).reshape(count, dim)
    return low + torch.diag_embed(diag)


dim = 3
loc = torch.randn(n, dim, dtype=D)
tril = random_tril(n, dim)
d = td.MultivariateNormal(loc, scale_tril=tril)
x = d.sample()
fam["multivariate_normal"] = {"dim": dim, "loc": f(loc), "scale_tril": f(tril), "x": f(x),
                              "log_prob": f(d.log_prob(x)), "variance": f(d.variance),
                              "entropy": f(d.entropy())}
out["families"] = fam

kl = {}
r1, r2 = positive(n, 1e-2, 1e2), positive(n, 1e-2, 1e2)
r2[0] = r1[0]
kl["poisson"] = {"q_rate": f(r1), "p_rate": f(r2),
                 "kl": f(td.kl_divergence(td.Poisson(r1), td.Poisson(r2)))}
kl["exponential"] = {"q_rate": f(r1), "p_rate": f(r2),
                     "kl": f(td.kl_divergence(td.Exponential(r1), td.Exponential(r2)))}
a1, a2 = positive(n, 1e-2, 1e2), positive(n, 1e-2, 1e2)
b1, b2 = positive(n, 1e-2, 1e2), positive(n, 1e-2, 1e2)
a2[0], b2[0] = a1[0], b1[0]
kl["gamma"] = {"q_concentration": f(a1), "q_rate": f(b1), "p_concentration": f(a2),
               "p_rate": f(b2),
               "kl": f(td.kl_divergence(td.Gamma(a1, b1), td.Gamma(a2, b2)))}
kl["beta"] = {"q_concentration1": f(a1), "q_concentration0": f(b1),
              "p_concentration1": f(a2), "p_concentration0": f(b2),
              "kl": f(td.kl_divergence(td.Beta(a1, b1), td.Beta(a2, b2)))}
l1, l2 = torch.empty(n, dtype=D).uniform_(-2, 2), torch.empty(n, dtype=D).uniform_(-2, 2)
s1, s2 = positive(n, 0.1, 3.0), positive(n, 0.1, 3.0)
l2[0], s2[0] = l1[0], s1[0]
kl["log_normal"] = {"q_loc": f(l1), "q_scale": f(s1), "p_loc": f(l2), "p_scale": f(s2),
                    "kl": f(td.kl_divergence(td.LogNormal(l1, s1), td.LogNormal(l2, s2)))}
c1, c2 = positive(n * K, 0.05, 50.0).reshape(n, K), positive(n * K, 0.05, 50.0).reshape(n, K)
c2[0] = c1[0]
kl["dirichlet"] = {"k": K, "q_concentration": f(c1), "p_concentration": f(c2),
                   "kl": f(td.kl_divergence(td.Dirichlet(c1), td.Dirichlet(c2)))}
loc1, loc2 = torch.randn(n, dim, dtype=D), torch.randn(n, dim, dtype=D)
t1, t2 = random_tril(n, dim), random_tril(n, dim)
loc2[0], t2[0] = loc1[0], t1[0]
q, p = td.MultivariateNormal(loc1, scale_tril=t1), td.MultivariateNormal(loc2, scale_tril=t2)
std = td.MultivariateNormal(torch.zeros(n, dim, dtype=D), scale_tril=torch.eye(dim, dtype=D).expand(n, dim, dim))
kl["multivariate_normal"] = {"dim": dim, "q_loc": f(loc1), "q_scale_tril": f(t1), "p_loc": f(loc2),
                             "p_scale_tril": f(t2), "kl": f(td.kl_divergence(q, p)),
                             "kl_standard": f(td.kl_divergence(q, std))}
out["kl"] = kl

with open("tests/data/torch_families.json", "w") as fh:
    json.dump(out, fh, indent=1)
print("wrote tests/data/torch_families.json with torch", torch.__version__)
