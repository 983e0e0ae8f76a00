"""Public benchmarks through lmms-eval: the ``timewarp`` model adapter (any of our families
and checkpoints), offline benchmark runs on local roots, and generated miniatures.

This package must not import zenml.
"""
