"""The teaching maths behind the notebooks and widgets: small problems with known answers, the solver
comparisons, gradient-accuracy sweeps, null-space geometry in 3-D, the expression parser of the manifold
explorer, and the notebooks' smoke budgets. The library a researcher imports is the package root."""
