# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["active-ipynb"]
# # On Colab only: install lsqlab from GitHub (Colab's own jax, numpy, plotly and ipywidgets are kept).
# import subprocess
# import sys
#
# LSQLAB_REPO = "lsqlab-dev/lsqlab"
# if "google.colab" in sys.modules:
#     subprocess.run(
#         [sys.executable, "-m", "pip", "install", "-q", f"git+https://github.com/{LSQLAB_REPO}"], check=True
#     )

# %% [markdown]
# # Gaussian-process hyperparameters tuned for prediction, through the solve
#
# A Gaussian process is usually fitted by maximising the *marginal likelihood* (the evidence)
# $p(y \mid \theta)$ over its kernel hyperparameters $\theta$. The evidence rewards a kernel that
# explains the training data; it does not ask how well the model predicts data it has not seen, and on
# a misspecified model the two can disagree. This notebook tunes $\theta$ for *prediction* instead:
# the loss is the negative log predictive density (NLPD) on held-out folds, and its gradient passes
# through a least-squares solve, differentiated by `lsqlab.lstsq`'s adjoint rules.
#
# The test case is the textbook one: monthly Mauna Loa CO2, the kernel of Rasmussen & Williams (GPML,
# section 5.4.3), trained on 1958–1989 and asked to extrapolate 1990–2001. Diabetes and Friedman #1
# (interpolation, an ARD kernel) are the controls in the results table.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # before any array is created

from dataclasses import replace

import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

from lsqlab import data
from lsqlab.applications import gp_hyperparameters as gp
from lsqlab.applications import gp_posterior, gp_tuning, tables
from lsqlab.applications import random_features as rf
from lsqlab.lab.smoke import SMOKE
from lsqlab.widgets.layout import fit_page, show

# %% [markdown]
# ## The model: Bayesian linear regression on random features
#
# Random features $\phi(x) \in \mathbb{R}^F$ with $\phi(x)^\top\phi(x') \approx k_\theta(x, x')$ turn
# the GP into Bayesian linear regression, $y = \Phi w + \varepsilon$, $w \sim N(0, I)$,
# $\varepsilon \sim N(0, \sigma^2 I)$. Its posterior mean is a damped least-squares solve, with the
# noise standard deviation as the damping:
#
# $$w = \mathrm{LstSq}(\Phi, y, \sigma) = \arg\min_w \|\Phi w - y\|^2 + \sigma^2\|w\|^2,
# \qquad \mu(x_*) = \phi_*^\top w, \qquad
# v(x_*) = \sigma^2\big(1 + \phi_*^\top(\Phi^\top\Phi + \sigma^2 I)^{-1}\phi_*\big).$$
#
# The GPML kernel (trend + decaying seasonal + medium-term irregularities + short-term noise + white):
#
# $$k(\tau) = a_1^2 e^{-\tau^2/2\ell_1^2}
#  + a_2^2 e^{-\tau^2/2\ell_2^2} e^{-2\sin^2(\pi\tau/p)/\ell_p^2}
#  + a_3^2\big(1 + \tfrac{\tau^2}{2\alpha\ell_3^2}\big)^{-\alpha}
#  + a_4^2 e^{-\tau^2/2\ell_4^2} \;(+\, \sigma^2\delta).$$
#
# Each term has a spectral representation. A rule $(z_i, c_i)$ for expectations over $z\sim N(0,1)$
# — fixed base points, reparametrised by $\theta$ — makes every feature differentiable in $\theta$:
#
# * RBF: frequencies $\omega_i = z_i/\ell$, features $a\sqrt{c_i}\,[\cos \omega_i x, \sin\omega_i x]$,
#   so $\phi(x)^\top\phi(x') = a^2\sum_i c_i\cos\omega_i(x - x') \approx a^2\,\mathbb{E}\cos(z(x-x')/\ell)$.
# * Periodic: $e^{-2\sin^2(\pi\tau/p)/\ell_p^2} = \sum_{j\ge 0} q_j \cos(2\pi j\tau/p)$ with
#   $q_j \propto e^{-1/\ell_p^2} I_j(1/\ell_p^2)$ (computed as a DFT over one period, 7 harmonics); times
#   the decaying RBF, the frequencies are $z_i/\ell_2 + 2\pi j/p$ with weights $a_2^2 c_i q_j$.
# * Rational quadratic: a scale mixture of RBFs, $(1 + \tau^2/2\alpha\ell^2)^{-\alpha} =
#   \mathbb{E}_g\, e^{-g\tau^2/2}$ with $g \sim \mathrm{Gamma}(\alpha, \text{rate } \alpha\ell^2)$, so
#   $\omega_i = z_i\sqrt{g_i}$, $g_i = G^{-1}(u_i;\alpha)/(\alpha\ell^2)$; the Gamma quantile is
#   differentiable in $\alpha$ by the implicit function theorem.
#
# The rules: the trend and the seasonal decay, smooth and longer than the record, use Gauss–Hermite
# quadrature (32 and 16 nodes, deterministic); the rational quadratic (1024 draws) and the short term
# (256) use stratified Monte Carlo, one seeded draw per equal-probability stratum. With plain Monte
# Carlo draws the extrapolation RMSE at the book's values varied by ±0.19 ppm over six seeds (mostly
# through the rational quadratic's heavy tail); with these rules by about ±0.1 ppm.
#
# Below: each term's exact kernel against its estimate $\phi(0)^\top\phi(\tau)$, at the book's
# hyperparameters and the sizes used throughout (`rf.CO2_FREQUENCIES`, $F = 2{,}880$ features).

