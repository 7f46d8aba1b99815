"""Countersign: the AI proposes, a human decides. The one import package of the application.

Its subpackages are the layers, each importing only the ones below it (README.md, "Layout"): cli/ and
stack/ (entrypoints), worker.py (the worker's composition root), api/, workflows/, activities/,
observability/, config/, store/, llm/, tools/, graphs/, security/, models/. Nothing is imported here,
so `import countersign.models` loads the models alone.
"""
