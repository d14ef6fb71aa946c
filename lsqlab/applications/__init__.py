"""What to do with the solver: the paper's applications, each a module of plain functions.

:mod:`.mlp` (the small networks they share), :mod:`.tables` (results over seeds as CSV + Markdown),
and one module per application.
"""