# %%
textbook = rf.co2_textbook()
features = jax.jit(rf.features, static_argnums=0)  # compiled once per input shape
components = ("trend", "seasonal", "medium", "short")
split = data.co2_split(gp.CO2_SPLIT_YEAR)
lags = np.linspace(0.0, 12.0, len(split.x_train))[:, None]  # lags[0] = 0; as many as training months (one compile)
draws = rf.co2_draws(0)
fig = make_subplots(rows=1, cols=4, subplot_titles=[f"{c}: k(τ)" for c in components])
for col, component in enumerate(components, start=1):
    only = {**textbook, **rf.log_hyper({f"{c}_amplitude": 1e-30 for c in components if c != component})}
    exact = rf.exact_kernel("co2", only, lags[:1], lags)[0]
    phi_lags = np.asarray(features("co2", only, draws, jnp.asarray(lags)))
    estimate = phi_lags[0] @ phi_lags.T
    fig.add_scatter(x=lags[:, 0], y=exact, name="exact", line_color="black", showlegend=col == 1, row=1, col=col)
    fig.add_scatter(x=lags[:, 0], y=estimate, name="random features", line_color="crimson", line_dash="dot",
                    showlegend=col == 1, row=1, col=col)
    relative = np.max(np.abs(estimate - exact)) / exact[0]
    print(f"{component:9s} max |error| / k(0) over 12 years = {relative:.3f}")
    assert relative < 0.1
fig.update_xaxes(title_text="τ (years)").update_layout(height=300, margin=dict(t=40, b=40))
show(fit_page(fig))

# %% [markdown]
# The quadrature terms are exact to plotting accuracy; the Monte Carlo terms wander by a few per cent
# at long lags (`tests/test_app_gp_features.py` checks that every term converges as the rules grow).
#
# ## The solve as a differentiable layer
#
# The posterior mean weights come from `lsqlab.lstsq` (LSMR on $[\Phi; \sigma I]$, never forming
# $\Phi^\top\Phi$). The variance needs $\phi_*^\top(\Phi^\top\Phi + \sigma^2I)^{-1}\phi_*$ at every test
# point, i.e. the whole inverse; for a few hundred training points a dense Cholesky factorisation of the
# $n\times n$ matrix $\Phi\Phi^\top + \sigma^2 I$ (Woodbury) is cheaper than one solve per test point,
# so the variance is computed densely and the mean, whose gradient the adjoint rules give, by the solver.

