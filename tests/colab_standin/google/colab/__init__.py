"""Stands in for Colab's ``google.colab`` in tests/test_student_machine.py: its presence in ``sys.modules``
is how the notebooks, plotly, jax and anywidget tell that they run on Colab."""
