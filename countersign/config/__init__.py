"""What a process is configured with: settings from the environment, the Temporal connection they
describe, the approval policy file. Entrypoints (countersign/, worker.py, api/main.py) read it."""