# %%
center, offset = split.x_train.mean(), split.y_train.mean()
x_train, y_train = split.x_train - center, split.y_train - offset
phi = features("co2", textbook, draws, jnp.asarray(x_train[:, None]))
weights, info = gp_posterior.posterior_weights(phi, jnp.asarray(y_train), jnp.exp(textbook["noise"]))
print(f"Phi is {phi.shape[0]} x {phi.shape[1]}; LSMR: {int(info.iterations)} iterations, {info.reason}")
assert phi.shape == (len(y_train), 2880)
noise, phi_np = float(jnp.exp(textbook["noise"])), np.asarray(phi)
dense = phi_np.T @ np.linalg.solve(phi_np @ phi_np.T + noise**2 * np.eye(len(y_train)), y_train)
weights_error = np.linalg.norm(weights - dense) / np.linalg.norm(dense)
mean_error = np.linalg.norm(phi_np @ (weights - dense)) / np.linalg.norm(phi_np @ dense)
print(f"relative difference to the dense float64 ridge solution: weights {weights_error:.1e}, "
      f"fitted values {mean_error:.1e}")
assert bool(info.converged) and mean_error < 1e-6

# %% [markdown]
# The weights agree less well than the predictions: $\Phi$ has singular values down to about $\sigma$,
# and along those directions the weights are loosely determined (LSMR's tolerance 1e-10 bounds
# $\|\Phi^\top r\|$, not the error in $w$); the fitted values $\Phi w$ hardly see them.

# %% [markdown]
# ## The held-out objective and its gradient
#
# For folds $k = 1..K$ with training rows $T_k$ and validation rows $V_k$,
#
# $$L(\theta, \sigma) = \frac1K\sum_k \frac{1}{|V_k|}\sum_{i\in V_k}
# \Big[\tfrac12\log 2\pi v_k(x_i) + \frac{(y_i - \mu_k(x_i))^2}{2 v_k(x_i)}\Big],
# \qquad \mu_k = \Phi\,\mathrm{LstSq}(\Phi_{T_k}, y_{T_k}, \sigma).$$
#
# `gp_tuning.heldout_loss` zeroes the other rows instead of cutting them out (zero rows change neither $w$
# nor $v$), so all folds share one compiled solve. Its gradient with respect to the log
# hyperparameters passes through the features (including the Gamma quantile) and the solve, whose
# reverse rule for damped problems costs one more LSMR solve and returns
# $\partial L/\partial\sigma = -2\sigma\langle s, w\rangle$ alongside $\partial L / \partial \Phi$.
#
# Check against central differences, on six years of data with few features and tight solver
# tolerances. The differences are taken of the same LSMR-based loss, so its stopping error (~1e-14 in
# $L$ here) divided by the step $h = 10^{-5}$ limits their accuracy to ~1e-9 absolute, and the period's
# curvature (30 cycles) adds ~1e-6 relative: the check is relative to the largest component, at 1e-4.
# (`tests/test_app_gp.py` compares with a dense-solve reference to 1e-6.)

# %%
keep = (split.x_train >= 1980) & (split.x_train < 1986)
x_small = jnp.asarray(x_train[keep][:, None])
y_small = jnp.asarray(y_train[keep] - y_train[keep].mean())
small_draws = rf.co2_draws(3, {"trend": 4, "seasonal": 4, "medium": 16, "short": 16})
train_masks, val_masks = gp_tuning.fold_masks(data.kfold(len(y_small), 3, seed=0), len(y_small))
tight = replace(gp_posterior.SOLVE, atol=1e-15, btol=1e-15)


@jax.jit
def small_loss_and_gradient(hyper):
    return jax.value_and_grad(lambda h: gp_tuning.heldout_loss(h, small_draws, x_small, y_small, train_masks,
                                                               val_masks, kind="co2", options=tight)[0])(hyper)


gradient = small_loss_and_gradient(textbook)[1]
names = ("trend_lengthscale", "medium_lengthscale", "medium_alpha", "period", "noise")
adjoint = np.array([float(gradient[name]) for name in names])
reference = np.array([gp_tuning.central_difference(lambda h: small_loss_and_gradient(h)[0], textbook, name, step=1e-5)
                      for name in names])
for name, a, r in zip(names, adjoint, reference):
    print(f"dL/dlog {name:19s} adjoint {a: .8e}   central difference {r: .8e}")
largest = np.max(np.abs(adjoint - reference)) / np.max(np.abs(reference))
print(f"largest difference / largest component: {largest:.1e}")
assert largest < 1e-4

