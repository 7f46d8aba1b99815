"""An example Countersign plugin: one tool (`tools.py`) and one graph node function (`nodes.py`).

Countersign finds them through the entry points in this package's pyproject.toml; nothing here is
imported by Countersign's own code.
"""