# %% [markdown]
# ## Which folds? Extrapolation is not interpolation
#
# CO2 after 1990 is an extrapolation task, and the folds decide what "predictive" means:
#
# * **random folds** (5-fold over months): each validation month has neighbours in its training set,
#   so the loss judges interpolation, close to leave-one-out;
# * **forward chaining** (5 windows of 3 years, 1975–1990, each trained on everything before it): the
#   loss judges extrapolation, but from shorter records than the final model sees;
# * **one window** (train before 1986, validate 1986–1990): a single extrapolation, which the method
#   brief warns overfits.
#
# The run below trains all three from the book's values (Adam, learning rate 0.01 in log coordinates,
# the period's step scaled by 0.03: over 30 cycles a small change of period is a large change of
# phase), next to the exact GP at the book's values and by marginal likelihood (scikit-learn,
# `normalize_y=True`, started at the book's values), and the random features at the book's values. It
# uses 50 Adam steps and no restarts (the table: 80 steps, 2 restarts), and a small budget in smoke mode
# (training from 1982 only, few features and steps).

# %%
budget = gp.SMOKE if SMOKE else gp.Budget(co2_steps=50, co2_restarts=0)
forecasts = {method: gp.co2_forecast(method, seed=0, budget=budget) for method in gp.DATASETS["co2"]}
rows = {method: gp.row("co2", method, 0, 0, split.y_test, forecast) for method, forecast in forecasts.items()}
live = tables.summarize([{**row, "method": gp.LABELS[method]} for method, row in rows.items()], by=("method",),
                        metrics=("rmse", "nlpd", "fit_s", "compile_s"))
display(Markdown(tables.paper(live, gp.TABLES["gp"])))
for mean, variance, *_ in forecasts.values():
    assert mean.shape == split.y_test.shape and np.all(np.isfinite(mean)) and np.all(variance > 0)
if not SMOKE:
    nlpd = {method: row["nlpd"] for method, row in rows.items()}
    assert nlpd["random_folds"] < nlpd["marginal_likelihood"]
    assert nlpd["random_folds"] < min(nlpd["forward_chaining"], nlpd["one_window"])

# %% [markdown]
# Predictive mean and $\pm 2$ standard deviations over 1990–2001 (the test months, black), for each
# method of the run above.

# %%
fig = make_subplots(rows=3, cols=2, shared_xaxes=True, shared_yaxes=True, subplot_titles=[gp.LABELS[m] for m in forecasts],
                    vertical_spacing=0.08)
recent = split.x_train >= 1986
for k, (mean, variance, *_) in enumerate(forecasts.values()):
    row, col = k // 2 + 1, k % 2 + 1
    std = np.sqrt(variance)
    fig.add_scatter(x=np.concatenate([split.x_test, split.x_test[::-1]]),
                    y=np.concatenate([mean + 2 * std, (mean - 2 * std)[::-1]]), fill="toself",
                    fillcolor="rgba(220, 20, 60, 0.2)", line_width=0, name="± 2σ", showlegend=k == 0,
                    row=row, col=col)
    fig.add_scatter(x=split.x_test, y=mean, line_color="crimson", name="mean", showlegend=k == 0, row=row, col=col)
    fig.add_scatter(x=split.x_test, y=split.y_test, mode="markers", marker=dict(size=3, color="black"),
                    name="test data", showlegend=k == 0, row=row, col=col)
    fig.add_scatter(x=split.x_train[recent], y=split.y_train[recent], mode="markers",
                    marker=dict(size=3, color="grey"), name="training data", showlegend=k == 0, row=row, col=col)
fig.update_annotations(font_size=11).update_layout(height=800, yaxis_title="ppm")
show(fit_page(fig))

# %% [markdown]
# ## The results table (recorded, shipped with lsqlab; `python benchmarks/app_gp.py --record` regenerates it)
#
# Mean ± standard deviation over 3 seeds (CO2: seeds change the random features, the random folds and
# the restarts of the marginal-likelihood fit; diabetes and Friedman #1: over 3 seeds × 5 test folds,
# each seed a fresh fold split and, for Friedman #1, a fresh draw of 300 points). NLPD is in the units of
# the data (ppm for CO2). Fit times exclude the one-off compilation (its own column), measured on two
# shared CPU cores.

# %%
summary = tables.read("gp")
display(Markdown(tables.paper(summary, gp.TABLES["gp"])))
result = {(row["dataset"], method): row for row in summary for method in gp.METHODS
          if row["method"] == gp.LABELS[method]}  # the table shows each method under its label
co2 = {method: row for (dataset, method), row in result.items() if dataset == "co2"}
assert co2["random_folds"]["nlpd_mean"] < co2["marginal_likelihood"]["nlpd_mean"]
assert co2["random_folds"]["rmse_mean"] < min(co2["marginal_likelihood"]["rmse_mean"], co2["textbook"]["rmse_mean"])
assert co2["marginal_likelihood"]["nlpd_mean"] < min(co2["forward_chaining"]["nlpd_mean"],
                                                     co2["one_window"]["nlpd_mean"])
assert abs(co2["textbook"]["rmse_mean"] - 1.98) < 0.01 and abs(co2["textbook"]["nlpd_mean"] - 2.16) < 0.01
assert abs(co2["textbook_features"]["rmse_mean"] - co2["textbook"]["rmse_mean"]) < 0.15
diabetes_ml, diabetes_lsq = result[("diabetes", "marginal_likelihood")], result[("diabetes", "random_folds")]
assert abs(diabetes_ml["rmse_mean"] - diabetes_lsq["rmse_mean"]) < diabetes_ml["rmse_std"]  # a tie
assert result[("friedman1", "marginal_likelihood")]["rmse_mean"] < result[("friedman1", "random_folds")]["rmse_mean"]

# %% [markdown]
# ## Where each method wins or loses
#
# From the committed table (3 seeds; the per-run numbers and fitted hyperparameters are in
# `lsqlab/applications/results/gp_runs.csv`):
#
# * **CO2, held-out NLPD over random folds (lsqlab) wins**: the best RMSE in every seed (0.90–1.57 ppm,
#   against 1.98 for the book's values and 2.22 for marginal likelihood) and a better NLPD than marginal
#   likelihood in every seed (1.32–2.35 against 3.04), better than the book's values (2.16) in two of
#   three. This is the direction of the method brief's anchors (leave-one-out 2.00 / 2.19 against
#   marginal likelihood 2.20 / 3.42), here stronger, but with a wide spread over seeds (±0.38 ppm):
#   interpolation folds leave the long-range hyperparameters loosely fixed (the trend amplitude ended
#   between 40 and 72 ppm), and the spread is larger than that of the random features themselves
#   (±0.10 ppm at the book's values).
# * **Marginal likelihood** is deterministic here (its restarts return to the same optimum) and
#   quicker, but it shrinks the medium-term term and the noise, and its 12-year extrapolation is
#   over-confident: NLPD 3.04 at an RMSE (2.22) close to the others'.
# * **Folds shaped like the task lose**: forward chaining (2.57 / 4.23) and a single window before 1990
#   (2.94 / 6.18) are the worst rows. Both reward a large trend amplitude and a small medium-term
#   variance, which predict a few years well and twelve years over-confidently — the warning of the
#   method brief (one window: 3.20 / 25.2 there) reproduced, milder in NLPD.
# * **The book's values** remain a strong reference (1.98 / 2.16); they were fitted on a longer record
#   than ours, and the random features reproduce them (1.94 ± 0.10 / 2.12 ± 0.10).
# * **Interpolation controls**: on diabetes the two objectives tie (RMSE 54.5 ± 1.7 against
#   54.1 ± 1.8, NLPD 5.42 against 5.41; the anchor's negative control, RMSE ~54.1). On Friedman #1
#   marginal likelihood wins (1.05 against 1.21 RMSE, 1.48 against 1.61 NLPD): 128 random frequencies
#   approximate a 10-D ARD kernel coarsely and 60 Adam steps do not fully settle 12 hyperparameters,
#   while the exact GP with L-BFGS has neither limitation.
# * **Cost**: training through the solve took longer than scikit-learn's exact fits (CO2 ~55 s against
#   ~19 s; diabetes 8 s against 1.5 s, on two shared cores): each Adam step solves every fold forward
#   and backward (~120–140 LSMR iterations) and factorises a dense matrix for the variance. With a few
#   hundred points an exact GP is cheap; the matrix-free solve pays where $n$ and $F$ are large, which
#   these data sets are not.
